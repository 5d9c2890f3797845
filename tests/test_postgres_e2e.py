"""The whole service on PostgreSQL: init, issue, revoke, verify, OCSP and CRL over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.cli import main
from etrust.settings import load_settings
from tests.conftest import openssl_csr
from trust.certificates import load_certificate
from trust.crl import load_crl
from trust.ocsp import build_request, verify_response

pytestmark = pytest.mark.postgres


def test_service_on_postgresql(
    postgres_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ETRUST_DATABASE_URL", postgres_database)
    home = str(tmp_path / "home")
    assert main(["--home", home, "init", "--demo"]) == 0
    capsys.readouterr()
    assert main(["--home", home, "init", "--json"]) == 0  # idempotent on PostgreSQL too
    assert json.loads(capsys.readouterr().out)["created"] == []
    assert not (tmp_path / "home" / "etrust.db").exists()  # nothing went to SQLite

    req = openssl_csr(tmp_path, "sm2", "/C=CN/CN=赵六")
    cert_path = tmp_path / "cert.pem"
    args = ["--home", home, "cert", "issue", "--ca", "issuing-sm2", "--profile", "seal-signer"]
    assert main([*args, "--csr", str(req), "--out", str(cert_path), "--json"]) == 0
    serial = json.loads(capsys.readouterr().out)["serial"]
    cert = load_certificate(cert_path.read_bytes())

    with TestClient(create_app(load_settings(home))) as client:
        issuer = load_certificate(client.get("/pki/ca/issuing-sm2.crt").content)
        answer = client.post("/pki/ocsp", content=build_request(issuer, [cert]))
        assert (
            verify_response(answer.content, issuer).status_of(cert.serial_number).status == "good"
        )

        assert main(["--home", home, "cert", "revoke", serial, "--reason", "superseded"]) == 0
        answer = client.post("/pki/ocsp", content=build_request(issuer, [cert], nonce=b"n" * 16))
        assert (
            verify_response(answer.content, issuer).status_of(cert.serial_number).status
            == "revoked"
        )
        crl = load_crl(client.get("/pki/crl/issuing-sm2.crl").content)
        assert cert.serial_number in {
            e["user_certificate"].native for e in crl["tbs_cert_list"]["revoked_certificates"]
        }
    capsys.readouterr()
    assert main(["--home", home, "verify", str(cert_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "REVOKED"
