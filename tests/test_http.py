"""The web app: PKI endpoints and the certificate API, in-process and over a real socket."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import ocsp as asn1_ocsp
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.cli import main
from etrust.settings import load_settings
from tests.conftest import openssl, openssl_csr
from trust.certificates import load_certificate
from trust.crl import load_crl
from trust.ocsp import build_request, verify_response
from trust.tsa import TimeStampResp, verify_token
from trust.tsa import build_request as tsa_request


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web-home")
    assert main(["--home", str(path), "init", "--demo"]) == 0
    return path


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home))) as c:
        yield c


@pytest.fixture(scope="module")
def token(home: Path) -> str:
    return (home / "demo-api-token.txt").read_text().strip()


def _ca(client: TestClient, name: str) -> bytes:
    resp = client.get(f"/pki/ca/{name}.crt")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/pkix-cert"
    return resp.content


def _csr(tmp: Path, kind: str) -> str:
    return openssl_csr(tmp, kind, "/C=CN/CN=王五").read_text()


def test_front_page_lists_cas_and_urls(client: TestClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    for text in ("root-sm2", "issuing-rsa", "/pki/ocsp", "/pki/tsa", "示范盟政务服务根证书"):
        assert text in resp.text
    assert client.get("/docs").status_code == 200
    assert "/api/v1/certificates" in client.get("/openapi.json").json()["paths"]


def test_ca_certificates_and_crls(client: TestClient, tmp_path: Path) -> None:
    der = _ca(client, "issuing-rsa")
    pem = client.get("/pki/ca/issuing-rsa.pem").content
    assert load_certificate(pem).dump() == der
    (tmp_path / "ca.pem").write_bytes(pem)
    first = client.get("/pki/crl/issuing-rsa.crl")
    assert first.status_code == 200 and first.headers["content-type"] == "application/pkix-crl"
    (tmp_path / "i.crl").write_bytes(first.content)
    out = openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        tmp_path / "i.crl",
        "-verify",
        "-noout",
        "-CAfile",
        tmp_path / "ca.pem",
    )
    assert b"verify OK" in out.stderr
    # Publishing does not mint a new CRL per download.
    assert client.get("/pki/crl/issuing-rsa.crl").content == first.content
    for bad in ("/pki/crl/nope.crl", "/pki/ca/nope.crt", "/pki/ca/issuing-rsa.exe"):
        resp = client.get(bad)
        assert (
            resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"
        )


@pytest.mark.parametrize("kind", ["sm2", "rsa"])
def test_issue_lookup_revoke_over_api(
    client: TestClient, token: str, tmp_path: Path, kind: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    body = {"ca": f"issuing-{kind}", "profile": "person-signer", "csr": _csr(tmp_path, kind)}
    resp = client.post("/api/v1/certificates", json=body, headers=auth)
    assert resp.status_code == 201, resp.text
    issued = resp.json()
    assert issued["status"] == "good" and issued["ca"] == f"issuing-{kind}"
    cert = load_certificate(issued["certificate"].encode())
    assert format(cert.serial_number, "x") == issued["serial"]
    assert (
        client.get(f"/api/v1/certificates/{issued['serial']}", headers=auth).json()["status"]
        == "good"
    )

    issuer = load_certificate(_ca(client, f"issuing-{kind}"))
    request = build_request(issuer, [cert], nonce=b"0123456789abcdef")
    answer = client.post(
        "/pki/ocsp", content=request, headers={"Content-Type": "application/ocsp-request"}
    )
    assert answer.headers["content-type"] == "application/ocsp-response"
    assert (
        verify_response(answer.content, issuer, nonce=b"0123456789abcdef")
        .status_of(cert.serial_number)
        .status
        == "good"
    )

    resp = client.post(
        f"/api/v1/certificates/{issued['serial']}/revoke",
        json={"reason": "key_compromise"},
        headers=auth,
    )
    assert resp.status_code == 200 and resp.json()["status"] == "revoked"
    assert resp.json()["revocation"]["reason"] == "key_compromise"
    encoded = base64.b64encode(build_request(issuer, [cert])).decode()
    answer = client.get(f"/pki/ocsp/{encoded}")
    status = verify_response(answer.content, issuer).status_of(cert.serial_number)
    assert (status.status, status.reason) == ("revoked", "key_compromise")
    crl = client.get(f"/pki/crl/issuing-{kind}.crl").content
    assert cert.serial_number in {e["user_certificate"].native for e in _crl_entries(crl)}


def _crl_entries(der: bytes) -> list[object]:
    return list(load_crl(der)["tbs_cert_list"]["revoked_certificates"])


def test_api_refuses_bad_tokens_roles_and_input(
    client: TestClient, token: str, home: Path, tmp_path: Path
) -> None:
    body = {"ca": "issuing-rsa", "profile": "person-signer", "csr": _csr(tmp_path, "rsa")}
    for headers, status, code in (
        ({}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Bearer et_000000000000_" + "A" * 43}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Basic abc"}, 401, "UNAUTHORIZED"),
    ):
        resp = client.post("/api/v1/certificates", json=body, headers=headers)
        assert (resp.status_code, resp.json()["code"]) == (status, code)
    assert (
        main(["--home", str(home), "client", "create", "auditor-1", "--role", "auditor", "--json"])
        == 0
    )
    auth = {"Authorization": f"Bearer {token}"}
    cases = [
        ({**body, "csr": "garbage"}, 400, "CSR_MALFORMED"),
        ({**body, "profile": "no-such"}, 400, "PROFILE_UNKNOWN"),
        ({**body, "ca": "no-such"}, 404, "CA_NOT_FOUND"),
        ({"ca": "issuing-rsa"}, 422, "REQUEST_INVALID"),
        ({**body, "csr": "x" * 70_000}, 422, "REQUEST_INVALID"),
    ]
    for payload, status, code in cases:
        resp = client.post("/api/v1/certificates", json=payload, headers=auth)
        assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
        assert resp.headers["content-type"] == "application/problem+json"
    resp = client.post(
        "/api/v1/certificates",
        content=b"{not json",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert resp.status_code == 422
    assert client.get("/api/v1/certificates/zz", headers=auth).json()["code"] == "MALFORMED_INPUT"
    assert client.get("/api/v1/certificates/abcdef", headers=auth).status_code == 404
    resp = client.post("/api/v1/certificates/abcdef/revoke", json={"reason": "bored"}, headers=auth)
    assert resp.json()["code"] == "MALFORMED_INPUT"


def test_auditor_may_read_but_not_issue(
    client: TestClient, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--home", str(home), "client", "create", "auditor-2", "--role", "auditor", "--json"])
        == 0
    )
    auditor = {"Authorization": "Bearer " + json.loads(capsys.readouterr().out)["token"]}
    body = {"ca": "issuing-sm2", "profile": "person-signer", "csr": _csr(tmp_path, "sm2")}
    resp = client.post("/api/v1/certificates", json=body, headers=auditor)
    assert (resp.status_code, resp.json()["code"]) == (403, "FORBIDDEN")


def test_ocsp_and_tsa_bad_input_answer_in_their_own_formats(client: TestClient) -> None:
    for body in (b"", b"garbage", b"\x30\x82\xff\xff", b"\x30" * 70_000):
        resp = client.post(
            "/pki/ocsp", content=body, headers={"Content-Type": "application/ocsp-request"}
        )
        assert resp.status_code == 200
        assert (
            asn1_ocsp.OCSPResponse.load(resp.content)["response_status"].native
            == "malformed_request"
        )
    assert (
        asn1_ocsp.OCSPResponse.load(client.get("/pki/ocsp/!!notbase64").content)[
            "response_status"
        ].native
        == "malformed_request"
    )
    for body in (b"", b"garbage", b"\x00" * 70_000):
        resp = client.post(
            "/pki/tsa", content=body, headers={"Content-Type": "application/timestamp-query"}
        )
        assert resp.headers["content-type"] == "application/timestamp-reply"
        status = TimeStampResp.load(resp.content)["status"]
        assert (
            status["status"].native == "rejection" and "bad_request" in status["fail_info"].native
        )


@pytest.mark.parametrize(("hash_name", "kind"), [("sm3", "sm2"), ("sha256", "rsa")])
def test_tsa_picks_the_hierarchy_by_hash(client: TestClient, hash_name: str, kind: str) -> None:
    roots = [load_certificate(_ca(client, f"root-{kind}"))]
    request = tsa_request(b"electronic license", hash_name=hash_name)
    resp = client.post(
        "/pki/tsa", content=request, headers={"Content-Type": "application/timestamp-query"}
    )
    info = verify_token(resp.content, trusted=roots, request=request)
    assert info.hash_algorithm == hash_name
    explicit = client.post(f"/pki/tsa/{kind}", content=request)
    assert (
        verify_token(explicit.content, trusted=roots, request=request).hash_algorithm == hash_name
    )


# --- a real server on a socket, judged by the OpenSSL CLI ----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "etrust.cli", "--home", str(home), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            proc.kill()
            pytest.fail(
                "etrust serve did not start: "
                + (proc.stdout.read().decode() if proc.stdout else "")
            )
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_openssl_ocsp_and_ts_against_the_server(server: str, tmp_path: Path) -> None:
    for name in ("root-rsa", "issuing-rsa"):
        (tmp_path / f"{name}.pem").write_bytes(httpx.get(f"{server}/pki/ca/{name}.pem").content)
    (tmp_path / "chain.pem").write_bytes(
        (tmp_path / "root-rsa.pem").read_bytes() + (tmp_path / "issuing-rsa.pem").read_bytes()
    )
    out = openssl(
        "ocsp",
        "-issuer",
        tmp_path / "issuing-rsa.pem",
        "-serial",
        "0x1234",
        "-url",
        f"{server}/pki/ocsp",
        "-CAfile",
        tmp_path / "chain.pem",
    )
    assert b"Response verify OK" in out.stderr + out.stdout and b"unknown" in out.stdout
    (tmp_path / "data").write_bytes(b"\xe7\x94\xb5\xe5\xad\x90\xe8\xaf\x81\xe7\x85\xa7")
    openssl(
        "ts", "-query", "-data", tmp_path / "data", "-sha256", "-cert", "-out", tmp_path / "q.tsq"
    )
    reply = httpx.post(
        f"{server}/pki/tsa",
        content=(tmp_path / "q.tsq").read_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
    )
    (tmp_path / "r.tsr").write_bytes(reply.content)
    out = openssl(
        "ts",
        "-verify",
        "-in",
        tmp_path / "r.tsr",
        "-queryfile",
        tmp_path / "q.tsq",
        "-CAfile",
        tmp_path / "chain.pem",
    )
    assert b"Verification: OK" in out.stdout


def test_api_cannot_mint_cas_responders_or_tsas(
    client: TestClient, token: str, tmp_path: Path
) -> None:
    """A registration officer's token must not yield a certificate that vouches for others."""
    auth = {"Authorization": f"Bearer {token}"}
    csr = _csr(tmp_path, "sm2")
    for ca, profile in (
        ("issuing-sm2", "issuing-ca"),
        ("issuing-sm2", "ocsp-signer"),
        ("issuing-sm2", "tsa"),
        ("root-sm2", "person-signer"),
        ("root-sm2", "issuing-ca"),
    ):
        resp = client.post(
            "/api/v1/certificates", json={"ca": ca, "profile": profile, "csr": csr}, headers=auth
        )
        assert (resp.status_code, resp.json()["code"]) == (403, "FORBIDDEN"), (ca, profile)


def test_oversized_bodies_are_refused_before_reading(client: TestClient) -> None:
    big = b"{" + b" " * (2 << 20) + b"}"
    resp = client.post(
        "/api/v1/certificates", content=big, headers={"Content-Type": "application/json"}
    )
    assert (resp.status_code, resp.json()["code"]) == (413, "INPUT_TOO_LARGE")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream is counted as it comes
        for _ in range(40):
            yield b" " * 65536

    resp = client.post(
        "/api/v1/certificates", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert (resp.status_code, resp.json()["code"]) == (413, "INPUT_TOO_LARGE")
