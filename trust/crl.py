"""Numbered CRLs (RFC 5280 §5) for any registered algorithm."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from asn1crypto import crl, x509

from trust.algorithms import SignatureAlgorithm, verify_signed
from trust.certificates import key_identifier, parse_der, unarmor, x509_time
from trust.errors import InvalidSignatureError
from trust.keys import KeyHandle, default_algorithm
from trust.repository import Revocation

if TYPE_CHECKING:  # the CA builds CRLs with this module; the cache only calls it
    from trust.ca import CertificateAuthority


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
    verify_signed(
        issuer.public_key,
        crl_["signature_algorithm"],
        crl_["signature"],
        crl_["tbs_cert_list"].dump(),
    )


class CrlCache:
    """The current CRL of one CA, re-signed only when its revocations change or it ages.

    Publishing must not mint a new CRL number per download; it must not serve a stale list
    either. So the cache is keyed by the revocation records and refreshed after half the
    CRL's validity (the repository is asked on every call, which is one small query).
    """

    def __init__(self, ca: CertificateAuthority) -> None:
        self._ca = ca
        self._lock = threading.Lock()
        self._key: tuple[tuple[int, str, datetime], ...] | None = None
        self._der = b""
        self._refresh_at: datetime | None = None

    def current(self) -> bytes:
        key = tuple(
            (r.serial, r.reason, r.revoked_at)
            for r in self._ca.repository.revocations(self._ca.name)
        )
        now = self._ca.clock()
        with self._lock:
            if self._key == key and self._refresh_at is not None and now < self._refresh_at:
                return self._der
            self._der = self._ca.crl().dump()
            self._key = key
            self._refresh_at = now + self._ca.crl_validity / 2
            return self._der
