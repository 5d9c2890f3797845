"""Seals and signed case outcomes over the API: a department signs with its own seal only, the
verification link shows the outcome and a fresh report, and bad input gets a clear answer."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE
from etrust.settings import load_settings
from signing.cms import verify_detached
from signing.jcs import canonicalize
from tests.officers import api_headers

OUTCOME = {"case": "2026-000123", "item": "食品经营许可", "result": "准予许可", "fee": 0}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outcomes-home")
    assert main(["--home", str(path), "init", "--demo"]) == 0
    return path


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home))) as c:
        yield c


def _department_client(home: Path, name: str, department: str) -> dict[str, str]:
    from etrust.runtime import open_runtime

    rt = open_runtime(load_settings(home))
    try:
        token = rt.clients.create(name, "department", department=department)
    finally:
        rt.close()
    return {"Authorization": f"Bearer {token}"}


def test_a_department_signs_an_outcome_and_the_link_verifies(
    home: Path, client: TestClient
) -> None:
    headers = _department_client(home, "scjg-cases", DEMO_DEPARTMENT_CODE)
    other = _department_client(home, "gaj-cases", "152500-gaj")
    seals = client.get("/api/v1/seals", headers=headers).json()
    assert {s["alg"] for s in seals} == {"sm2", "rsa"}
    assert all(s["department"] == DEMO_DEPARTMENT_CODE for s in seals)
    for seal in seals:
        resp = client.post(
            "/api/v1/outcomes",
            json={"seal": seal["id"], "outcome": OUTCOME, "case_ref": "SCJG-2026-000123"},
            headers=headers,
        )
        assert resp.status_code == 201, resp.text
        signed = resp.json()
        assert signed["canonical"].encode() == canonicalize(OUTCOME)
        link = signed["verification_link"]
        assert link.endswith(signed["id"]) and len(signed["id"]) == 32
        shown = client.get(link.split("127.0.0.1:8000", 1)[1])  # no token needed
        assert shown.status_code == 200
        verification = shown.json()["verification"]
        assert verification["verdict"] == "PASSED", verification
        assert any(
            c["name"] == "timestamp" and c["result"] == "passed" for c in verification["checks"]
        )
        # The signature stands on its own: our verifier with the server's trust, on the bytes.
        signature = base64.b64decode(signed["signature"])
        changed = canonicalize({**OUTCOME, "result": "不予许可"})

        services = client.app.state.services  # type: ignore[attr-defined]
        assert (
            verify_detached(signature, changed, services.verify_context()).reason == "HASH_FAILURE"
        )
    # another department may neither list nor sign with these seals
    assert client.get("/api/v1/seals", headers=other).json() == []
    resp = client.post(
        "/api/v1/outcomes", json={"seal": seals[0]["id"], "outcome": OUTCOME}, headers=other
    )
    assert resp.status_code == 403


def test_bad_requests(home: Path, client: TestClient) -> None:
    auditor = api_headers(home, "outcomes-auditor", "auditor")
    seal_id = client.get("/api/v1/seals", headers=auditor).json()[0]["id"]
    assert (
        client.post("/api/v1/outcomes", json={"seal": seal_id, "outcome": OUTCOME}, headers=auditor)
    ).status_code == 403
    admin = api_headers(home, "outcomes-admin", "admin")
    for body, status in (
        ({"seal": "15990099999999", "outcome": OUTCOME}, 404),
        ({"seal": seal_id, "outcome": "not an object"}, 422),
        ({"seal": seal_id, "outcome": {"amount": 2**60}}, 400),  # beyond I-JSON
        ({"seal": seal_id}, 422),
        ({"seal": seal_id, "outcome": {"text": "决" * 100_000}}, 413),  # 300 kB of JSON
    ):
        resp = client.post("/api/v1/outcomes", json=body, headers=admin)
        assert resp.status_code == status, (body, resp.text)
    assert client.get("/api/v1/outcomes/" + "0" * 32).status_code == 404
    assert client.get("/api/v1/outcomes/../../etc").status_code == 404
    esl = client.get(f"/api/v1/seals/{seal_id}.esl", headers=auditor)
    assert esl.status_code == 200 and esl.content[:1] == b"\x30"
