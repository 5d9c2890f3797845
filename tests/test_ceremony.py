"""Key ceremonies from a file, the signed transcript, and the keys' lifecycle by CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from etrust.cli import main
from tests.officers import officer_home
from trust.certificates import load_certificate, verify_issued_by
from trust.crl import load_crl

CEREMONY = """
[ceremony]
name = "2026 年度电子印章密钥生成"
witnesses = ["zhang", "li"]

[[keys]]
name = "seal-market-2026"
purpose = "seal"
spec = "sm2"

[[keys]]
name = "sign-hall-2026"
purpose = "signing"
spec = "rsa-2048"

[[certificates]]
key = "seal-market-2026"
ca = "issuing-sm2"
profile = "seal-signer"
subject = "/C=CN/O=示范盟市场监督管理局/CN=电子印章（2026）"

[[certificates]]
key = "sign-hall-2026"
ca = "issuing-rsa"
profile = "person-signer"
subject = "/C=CN/O=示范盟政务服务中心/CN=窗口签名"
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def home(tmp_path: Path) -> str:
    return officer_home(tmp_path / "home")


def test_ceremony_end_to_end(home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.toml").write_text(CEREMONY, "utf-8")
    transcript = tmp_path / "t.json"
    code, _, err = run(
        capsys,
        "--home",
        home,
        "ceremony",
        "run",
        str(tmp_path / "c.toml"),
        "--out",
        str(transcript),
    )
    assert code == 0, err
    document = json.loads(transcript.read_text("utf-8"))
    steps = document["transcript"]["steps"]
    assert [s["step"] for s in steps] == [
        "key.generate",
        "key.generate",
        "certificate.issue",
        "certificate.issue",
    ]
    assert (
        document["transcript"]["witnesses"] == ["zhang", "li"]
        and document["transcript"]["outcome"] == "completed"
    )
    for step, ca_name in zip(steps[2:], ("issuing-sm2", "issuing-rsa"), strict=True):
        assert (
            main(["--home", home, "ca", "export", ca_name, "--out", str(tmp_path / "ca.pem")]) == 0
        )
        cert = load_certificate(base64.b64decode(step["certificate"]))
        verify_issued_by(cert, load_certificate((tmp_path / "ca.pem").read_bytes()).public_key)
        assert cert.serial_number == int(step["serial"], 16)
    assert run(capsys, "--home", home, "ceremony", "verify", str(transcript))[0] == 0

    document["transcript"]["witnesses"] = ["zhang"]  # someone edits who was present
    (tmp_path / "forged.json").write_text(json.dumps(document, ensure_ascii=False), "utf-8")
    code, _, err = run(capsys, "--home", home, "ceremony", "verify", str(tmp_path / "forged.json"))
    assert code == 1 and "SIGNATURE_INVALID" in err

    code, out, _ = run(capsys, "--home", home, "key", "list", "--json")
    states = {k["name"]: k["state"] for k in json.loads(out)["keys"]}
    assert states == {"seal-market-2026": "active", "sign-hall-2026": "active"}

    # Lifecycle by CLI: suspend, resume, revoke (the CRL follows), destroy with confirmation.
    key = ["--home", home, "key"]
    assert run(capsys, *key, "suspend", "sign-hall-2026", "--reason", "窗口停用")[0] == 0
    assert run(capsys, *key, "activate", "sign-hall-2026", "--reason", "恢复")[0] == 0
    code, _, err = run(
        capsys, *key, "destroy", "sign-hall-2026", "--reason", "x", "--confirm", "sign-hall-2026"
    )
    assert code == 1 and "KEY_STATE" in err
    assert (tmp_path / "home" / "keys" / "sign-hall-2026.key").exists()  # refused: nothing done
    assert run(capsys, *key, "revoke", "sign-hall-2026", "--reason", "设备遗失")[0] == 0
    serial = int(steps[3]["serial"], 16)
    assert (
        main(["--home", home, "crl", "--ca", "issuing-rsa", "--out", str(tmp_path / "i.crl")]) == 0
    )
    crl = load_crl((tmp_path / "i.crl").read_bytes())
    assert serial in {
        e["user_certificate"].native for e in crl["tbs_cert_list"]["revoked_certificates"]
    }
    code, _, err = run(capsys, *key, "destroy", "sign-hall-2026", "--reason", "x")
    assert code == 1 and "--confirm sign-hall-2026" in err
    assert (
        run(
            capsys,
            *key,
            "destroy",
            "sign-hall-2026",
            "--reason",
            "保管期满",
            "--confirm",
            "sign-hall-2026",
        )[0]
        == 0
    )
    assert not (tmp_path / "home" / "keys" / "sign-hall-2026.key").exists()
    assert run(capsys, "--home", home, "audit", "verify")[0] == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('ca = "issuing-rsa"', 'ca = "no-such-ca"'), "CA_NOT_FOUND"),
        (lambda t: t.replace('"zhang", "li"', '"zhang", "stranger"'), "stranger"),
        (lambda t: t.replace('profile = "person-signer"', 'profile = "issuing-ca"'), "end-entity"),
        (lambda t: t.replace('spec = "rsa-2048"', 'spec = "rsa-1024"'), "spec must be"),
        (lambda t: t.replace("[ceremony]", "[oops]"), "needs [ceremony]"),
        (lambda t: t + "\nnot toml at all", "not valid TOML"),
        (lambda t: t.replace('spec = "sm2"', 'spec = "sm2"\nuri = 5'), "device URI"),
        (lambda t: t.replace('spec = "sm2"', 'spec = "sm2"\nuri = "soft:object=x"'), "device URI"),
        (
            lambda t: (
                t + '\n[[certificates]]\nkey = "sign-hall-2026"\nca = "issuing-rsa"\n'
                'profile = "person-signer"\nsubject = "/CN=again"\n'
            ),
            "at most one certificate",
        ),
    ],
)
def test_bad_ceremony_files_change_nothing(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, message: str
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "c.toml").write_text(edit(CEREMONY), "utf-8")
    code, _, err = run(
        capsys,
        "--home",
        home,
        "ceremony",
        "run",
        str(tmp_path / "c.toml"),
        "--out",
        str(tmp_path / "t.json"),
    )
    assert code == 1 and message in err
    assert not (tmp_path / "t.json").exists()
    assert json.loads(run(capsys, "--home", home, "key", "list", "--json")[1])["keys"] == []
    assert not (tmp_path / "home" / "keys" / "seal-market-2026.key").exists()


def test_ceremony_under_dual_control(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], home: str
) -> None:
    (Path(home) / "etrust.toml").write_text('[dual_control]\n"ceremony.run" = 1\n', "utf-8")
    (tmp_path / "c.toml").write_text(CEREMONY, "utf-8")
    args = [
        "--home",
        home,
        "ceremony",
        "run",
        str(tmp_path / "c.toml"),
        "--out",
        str(tmp_path / "t.json"),
    ]
    code, _, err = run(capsys, *args)
    assert code == 1 and "APPROVAL_REQUIRED" in err
    file_sm3 = err.split("file_sm3=")[1].split()[0]
    code, out, _ = run(
        capsys,
        "--home",
        home,
        "approval",
        "request",
        "ceremony.run",
        "2026 年度电子印章密钥生成",
        "--param",
        f"file_sm3={file_sm3}",
        "--as",
        "zhang",
        "--json",
    )
    request_id = json.loads(out)["id"]
    assert (
        run(
            capsys,
            "--home",
            home,
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
    assert run(capsys, *args, "--approval", request_id)[0] == 0


def test_transcript_destination_is_checked_first(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.toml").write_text(CEREMONY, "utf-8")
    out = str(tmp_path / "missing" / "t.json")
    code, _, err = run(
        capsys, "--home", home, "ceremony", "run", str(tmp_path / "c.toml"), "--out", out
    )
    assert code == 1 and "existing folder" in err
    assert json.loads(run(capsys, "--home", home, "key", "list", "--json")[1])["keys"] == []
    code, _, err = run(capsys, "--home", home, "audit", "list", "--after", str(10**30))
    assert code == 1 and "MALFORMED_INPUT" in err


def test_a_ceremony_failing_part_way_is_undone(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (Path(home) / "keys" / "issuing-rsa.key").unlink()  # the second CA's key is not there
    (tmp_path / "c.toml").write_text(CEREMONY, "utf-8")
    transcript = tmp_path / "t.json"
    code, _, _ = run(
        capsys,
        "--home",
        home,
        "ceremony",
        "run",
        str(tmp_path / "c.toml"),
        "--out",
        str(transcript),
    )
    assert code == 1
    document = json.loads(transcript.read_text("utf-8"))  # the failure is transcribed and signed
    assert document["transcript"]["outcome"] == "failed: KEY_NOT_FOUND"
    assert run(capsys, "--home", home, "ceremony", "verify", str(transcript))[0] == 0
    steps = document["transcript"]["steps"]
    issued = [s for s in steps if s["step"] == "certificate.issue"]
    assert (
        len(issued) == 1
        and {"step": "undo.revoke", "ca": "issuing-sm2", "serial": issued[0]["serial"]} in steps
    )
    states = {
        k["name"]: k["state"]
        for k in json.loads(run(capsys, "--home", home, "key", "list", "--json")[1])["keys"]
    }
    assert states == {"seal-market-2026": "revoked", "sign-hall-2026": "revoked"}
    assert (
        main(["--home", home, "crl", "--ca", "issuing-sm2", "--out", str(tmp_path / "s.crl")]) == 0
    )
    revoked = {
        e["user_certificate"].native
        for e in load_crl((tmp_path / "s.crl").read_bytes())["tbs_cert_list"][
            "revoked_certificates"
        ]
    }
    assert int(issued[0]["serial"], 16) in revoked
