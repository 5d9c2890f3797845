"""A home whose CA key lives on a device: init --key-uri, issuance and CRLs judged by OpenSSL."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from etrust.cli import main
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from tests.conftest import openssl, openssl_csr
from tests.softhsm import Token


def _token_uri(token: Token, obj: str, tmp_path: Path) -> str:
    pin_file = tmp_path / f"{token.label}.pin"
    pin_file.write_text(token.pin)
    os.chmod(pin_file, 0o600)
    return f"pkcs11:token={token.label};object={obj}?module-path={token.module}&pin-source=file:{pin_file}"


def test_issuing_ca_key_in_softhsm(
    softhsm_token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    uri = _token_uri(softhsm_token, "issuing-rsa", tmp_path)
    assert main(["--home", home, "init", "--key-uri", f"issuing-rsa={uri}"]) == 0
    rt = open_runtime(load_settings(home))
    try:
        record = rt.records.get("issuing-rsa")
        assert (
            record is not None
            and record.key_uri.startswith("pkcs11:")
            and "pin-value" not in record.key_uri
        )
        assert not (tmp_path / "home" / "keys" / "issuing-rsa.key").exists()  # no software copy
    finally:
        rt.close()

    req = openssl_csr(tmp_path, "rsa", "/CN=硬件签发")
    cert = tmp_path / "leaf.pem"
    assert (
        main(
            [
                "--home",
                home,
                "cert",
                "issue",
                "--ca",
                "issuing-rsa",
                "--profile",
                "seal-signer",
                "--csr",
                str(req),
                "--out",
                str(cert),
            ]
        )
        == 0
    )
    for name in ("root-rsa", "issuing-rsa"):
        assert (
            main(["--home", home, "ca", "export", name, "--out", str(tmp_path / f"{name}.pem")])
            == 0
        )
    chain = tmp_path / "chain.pem"
    chain.write_bytes(
        (tmp_path / "root-rsa.pem").read_bytes() + (tmp_path / "issuing-rsa.pem").read_bytes()
    )
    assert b": OK" in openssl("verify", "-check_ss_sig", "-CAfile", chain, cert).stdout
    assert (
        main(["--home", home, "crl", "--ca", "issuing-rsa", "--out", str(tmp_path / "i.crl")]) == 0
    )
    out = openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        tmp_path / "i.crl",
        "-verify",
        "-noout",
        "-CAfile",
        tmp_path / "issuing-rsa.pem",
    )
    assert b"verify OK" in out.stderr

    capsys.readouterr()
    assert main(["device", "probe", uri]) == 0
    probed = capsys.readouterr().out
    assert (
        softhsm_token.label in probed
        and "issuing-rsa" in probed
        and softhsm_token.pin not in probed
    )
    json.loads(probed)


def test_device_key_errors(
    softhsm_token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    sm2_uri = _token_uri(softhsm_token, "root-sm2", tmp_path)
    assert main(["--home", home, "init", "--key-uri", f"root-sm2={sm2_uri}"]) == 1
    assert "MECHANISM_UNSUPPORTED" in capsys.readouterr().err  # SoftHSM has no SM2
    assert main(["--home", home, "init", "--key-uri", f"nope={sm2_uri}"]) == 1
    assert "unknown CAs" in capsys.readouterr().err
    assert main(["--home", home, "init", "--key-uri", "issuing-rsa"]) == 1
    assert "NAME=URI" in capsys.readouterr().err
    assert main(["--home", home, "init", "--key-uri", "issuing-rsa=soft:object=x"]) == 1
    assert "device URI" in capsys.readouterr().err


def test_existing_device_keys_must_be_fit_for_a_ca(
    softhsm_token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType

    token = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label)
    with token.open(rw=True, user_pin=softhsm_token.pin) as session:
        session.generate_keypair(
            KeyType.RSA,
            2048,
            label="leaky",
            id=b"\x01",
            store=True,
            private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
    home = str(tmp_path / "home")
    leaky = _token_uri(softhsm_token, "leaky", tmp_path)
    assert main(["--home", home, "init", "--key-uri", f"issuing-rsa={leaky}"]) == 1
    assert "never extractable" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["--home", home, "ca", "list", "--json"]) == 0
    assert "issuing-rsa" not in capsys.readouterr().out  # refused: no CA on that key


def test_only_chosen_device_libraries_are_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key URI is data in the database; the library it names must be one the operator chose."""
    home = tmp_path / "home"
    assert main(["--home", str(home), "init"]) == 0
    evil = tmp_path / "evil.so"
    evil.write_bytes(b"not even a library")
    with sqlite3.connect(home / "etrust.db") as db:
        db.execute(
            "UPDATE certificate_authorities SET key_uri = ? WHERE name = 'issuing-rsa'",
            (f"pkcs11:token=t;object=x?module-path={evil}",),
        )
    req = openssl_csr(tmp_path, "rsa", "/CN=x")
    capsys.readouterr()
    args = [
        "--home",
        str(home),
        "cert",
        "issue",
        "--ca",
        "issuing-rsa",
        "--profile",
        "person-signer",
    ]
    assert main([*args, "--csr", str(req), "--out", str(tmp_path / "x.pem")]) == 1
    assert "is not allowed" in capsys.readouterr().err
    assert main(["device", "probe", f"pkcs11:token=t?module-path={evil}"]) == 1
    assert "is not allowed" in capsys.readouterr().err
