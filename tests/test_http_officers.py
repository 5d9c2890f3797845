"""Security officers over the API: registering officers, asking for approvals, destroying keys
and running ceremonies, all under the same dual control as the command line."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from tests.officers import api_headers, officer_home
from tests.test_ceremony import CEREMONY
from trust.certificates import to_pem
from trust.errors import DeviceUnavailableError, KeyNotFoundError

POLICY = {"officer.add": 1, "key.destroy": 1, "ceremony.run": 1}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("officers-home")
    officer_home(path, dual_control=POLICY)
    rt = open_runtime(load_settings(path))
    try:
        rt.keystore.generate("officer-zhao", "sm2")
        key = rt.keystore.generate("old-seal", "sm2")
        rt.lifecycle.register("old-seal", "seal", key, "cli:test", "made for the test")
        rt.lifecycle.transition("old-seal", "revoked", "cli:test", "replaced")
    finally:
        rt.close()
    return path


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home))) as c:
        yield c


@pytest.fixture(scope="module")
def officer(home: Path) -> dict[str, str]:
    return api_headers(home, "desk-officer", "security-officer")


def _approved(
    home: Path, client: TestClient, headers: dict[str, str], request: dict[str, Any]
) -> str:
    """Ask for approval as zhang over the API; li signs at the desk and sends it back."""
    request = {**request, "requester": "zhang"}
    resp = client.post("/api/v1/approvals", json=request, headers=headers)
    assert resp.status_code == 201, resp.text
    shown = resp.json()
    rt = open_runtime(load_settings(home))
    try:
        signature = rt.keys.find("soft:object=officer-li").sign(base64.b64decode(shown["message"]))
    finally:
        rt.close()
    body = {"officer": "li", "signature": base64.b64encode(signature).decode()}
    resp = client.post(f"/api/v1/approvals/{shown['id']}/approvals", json=body, headers=headers)
    assert resp.status_code == 200 and resp.json()["approvals"] == 1, resp.text
    return str(shown["id"])


def test_registering_an_officer_needs_an_approval(
    home: Path, client: TestClient, officer: dict[str, str]
) -> None:
    rt = open_runtime(load_settings(home))
    try:
        public = rt.keys.find("soft:object=officer-zhao").public_key_info
    finally:
        rt.close()
    pem = to_pem(public, "PUBLIC KEY").decode()
    auditor = api_headers(home, "officers-auditor", "auditor")
    body = {"name": "zhao", "public_key": pem}
    assert client.post("/api/v1/officers", json=body, headers=auditor).status_code == 403
    refused = client.post("/api/v1/officers", json=body, headers=officer)
    assert (refused.status_code, refused.json()["code"]) == (403, "APPROVAL_REQUIRED")
    bad = client.post(
        "/api/v1/officers", json={"name": "zhao", "public_key": "-----BEGIN"}, headers=officer
    )
    assert bad.status_code == 400
    from etrust.security_ops import officer_params

    approval = _approved(
        home,
        client,
        officer,
        {"operation": "officer.add", "target": "zhao", "params": officer_params(public)},
    )
    done = client.post("/api/v1/officers", json={**body, "approval": approval}, headers=officer)
    assert done.status_code == 201, done.text
    assert "zhao" in client.get("/api/v1/officers", headers=auditor).json()
    again = client.post("/api/v1/officers", json={**body, "approval": approval}, headers=officer)
    assert again.status_code in (403, 409)  # the approval is spent; the name is taken
    records = client.get("/api/v1/audit/records?limit=1000", headers=auditor).json()
    outcomes = [(r["action"], r["outcome"]) for r in records if r["action"] == "officer.add"]
    assert ("officer.add", "failure") in outcomes and ("officer.add", "success") in outcomes


def test_destroying_a_key_over_the_api(
    home: Path, client: TestClient, officer: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "/api/v1/keys/old-seal/state"
    body = {"state": "destroyed", "reason": "retired seal"}
    unconfirmed = client.post(url, json=body, headers=officer)
    assert unconfirmed.status_code == 400 and "confirmation" in unconfirmed.json()["detail"]
    body["confirm"] = "old-seal"
    refused = client.post(url, json=body, headers=officer)
    assert (refused.status_code, refused.json()["code"]) == (403, "APPROVAL_REQUIRED")
    key_uri = next(
        k["key_uri"]
        for k in client.get("/api/v1/keys", headers=officer).json()
        if k["name"] == "old-seal"
    )
    approval = _approved(
        home,
        client,
        officer,
        {"operation": "key.destroy", "target": "old-seal", "params": {"key_uri": key_uri}},
    )
    # The device refuses (unplugged, say): the key stays, and so does the officers' approval.
    backend = client.app.state.services.runtime.keys.backend("soft")  # type: ignore[attr-defined]

    def unplugged(uri: str) -> None:
        raise DeviceUnavailableError("the key store is out of reach")

    with monkeypatch.context() as patch:
        patch.setattr(backend, "destroy", unplugged)
        failed = client.post(url, json={**body, "approval": approval}, headers=officer)
    assert failed.json()["code"] == "DEVICE_UNAVAILABLE", failed.text
    done = client.post(url, json={**body, "approval": approval}, headers=officer)
    assert done.status_code == 200 and done.json()["state"] == "destroyed", done.text
    again = client.post(url, json={**body, "approval": approval}, headers=officer)
    assert again.status_code in (403, 409), again.text  # spent, and the key is gone
    rt = open_runtime(load_settings(home))
    try:
        with pytest.raises(KeyNotFoundError):
            rt.keys.find(key_uri)
    finally:
        rt.close()
    events = client.get("/api/v1/keys/old-seal/events", headers=officer).json()
    assert events[-1]["to_state"] == "destroyed" and events[-1]["actor"] == "api:desk-officer"


def test_a_ceremony_over_the_api(home: Path, client: TestClient, officer: dict[str, str]) -> None:
    refused = client.post("/api/v1/ceremonies", json={"file": CEREMONY}, headers=officer)
    assert (refused.status_code, refused.json()["code"]) == (403, "APPROVAL_REQUIRED")
    assert (
        client.post("/api/v1/ceremonies", json={"file": "not = [toml"}, headers=officer).status_code
        == 400
    )
    from etrust.ceremony import parse

    parsed = parse(CEREMONY.encode())
    approval = _approved(
        home,
        client,
        officer,
        {
            "operation": "ceremony.run",
            "target": parsed.name,
            "params": {"file_sm3": parsed.file_hash},
        },
    )
    resp = client.post(
        "/api/v1/ceremonies", json={"file": CEREMONY, "approval": approval}, headers=officer
    )
    assert resp.status_code == 200, resp.text
    document = resp.json()
    assert document["transcript"]["outcome"] == "completed"
    rt = open_runtime(load_settings(home))
    try:
        from etrust.ceremony import verify_transcript

        assert verify_transcript(document, rt.audit_keys())["ceremony"] == parsed.name
    finally:
        rt.close()
    names = {k["name"]: k["state"] for k in client.get("/api/v1/keys", headers=officer).json()}
    assert names["seal-market-2026"] == names["sign-hall-2026"] == "active"
