"""The one verifier's format detection: bytes decide, and prose that mentions PEM is no PEM."""

from __future__ import annotations

from signing.context import VerifyContext
from signing.verifier import detect_format, verify_document

PROSE = b"Paste the key between -----BEGIN PUBLIC KEY----- and the END line.\n"


def test_prose_mentioning_pem_is_not_a_signature() -> None:
    assert detect_format(PROSE) == "unknown"
    report = verify_document(PROSE, VerifyContext())
    assert (report.verdict, report.reason) == ("INDETERMINATE", "UNSUPPORTED_FORMAT")
    broken = b"-----BEGIN PKCS7-----\n!!!not base64!!!\n-----END PKCS7-----\n"
    assert detect_format(broken) == "unknown"


def test_formats_are_told_by_their_bytes() -> None:
    assert detect_format(b"%PDF-1.7\n...") == "pdf"
    assert detect_format(b"PK\x03\x04 not an ofd") == "unknown"
    assert detect_format(b"\x30\x03\x02\x01\x01") == "unknown"
    assert detect_format(b"") == "unknown"
