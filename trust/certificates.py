"""One certificate builder for every algorithm, on asn1crypto, signed through the key protocol.

``cryptography`` cannot sign with SM2, so we assemble the TBSCertificate ourselves and let the
key handle sign its DER; RSA and ECDSA take the same path, which keeps one builder for all.
The builder is immutable (each setter returns a new builder; setting a field twice is an error).
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from asn1crypto import core, keys, pem, x509

from trust import (
    asn1_gm,  # noqa: F401  (SM2 OIDs known to asn1crypto)
    der,
)
from trust.algorithms import SignatureAlgorithm, check_key_matches, verify_signed
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
DN_SHORT_NAMES = {name: short for short, name in _DN_KEYS.items()}
"""asn1crypto attribute names -> the short names people read (C, O, CN, ...)."""

# RFC 5280 Appendix A upper bounds (characters); a subject beyond them is refused, not issued.
_DN_BOUNDS = {
    "country_name": 2,
    "state_or_province_name": 128,
    "locality_name": 128,
    "organization_name": 64,
    "organizational_unit_name": 64,
    "common_name": 64,
    "serial_number": 64,
    "email_address": 255,
    "user_id": 256,
}


def make_name(attributes: Mapping[str, str] | str) -> x509.Name:
    """A Name from ``{"C": "CN", "O": "...", "CN": "..."}``, ``"C=CN,O=...,CN=..."`` or the
    OpenSSL form ``"/C=CN/O=.../CN=..."``.

    Values are UTF8String (Chinese names as they are), the country PrintableString. Within a
    string form, escape the separator with a backslash; an attribute may appear once.
    """
    if isinstance(attributes, str):
        separator = "/" if attributes.startswith("/") else ","
        pairs: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in re.split(rf"(?<!\\){separator}", attributes))):
            k, eq, v = part.partition("=")
            if not eq:
                raise MalformedInputError(f"not a distinguished name part: {part!r}")
            if k.strip() in pairs:
                raise MalformedInputError(f"name attribute {k.strip()!r} is given twice")
            pairs[k.strip()] = v.strip().replace("\\" + separator, separator)
        attributes = pairs
    mapped: dict[str, str] = {}
    for key, value in attributes.items():
        name = _DN_KEYS.get(key.upper(), key)
        if name not in _DN_BOUNDS:
            raise MalformedInputError(f"unsupported name attribute {key!r}")
        mapped[name] = value
    if not mapped:
        raise MalformedInputError("a distinguished name needs at least one attribute")
    # Re-load the encoding: a parsed Name dumps its stored bytes, a built one re-encodes each time.
    name_ = x509.Name.load(x509.Name.build(mapped, use_printable=False).dump())
    check_subject(name_)
    return name_


def check_subject(name: x509.Name) -> None:
    """Refuse names we would not certify: unknown attribute types, empty or over-long values."""
    try:
        for rdn in name.chosen:
            for atv in rdn:
                kind = atv["type"].native
                value = atv["value"].native
                bound = _DN_BOUNDS.get(kind)
                if bound is None:
                    raise MalformedInputError(f"unsupported name attribute {kind!r}")
                if not isinstance(value, str) or not value.strip() or len(value) > bound:
                    raise MalformedInputError(
                        f"name attribute {DN_SHORT_NAMES[kind]} must be 1-{bound} characters"
                    )
    except (ValueError, TypeError) as exc:
        raise MalformedInputError(f"unreadable name: {exc}") from exc


def key_identifier(public_key_info: keys.PublicKeyInfo) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits."""
    return hashlib.sha1(public_key_info["public_key"].contents[1:], usedforsecurity=False).digest()


def parse_serial(text: str) -> int:
    """A serial number as people and OpenSSL write it: hex, optionally 0x-prefixed or colon-separated."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    if not cleaned or len(cleaned) > 40 or any(c not in "0123456789abcdef" for c in cleaned):
        raise MalformedInputError(f"serial numbers are up to 20 bytes of hexadecimal, not {text!r}")
    serial = int(cleaned, 16)
    if serial <= 0:
        raise MalformedInputError("serial numbers are positive")
    return serial


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
    return x509.Time.load(x509_time_der(moment))


def x509_time_der(moment: datetime) -> bytes:
    moment = _utc(moment)
    if 1950 <= moment.year < 2050:
        return der.tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return der.tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


_SKI_OID = bytes.fromhex("0603551d0e")  # 2.5.29.14


@functools.cache
def _identifier_der(alg: SignatureAlgorithm) -> bytes:
    return bytes(alg.algorithm_identifier().dump())


@dataclass(frozen=True)
class CertificateBuilder:
    """Immutable X.509 v3 certificate builder.

    Each part is DER-encoded once when set, so a builder with the issuer and the profile's
    constant extensions can be kept as a template and finished cheaply per certificate.
    """

    _subject: bytes | None = None
    _issuer: bytes | None = None
    _public_key: bytes | None = None
    _serial: int | None = None
    _not_before: datetime | None = None
    _not_after: datetime | None = None
    _extensions: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)

    def _set(self, attr: str, value: Any) -> CertificateBuilder:
        if getattr(self, attr) is not None:
            raise BuilderError(f"{attr.lstrip('_')} is already set")
        return replace(self, **{attr: value})

    def subject_name(self, name: x509.Name) -> CertificateBuilder:
        return self._set("_subject", bytes(name.dump()))

    def issuer_name(self, name: x509.Name) -> CertificateBuilder:
        return self._set("_issuer", bytes(name.dump()))

    def public_key(self, public_key_info: keys.PublicKeyInfo) -> CertificateBuilder:
        return self._set("_public_key", bytes(public_key_info.dump()))

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
        if any(existing == name for existing, _ in self._extensions):
            raise BuilderError(f"extension {name} is already present")
        encoded = x509.Extension(
            {"extn_id": name, "critical": critical, "extn_value": value}
        ).dump()
        return replace(self, _extensions=(*self._extensions, (name, bytes(encoded))))

    def add_encoded_extension(
        self, oid: str, value_der: bytes, *, critical: bool = False
    ) -> CertificateBuilder:
        """Add an extension whose value is already DER (for types asn1crypto mis-wraps)."""
        if any(existing == oid for existing, _ in self._extensions):
            raise BuilderError(f"extension {oid} is already present")
        encoded = der.sequence(
            core.ObjectIdentifier(oid).dump(),
            core.Boolean(True).dump() if critical else b"",
            der.tlv(0x04, value_der),
        )
        return replace(self, _extensions=(*self._extensions, (oid, encoded)))

    def add_key_identifier(self, public_key_info: keys.PublicKeyInfo) -> CertificateBuilder:
        """The subjectKeyIdentifier extension, encoded directly (it is on every certificate's hot path)."""
        if any(existing == "key_identifier" for existing, _ in self._extensions):
            raise BuilderError("extension key_identifier is already present")
        encoded = der.sequence(
            _SKI_OID, der.tlv(0x04, der.tlv(0x04, key_identifier(public_key_info)))
        )
        return replace(self, _extensions=(*self._extensions, ("key_identifier", encoded)))

    def tbs_der(self, algorithm: SignatureAlgorithm) -> bytes:
        missing = [
            n
            for n in ("_subject", "_issuer", "_public_key", "_serial", "_not_before", "_not_after")
            if getattr(self, n) is None
        ]
        if missing:
            raise BuilderError("missing " + ", ".join(m.lstrip("_") for m in missing))
        assert self._subject and self._issuer and self._public_key and self._serial
        assert self._not_before is not None and self._not_after is not None
        if self._not_after <= self._not_before:
            raise BuilderError("notAfter must be later than notBefore")
        extensions = [der for _, der in self._extensions]
        return der.sequence(
            der.explicit(0, der.integer(2)),
            der.integer(self._serial),
            _identifier_der(algorithm),
            self._issuer,
            der.sequence(x509_time_der(self._not_before), x509_time_der(self._not_after)),
            self._subject,
            self._public_key,
            der.explicit(3, der.sequence(*extensions)) if extensions else b"",
        )

    def tbs(self, algorithm: SignatureAlgorithm) -> x509.TbsCertificate:
        return x509.TbsCertificate.load(self.tbs_der(algorithm))

    def sign(
        self,
        key: KeyHandle,
        algorithm: SignatureAlgorithm | None = None,
        *,
        sm2_id: bytes = DEFAULT_ID,
    ) -> x509.Certificate:
        alg = algorithm or default_algorithm(key)
        check_key_matches(alg, key.public_key_info)
        tbs = self.tbs_der(alg)
        signature = key.sign(tbs, alg, sm2_id=sm2_id)
        return x509.Certificate.load(
            der.sequence(tbs, _identifier_der(alg), der.bit_string(signature))
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
    verify_signed(
        issuer_public_key,
        cert["signature_algorithm"],
        cert["signature_value"],
        cert["tbs_certificate"].dump(),
    )
