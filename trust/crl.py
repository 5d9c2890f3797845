"""Numbered CRLs (RFC 5280 §5) for any registered algorithm."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from asn1crypto import crl, x509

from trust.algorithms import SignatureAlgorithm, verify
from trust.certificates import key_identifier, parse_der, unarmor, x509_time
from trust.errors import InvalidSignatureError
from trust.keys import KeyHandle, default_algorithm
from trust.repository import Revocation


def build_crl(
    issuer: x509.Certificate,
    key: KeyHandle,
    revocations: Iterable[Revocation],
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    algorithm: SignatureAlgorithm | None = None,
) -> crl.CertificateList:
    alg = algorithm or default_algorithm(key)
    entries = []
    for rev in revocations:
        entry: dict[str, object] = {
            "user_certificate": rev.serial,
            "revocation_date": x509_time(rev.revoked_at),
        }
        if rev.reason != "unspecified":  # RFC 5280 §5.3.1: omit rather than say unspecified
            entry["crl_entry_extensions"] = [{"extn_id": "crl_reason", "extn_value": rev.reason}]
        entries.append(entry)
    tbs = crl.TbsCertList(
        {
            "version": "v2",
            "signature": alg.algorithm_identifier(),
            "issuer": issuer.subject,
            "this_update": x509_time(this_update),
            "next_update": x509_time(next_update),
            "revoked_certificates": entries or None,
            "crl_extensions": [
                {"extn_id": "crl_number", "extn_value": number},
                {
                    "extn_id": "authority_key_identifier",
                    "extn_value": {"key_identifier": key_identifier(issuer.public_key)},
                },
            ],
        }
    )
    return crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": alg.algorithm_identifier(),
            "signature": key.sign(tbs.dump(), alg),
        }
    )


def load_crl(data: bytes) -> crl.CertificateList:
    """A CRL from PEM or DER, fully parsed."""
    der = unarmor(data, "CRL", ("X509 CRL",))
    value: crl.CertificateList = parse_der(crl.CertificateList, der, "CRL")
    return value


def verify_crl(crl_: crl.CertificateList, issuer: x509.Certificate) -> None:
    """Raise unless ``issuer`` signed ``crl_`` (and named itself as its issuer)."""
    if crl_["tbs_cert_list"]["issuer"].dump() != issuer.subject.dump():
        raise InvalidSignatureError("the CRL names another issuer")
    verify(
        issuer.public_key,
        crl_["signature_algorithm"],
        crl_["signature"].native,
        crl_["tbs_cert_list"].dump(),
    )
