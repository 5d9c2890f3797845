"""One certificate builder for every algorithm, on asn1crypto, signed through the key protocol.

``cryptography`` cannot sign with SM2, so we assemble the TBSCertificate ourselves and let the
key handle sign its DER; RSA and ECDSA take the same path, which keeps one builder for all.
The builder is immutable (each setter returns a new builder; setting a field twice is an error).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from asn1crypto import core, keys, pem, x509

from trust import asn1_gm  # noqa: F401  (SM2 OIDs known to asn1crypto)
from trust.algorithms import SignatureAlgorithm, check_key_matches, verify
from trust.errors import BuilderError, MalformedInputError
from trust.keys import KeyHandle, default_algorithm
from trust.sm2 import DEFAULT_ID

MAX_DER = 1 << 20
"""Largest certificate, CSR or CRL we parse (1 MiB); larger input is refused before parsing."""

# Short DN keys accepted on the command line and in settings, mapped to asn1crypto names.
_DN_KEYS = {
    "C": "country_name",
    "ST": "state_or_province_name",
    "L": "locality_name",
    "O": "organization_name",
    "OU": "organizational_unit_name",
    "CN": "common_name",
    "SERIALNUMBER": "serial_number",
    "EMAIL": "email_address",
    "UID": "user_id",
}


def make_name(attributes: Mapping[str, str] | str) -> x509.Name:
    """A Name from ``{"C": "CN", "O": "...", "CN": "..."}`` or ``"C=CN,O=...,CN=..."``.

    Values are UTF8String (Chinese names as they are), the country PrintableString.
    """
    if isinstance(attributes, str):
        pairs: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in re.split(r"(?<!\\),|/", attributes))):
            k, eq, v = part.partition("=")
            if not eq:
                raise MalformedInputError(f"not a distinguished name part: {part!r}")
            pairs[k.strip()] = v.strip().replace("\\,", ",")
        attributes = pairs
    mapped: dict[str, str] = {}
    for key, value in attributes.items():
        name = _DN_KEYS.get(key.upper(), key)
        if name not in _DN_KEYS.values():
            raise MalformedInputError(f"unsupported name attribute {key!r}")
        mapped[name] = value
    if not mapped:
        raise MalformedInputError("a distinguished name needs at least one attribute")
    return x509.Name.build(mapped, use_printable=False)


def key_identifier(public_key_info: keys.PublicKeyInfo) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits."""
    return hashlib.sha1(public_key_info["public_key"].contents[1:], usedforsecurity=False).digest()


def random_serial() -> int:
    """16 random bytes from ``secrets``, kept positive and non-zero (RFC 5280 §4.1.2.2)."""
    while True:
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 1
        if serial:
            return serial


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise BuilderError("times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


def x509_time(moment: datetime) -> x509.Time:
    """UTCTime up to 2049, GeneralizedTime after (RFC 5280 §4.1.2.5)."""
    moment = _utc(moment)
    if moment.year < 2050:
        return x509.Time({"utc_time": moment})
    return x509.Time({"general_time": moment})


@dataclass(frozen=True)
class CertificateBuilder:
    """Immutable X.509 v3 certificate builder."""

    _subject: x509.Name | None = None
    _issuer: x509.Name | None = None
    _public_key: keys.PublicKeyInfo | None = None
    _serial: int | None = None
    _not_before: datetime | None = None
    _not_after: datetime | None = None
    _extensions: tuple[tuple[str, bool, Any], ...] = field(default_factory=tuple)

    def _set(self, attr: str, value: Any) -> CertificateBuilder:
        if getattr(self, attr) is not None:
            raise BuilderError(f"{attr.lstrip('_')} is already set")
        return replace(self, **{attr: value})

    def subject_name(self, name: x509.Name) -> CertificateBuilder:
        return self._set("_subject", name)

    def issuer_name(self, name: x509.Name) -> CertificateBuilder:
        return self._set("_issuer", name)

    def public_key(self, public_key_info: keys.PublicKeyInfo) -> CertificateBuilder:
        return self._set("_public_key", public_key_info)

    def serial_number(self, serial: int) -> CertificateBuilder:
        if serial <= 0 or serial.bit_length() > 159:
            raise BuilderError("serial numbers are positive and at most 20 octets")
        return self._set("_serial", serial)

    def not_valid_before(self, moment: datetime) -> CertificateBuilder:
        return self._set("_not_before", _utc(moment))

    def not_valid_after(self, moment: datetime) -> CertificateBuilder:
        return self._set("_not_after", _utc(moment))

    def add_extension(self, name: str, value: Any, *, critical: bool = False) -> CertificateBuilder:
        """Add an extension by asn1crypto name (or dotted OID) with a native or asn1crypto value."""
        if any(existing == name for existing, _, _ in self._extensions):
            raise BuilderError(f"extension {name} is already present")
        return replace(self, _extensions=(*self._extensions, (name, critical, value)))

    def tbs(self, algorithm: SignatureAlgorithm) -> x509.TbsCertificate:
        missing = [
            n
            for n in ("_subject", "_issuer", "_public_key", "_serial", "_not_before", "_not_after")
            if getattr(self, n) is None
        ]
        if missing:
            raise BuilderError("missing " + ", ".join(m.lstrip("_") for m in missing))
        assert self._not_before is not None and self._not_after is not None
        if self._not_after <= self._not_before:
            raise BuilderError("notAfter must be later than notBefore")
        return x509.TbsCertificate(
            {
                "version": "v3",
                "serial_number": self._serial,
                "signature": algorithm.algorithm_identifier(),
                "issuer": self._issuer,
                "validity": {
                    "not_before": x509_time(self._not_before),
                    "not_after": x509_time(self._not_after),
                },
                "subject": self._subject,
                "subject_public_key_info": self._public_key,
                "extensions": [
                    {"extn_id": n, "critical": c, "extn_value": v} for n, c, v in self._extensions
                ]
                or None,
            }
        )

    def sign(
        self,
        key: KeyHandle,
        algorithm: SignatureAlgorithm | None = None,
        *,
        sm2_id: bytes = DEFAULT_ID,
    ) -> x509.Certificate:
        alg = algorithm or default_algorithm(key)
        check_key_matches(alg, key.public_key_info)
        tbs = self.tbs(alg)
        signature = key.sign(tbs.dump(), alg, sm2_id=sm2_id)
        return x509.Certificate(
            {
                "tbs_certificate": tbs,
                "signature_algorithm": alg.algorithm_identifier(),
                "signature_value": signature,
            }
        )


def unarmor(data: bytes, what: str, markers: Iterable[str]) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise MalformedInputError(f"{what}: expected bytes")
    if len(data) > MAX_DER:
        raise MalformedInputError(f"{what}: larger than {MAX_DER} bytes")
    data = bytes(data)
    if pem.detect(data):
        try:
            kind, _, der = pem.unarmor(data)
        except ValueError as exc:
            raise MalformedInputError(f"{what}: broken PEM armour") from exc
        if kind not in markers:
            raise MalformedInputError(f"{what}: PEM block is {kind!r}, expected {what}")
        return bytes(der)
    return data


def parse_der(spec: type[core.Asn1Value], der: bytes, what: str) -> Any:
    """Parse DER fully now (asn1crypto is lazy), so malformed input fails here, not later."""
    try:
        value = spec.load(der, strict=True)
        value.native  # noqa: B018  (forces the whole structure to parse)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise MalformedInputError(f"{what}: malformed DER ({exc})") from exc
    return value


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER; fully parsed, or :class:`MalformedInputError`."""
    der = unarmor(data, "certificate", ("CERTIFICATE", "X509 CERTIFICATE"))
    cert: x509.Certificate = parse_der(x509.Certificate, der, "certificate")
    return cert


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one DER certificate."""
    if pem.detect(data):
        if len(data) > MAX_DER * 8:
            raise MalformedInputError("certificate bundle too large")
        try:
            blocks = list(pem.unarmor(data, multiple=True))
        except ValueError as exc:
            raise MalformedInputError("certificate bundle: broken PEM armour") from exc
        return [
            parse_der(x509.Certificate, der, "certificate")
            for kind, _, der in blocks
            if kind in ("CERTIFICATE", "X509 CERTIFICATE")
        ]
    return [load_certificate(data)]


def to_pem(value: core.Asn1Value, kind: str = "CERTIFICATE") -> bytes:
    return bytes(pem.armor(kind, value.dump()))


def verify_issued_by(cert: x509.Certificate, issuer_public_key: keys.PublicKeyInfo) -> None:
    """Check a certificate's signature with the issuer's key (any registered algorithm)."""
    verify(
        issuer_public_key,
        cert["signature_algorithm"],
        cert["signature_value"].native,
        cert["tbs_certificate"].dump(),
    )
