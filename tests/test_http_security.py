"""The security officers' and auditors' API: roles, key states, signed approvals, the audit log."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.cli import main
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from tests.officers import api_headers, officer_home
from trust.certificates import make_name


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sec-home")
    officer_home(path, dual_control={"ca.issue.root": 2})
    rt = open_runtime(load_settings(path))
    try:
        key = rt.keystore.generate("seal-demo", "sm2")
        rt.lifecycle.register("seal-demo", "seal", key, "cli:test", "for the API test")
        issuing = rt.pki().ca("issuing-sm2")
        cert = issuing.issue(key.public_key_info, make_name("CN=印章"), "seal-signer")
        rt.lifecycle.certify("seal-demo", cert, "issuing-sm2", "cli:test", "issued")
        rt.lifecycle.transition("seal-demo", "active", "cli:test", "in service")
    finally:
        rt.close()
    return path


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home))) as c:
        yield c


def test_roles_and_key_states(home: Path, client: TestClient) -> None:
    auditor = api_headers(home, "auditor-a", "auditor")
    officer = api_headers(home, "officer-a", "security-officer")
    ra = api_headers(home, "ra-a", "ra-officer")
    assert client.get("/api/v1/keys", headers=ra).json()["code"] == "FORBIDDEN"
    keys = client.get("/api/v1/keys", headers=auditor).json()
    assert [(k["name"], k["state"]) for k in keys] == [("seal-demo", "active")]
    body = {"state": "suspended", "reason": "印章保管人休假"}
    assert (
        client.post("/api/v1/keys/seal-demo/state", json=body, headers=auditor).status_code == 403
    )
    resp = client.post("/api/v1/keys/seal-demo/state", json=body, headers=officer)
    assert resp.status_code == 200 and resp.json()["state"] == "suspended"
    resp = client.post(
        "/api/v1/keys/seal-demo/state",
        json={"state": "suspended", "reason": "again"},
        headers=officer,
    )
    assert (resp.status_code, resp.json()["code"]) == (409, "KEY_STATE")
    events = client.get("/api/v1/keys/seal-demo/events", headers=auditor).json()
    assert events[-1]["to_state"] == "suspended" and events[-1]["actor"] == "api:officer-a"
    assert client.get("/api/v1/keys/nope/events", headers=auditor).status_code == 404
    records = client.get("/api/v1/audit/records", headers=auditor).json()
    assert any(r["action"] == "key.suspend" and r["actor"] == "api:officer-a" for r in records)
    verification = client.get("/api/v1/audit/verification", headers=auditor).json()
    assert verification["intact"] is True and verification["records"] >= 1


def test_signed_approvals_over_the_api(
    home: Path, client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    officer = api_headers(home, "officer-b", "security-officer")
    auditor = api_headers(home, "auditor-b", "auditor")
    capsys.readouterr()
    code = main(
        [
            "--home",
            str(home),
            "approval",
            "request",
            "ca.issue.root",
            "root-sm2",
            "--param",
            "profile=issuing-ca",
            "--as",
            "zhang",
            "--json",
        ]
    )
    assert code == 0
    request_id = json.loads(capsys.readouterr().out)["id"]
    shown = client.get(f"/api/v1/approvals/{request_id}", headers=auditor).json()
    message = base64.b64decode(shown["message"])
    rt = open_runtime(load_settings(home))
    try:
        li = rt.keys.find("soft:object=officer-li")
        zhang = rt.keys.find("soft:object=officer-zhang")
        good = base64.b64encode(li.sign(message)).decode()
        own = base64.b64encode(zhang.sign(message)).decode()
        forged = base64.b64encode(li.sign(message + b"x")).decode()
    finally:
        rt.close()
    url = f"/api/v1/approvals/{request_id}/approvals"
    assert (
        client.post(url, json={"officer": "li", "signature": good}, headers=auditor).status_code
        == 403
    )
    for body, text in (
        ({"officer": "li", "signature": forged}, "does not verify"),
        ({"officer": "zhang", "signature": own}, "own request"),
        ({"officer": "li", "signature": "!!"}, "base64"),
    ):
        resp = client.post(url, json=body, headers=officer)
        assert resp.status_code in (400, 403) and text in resp.json()["detail"], resp.text
    resp = client.post(url, json={"officer": "li", "signature": good}, headers=officer)
    assert resp.status_code == 200 and resp.json() == {
        "id": request_id,
        "approvals": 1,
        "required": 2,
    }
    again = client.post(url, json={"officer": "li", "signature": good}, headers=officer)
    assert again.status_code == 403 and "already approved" in again.json()["detail"]
