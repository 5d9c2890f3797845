"""One verifier for every signed thing we make or meet: it detects the format and reports.

OFD packages, PDFs, seals (``.esl``), SES signatures (``SignedValue.dat``) and CMS signatures
(with the content they sign) are told apart by their bytes, not by file names: a window clerk's
upload has whatever name the citizen's phone gave it.
"""

from __future__ import annotations

import binascii
import io
import re
import zipfile

from asn1crypto import cms, pem

from signing.context import VerifyContext
from signing.report import Report, report
from trust.errors import EtrustError, InputTooLargeError

MAX_DOCUMENT = 64 << 20
"""Largest document the verifier reads (a scanned multi-page license stays far below)."""

_CMS_TYPES = ("1.2.840.113549.1.7.2", "1.2.156.10197.6.1.4.2.2")
"""signedData under the PKCS#7 OID and under the GM/T 0010 one."""


def detect_format(data: bytes) -> str:
    """``ofd``, ``pdf``, ``esl``, ``ses``, ``cms`` or ``unknown``, from the bytes alone."""
    head = data[:1024].lstrip()
    if head.startswith(b"%PDF-"):
        return "pdf"
    if data[:4] == b"PK\x03\x04":
        return "ofd" if _zip_has(data, "OFD.xml") else "unknown"
    if pem.detect(data):  # "-----BEGIN" anywhere: it may be prose that mentions PEM
        try:
            kind, _, der = pem.unarmor(data)
        except (ValueError, binascii.Error):
            return "unknown"
        return "cms" if kind in ("PKCS7", "CMS") and _is_cms(der) else "unknown"
    if data[:1] != b"\x30":
        return "unknown"
    if _is_cms(data):
        return "cms"
    from signing.seal import parse_seal
    from signing.ses import parse_ses_signature

    for name, parse in (("esl", parse_seal), ("ses", parse_ses_signature)):
        try:
            parse(data)
        except (EtrustError, ValueError, TypeError):
            continue
        return name
    return "unknown"


def _zip_has(data: bytes, name: str) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(info.filename.lstrip("/") == name for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _is_cms(der: bytes) -> bool:
    try:
        info = cms.ContentInfo.load(der)
        content_type = info["content_type"].dotted
    except (ValueError, TypeError):
        return False
    return content_type in _CMS_TYPES


def verify_document(
    data: bytes, ctx: VerifyContext, *, content: bytes | None = None, kind: str | None = None
) -> Report:
    """Verify ``data`` in whatever format it is; ``content`` is what a detached signature (CMS)
    or a bare SES signature protects. Never raises for a bad document: it reports."""
    if len(data) > MAX_DOCUMENT:
        return report(
            "unknown",
            "FORMAT_FAILURE",
            str(InputTooLargeError(f"larger than {MAX_DOCUMENT} bytes")),
        )
    kind = kind or detect_format(data)
    try:
        if kind == "ofd":
            from signing.ofd import verify_ofd

            return verify_ofd(data, ctx)
        if kind == "pdf":
            from signing.pdf import verify_pdf

            return verify_pdf(data, ctx)
        if kind == "esl":
            from signing.seal import verify_seal

            return verify_seal(data, ctx)
        if kind == "ses":
            from signing.ses import verify_ses

            return verify_ses(data, ctx, original=content)
        if kind == "cms":
            from signing.cms import verify_detached

            return verify_detached(data, content, ctx)  # attached content, or says it is missing
    except EtrustError as exc:  # a format's own verifier should report; this is the backstop
        return report(kind, "FORMAT_FAILURE", f"{exc.code}: {exc.message}")
    return report(
        "unknown",
        "UNSUPPORTED_FORMAT",
        "expected an OFD, a PDF, a seal (.esl), an SES signature (SignedValue.dat) or a CMS "
        "signature",
    )


_LICENSE_ID = re.compile(
    r"1\.2\.156\.3005\.2\.[0-9A-Z]{21}\.[0-9A-Z]{18}\.[0-9A-Z]{1,32}\.\d{3}\.[0-9A-Z]"
)


def license_identifier(data: bytes, kind: str | None = None) -> str | None:
    """The GB/T 36904 identifier a license document declares — OFD: the ``ZZBS`` custom data
    (GB/T 36903 metadata, a signed file); PDF: the document information's Subject in the
    revision the first signature covers — or None. Only a claim until the signature verifies."""
    kind = kind or detect_format(data)
    try:
        if kind == "ofd":
            from signing.ofd_package import OfdPackage

            root = OfdPackage.read(data).xml("OFD.xml")
            for element in root.iter():
                if str(element.tag).endswith("CustomData") and element.get("Name") == "ZZBS":
                    found = _LICENSE_ID.fullmatch((element.text or "").strip())
                    return found.group(0) if found else None
        elif kind == "pdf":
            from pyhanko.pdf_utils.reader import PdfFileReader

            reader = PdfFileReader(io.BytesIO(data), strict=False)
            signatures = reader.embedded_signatures
            if not signatures:
                return None
            # What the first signature signed, not what a later revision says: an update
            # appended after signing could name another license (or none).
            signed = min(signature.signed_revision for signature in signatures)
            resolver = reader.get_historical_resolver(signed)
            reference = resolver.trailer_view.raw_get("/Info")
            # resolved by that revision's resolver: dereferencing through the trailer would
            # read the object as the latest revision left it
            info = resolver(reference) if reference is not None else None
            subject = str(info.get("/Subject", "")) if info is not None else ""
            found = _LICENSE_ID.fullmatch(subject.strip())
            return found.group(0) if found else None
    except Exception:  # a document we cannot read has no license identifier to offer
        return None
    return None
