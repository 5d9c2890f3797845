"""The verify pages in a real browser (Debian's chromium through Playwright) against the real app
served by uvicorn: a scanner's keystrokes at the window, photo and document uploads, the page a
phone opens from a QR code, the camera (with a stand-in BarcodeDetector), errors, and data from
the server shown as text, never as HTML.

Without /usr/bin/chromium (scripts/system-deps.sh installs it) or the playwright package these
tests skip, except under CI=true where they fail: CI must run them. Set
ETRUST_PAGE_SCREENSHOTS=FOLDER to keep a PNG of each page's result.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from etrust.app import create_app
from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE
from etrust.settings import load_settings
from license_store.holder_codes import resident_id_check
from signing import license_qr
from signing.qr import qr_symbol
from tests.officers import api_headers

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI") == "true"
WORKER_TYPE = "11100000000013338W032"
WORKER_DATA = {"gender": "男", "birth_date": "1990-03-07", "category": "建筑电工"}
HOLDER = "15250119900307123"
HOLDER += resident_id_check(HOLDER)
OTHER = "15250219850611002"
OTHER += resident_id_check(OTHER)


try:
    from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

    PLAYWRIGHT_MISSING = ""
    expect.set_options(timeout=15_000)
except ImportError as exc:  # pragma: no cover - depends on the environment
    PLAYWRIGHT_MISSING = f"the playwright package is missing (pip install -e '.[test]'): {exc}"


@pytest.fixture(scope="module", autouse=True)
def browser_available() -> None:
    """Skip without the browser, or fail under CI=true (each test, not the whole run)."""
    reason = PLAYWRIGHT_MISSING
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (sh scripts/system-deps.sh installs Debian's chromium)"
    if reason and IN_CI:
        pytest.fail(f"CI=true requires the browser tests: {reason}")
    if reason:
        pytest.skip(reason)


@dataclass
class Server:
    home: Path
    base: str
    department: dict[str, str]
    desk_token: str
    app: FastAPI

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60)

    def issue(self, **changes: Any) -> dict[str, Any]:
        body = {
            "type_code": WORKER_TYPE,
            "holder_name": "王小明",
            "holder_code": HOLDER,
            "data": WORKER_DATA,
            **changes,
        }
        with self.api() as api:
            resp = api.post("/api/v1/licenses", json=body, headers=self.department)
        assert resp.status_code == 201, resp.text
        issued: dict[str, Any] = resp.json()
        assert issued["qr_text"].startswith(self.base + "/v#")
        return issued

    def revoke(self, identifier: str) -> None:
        with self.api() as api:
            resp = api.post(
                f"/api/v1/licenses/{identifier}/status",
                json={"action": "revoke", "reason": "x"},
                headers=self.department,
            )
        assert resp.status_code == 200, resp.text

    def pdf(self, identifier: str) -> bytes:
        with self.api() as api:
            resp = api.get(f"/api/v1/licenses/{identifier}/document.pdf", headers=self.department)
        assert resp.status_code == 200, resp.text
        return resp.content


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on a free local port, its base URL (so QR codes point here) set in etrust.toml."""
    home = tmp_path_factory.mktemp("pages-browser")
    assert main(["--home", str(home), "init", "--demo"]) == 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = home / "etrust.toml"
    existing = config.read_text("utf-8") if config.exists() else ""
    config.write_text(f"base_url = {json.dumps(base)}\n{existing}", "utf-8")
    settings = load_settings(home, env={})
    assert settings.base_url == base
    app = create_app(settings)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    department = api_headers(home, "pages-dept", "department", DEMO_DEPARTMENT_CODE)
    desk = api_headers(home, "window-9", "service-desk", DEMO_DEPARTMENT_CODE)
    try:
        yield Server(home, base, department, desk["Authorization"][7:], app)
    finally:
        uv.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh tab (Chinese locale, Beijing time); fails the test on any script error or
    console error (a CSP refusal shows there)."""
    context = browser.new_context(
        locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1100, "height": 900}
    )
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    try:
        yield tab
    finally:
        context.close()
    allowed = ("status of 401", "status of 400")  # failed requests the tests make on purpose
    assert [p for p in problems if not any(a in p for a in allowed)] == []


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("ETRUST_PAGE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(Path(folder) / f"{name}.png"), full_page=True, animations="disabled"
        )


def count(page: Page) -> int:
    value = page.get_attribute("#result", "data-count")
    return int(value) if value else 0


def wait_result(page: Page, before: int) -> None:
    page.wait_for_function(
        "n => Number(document.getElementById('result').dataset.count || 0) > n",
        arg=before,
        timeout=60_000,
    )


def scan(page: Page, text: str) -> None:
    """What a USB scanner does: type the code into whatever has focus, then Enter."""
    before = count(page)
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    wait_result(page, before)


def upload(page: Page, selector: str, file: Path) -> None:
    before = count(page)
    page.set_input_files(selector, str(file))
    wait_result(page, before)


def assert_verdict(page: Page, verdict: str, reason: str | None = None) -> None:
    expect(page.locator("#verdict")).to_have_text(verdict)
    if reason is not None:
        expect(page.locator("#reason")).to_have_text(reason)


def assert_scan_focused(page: Page) -> None:
    assert page.evaluate("document.activeElement && document.activeElement.id") == "scan"
    assert page.input_value("#scan") == ""


def forge(qr_text: str, base: str) -> str:
    payload = bytearray(license_qr.from_text(qr_text))
    payload[-5] ^= 0x01  # a byte of the signature
    return license_qr.to_text(bytes(payload), base + "/v")


def test_window_scanner_valid_revoked_forged_expired(page: Page, server: Server) -> None:
    valid = server.issue()
    revoked = server.issue(holder_code=OTHER)
    server.revoke(revoked["identifier"])
    expired = server.issue(valid_from="2023-01-01")

    page.goto(server.base + "/window")
    expect(page.locator("#scan-ready")).to_have_text("就绪：可以扫码")
    assert_scan_focused(page)

    scan(page, valid["qr_text"])
    assert_verdict(page, "有效", "证照有效")
    expect(page.locator("#field-holder")).to_have_text("王**")
    expect(page.locator("#field-identifier")).to_have_text(valid["identifier"])
    expect(page.locator("#field-validity")).to_contain_text(" 至 ")
    expect(page.locator("#status")).to_have_text("证照状态：有效")
    expect(page.locator("#freshness")).to_contain_text("状态更新于")
    expect(page.locator("#freshness")).to_contain_text("刚刚")
    expect(page.locator("#holder-match")).to_have_count(0)
    assert HOLDER not in page.content()
    assert_scan_focused(page)
    shot(page, "window-valid")

    scan(page, revoked["qr_text"])
    assert_verdict(page, "无效", "证照已被吊销")
    expect(page.locator("#status")).to_have_text("证照状态：已吊销")
    assert_scan_focused(page)
    shot(page, "window-revoked")

    scan(page, forge(valid["qr_text"], server.base))
    assert_verdict(page, "无效", "二维码签名验证失败，证照可能是伪造的")
    expect(page.locator("#fields")).to_have_count(0)
    assert_scan_focused(page)
    shot(page, "window-forged")

    scan(page, expired["qr_text"])
    assert_verdict(page, "无效", "证照已过有效期")
    assert_scan_focused(page)
    shot(page, "window-expired")

    scan(page, "hello, this is not a license")
    assert_verdict(page, "无效", "这不是电子证照二维码")
    assert_scan_focused(page)


def test_window_holder_check_and_focus_coming_back(page: Page, server: Server) -> None:
    issued = server.issue()
    page.goto(server.base + "/window")
    page.click("#holder-code")
    page.keyboard.type(HOLDER)
    page.keyboard.press("Enter")  # back to the scan field
    assert page.evaluate("document.activeElement.id") == "scan"
    scan(page, issued["qr_text"])
    assert_verdict(page, "有效")
    expect(page.locator("#holder-match")).to_have_text("持证人核对：一致")
    assert page.input_value("#holder-code") == ""  # one person's number, not kept
    assert_scan_focused(page)
    shot(page, "window-holder-match")

    page.fill("#holder-code", OTHER)
    page.click("h1")  # a click on nothing in particular gives the scanner its field back
    assert page.evaluate("document.activeElement.id") == "scan"
    scan(page, issued["qr_text"])
    expect(page.locator("#holder-match")).to_have_text("持证人核对：不一致")

    page.evaluate("document.activeElement.blur()")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'scan'")


def test_window_login_and_photo_upload(page: Page, server: Server, tmp_path: Path) -> None:
    issued = server.issue()
    photo = tmp_path / "photo.png"
    photo.write_bytes(qr_symbol(issued["qr_text"]).png)
    page.goto(server.base + "/window")
    expect(page.locator("#who")).to_have_text("未登录（核验记录为公众查询）")

    page.click("#login-toggle")
    page.fill("#token", "not-a-token")
    page.click("#login-button")
    expect(page.locator("#who")).to_contain_text("登录失败")
    page.fill("#token", server.desk_token)
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text(
        f"已登录：window-9（service-desk，{DEMO_DEPARTMENT_CODE}）"
    )
    assert page.evaluate("document.activeElement.id") == "scan"
    assert server.desk_token not in page.content()

    page.fill("#holder-code", HOLDER)
    upload(page, "#image-file", photo)
    assert_verdict(page, "有效", "证照有效")
    expect(page.locator("#holder-match")).to_have_text("持证人核对：一致")
    expect(page.locator("#stamp")).to_contain_text("二维码图片")
    assert_scan_focused(page)
    shot(page, "window-photo")

    page.reload()  # the token stays for this tab
    expect(page.locator("#who")).to_contain_text("已登录：window-9")
    page.click("#logout")
    expect(page.locator("#who")).to_have_text("未登录（核验记录为公众查询）")
    assert page.evaluate("sessionStorage.length") == 0

    from sqlalchemy import select

    from etrust.api_verify import recorder
    from etrust.runtime import open_runtime
    from storage.engine import transaction
    from verify_app.models import VerificationCheckRow

    recorder(server.app.state.services).flush()  # checks are recorded in batches
    rt = open_runtime(load_settings(server.home, env={}))
    try:
        with transaction(rt.sessions) as session:
            rows = list(
                session.scalars(
                    select(VerificationCheckRow).where(VerificationCheckRow.actor == "api:window-9")
                )
            )
    finally:
        rt.close()
    assert [(r.kind, r.channel, r.verdict, r.identifier) for r in rows] == [
        ("image", "window", "valid", issued["identifier"])
    ]


def test_window_document_upload(page: Page, server: Server, tmp_path: Path) -> None:
    issued = server.issue()
    pdf = server.pdf(issued["identifier"])
    good, bad = tmp_path / "license.pdf", tmp_path / "tampered.pdf"
    good.write_bytes(pdf)
    tampered = (
        pdf.replace(b"/Lang (zh-CN)", b"/Lang (en-US)") if b"/Lang (zh-CN)" in pdf else pdf[:-10]
    )
    assert tampered != pdf
    bad.write_bytes(tampered)

    page.goto(server.base + "/window")
    upload(page, "#document-file", good)
    assert_verdict(page, "有效", "签章有效，文件未被修改")
    expect(page.locator("#integrity")).to_have_text("签名与文件内容完整，未被篡改")
    expect(page.locator("#trust")).to_have_text("签发机构可信，证书有效")
    expect(page.locator("#stamp")).to_contain_text("签章文件")
    assert_scan_focused(page)
    shot(page, "window-document")

    upload(page, "#document-file", bad)
    assert page.get_attribute("#result", "data-verdict") in ("invalid", "unknown")
    expect(page.locator("#verdict")).to_have_text(
        "无效" if page.get_attribute("#result", "data-verdict") == "invalid" else "无法确认"
    )
    expect(page.locator("#integrity")).not_to_be_empty()
    assert_scan_focused(page)
    shot(page, "window-document-tampered")


def test_the_page_a_phone_opens_from_a_qr_code(browser: Browser, server: Server) -> None:
    valid = server.issue()
    revoked = server.issue()
    server.revoke(revoked["identifier"])
    context = browser.new_context(
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        phone = context.new_page()
        phone.goto(valid["qr_text"])
        assert_verdict(phone, "有效", "证照有效")
        expect(phone.locator("#field-holder")).to_have_text("王**")
        expect(phone.locator("#freshness")).to_contain_text("状态更新于")
        shot(phone, "v-valid")

        phone.goto(revoked["qr_text"])
        assert_verdict(phone, "无效", "证照已被吊销")
        shot(phone, "v-revoked")

        phone.goto(server.base + "/v#garbage")
        assert_verdict(phone, "无效", "这不是电子证照二维码")

        phone.goto(server.base + "/v")
        expect(phone.locator("#v-empty")).to_be_visible()
        expect(phone.locator("#result")).to_be_hidden()
        shot(phone, "v-empty")
        phone.click("#check-link")
        phone.wait_for_url(server.base + "/check")
    finally:
        context.close()


def test_check_page_paste_and_upload(page: Page, server: Server, tmp_path: Path) -> None:
    issued = server.issue()
    page.goto(server.base + "/check")
    page.fill("#code", "这不是二维码")
    before = count(page)
    page.click("#code-button")
    wait_result(page, before)
    assert_verdict(page, "无效", "这不是电子证照二维码")
    shot(page, "check-garbage")

    page.fill("#code", issued["qr_text"])
    before = count(page)
    page.press("#code", "Enter")
    wait_result(page, before)
    assert_verdict(page, "有效", "证照有效")
    shot(page, "check-valid")

    photo = tmp_path / "photo.png"
    photo.write_bytes(qr_symbol(issued["qr_text"]).png)
    upload(page, "#image-file", photo)
    assert_verdict(page, "有效")
    blank = tmp_path / "notes.txt"
    blank.write_text("会议纪要", "utf-8")
    upload(page, "#document-file", blank)
    assert_verdict(page, "无效", "无法识别的文件类型，不能验证")


def test_errors_are_shown_in_plain_chinese(page: Page, server: Server) -> None:
    page.goto(server.base + "/window")
    before = count(page)
    page.fill("#scan", "x" * 2100)  # longer than any code: the API refuses it (400)
    page.press("#scan", "Enter")
    wait_result(page, before)
    expect(page.locator("#verdict")).to_have_text("请求失败")
    expect(page.locator("#reason")).to_have_text("数据格式错误")  # the problem's title_zh
    expect(page.locator("#detail")).to_contain_text("详情：")
    assert page.get_attribute("#result", "data-verdict") == "error"
    assert_scan_focused(page)
    shot(page, "window-error")


def test_server_data_is_shown_as_text_never_run(page: Page, server: Server) -> None:
    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    answer = {
        "kind": "code",
        "verdict": "valid",
        "verdict_zh": "有效" + evil,
        "reason": "OK",
        "message_zh": evil,
        "license": {
            "identifier": evil,
            "holder_name": evil,
            "issuer": evil,
            "issue_date": "2025-01-01",
            "valid_from": "2025-01-01",
            "valid_to": None,
        },
        "holder_match": None,
        "status": {"status": evil, "as_of": evil, "source": evil, "age_seconds": 5},
    }
    replies = [
        {"status": 200, "body": json.dumps(answer)},
        {
            "status": 400,
            "body": json.dumps({"code": "X", "title_zh": evil, "detail": evil}),
            "content_type": "application/problem+json",
        },
    ]

    def reply(route: Route) -> None:
        route.fulfill(**replies.pop(0))

    page.route("**/api/v1/verify", reply)
    page.goto(server.base + "/window")
    scan(page, "anything")
    expect(page.locator("#verdict")).to_have_text("有效")  # our words, matching the colour
    expect(page.locator("#reason")).to_have_text(evil)
    expect(page.locator("#field-holder")).to_have_text(evil)
    expect(page.locator("#field-validity")).to_have_text("2025-01-01 至 长期")
    assert page.locator("#result script, #result img").count() == 0
    shot(page, "window-injection")
    scan(page, "anything")
    expect(page.locator("#verdict")).to_have_text("请求失败")
    expect(page.locator("#reason")).to_have_text(evil)
    expect(page.locator("#detail")).to_have_text(f"详情：{evil}")
    assert page.locator("#result script, #result img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_camera_scanning_where_the_browser_reads_qr_codes(browser: Browser, server: Server) -> None:
    issued = server.issue()
    plain = browser.new_context()
    try:
        tab = plain.new_page()
        tab.goto(server.base + "/window")
        tab.wait_for_load_state("load")
        has_detector = tab.evaluate("'BarcodeDetector' in window")
        box = tab.locator("#camera-box")
        if has_detector:
            expect(box).to_be_visible()
        else:  # desktop Linux chromium: no BarcodeDetector, no button
            expect(box).to_be_hidden()
    finally:
        plain.close()

    # A stand-in BarcodeDetector (as on Android) that "sees" the license in the fake camera.
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    context.grant_permissions(["camera"], origin=server.base)
    context.add_init_script(
        "window.BarcodeDetector = class {"
        "  static getSupportedFormats() { return Promise.resolve(['qr_code']); }"
        "  constructor(options) { this.options = options; }"
        f"  detect(source) {{ return Promise.resolve([{{rawValue: {json.dumps(issued['qr_text'])}}}]); }}"
        "};"
    )
    try:
        tab = context.new_page()
        tab.goto(server.base + "/window")
        expect(tab.locator("#camera-button")).to_be_visible()
        before = count(tab)
        tab.click("#camera-button")
        wait_result(tab, before)
        assert_verdict(tab, "有效", "证照有效")
        expect(tab.locator("#camera-video")).to_be_hidden()  # the camera is off again
        assert tab.evaluate("document.activeElement.id") == "scan"
        shot(tab, "window-camera")
    finally:
        context.close()
