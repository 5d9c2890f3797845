"""Signatures judged at their signing time with revocation data issued later.

A CRL published after a signature that does not list the signer shows it was not revoked when
it signed; that holds only when a verified timestamp proves the signing time. A time the signer
merely states (SES timeInfo, CMS signingTime) gets no such benefit: a revoked key could backdate.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta

from signing.cms import sign_detached, verify_detached
from signing.context import VerifyContext
from signing.seal import SealPicture, SealSpec, make_seal
from signing.ses import sign_ses, verify_ses
from tests.signing_pki import SigningPki
from trust.validation import TrustStore

DATA = "行政许可决定 2026-0042".encode()
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478"
    "da63f8cfc0f01f0005000201a7f55a530000000049454e44ae426082"
)


def _later_context(pki: SigningPki, hours: int = 2) -> VerifyContext:
    """Verification two hours after signing, with CRLs the CAs published since."""
    later = pki.now + timedelta(hours=hours)
    crls = tuple(
        dataclasses.replace(ca, clock=lambda: later).crl().dump()
        for ca in (pki.h.root, pki.h.issuing)
    )
    return VerifyContext(
        trust=TrustStore([pki.h.root.certificate], [pki.h.issuing.certificate]),
        crls=crls,
        revocation="require",
        clock=lambda: later,
    )


def _seal(pki: SigningPki) -> bytes:
    spec = SealSpec(
        es_id="15990020260042",
        name="示范盟市场监督管理局",
        seal_type=1,
        signer_certs=[pki.signer.cert],
        valid_from=pki.now - timedelta(hours=2),
        valid_to=pki.now + timedelta(days=30),
        picture=SealPicture("PNG", PNG, 40, 40),
    )
    return make_seal(
        spec, pki.maker.key, pki.maker.cert, clock=lambda: pki.now - timedelta(hours=1)
    )


def test_ses_timestamped_signature_verifies_later(signing_pki: SigningPki) -> None:
    pki = signing_pki
    digest = hashlib.new("sm3" if pki.kind == "sm2" else "sha256", DATA).digest()
    common = {"data_hash": digest, "property_info": "/data", "signing_time": pki.now}
    stamped = sign_ses(
        _seal(pki), pki.signer.key, pki.signer.cert, timestamper=pki.timestamper, **common
    )
    claimed = sign_ses(_seal(pki), pki.signer.key, pki.signer.cert, **common)  # type: ignore[arg-type]
    ctx = _later_context(pki)
    report = verify_ses(stamped, ctx, original=DATA)
    assert (report.verdict, report.reason) == ("PASSED", "OK"), report.to_dict()
    unproven = verify_ses(claimed, ctx, original=DATA)
    assert (unproven.verdict, unproven.reason) == ("INDETERMINATE", "REVOCATION_UNKNOWN")
    assert unproven.assessment()["integrity"] == "intact"


def test_cms_timestamped_signature_verifies_later(signing_pki: SigningPki) -> None:
    pki = signing_pki
    ctx = _later_context(pki)
    stamped = sign_detached(
        DATA, pki.signer.key, pki.signer.cert, chain=pki.chain, timestamper=pki.timestamper,
        signing_time=pki.now,
    )  # fmt: skip
    assert verify_detached(stamped, DATA, ctx).verdict == "PASSED"
    claimed = sign_detached(
        DATA, pki.signer.key, pki.signer.cert, chain=pki.chain, signing_time=pki.now
    )
    assert verify_detached(claimed, DATA, ctx).reason == "REVOCATION_UNKNOWN"


def test_revoked_before_the_timestamp_still_fails(signing_pki: SigningPki) -> None:
    """Retroactive revocation data never hides a revocation that came before the signature."""
    pki = signing_pki
    party = pki.new_party("revoked-before")
    pki.h.issuing.revoke(
        party.cert.serial_number, "key_compromise", at=pki.now - timedelta(minutes=30)
    )
    signature = sign_detached(
        DATA, party.key, party.cert, chain=pki.chain, timestamper=pki.timestamper,
        signing_time=pki.now,
    )  # fmt: skip
    report = verify_detached(signature, DATA, _later_context(pki))
    assert (report.verdict, report.reason) == ("FAILED", "REVOKED")


def test_pdf_signer_expired_since_the_timestamp(signing_pki: SigningPki) -> None:
    """A PAdES B-T signature whose signer certificate has expired since is judged at the
    timestamp's time; without a timestamp the expiry stands."""
    from signing.pdf import blank_pdf, sign_pdf
    from signing.pdf import verify_pdf as verify
    from trust.certificates import make_name

    pki = signing_pki
    issuing = dataclasses.replace(pki.h.issuing, clock=lambda: pki.now - timedelta(minutes=30))
    key = pki.h.keystore.generate(f"short-lived-{pki.kind}", "sm2" if pki.kind == "sm2" else
                                  "rsa-2048" if pki.kind == "rsa" else "ec-p256")  # fmt: skip
    cert = issuing.issue(
        key.public_key_info,
        make_name({"C": "CN", "O": "示范盟", "CN": "一小时证书"}),
        "seal-signer",
        validity=timedelta(hours=1),
    )
    pdf = blank_pdf(["决定书"])
    stamped = sign_pdf(pdf, key, cert, chain=pki.chain, level="B-T", timestamper=pki.timestamper)
    bare = sign_pdf(pdf, key, cert, chain=pki.chain, level="B-B")
    later = _later_context(pki, hours=3)
    report = verify(stamped, later)
    assert (report.verdict, report.reason) == ("PASSED", "OK"), report.to_dict()
    assert any("past validation" in c["detail"] for c in report.all_checks())
    assert verify(bare, later).reason == "EXPIRED"
