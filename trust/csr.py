"""PKCS#10 requests: parse, check proof of possession, refuse what we must not certify."""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import csr, keys, x509

from trust.algorithms import SM2_SM3, check_key_strength, from_identifier, verify_signed
from trust.certificates import parse_der, unarmor
from trust.errors import (
    CsrError,
    InvalidSignatureError,
    MalformedInputError,
    UnsupportedAlgorithmError,
)
from trust.sm2 import DEFAULT_ID


@dataclass(frozen=True)
class CertificationRequest:
    subject: x509.Name
    public_key_info: keys.PublicKeyInfo
    der: bytes


def load_csr(data: bytes, *, sm2_id: bytes = DEFAULT_ID) -> CertificationRequest:
    """Parse a PEM or DER CSR and verify its self-signature (for SM2, with ``sm2_id``).

    An SM2 request signed with the empty ID (OpenSSL 3.0's default) is refused with advice.
    """
    try:
        der = unarmor(
            data, "certificate request", ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
        )
        request: csr.CertificationRequest = parse_der(csr.CertificationRequest, der, "CSR")
    except MalformedInputError as exc:
        raise CsrError(
            f"not a PKCS#10 certificate request: {exc.message}", code="CSR_MALFORMED"
        ) from exc
    info = request["certification_request_info"]
    spki = info["subject_pk_info"]
    tbs = info.dump()
    identifier = request["signature_algorithm"]
    try:
        check_key_strength(spki)
        verify_signed(spki, identifier, request["signature"], tbs, sm2_id=sm2_id)
    except InvalidSignatureError:
        if from_identifier(identifier) is SM2_SM3 and _verifies(spki, request, tbs, b""):
            raise CsrError(
                "the SM2 request was signed with an empty distinguishing ID (OpenSSL 3.0's "
                "default); sign it with the standard ID: openssl req ... -sm3 "
                "-sigopt distid:1234567812345678",
                code="CSR_SM2_ID_MISSING",
            ) from None
        raise CsrError(
            "the request's signature does not verify", code="CSR_BAD_SIGNATURE"
        ) from None
    except UnsupportedAlgorithmError as exc:
        raise CsrError(exc.message, code="CSR_UNSUPPORTED_ALGORITHM") from exc
    return CertificationRequest(info["subject"], spki, der)


def _verifies(
    spki: keys.PublicKeyInfo, request: csr.CertificationRequest, tbs: bytes, sm2_id: bytes
) -> bool:
    try:
        verify_signed(
            spki, request["signature_algorithm"], request["signature"], tbs, sm2_id=sm2_id
        )
    except InvalidSignatureError:
        return False
    return True
