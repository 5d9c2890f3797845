"""The verify pages without a browser: they answer with the security headers, hold the elements
their scripts use, load only our own files (with integrity hashes), and the files are served
with the right types. The browser itself is in test_pages_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE
from etrust.settings import load_settings
from tests.officers import api_headers

STATIC = Path(__file__).parent.parent / "etrust" / "static"
PAGES = {
    "/v": ["v-empty", "busy", "result", "check-link"],
    "/window": [
        "scan",
        "scan-form",
        "holder-code",
        "image-file",
        "document-file",
        "camera-box",
        "camera-button",
        "camera-video",
        "result",
        "busy",
        "who",
        "login-form",
        "token",
        "logout",
        "scan-ready",
    ],
    "/check": ["code-form", "code", "image-file", "document-file", "camera-box", "result"],
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pages")
    assert main(["--home", str(path), "init", "--demo"]) == 0
    return path


@pytest.fixture(scope="module")
def client(home: Path) -> TestClient:
    return TestClient(create_app(load_settings(home)))


def assert_security_headers(headers: object, cache: str = "no-store") -> None:
    assert hasattr(headers, "get")
    csp = headers.get("content-security-policy")
    assert csp is not None
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"
    assert headers.get("cache-control") == cache


@pytest.mark.parametrize("path", sorted(PAGES))
def test_pages_answer_with_their_elements_and_headers(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert_security_headers(resp.headers)
    page = resp.text
    assert '<html lang="zh-CN">' in page and 'name="viewport"' in page
    for element in PAGES[path]:
        assert f'id="{element}"' in page, element
    # nothing inline for the CSP to refuse: scripts and styles are our files only
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "<style" not in page and not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    assert "javascript:" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert all(s.startswith(("/", "data:")) for s in sources), sources  # no CDN, no other host


def test_pages_load_our_files_with_integrity_hashes(client: TestClient) -> None:
    page = client.get("/window").text
    tags = re.findall(r'(?:src|href)="(/static/[^"]+)" integrity="([^"]+)"', page)
    names = {url.split("?")[0].rsplit("/", 1)[1] for url, _ in tags}
    assert names == {"common.js", "window.js", "pages.css"}
    for url, integrity in tags:
        resp = client.get(url)
        assert resp.status_code == 200
        digest = base64.b64encode(hashlib.sha384(resp.content).digest()).decode()
        assert integrity == f"sha384-{digest}"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("common.js", "text/javascript"),
        ("window.js", "text/javascript"),
        ("check.js", "text/javascript"),
        ("v.js", "text/javascript"),
        ("pages.css", "text/css"),
    ],
)
def test_static_files_are_served_with_their_types(
    client: TestClient, name: str, media_type: str
) -> None:
    resp = client.get(f"/static/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert resp.content == (STATIC / name).read_bytes()
    assert_security_headers(resp.headers, cache="no-cache")
    again = client.get(f"/static/{name}", headers={"If-None-Match": resp.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/pages.py",
        "/static/..%2fpages.py",
        "/static/%2e%2e%2fapp.py",
        "/static/.hidden.js",
        "/static/COMMON.JS",
    ],
)
def test_nothing_else_is_served_from_static(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


def test_scripts_put_text_into_the_page_never_html() -> None:
    for script in STATIC.glob("*.js"):
        source = script.read_text("utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{script.name} uses {sink}"
    assert "textContent" in (STATIC / "common.js").read_text("utf-8")


def test_who_is_signed_in(home: Path, client: TestClient) -> None:
    refused = client.get("/window/me")
    assert refused.status_code == 401
    assert refused.json()["code"] == "UNAUTHORIZED"
    wrong = client.get("/window/me", headers={"Authorization": "Bearer nonsense"})
    assert wrong.status_code == 401
    desk = api_headers(home, "window-3", "service-desk", DEMO_DEPARTMENT_CODE)
    resp = client.get("/window/me", headers=desk)
    assert resp.status_code == 200
    assert resp.json() == {
        "name": "window-3",
        "role": "service-desk",
        "department": DEMO_DEPARTMENT_CODE,
    }
    assert resp.headers["cache-control"] == "no-store"


def test_only_a_service_desk_signs_in_at_a_window(home: Path, client: TestClient) -> None:
    for name, role in (("window-admin", "admin"), ("window-ra", "ra-officer")):
        headers = api_headers(home, name, role)
        resp = client.get("/window/me", headers=headers)
        assert (resp.status_code, resp.json()["code"]) == (403, "FORBIDDEN"), role
