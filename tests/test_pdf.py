"""PAdES signing and verification (signing/pdf.py): every level for RSA and ECDSA checked by our
verifier and by pyhanko's own command line tool, SM2 through our validator, visible stamps,
incremental updates after signing, and bad input that must give a report."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from PIL import Image, ImageDraw
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject

import signing.pdf as pdf_module
from signing.context import VerifyContext
from signing.pdf import (
    LEVELS,
    Level,
    RevocationData,
    Stamp,
    blank_pdf,
    sign_pdf,
    verify_pdf,
)
from signing.report import Report
from tests.signing_pki import SigningPki
from trust.certificates import to_pem
from trust.errors import ConfigurationError, EtrustError, MalformedInputError

PYHANKO = Path(sys.executable).parent / "pyhanko"
TEXT = ["营业执照", "名称：测试盟市场监督管理局"]


def _real_now() -> datetime:
    return datetime.now(UTC)


def fresh_revocation(pki: SigningPki) -> RevocationData:
    """CRLs of both CAs issued now (the fixture's CAs live one day in the past, so their own
    CRLs expire at ``pki.now``, before a signature made now could be checked against them)."""
    return RevocationData(
        crls=tuple(
            dataclasses.replace(ca, clock=_real_now).crl().dump()
            for ca in (pki.h.issuing, pki.h.root)
        )
    )


def sign(
    pki: SigningPki, level: Level = "B-B", pdf: bytes | None = None, **kwargs: object
) -> bytes:
    return sign_pdf(
        blank_pdf(TEXT) if pdf is None else pdf,
        pki.signer.key,
        pki.signer.cert,
        chain=pki.chain,
        level=level,
        timestamper=pki.timestamper if level != "B-B" else None,
        revocation=fresh_revocation(pki) if level in ("B-LT", "B-LTA") else None,
        **kwargs,  # type: ignore[arg-type]
    )


def checks(rep: Report) -> dict[str, str]:
    return {c["name"]: c["result"] for c in rep.checks}


def tamper_signed_byte(pdf: bytes) -> bytes:
    """Change one hex digit of the first revision's /ID: inside the first signed byte range,
    and the file stays a well-formed PDF."""
    at = pdf.index(b"/ID [ <") + len(b"/ID [ <")
    first_range_end = int(pdf.split(b"/ByteRange [", 1)[1].split()[1])
    assert at < first_range_end
    digit = pdf[at : at + 1]
    return pdf[:at] + (b"1" if digit != b"1" else b"2") + pdf[at + 1 :]


def signature_contents(pdf: bytes, index: int = 0) -> cms.ContentInfo:
    reader = PdfFileReader(io.BytesIO(pdf))
    return cms.ContentInfo.load(reader.embedded_signatures[index].pkcs7_content)


# --------------------------------------------------------------------------------------------
# Every level, every algorithm family


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_verifies_and_is_recognised(signing_pki: SigningPki, level: Level) -> None:
    signed = sign(signing_pki, level)
    rep = verify_pdf(signed, signing_pki.context())
    assert rep.verdict == "PASSED", rep.to_dict()
    assert rep.format == "pdf"
    (sig,) = rep.signatures
    assert sig.details["level"] == level
    found = checks(sig)
    assert found["pdf.level"] == "passed"
    for name in ("pdf.digest", "pdf.coverage", "pdf.signature", "signer.chain"):
        assert found[name] == "passed", sig.to_dict()
    assert found["timestamp"] == ("skipped" if level == "B-B" else "passed")
    doc_timestamps = [c for c in rep.checks if c["name"].startswith("timestamp.document")]
    assert [c["result"] for c in doc_timestamps] == (["passed"] if level == "B-LTA" else [])


def test_sm2_signature_uses_sm2_with_sm3(sm2_signing_pki: SigningPki) -> None:
    signer_info = signature_contents(sign(sm2_signing_pki))["content"]["signer_infos"][0]
    assert signer_info["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    assert signer_info["digest_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.401"


def test_sm2_tampering_fails_and_unknown_roots_are_indeterminate(
    sm2_signing_pki: SigningPki,
) -> None:
    signed = sign(sm2_signing_pki, "B-T")
    assert verify_pdf(signed, sm2_signing_pki.context()).verdict == "PASSED"

    tampered = verify_pdf(tamper_signed_byte(signed), sm2_signing_pki.context())
    assert (tampered.verdict, tampered.reason) == ("FAILED", "HASH_FAILURE")
    assert checks(tampered.signatures[0])["pdf.digest"] == "failed"

    unknown = verify_pdf(signed, sm2_signing_pki.untrusting_context())
    assert (unknown.verdict, unknown.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert checks(unknown.signatures[0])["pdf.signature"] == "passed"


def test_a_forged_signature_value_is_a_crypto_failure(signing_pki: SigningPki) -> None:
    signed = sign(signing_pki)
    value = bytes(signature_contents(signed)["content"]["signer_infos"][0]["signature"])
    hexed = value.hex().encode()
    at = signed.lower().index(hexed) + len(hexed) - 6  # inside the value, not its DER header
    flipped = b"0" if signed[at : at + 1] != b"0" else b"1"
    rep = verify_pdf(signed[:at] + flipped + signed[at + 1 :], signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "SIG_CRYPTO_FAILURE")
    assert checks(rep.signatures[0])["pdf.signature"] == "failed"


def test_a_revoked_signer_fails(signing_pki: SigningPki) -> None:
    party = signing_pki.new_party(f"revoked-{signing_pki.kind}")
    signing_pki.h.issuing.revoke(party.cert.serial_number, "key_compromise")
    signed = sign_pdf(blank_pdf(), party.key, party.cert, chain=signing_pki.chain)
    rep = verify_pdf(signed, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "REVOKED")
    assert checks(rep.signatures[0])["signer.chain"] == "failed"


def test_a_long_term_signature_is_refused_for_a_revoked_signer(signing_pki: SigningPki) -> None:
    party = signing_pki.new_party(f"revoked-lt-{signing_pki.kind}")
    signing_pki.h.issuing.revoke(party.cert.serial_number, "key_compromise")
    with pytest.raises(EtrustError) as caught:
        sign_pdf(
            blank_pdf(),
            party.key,
            party.cert,
            chain=signing_pki.chain,
            level="B-LT",
            timestamper=signing_pki.timestamper,
            revocation=fresh_revocation(signing_pki),
        )
    assert caught.value.code == "PDF_SIGNING_FAILED"


def test_long_term_levels_carry_their_own_revocation_data(signing_pki: SigningPki) -> None:
    """With no CRL given and revocation data required, only B-LT's DSS can show the chain
    unrevoked: a B-T signature stays undecided."""
    strict = VerifyContext(trust=signing_pki.context().trust, revocation="require", clock=_real_now)
    long_term = verify_pdf(sign(signing_pki, "B-LT"), strict)
    assert long_term.verdict == "PASSED", long_term.to_dict()
    timestamped = verify_pdf(sign(signing_pki, "B-T"), strict)
    assert (timestamped.verdict, timestamped.reason) == ("INDETERMINATE", "REVOCATION_UNKNOWN")


# --------------------------------------------------------------------------------------------
# pyhanko's own validator (its command line tool) as an outside judge, for RSA and ECDSA


def pyhanko_cli(pki: SigningPki, level: Level, pdf: bytes, tmp_path: Path) -> int:
    """``pyhanko sign validate`` (B-B, B-T) or, for the long-term levels, the AdES validation
    ``pyhanko sign adesverify``, which requires revocation data for the chain and so
    accepts B-LT and B-LTA only through what they embed. Our root is the only anchor."""
    assert PYHANKO.exists(), "pyhanko-cli is not installed in the venv (pip install pyhanko-cli)"
    root = tmp_path / "root.pem"
    root.write_bytes(to_pem(pki.h.root.certificate, "CERTIFICATE"))
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    if level in ("B-LT", "B-LTA"):
        command = ["sign", "adesverify", "--trust-replace", "--trust", str(root), str(path)]
    else:
        command = [
            "sign", "validate", "--trust-replace", "--trust", str(root),
            "--no-revocation-check", str(path),
        ]  # fmt: skip
    done = subprocess.run(
        [str(PYHANKO), *command], capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode


@pytest.mark.parametrize("signing_pki", ["rsa", "ec"], indirect=True)
@pytest.mark.parametrize("level", LEVELS)
def test_pyhanko_cli_accepts_our_signatures_and_rejects_tampering(
    signing_pki: SigningPki, level: Level, tmp_path: Path
) -> None:
    signed = sign(signing_pki, level)
    assert pyhanko_cli(signing_pki, level, signed, tmp_path) == 0
    assert pyhanko_cli(signing_pki, level, tamper_signed_byte(signed), tmp_path) != 0


@pytest.mark.parametrize("signing_pki", ["rsa"], indirect=True)
def test_pyhanko_cli_long_term_check_needs_the_embedded_data(
    signing_pki: SigningPki, tmp_path: Path
) -> None:
    assert pyhanko_cli(signing_pki, "B-LT", sign(signing_pki, "B-T"), tmp_path) != 0


# --------------------------------------------------------------------------------------------
# Visible seals


def seal_png() -> bytes:
    image = Image.new("RGBA", (240, 240), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((8, 8, 232, 232), outline=(220, 0, 0, 255), width=10)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _images_under(obj: Any, seen: set[int] | None = None) -> Iterator[str]:
    """Subtypes of every XObject reachable from a form XObject's resources."""
    seen = set() if seen is None else seen
    resources = obj.get("/Resources")
    if resources is None:
        return
    for ref in resources.get_object().get("/XObject", {}).values():
        xobject = ref.get_object()
        if id(xobject) in seen:
            continue
        seen.add(id(xobject))
        yield str(xobject.get("/Subtype"))
        yield from _images_under(xobject, seen)


@pytest.mark.parametrize("text", [None, "测试盟市场监督管理局 电子印章 100%"])
def test_a_visible_stamp_draws_the_seal_image(
    sm2_signing_pki: SigningPki, text: str | None
) -> None:
    stamp = Stamp(seal_png(), page=0, box_mm=(120, 40, 40, 40), text=text)
    signed = sign(sm2_signing_pki, "B-B", stamp=stamp, field_name="公章")
    assert verify_pdf(signed, sm2_signing_pki.context()).verdict == "PASSED"

    reader = PdfFileReader(io.BytesIO(signed))
    (embedded,) = reader.embedded_signatures
    assert embedded.field_name == "公章"
    widget = embedded.sig_field
    x1, y1, x2, y2 = (float(v) for v in widget["/Rect"])
    mm = 72 / 25.4  # the box in points, to the point (PDF rectangles are whole points here)
    for got, want in ((x1, 120), (y1, 40), (x2 - x1, 40), (y2 - y1, 40)):
        assert abs(got - want * mm) <= 1
    appearance = widget["/AP"]["/N"]
    assert "/Image" in set(_images_under(appearance))


def test_a_stamp_outside_the_document_is_refused(sm2_signing_pki: SigningPki) -> None:
    with pytest.raises(MalformedInputError):
        sign(sm2_signing_pki, stamp=Stamp(seal_png(), page=3))
    with pytest.raises(MalformedInputError):
        sign(sm2_signing_pki, stamp=Stamp(b"not a picture"))


# --------------------------------------------------------------------------------------------
# Incremental updates after signing


def _append(pdf: bytes, change: str) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    if change == "page":
        content = writer.add_object(generic.StreamObject(stream_data=b"0 0 m 100 100 l S"))
        writer.insert_page(PageObject(content, [0, 0, 595, 842]))  # type: ignore[no-untyped-call]
    else:
        page_ref, _ = writer.find_page_for_modification(0)  # type: ignore[no-untyped-call]
        page = page_ref.get_object()
        page["/Contents"] = writer.add_object(
            generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 700 Td (forged) Tj ET")
        )
        writer.mark_update(page_ref)
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


@pytest.mark.parametrize("change", ["page", "content"])
def test_an_update_that_changes_signed_content_fails(
    rsa_signing_pki: SigningPki, change: str
) -> None:
    signed = sign(rsa_signing_pki, "B-T")
    rep = verify_pdf(_append(signed, change), rsa_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")
    sig_checks = checks(rep.signatures[0])
    assert sig_checks["pdf.digest"] == "passed"  # the signed revision itself is intact
    assert sig_checks["pdf.coverage"] == "failed"


def test_a_second_signature_keeps_the_first_valid(signing_pki: SigningPki) -> None:
    first = sign(signing_pki, "B-T")
    other = signing_pki.other_signer
    both = sign_pdf(
        first,
        other.key,
        other.cert,
        chain=signing_pki.chain,
        level="B-T",
        timestamper=signing_pki.timestamper,
        reason="复核",
        location="呼和浩特",
    )
    rep = verify_pdf(both, signing_pki.context())
    assert rep.verdict == "PASSED", rep.to_dict()
    assert [s.verdict for s in rep.signatures] == ["PASSED", "PASSED"]
    assert [s.details["field"] for s in rep.signatures] == ["Signature1", "Signature2"]
    assert "revision 2 of 3" in rep.signatures[0].details["coverage"]
    assert rep.signatures[1].details["coverage"] == "entire file"
    assert "other-signer" in rep.signatures[1].details["signer"]


# --------------------------------------------------------------------------------------------
# Bad input gives reports, not exceptions


def test_garbage_truncated_and_unsigned_pdfs_give_reports(rsa_signing_pki: SigningPki) -> None:
    ctx = rsa_signing_pki.context()
    garbage = verify_pdf(b"\x00garbage, not a PDF" * 10, ctx)
    assert (garbage.verdict, garbage.reason) == ("FAILED", "FORMAT_FAILURE")
    assert checks(garbage)["pdf.parse"] == "failed"

    assert verify_pdf(b"", ctx).reason == "FORMAT_FAILURE"
    assert verify_pdf("text", ctx).reason == "FORMAT_FAILURE"  # type: ignore[arg-type]

    signed = sign(rsa_signing_pki)
    truncated = verify_pdf(signed[: len(signed) * 2 // 3], ctx)
    assert truncated.verdict == "FAILED"
    assert truncated.reason in ("FORMAT_FAILURE", "HASH_FAILURE")

    unsigned = verify_pdf(blank_pdf(TEXT), ctx)
    assert (unsigned.verdict, unsigned.reason) == ("FAILED", "NO_SIGNATURE")
    assert unsigned.signatures == ()


def test_signing_refuses_what_it_cannot_do(rsa_signing_pki: SigningPki) -> None:
    pki = rsa_signing_pki
    with pytest.raises(ConfigurationError):
        sign_pdf(blank_pdf(), pki.signer.key, pki.signer.cert, chain=pki.chain, level="B-T")
    with pytest.raises(ConfigurationError):
        sign_pdf(
            blank_pdf(),
            pki.signer.key,
            pki.signer.cert,
            chain=pki.chain,
            level="B-LT",
            timestamper=pki.timestamper,
        )
    with pytest.raises(MalformedInputError):
        sign_pdf(blank_pdf(), pki.signer.key, pki.other_signer.cert, chain=pki.chain)
    with pytest.raises(MalformedInputError):
        sign_pdf(b"%PDF-1.7 but nothing else", pki.signer.key, pki.signer.cert)
    with pytest.raises(MalformedInputError):
        sign_pdf(blank_pdf(), pki.signer.key, pki.signer.cert, level="B-X")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Blank pages


def test_blank_pdf_embeds_the_cjk_font_with_sane_widths() -> None:
    reader = PdfFileReader(io.BytesIO(blank_pdf(TEXT, page_mm=(148, 210))))
    page = reader.root["/Pages"]["/Kids"][0]
    width, height = (float(page["/MediaBox"][i]) for i in (2, 3))
    assert (round(width), round(height)) == (420, 595)  # A5 in points
    (font,) = page["/Resources"]["/Font"].values()
    font = font.get_object()
    descendant = font["/DescendantFonts"][0].get_object()
    assert "/FontFile2" in descendant["/FontDescriptor"]
    assert "WenQuanYi" in str(font["/BaseFont"]) or "MicroHei" in str(font["/BaseFont"])
    widths = [float(w) for entry in descendant["/W"] if isinstance(entry, list) for w in entry]
    assert widths and all(900 <= w <= 1100 for w in widths)  # CJK glyphs are one em wide
    to_unicode = font["/ToUnicode"].get_object().data
    assert b"<8425>" in to_unicode.lower() or b"<8425>" in to_unicode  # 营


def test_blank_pdf_without_the_font_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdf_module, "FONT_PATH", Path("/nonexistent/font.ttf"))
    pdf_module._font_program.cache_clear()
    pdf_module._blank_pdf.cache_clear()
    try:
        with pytest.raises(ConfigurationError):
            blank_pdf(["一行字"])
    finally:
        pdf_module._font_program.cache_clear()
        pdf_module._blank_pdf.cache_clear()


def test_sm2_signatures_are_only_accepted_over_sm3() -> None:
    from asn1crypto import algos

    sm2 = algos.SignedDigestAlgorithm({"algorithm": "1.2.156.10197.1.501"})
    policy = pdf_module._CMS_POLICY
    sm3 = algos.DigestAlgorithm({"algorithm": "1.2.156.10197.1.401"})
    assert policy.digest_combination_allowed(sm2, sm3, None).allowed
    sha256 = algos.DigestAlgorithm({"algorithm": "sha256"})
    assert not policy.digest_combination_allowed(sm2, sha256, None).allowed
