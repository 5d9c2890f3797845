"""The etrust command line, end to end on a real home (SQLite + software keys)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from etrust.cli import main
from etrust.pki import init_pki
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from tests.conftest import SM2_ID_OPT, openssl, openssl_csr
from tests.officers import officer_home
from trust.certificates import load_certificate


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("home")
    assert main(["--home", str(path), "init", "--demo"]) == 0
    return path


def test_init_is_idempotent_and_lists_cas(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--home", str(home), "init", "--json")
    assert code == 0 and json.loads(out)["created"] == []
    code, out, _ = run(capsys, "--home", str(home), "ca", "list", "--json")
    names = {ca["name"]: ca for ca in json.loads(out)["cas"]}
    assert set(names) == {"root-sm2", "issuing-sm2", "root-rsa", "issuing-rsa"}
    assert names["issuing-sm2"]["algorithm"] == "sm2-sm3"
    assert names["root-rsa"]["algorithm"] == "rsa-pkcs1-sha256"
    assert "示范盟" in names["root-sm2"]["subject"]
    token_file = home / "demo-api-token.txt"
    assert token_file.stat().st_mode & 0o077 == 0


def test_export_issue_verify_revoke_crl(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = str(home)
    for fmt in ("pem", "der"):
        assert (
            run(
                capsys,
                "--home",
                h,
                "ca",
                "export",
                "root-sm2",
                "--out",
                str(tmp_path / f"root.{fmt}"),
                "--format",
                fmt,
            )[0]
            == 0
        )
    assert (tmp_path / "root.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (
        openssl(
            "x509", "-inform", "DER", "-in", tmp_path / "root.der", "-noout", "-subject"
        ).returncode
        == 0
    )

    req = openssl_csr(tmp_path, "sm2", "/C=CN/CN=李四")
    code, out, _ = run(
        capsys,
        "--home",
        h,
        "cert",
        "issue",
        "--ca",
        "issuing-sm2",
        "--profile",
        "person-signer",
        "--csr",
        str(req),
        "--out",
        str(tmp_path / "cert.pem"),
        "--json",
    )
    assert code == 0
    serial = json.loads(out)["serial"]

    # Valid against the home's own roots; OpenSSL agrees link by link.
    code, out, _ = run(capsys, "--home", h, "verify", str(tmp_path / "cert.pem"), "--json")
    report = json.loads(out)
    assert (code, report["verdict"], report["reason"]) == (0, "PASSED", "OK")
    run(capsys, "--home", h, "ca", "export", "issuing-sm2", "--out", str(tmp_path / "issuing.pem"))
    out_ssl = openssl(
        "verify",
        "-vfyopt",
        SM2_ID_OPT,
        "-partial_chain",
        "-CAfile",
        tmp_path / "issuing.pem",
        tmp_path / "cert.pem",
    )
    assert b"OK" in out_ssl.stdout

    # Only an explicit anchor and no intermediate: undecided (exit 2).
    code, out, _ = run(
        capsys,
        "--home",
        h,
        "verify",
        str(tmp_path / "cert.pem"),
        "--trust",
        str(tmp_path / "root.pem"),
        "--json",
    )
    assert (code, json.loads(out)["verdict"]) == (2, "INDETERMINATE")
    code, out, _ = run(
        capsys,
        "--home",
        h,
        "verify",
        str(tmp_path / "cert.pem"),
        "--trust",
        str(tmp_path / "root.pem"),
        "--untrusted",
        str(tmp_path / "issuing.pem"),
        "--json",
    )
    # No revocation data given: required by default, so undecided rather than a silent pass.
    assert (code, json.loads(out)["reason"]) == (2, "REVOCATION_UNKNOWN")
    nowhere = str(tmp_path / "no-home")  # --trust needs no home, and creates none
    code, out, _ = run(
        capsys,
        "--home",
        nowhere,
        "verify",
        str(tmp_path / "cert.pem"),
        "--trust",
        str(tmp_path / "root.pem"),
        "--untrusted",
        str(tmp_path / "issuing.pem"),
        "--revocation",
        "soft-fail",
        "--json",
    )
    assert (code, json.loads(out)["verdict"]) == (0, "PASSED")
    assert not Path(nowhere).exists()

    code, out, _ = run(
        capsys, "--home", h, "cert", "revoke", serial, "--reason", "key_compromise", "--json"
    )
    assert code == 0 and json.loads(out)["ca"] == "issuing-sm2"
    code, _, err = run(capsys, "--home", h, "cert", "revoke", serial, "--reason", "superseded")
    assert code == 1 and "ALREADY_REVOKED" in err

    code, out, _ = run(capsys, "--home", h, "verify", str(tmp_path / "cert.pem"), "--json")
    assert (code, json.loads(out)["reason"]) == (1, "REVOKED")

    assert (
        run(capsys, "--home", h, "crl", "--ca", "issuing-sm2", "--out", str(tmp_path / "i.crl"))[0]
        == 0
    )
    text = openssl(
        "crl", "-inform", "DER", "-in", tmp_path / "i.crl", "-noout", "-text"
    ).stdout.decode()
    assert serial.upper() in text.replace(":", "") and "Key Compromise" in text
    # The CRL given on the command line counts for revocation with an explicit anchor too.
    code, out, _ = run(
        capsys,
        "--home",
        h,
        "verify",
        str(tmp_path / "cert.pem"),
        "--trust",
        str(tmp_path / "root.pem"),
        "--untrusted",
        str(tmp_path / "issuing.pem"),
        "--crl",
        str(tmp_path / "i.crl"),
        "--json",
    )
    report = json.loads(out)
    assert (code, report["reason"]) == (1, "REVOKED"), report
    code, out, _ = run(capsys, "--home", h, "verify", str(tmp_path / "i.crl"), "--json")
    assert (code, json.loads(out)["verdict"]) == (0, "PASSED")


def test_bad_input_gets_codes_not_tracebacks(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = str(home)
    (tmp_path / "junk").write_bytes(b"\x30\x82\x01")
    code, _, err = run(
        capsys,
        "--home",
        h,
        "cert",
        "issue",
        "--ca",
        "issuing-rsa",
        "--profile",
        "person-signer",
        "--csr",
        str(tmp_path / "junk"),
        "--out",
        str(tmp_path / "x.pem"),
    )
    assert code == 1 and "CSR_MALFORMED" in err and "Traceback" not in err
    code, _, err = run(
        capsys,
        "--home",
        h,
        "cert",
        "issue",
        "--ca",
        "nope",
        "--profile",
        "person-signer",
        "--csr",
        str(tmp_path / "junk"),
        "--out",
        str(tmp_path / "x.pem"),
    )
    assert code == 1 and "CA_NOT_FOUND" in err
    code, _, err = run(capsys, "--home", h, "cert", "revoke", "xyz")
    assert code == 1 and "MALFORMED_INPUT" in err
    code, _, err = run(capsys, "--home", h, "cert", "revoke", "abcdef")
    assert code == 1 and "CERTIFICATE_NOT_FOUND" in err
    code, out, _ = run(capsys, "--home", h, "verify", str(tmp_path / "junk"), "--json")
    assert (code, json.loads(out)["reason"]) == (1, "MALFORMED")
    code, out, _ = run(capsys, "--home", h, "verify", str(tmp_path / "missing"), "--json")
    assert code == 2 and json.loads(out)["error"] == "MALFORMED_INPUT"
    code, _, err = run(capsys, "--home", str(tmp_path / "absent"), "ca", "list")
    assert code == 1 and "CONFIGURATION" in err and "etrust init" in err
    assert not (tmp_path / "absent").exists()
    with pytest.raises(SystemExit):
        main(
            [
                "--home",
                h,
                "cert",
                "issue",
                "--ca",
                "issuing-rsa",
                "--profile",
                "no-such",
                "--csr",
                "x",
                "--out",
                "y",
            ]
        )


def test_client_create_prints_token_once(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--home",
        str(home),
        "client",
        "create",
        "hall-1",
        "--role",
        "ra-officer",
        "--department",
        "152501",
        "--json",
    )
    token = json.loads(out)["token"]
    assert code == 0 and token.startswith("et_")
    db = (home / "etrust.db").read_bytes()
    assert token.encode() not in db
    code, _, err = run(
        capsys, "--home", str(home), "client", "create", "hall-1", "--role", "ra-officer"
    )
    assert code == 1 and "CONFLICT" in err


def test_console_script_runs(home: Path) -> None:
    exe = shutil.which("etrust", path=str(Path(sys.executable).parent))
    assert exe is not None, "the etrust console script is not installed"
    proc = subprocess.run(
        [exe, "--home", str(home), "ca", "list"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "issuing-sm2" in proc.stdout


def test_init_renews_service_certificates_before_they_expire(tmp_path: Path) -> None:
    home = tmp_path / "renew"
    assert main(["--home", str(home), "init"]) == 0
    rt = open_runtime(load_settings(home))
    try:
        before = {i.name: i for i in rt.identities.list()}
        ocsp_cert = load_certificate(before["ocsp-issuing-sm2"].certificate_der)
        late = ocsp_cert.not_valid_after - timedelta(days=10)
        renewed = init_pki(
            rt.settings, rt.records, rt.identities, rt.repository, rt.keys, clock=lambda: late
        )
        assert "ocsp-issuing-sm2 (certificate renewed)" in renewed
        assert not any(name.startswith("tsa-") for name in renewed)  # TSA certs last 5 years
        after = {i.name: i for i in rt.identities.list()}
        fresh = load_certificate(after["ocsp-issuing-sm2"].certificate_der)
        assert fresh.not_valid_after > ocsp_cert.not_valid_after
        assert fresh.public_key.dump() == ocsp_cert.public_key.dump()  # same key, new certificate
        assert after["tsa-sm2"] == before["tsa-sm2"]
        again = init_pki(
            rt.settings, rt.records, rt.identities, rt.repository, rt.keys, clock=lambda: late
        )
        assert again == []
    finally:
        rt.close()


def test_audit_log_records_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "audited")
    assert main(["--home", home, "init"]) == 0
    req = openssl_csr(tmp_path, "rsa", "/CN=audited")
    issue = ["--home", home, "cert", "issue", "--ca", "issuing-rsa", "--profile", "person-signer"]
    assert main([*issue, "--csr", str(req), "--out", str(tmp_path / "c.pem"), "--json"]) == 0
    assert (
        main([*issue, "--csr", str(tmp_path / "c.pem"), "--out", str(tmp_path / "x.pem")]) == 1
    )  # not a CSR
    assert main(["--home", home, "audit", "checkpoint"]) == 0
    capsys.readouterr()
    assert main(["--home", home, "audit", "list", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("init", "success"),
        ("cert.issue", "success"),
        ("cert.issue", "failure"),
    ]
    assert records[2]["detail"] == {"error": "CSR_MALFORMED"} and records[1]["actor"].startswith(
        "cli:"
    )
    assert main(["--home", home, "audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"] == 1
    kept = tmp_path / "checkpoint.json"
    assert main(["--home", home, "audit", "checkpoint", "--out", str(kept)]) == 0
    assert json.loads(kept.read_text())["last_id"] == 3
    assert main(["--home", home, "audit", "verify", "--anchor", str(kept)]) == 0
    capsys.readouterr()

    with sqlite3.connect(tmp_path / "audited" / "etrust.db") as db:
        db.execute("UPDATE audit_records SET outcome = 'success' WHERE id = 3")
    code, out, _ = run(capsys, "--home", home, "audit", "verify", "--json")
    report = json.loads(out)
    assert (code, report["intact"], report["first_broken"]) == (1, False, 3)


def test_dual_controlled_root_issuance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = officer_home(
        tmp_path / "dual", officers=("zhang", "li", "wang"), dual_control={"ca.issue.root": 2}
    )
    req = openssl_csr(tmp_path, "sm2", "/CN=第二签发CA")
    issue = [
        "--home",
        h,
        "cert",
        "issue",
        "--ca",
        "root-sm2",
        "--profile",
        "issuing-ca",
        "--csr",
        str(req),
        "--out",
        str(tmp_path / "ca.pem"),
    ]
    capsys.readouterr()
    code, _, err = run(capsys, *issue)
    assert code == 1 and "APPROVAL_REQUIRED" in err
    code, out, _ = run(
        capsys,
        "--home",
        h,
        "approval",
        "request",
        "ca.issue.root",
        "root-sm2",
        "--profile",
        "issuing-ca",
        "--csr",
        str(req),
        "--as",
        "zhang",
        "--json",
    )
    request_id = json.loads(out)["id"]
    sign = ["--home", h, "approval", "sign", request_id]
    code, _, err = run(capsys, *sign, "--as", "zhang", "--key-uri", "soft:object=officer-zhang")
    assert code == 1 and "APPROVAL_REFUSED" in err  # the requester cannot approve
    assert run(capsys, *sign, "--as", "li", "--key-uri", "soft:object=officer-li")[0] == 0
    code, _, err = run(capsys, *sign, "--as", "li", "--key-uri", "soft:object=officer-li")
    assert code == 1 and "already approved" in err
    code, _, err = run(capsys, *issue, "--approval", request_id)
    assert code == 1 and "has 1" in err
    assert run(capsys, *sign, "--as", "wang", "--key-uri", "soft:object=officer-wang")[0] == 0
    code, _, err = run(capsys, *issue, "--approval", request_id)
    assert code == 0, err
    assert load_certificate((tmp_path / "ca.pem").read_bytes()).ca
    code, _, err = run(capsys, *issue, "--approval", request_id)
    assert code == 1 and "used" in err  # one approval, one execution
    assert run(capsys, "--home", h, "audit", "verify")[0] == 0


def test_new_officers_need_existing_officers_approval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setting up: zhang and li are registered while there is no one to approve yet.
    h = officer_home(
        tmp_path / "officers",
        officers=("zhang", "li", "zhang-alt"),
        register=("zhang", "li"),
        dual_control={"officer.add": 1},
    )
    add_alt = [
        "--home",
        h,
        "officer",
        "add",
        "zhang-alt",
        "--key-uri",
        "soft:object=officer-zhang-alt",
    ]
    code, _, err = run(capsys, *add_alt)
    assert code == 1 and "APPROVAL_REQUIRED" in err
    fingerprint = err.split("public_key_sha256=")[1].split()[0]
    code, out, _ = run(
        capsys,
        "--home",
        h,
        "approval",
        "request",
        "officer.add",
        "zhang-alt",
        "--param",
        f"public_key_sha256={fingerprint}",
        "--as",
        "zhang",
        "--json",
    )
    request_id = json.loads(out)["id"]
    code, _, err = run(
        capsys,
        "--home",
        h,
        "approval",
        "sign",
        request_id,
        "--as",
        "zhang",
        "--key-uri",
        "soft:object=officer-zhang",
    )
    assert code == 1 and "own request" in err  # zhang cannot vouch for his own second identity
    assert (
        run(
            capsys,
            "--home",
            h,
            "approval",
            "sign",
            request_id,
            "--as",
            "li",
            "--key-uri",
            "soft:object=officer-li",
        )[0]
        == 0
    )
    assert run(capsys, *add_alt, "--approval", request_id)[0] == 0
    assert (
        run(capsys, "--home", h, "officer", "disable", "zhang-alt", "--reason", "left the office")[
            0
        ]
        == 0
    )


def test_audit_key_is_pinned_outside_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "pinned"
    assert main(["--home", str(home), "init"]) == 0
    assert (home / "audit-key.sha256").exists()
    rt = open_runtime(load_settings(home))
    try:
        rt.keystore.generate("impostor", "sm2")
    finally:
        rt.close()
    with sqlite3.connect(home / "etrust.db") as db:  # someone points the audit identity elsewhere
        db.execute(
            "UPDATE service_identities SET key_uri = 'soft:object=impostor' WHERE name = 'audit-sm2'"
        )
    code, _, err = run(capsys, "--home", str(home), "audit", "verify")
    assert code == 1 and "pinned" in err


def test_commands_touch_a_ca_key_only_when_they_sign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing CAs must not ask a USB key for its PIN: keys are looked up when they sign."""
    home = tmp_path / "lazy"
    assert main(["--home", str(home), "init"]) == 0
    (home / "keys" / "issuing-rsa.key").unlink()  # as if the key's device were not plugged in
    assert run(capsys, "--home", str(home), "ca", "list")[0] == 0
    req = openssl_csr(tmp_path, "rsa", "/CN=x")
    code, _, err = run(
        capsys,
        "--home",
        str(home),
        "cert",
        "issue",
        "--ca",
        "issuing-rsa",
        "--profile",
        "person-signer",
        "--csr",
        str(req),
        "--out",
        str(tmp_path / "x.pem"),
    )
    assert code == 1 and "KEY_NOT_FOUND" in err
