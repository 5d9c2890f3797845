"""PKCS#10 requests: parse, check proof of possession, refuse what we must not certify."""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import csr, keys, x509

from trust.algorithms import check_key_strength, from_identifier, signature_octets
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
    try:
        signature = signature_octets(request["signature"])
    except InvalidSignatureError:
        raise CsrError("the request's signature is malformed", code="CSR_BAD_SIGNATURE") from None
    try:
        alg = from_identifier(request["signature_algorithm"])
        check_key_strength(spki)
        alg.verify(spki, signature, tbs, sm2_id=sm2_id)
    except InvalidSignatureError:
        if request["signature_algorithm"]["algorithm"].dotted.startswith("1.2.156.10197"):
            try:
                alg.verify(spki, signature, tbs, sm2_id=b"")
            except InvalidSignatureError:
                pass
            else:
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
