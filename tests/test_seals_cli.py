"""Seals and signed documents by command line, end to end on a demo home: make, list, export,
sign OFD / PDF / any file, verify (exit 0 / 1 / 2), and what bad input gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etrust.cli import main
from signing.ofd_package import PageSpec, TextBlock, build_ofd, qr_block
from tests.cli_run import run
from tests.conftest import openssl
from tests.officers import officer_home


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("seal-home")
    assert main(["--home", str(path), "init", "--demo"]) == 0
    return str(path)


def _seals(home: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    code, out, err = run(capsys, "--home", home, "seal", "list", "--json")
    assert code == 0, err
    listed: list[dict[str, str]] = json.loads(out)
    return listed


def _seal(home: str, alg: str, capsys: pytest.CaptureFixture[str]) -> str:
    return next(s["id"] for s in _seals(home, capsys) if s["alg"] == alg)


def test_demo_has_an_sm2_and_an_rsa_seal(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    seals = _seals(home, capsys)
    assert {s["alg"] for s in seals} == {"sm2", "rsa"}
    for seal in seals:
        assert set(seal) >= {"id", "name", "alg", "department", "valid_from", "valid_to"}
        assert len(seal["id"]) == 14 and seal["id"].isdigit()
    # init --demo again makes no more seals
    assert main(["--home", home, "init", "--demo"]) == 0
    assert len(_seals(home, capsys)) == 2


def test_create_export_and_verify_a_seal(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        *("--home", home, "seal", "create", "--department", "152500-zwfw"),
        *("--name", "示范盟政务服务中心", "--alg", "sm2", "--type", "4", "--title", "合同专用章"),
        "--json",
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["name"] == "示范盟政务服务中心" and made["type"] == 4
    esl = tmp_path / "seal.esl"
    assert run(capsys, "--home", home, "seal", "export", made["id"], "--out", str(esl))[0] == 0
    code, out, err = run(capsys, "--home", home, "verify", str(esl), "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["format"] == "esl" and report["verdict"] == "PASSED"
    # exporting over an existing file is refused, the file is kept
    code, _, err = run(capsys, "--home", home, "seal", "export", made["id"], "--out", str(esl))
    assert code == 1 and "exists" in err
    # a seal maker's signature broken by one flipped bit at the end
    broken = tmp_path / "broken.esl"
    data = bytearray(esl.read_bytes())
    data[-5] ^= 0x01
    broken.write_bytes(bytes(data))
    code, out, _ = run(capsys, "--home", home, "verify", str(broken), "--json")
    assert code == 1 and json.loads(out)["verdict"] == "FAILED"


@pytest.mark.parametrize("alg", ["sm2", "rsa"])
def test_sign_and_verify_an_ofd(
    home: str, alg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seal = _seal(home, alg, capsys)
    original = tmp_path / "license.ofd"
    original.write_bytes(
        build_ofd(
            [
                PageSpec(
                    [
                        TextBlock("营业执照", 80, 30, 10),
                        TextBlock("名称：示范盟某某商贸有限公司", 30, 60),
                        qr_block("https://example.invalid/v#x", 150, 230, 30),
                    ]
                )
            ],
            title="营业执照",
        )
    )
    sealed = tmp_path / "sealed.ofd"
    code, _, err = run(
        capsys, "--home", home, "sign", str(original), "--seal", seal, "--out", str(sealed)
    )
    assert code == 0, err
    code, out, err = run(capsys, "--home", home, "verify", str(sealed), "--json")
    assert code == 0, out + err
    assert json.loads(out)["format"] == "ofd"
    # content changed after sealing: FAILED, exit 1, the changed file named
    import io
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(sealed.read_bytes()))
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as out_zip:
        for info in source.infolist():
            body = source.read(info)
            if info.filename.endswith("Content.xml"):
                body = body.replace("某某".encode(), "另外".encode())
            out_zip.writestr(info, body)
    bad = tmp_path / "tampered.ofd"
    bad.write_bytes(tampered.getvalue())
    code, out, _ = run(capsys, "--home", home, "verify", str(bad), "--json")
    report = json.loads(out)
    assert code == 1 and report["reason"] == "HASH_FAILURE"
    assert "Content.xml" in json.dumps(report, ensure_ascii=False)


def test_sign_and_verify_a_pdf(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from signing.pdf import blank_pdf

    seal = _seal(home, "rsa", capsys)
    original = tmp_path / "decision.pdf"
    original.write_bytes(blank_pdf(["行政许可决定书", "准予许可"]))
    sealed = tmp_path / "decision-sealed.pdf"
    code, _, err = run(
        capsys, "--home", home, "sign", str(original), "--seal", seal, "--out", str(sealed)
    )
    assert code == 0, err
    code, out, err = run(capsys, "--home", home, "verify", str(sealed), "--json")
    assert code == 0, out + err
    assert json.loads(out)["format"] == "pdf"


@pytest.mark.parametrize("alg", ["sm2", "rsa"])
def test_detached_signature_of_any_file(
    home: str, alg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seal = _seal(home, alg, capsys)
    data = tmp_path / "outcome.json"
    data.write_text('{"case":"2026-0001","result":"准予许可"}', "utf-8")
    signature = tmp_path / "outcome.json.p7s"
    code, out, err = run(
        capsys, "--home", home, "sign", str(data), "--seal", seal, "--out", str(signature), "--json"
    )
    assert code == 0 and json.loads(out)["format"] == "cms", err
    code, out, err = run(capsys, "--home", home, "verify", str(signature), "--json")
    assert code == 0, out + err  # the content found beside it (outcome.json)
    other = tmp_path / "other.json"
    other.write_text('{"case":"2026-0001","result":"不予许可"}', "utf-8")
    code, out, _ = run(
        capsys, "--home", home, "verify", str(signature), "--content", str(other), "--json"
    )
    assert code == 1 and json.loads(out)["reason"] == "HASH_FAILURE"
    if alg == "rsa":  # the OpenSSL CLI as an independent judge
        bundle = tmp_path / "bundle.pem"
        for name in ("root-rsa", "issuing-rsa"):
            assert main(["--home", home, "ca", "export", name, "--out", str(tmp_path / name)]) == 0
        bundle.write_bytes(
            (tmp_path / "root-rsa").read_bytes() + (tmp_path / "issuing-rsa").read_bytes()
        )
        openssl(
            "cms", "-verify", "-binary", "-inform", "DER", "-in", signature, "-content", data,
            "-CAfile", bundle, "-purpose", "any", "-out", tmp_path / "out.bin",
        )  # fmt: skip


def test_bad_input(home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x30\x82\xff\xff not a signature")
    code, out, _ = run(capsys, "--home", home, "verify", str(garbage), "--json")
    assert code in (1, 2) and "verdict" in out
    prose = tmp_path / "说明.txt"
    prose.write_text("这不是签章文件", encoding="utf-8")
    code, out, _ = run(capsys, "--home", home, "verify", str(prose), "--json")
    assert (code, json.loads(out)["reason"]) == (2, "UNSUPPORTED_FORMAT")
    code, _, err = run(
        capsys, "--home", home, "sign", str(garbage), "--seal", "15990099999999", "--out",
        str(tmp_path / "x.p7s"),
    )  # fmt: skip
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = run(
        capsys, "--home", home, "seal", "create", "--department", "bad dept!", "--name", "x"
    )
    assert code == 1 and "MALFORMED_INPUT" in err


def test_seal_making_under_dual_control(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = officer_home(tmp_path / "dc", dual_control={"seal.make": 1})
    create = ("--home", h, "seal", "create", "--department", "152500-gaj", "--name", "示范盟公安局")
    code, _, err = run(capsys, *create)
    assert code == 1 and "APPROVAL_REQUIRED" in err
    assert _seals(h, capsys) == []


def test_v5_seal_with_a_further_signer_and_a_long_term_pdf(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asn1crypto import pem

    from signing.pdf import blank_pdf
    from signing.seal import parse_seal

    clerk = tmp_path / "clerk.pem"
    assert main(["--home", home, "ca", "export", "issuing-sm2", "--out", str(clerk)]) == 0
    code, out, err = run(
        capsys,
        *("--home", home, "seal", "create", "--department", "152500-swj"),
        *("--name", "示范盟商务局", "--version", "5", "--signer-cert", str(clerk), "--json"),
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["version"] == 5
    esl = tmp_path / "v5.esl"
    assert run(capsys, "--home", home, "seal", "export", made["id"], "--out", str(esl))[0] == 0
    parsed = parse_seal(esl.read_bytes())
    assert parsed.version == 5 and parsed.timestamp is not None
    assert pem.unarmor(clerk.read_bytes())[2] in parsed.signer_certs  # the further signer
    code, out, err = run(capsys, "--home", home, "verify", str(esl), "--json")
    assert code == 0, out + err
    pdf = tmp_path / "notice.pdf"
    pdf.write_bytes(blank_pdf(["商务局通知"]))
    sealed = tmp_path / "notice-lt.pdf"
    code, _, err = run(
        capsys,
        *("--home", home, "sign", str(pdf), "--seal", made["id"]),
        *("--out", str(sealed), "--pdf-level", "B-LT"),
    )
    assert code == 0, err
    code, out, err = run(capsys, "--home", home, "verify", str(sealed), "--json")
    report = json.loads(out)
    assert code == 0, out + err
    assert (
        report["signatures"][0]["details"]["level"] == "B-LT"
        if report.get("signatures")
        else report["details"]["level"] == "B-LT"
    )


def test_a_seal_is_as_live_as_its_key(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "--home", home, "seal", "create", "--department", "152500-wjw",
        "--name", "示范盟卫生健康委员会", "--json",
    )  # fmt: skip
    assert code == 0, err
    seal = json.loads(out)["id"]
    assert run(capsys, "--home", home, "key", "suspend", f"seal-{seal}", "--reason", "休假")[0] == 0
    status = {s["id"]: s["status"] for s in _seals(home, capsys)}
    assert status[seal] == "suspended"
    note = tmp_path / "note.txt"
    note.write_text("-----BEGIN 不是证书\n", "utf-8")  # prose that mentions PEM
    code, _, err = run(
        capsys, "--home", home, "sign", str(note), "--seal", seal, "--out", str(tmp_path / "n.p7s")
    )
    assert code == 1 and "suspended" in err
    assert (
        run(capsys, "--home", home, "key", "activate", f"seal-{seal}", "--reason", "回岗")[0] == 0
    )
    code, _, err = run(
        capsys, "--home", home, "sign", str(note), "--seal", seal, "--out", str(tmp_path / "n.p7s")
    )
    assert code == 0, err


def test_a_failed_seal_making_does_not_block_the_next(
    home: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import signing.seal

    def broken(*args: object, **kwargs: object) -> bytes:
        raise OSError("the seal maker's device went away")

    create = (
        "--home",
        home,
        "seal",
        "create",
        "--department",
        "152500-jyj",
        "--name",
        "示范盟教育局",
    )
    with monkeypatch.context() as patch:
        patch.setattr(signing.seal, "make_seal", broken)
        assert run(capsys, *create)[0] == 1
    before = {s["id"] for s in _seals(home, capsys)}
    code, out, err = run(capsys, *create, "--json")
    assert code == 0, err
    assert json.loads(out)["id"] not in before
