"""Electronic seals (电子印章, GB/T 38540 SESeal): make, parse and verify; v1, v4 and v5.

A seal is the maker's (制章者) signed statement that the listed signers (签章者) may sign with
this name and picture during its validity period. We make v4 (GB/T 38540-2020) and v5
(GM/T 0031-2025, with a timestamp over the maker's signature) seals, and read GM/T 0031-2014
("v1") seals too, because documents signed with them are still presented for verification.

Signatures are checked over the ORIGINAL byte spans of what was signed, never a re-encoding:
real seals contain non-DER encodings (an explicit ``critical FALSE``) that a re-encoding would
change. SM2 uses the default distinguishing ID (standards.md §1.4).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from asn1crypto import algos, core, keys, x509

from signing import ses_asn1 as asn
from signing.context import Timestamper, VerifyContext
from signing.report import Check, Report, check, combine, noting, report
from trust import asn1_gm
from trust.algorithms import SignatureAlgorithm, from_identifier, key_type_of
from trust.certificates import parse_der
from trust.clock import Clock, system_clock
from trust.der import bit_string, generalized_time, sequence
from trust.errors import (
    ConfigurationError,
    EtrustError,
    ForbiddenError,
    InputTooLargeError,
    InvalidSignatureError,
    MalformedInputError,
    UnsupportedAlgorithmError,
    WeakKeyError,
)
from trust.keys import KeyHandle, default_algorithm
from trust.sm2 import DEFAULT_ID, Sm2PublicKey, raw_signature, z_value

__all__ = [
    "MAX_SEAL_BYTES",
    "Findings",
    "ParsedSeal",
    "SealPicture",
    "SealSpec",
    "check_seal",
    "check_seal_signature",
    "data_hash_name",
    "digest_match",
    "make_seal",
    "parse_seal",
    "seal_details",
    "verify_seal",
    "verify_span",
]

log = logging.getLogger(__name__)

MAX_SEAL_BYTES = 4 << 20
"""Largest seal we parse or make (4 MiB): pictures may be whole OFD packages, but not more."""

CHINA_TIME = timezone(timedelta(hours=8), "CST")
"""Times written without a zone ("2020-10-12 11:14:03", GeneralizedTime without Z) are read as
China Standard Time: every producer of these formats is in China [L]."""

GENERATIONS = {1: "GM/T 0031-2014", 4: "GB/T 38540-2020", 5: "GM/T 0031-2025"}

_SIGNER_USAGE = {"digital_signature"}

# CertDigestObj.type names seen or plausible -> hashlib names; unknown names try both.
_DIGEST_NAMES = {
    "sm3": "sm3",
    asn1_gm.SM3_OID: "sm3",
    "sha256": "sha256",
    "sha-256": "sha256",
    "2.16.840.1.101.3.4.2.1": "sha256",
}
_DIGEST_TYPE_TEXT = {"sm3": "SM3", "sha256": "SHA256"}


@dataclass(frozen=True)
class SealPicture:
    """The seal's appearance: an image or (type "ofd") a whole OFD package; size in mm."""

    type: str
    data: bytes = field(repr=False)
    width_mm: int
    height_mm: int


@dataclass(frozen=True)
class SealSpec:
    """What a seal states. ``cert_list_type`` 2 lists certificate digests instead of certificates
    (SM3 when the maker key is SM2, SHA-256 otherwise)."""

    es_id: str
    name: str
    seal_type: int
    signer_certs: Sequence[x509.Certificate]
    valid_from: datetime
    valid_to: datetime
    picture: SealPicture
    vendor_id: str = "ETRUST"
    cert_list_type: int = 1
    created: datetime | None = None


@dataclass(frozen=True)
class ParsedSeal:
    """A seal as read, with the exact bytes its maker signed."""

    version: int  # 1, 4 or 5 (the generation, told by structure)
    der: bytes = field(repr=False)
    es_id: str
    name: str
    seal_type: int
    vendor_id: str
    cert_list_type: int
    signer_certs: tuple[bytes, ...] = field(repr=False)  # DER certificates, or digests (type 2)
    digest_type: str | None  # CertDigestObj.type as written (type 2 only)
    created: datetime
    valid_from: datetime
    valid_to: datetime
    picture: SealPicture
    maker_cert_der: bytes = field(repr=False)
    algorithm_oid: str
    signed_bytes: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    timestamp: bytes | None = field(repr=False)
    header_version: int = 0  # as written: v1 seals say 1 (ofdrw) or 2 (some vendors)
    der_sha256: bytes = field(default=b"", repr=False)  # the seal's identity for caches
    extensions: tuple[tuple[str, bool, bytes], ...] = ()  # (extnID, critical, extnValue)

    def signer_match(self, signer_cert: x509.Certificate | bytes) -> str | None:
        """How ``signer_cert`` (or its DER) is listed: "certificate", the digest that matched
        (e.g. "sm3", "sm3-with-z"), or None when the seal does not allow it."""
        cert_der = signer_cert if isinstance(signer_cert, bytes) else bytes(signer_cert.dump())
        if self.cert_list_type == 1:
            listed = any(hmac.compare_digest(entry, cert_der) for entry in self.signer_certs)
            return "certificate" if listed else None
        names = _digest_hashes(self.digest_type or "")
        for entry in self.signer_certs:
            matched = digest_match(entry, cert_der, names, public_key_of(cert_der))
            if matched is not None:
                return matched
        return None

    def allows(self, signer_cert: x509.Certificate | bytes) -> bool:
        """Whether the seal lists ``signer_cert`` (type 1: bytes; type 2: plain, then Z digest)."""
        return self.signer_match(signer_cert) is not None

    def valid_at(self, moment: datetime) -> bool:
        return self.valid_from <= moment <= self.valid_to

    @property
    def maker_cert(self) -> x509.Certificate:
        """The maker (制章者) certificate, a fresh object each time: parsed seals are shared."""
        return x509.Certificate.load(self.maker_cert_der)


# --- shared helpers --------------------------------------------------------------------------


def data_hash_name(key_type: str) -> str:
    """The hash of dataHash (and of type-2 certificate lists): SM3 beside SM2, else SHA-256."""
    return "sm3" if key_type == "sm2" else "sha256"


def _digest_hashes(type_text: str) -> tuple[str, ...]:
    name = _DIGEST_NAMES.get(type_text.strip().lower())
    return (name,) if name else ("sm3", "sha256")


def digest_match(
    expected: bytes, data: bytes, hash_names: Sequence[str], public_key_info: Any
) -> str | None:
    """Which hash of ``data`` equals ``expected``: each plain hash first, then, for SM3 with an
    SM2 key, SM3(Z || data) as some vendors compute it (standards.md §1.4). None if none does."""
    for name in hash_names:
        if hmac.compare_digest(hashlib.new(name, data).digest(), expected):
            return name
    if "sm3" in hash_names and _is_sm2(public_key_info):
        x, y = Sm2PublicKey(public_key_info.dump()).point
        if hmac.compare_digest(hashlib.new("sm3", z_value(x, y) + data).digest(), expected):
            return "sm3-with-z"
    return None


def _is_sm2(public_key_info: Any) -> bool:
    try:
        return key_type_of(public_key_info) == "sm2"
    except EtrustError:
        return False


def check_size(data: bytes, limit: int, what: str) -> bytes:
    """Bytes no longer than ``limit``, refused before any parsing."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInputError(f"{what}: expected bytes")
    if len(data) > limit:
        raise InputTooLargeError(f"{what}: {len(data)} bytes, more than the {limit} accepted")
    return bytes(data)


@contextmanager
def malformed(what: str) -> Iterator[None]:
    """Turn whatever a parser raises on hostile bytes into :class:`MalformedInputError`.

    asn1crypto parses lazily and fails with ValueError, TypeError, KeyError or worse deep
    inside; callers are promised one exception type for bad input.
    """
    try:
        yield
    except MalformedInputError:
        raise
    except EtrustError as exc:
        raise MalformedInputError(f"{what}: {exc.message}") from exc
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MalformedInputError(f"{what}: malformed ({first})") from exc


def aware(moment: datetime) -> datetime:
    """A time read from a seal, in UTC; zone-less times are China Standard Time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TIME)
    return moment.astimezone(UTC)


def utc_arg(moment: datetime, what: str) -> datetime:
    """A time given to the API: it must carry a zone (a naive one is a programming error)."""
    if moment.utcoffset() is None:
        raise MalformedInputError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)


def load_cert(data: bytes, what: str) -> x509.Certificate:
    """A certificate from DER, checked to parse fully; a fresh (lazily parsed) object each time.

    The full parse is the costly part (milliseconds for Chinese names) and the same maker and
    signer certificates come with every seal and signature, so only the check is remembered.
    """
    return x509.Certificate.load(certificate_der(data, what))


def certificate_der(data: bytes, what: str) -> bytes:
    """``data`` once it is known to parse fully as a certificate (MalformedInputError if not)."""
    der = bytes(data)
    _check_certificate_der(der, what)
    return der


def public_key_of(cert: x509.Certificate | bytes) -> keys.PublicKeyInfo:
    """The certificate's public key, parsed once per certificate (shared: read, never change)."""
    return _public_key(cert if isinstance(cert, bytes) else bytes(cert.dump()))


@functools.lru_cache(maxsize=1024)
def _public_key(der: bytes) -> keys.PublicKeyInfo:
    public: keys.PublicKeyInfo = x509.Certificate.load(der).public_key
    with contextlib.suppress(EtrustError, ValueError, TypeError):
        # Parse what verification reads before any thread shares the object; an unsupported
        # or broken key raises where it is used, with that check's own error.
        key_type_of(public)
    return public


def subject_text(cert: x509.Certificate | bytes) -> str:
    """The subject as people read it (for reports); remembered per certificate."""
    return _subject_text(cert if isinstance(cert, bytes) else bytes(cert.dump()))


@functools.lru_cache(maxsize=1024)
def _subject_text(der: bytes) -> str:
    text: str = x509.Certificate.load(der).subject.human_friendly
    return text


@functools.lru_cache(maxsize=1024)
def _check_certificate_der(data: bytes, what: str) -> None:
    parse_der(x509.Certificate, data, what)  # raises (and caches nothing) when malformed


@functools.lru_cache(maxsize=64)
def signature_algorithm(oid: str) -> SignatureAlgorithm:
    """The registry entry for a bare signature OID (seals carry no AlgorithmIdentifier).

    Remembered per OID (a handful exist); unknown ones raise and are not remembered."""
    return from_identifier(algos.SignedDigestAlgorithm({"algorithm": oid}))


def verify_span(
    public_key_info: Any,
    algorithm_oid: str,
    signature: bytes,
    data: bytes,
    *,
    raw_rs: bool = False,
) -> SignatureAlgorithm:
    """Verify ``signature`` over ``data``; with ``raw_rs`` a 64-byte (EC)DSA value is read as
    r || s (some v1 producers), otherwise DER. Raises InvalidSignatureError and the like."""
    alg = signature_algorithm(algorithm_oid)
    if raw_rs and len(signature) == 64 and alg.key_type in ("sm2", "ec-p256"):
        try:
            signature = raw_signature(signature[:32], signature[32:])
        except MalformedInputError as exc:
            raise InvalidSignatureError(f"raw r||s signature out of range: {exc.message}") from exc
    alg.verify(public_key_info, signature, data, sm2_id=DEFAULT_ID)
    return alg


_VERIFIED_SEALS: OrderedDict[bytes, SignatureAlgorithm] = OrderedDict()
_VERIFIED_SEALS_LOCK = threading.Lock()
_VERIFIED_SEALS_MAX = 1024


def check_seal_signature(seal: ParsedSeal) -> SignatureAlgorithm:
    """The maker's signature over the seal's signed bytes (raises when it does not verify).

    A seal is verified once per process: every signature of a department embeds the same seal,
    byte for byte, and its verification is a full SM2 or RSA check. Only successes are kept,
    keyed by the SHA-256 of the whole seal (so any changed byte is a different seal).
    """
    digest = seal.der_sha256 or hashlib.sha256(seal.der).digest()
    with _VERIFIED_SEALS_LOCK:
        known = _VERIFIED_SEALS.get(digest)
        if known is not None:
            _VERIFIED_SEALS.move_to_end(digest)
            return known
    alg = verify_span(
        seal.maker_cert.public_key,
        seal.algorithm_oid,
        seal.signature,
        seal.signed_bytes,
        raw_rs=seal.version == 1,
    )
    with _VERIFIED_SEALS_LOCK:
        _VERIFIED_SEALS[digest] = alg
        if len(_VERIFIED_SEALS) > _VERIFIED_SEALS_MAX:
            _VERIFIED_SEALS.popitem(last=False)
    return alg


def check_key_pair(key: KeyHandle, cert: x509.Certificate, role: str) -> None:
    if bytes(key.public_key_info.dump()) != bytes(cert.public_key.dump()):
        raise ConfigurationError(f"the {role} key is not the key of the {role} certificate")


def check_cert_period(cert: x509.Certificate, moment: datetime, role: str) -> None:
    """Refuse to sign with a certificate outside its validity period (GB/T 38540 §1.6 b)."""
    not_before = cert["tbs_certificate"]["validity"]["not_before"].native
    not_after = cert["tbs_certificate"]["validity"]["not_after"].native
    if not not_before <= moment <= not_after:
        raise ForbiddenError(
            f"the {role} certificate is valid from {not_before:%Y-%m-%d %H:%M:%S}Z to "
            f"{not_after:%Y-%m-%d %H:%M:%S}Z, not at {moment:%Y-%m-%d %H:%M:%S}Z"
        )


# --- parsing ---------------------------------------------------------------------------------


def _generation(elements: int, header_version: int) -> int:
    """The generation from the structure, refusing a header that claims another (§1.8)."""
    if elements == 2:
        if header_version in (4, 5):
            raise MalformedInputError(
                f"the SESeal has the two-element GM/T 0031-2014 (v1) layout, but its header "
                f"says version {header_version}"
            )
        return 1
    if elements in (4, 5):
        if header_version == 5:
            return 5
        if header_version == 4 and elements == 4:
            return 4
        if header_version == 4:
            raise MalformedInputError(
                "the SESeal carries a timestamp, which only GM/T 0031-2025 (v5) seals have, "
                "but its header says version 4"
            )
        raise MalformedInputError(
            f"the SESeal has the {elements}-element GB/T 38540 layout, but its header says "
            f"version {header_version}"
        )
    raise MalformedInputError(f"an SESeal has 2 (v1), 4 (v4) or 4-5 (v5) elements, not {elements}")


def parse_seal(der: bytes) -> ParsedSeal:
    """Read a seal of any generation; :class:`MalformedInputError` for anything malformed.

    Parsed seals are remembered by their bytes: every signature of a department embeds the
    same seal. :class:`ParsedSeal` is immutable and its certificate is handed out afresh.
    """
    data = check_size(der, MAX_SEAL_BYTES, "seal")
    return _parse_seal_cached(bytes(data))


@functools.lru_cache(maxsize=256)
def _parse_seal_cached(data: bytes) -> ParsedSeal:
    with malformed("seal"):
        return _parse_seal(data)


def _parse_seal(data: bytes) -> ParsedSeal:
    outer = asn.Elements.load(data, strict=True)
    if len(outer) < 1:
        raise MalformedInputError("the SESeal is empty")
    header = outer[0].parse(asn.Elements)[0].parse(asn.SesHeader)
    header_version = int(header["version"].native)
    version = _generation(len(outer), header_version)
    if header["id"].native != "ES":
        raise MalformedInputError(f"the seal header id is {header['id'].native!r}, not 'ES'")

    timestamp: bytes | None = None
    digest_type: str | None = None
    if version == 1:
        seal_v1 = asn.SESealV1.load(data, strict=True)
        asn.check_shape(seal_v1, "SESeal")
        info = seal_v1["e_seal_info"]
        sign_info = seal_v1["sign_info"]
        maker_der = bytes(sign_info["cert"].native)
        algorithm_oid = sign_info["signature_algorithm"].dotted
        signature = asn.bit_string_octets(sign_info["sign_data"].contents, "signData")
        # The maker signs SEQUENCE{sealInfo, cert, signatureAlgorithm} (standards.md §1.3).
        signed = sequence(
            bytes(info.dump()),
            bytes(sign_info["cert"].dump()),
            bytes(sign_info["signature_algorithm"].dump()),
        )
        prop = info["property"]
        cert_list_type = 1
        entries = tuple(bytes(e) for e in prop["cert_list"].native)
    else:
        seal_v4 = asn.SESealV4.load(data, strict=True)
        asn.check_shape(seal_v4, "SESeal")
        info = seal_v4["e_seal_info"]
        maker_der = bytes(seal_v4["cert"].native)
        algorithm_oid = seal_v4["sign_alg_id"].dotted
        signature = asn.bit_string_octets(seal_v4["signed_value"].contents, "signedValue")
        signed = bytes(info.dump())
        if not isinstance(seal_v4["time_stamp"], core.Void):
            timestamp = asn.tagged_bit_string(seal_v4["time_stamp"], "seal timeStamp")
        prop = info["property"]
        cert_list_type = int(prop["cert_list_type"].native)
        entries, digest_type = _cert_list(cert_list_type, prop["cert_list"])

    picture = info["picture"]
    extensions: tuple[tuple[str, bool, bytes], ...] = ()
    if not isinstance(info["ext_datas"], core.Void):
        extensions = tuple(
            (e["extn_id"].dotted, bool(e["critical"].native), bytes(e["extn_value"].native))
            for e in asn.ext_datas(info["ext_datas"], "seal extDatas")
        )
    return ParsedSeal(
        der_sha256=hashlib.sha256(data).digest(),
        version=version,
        der=data,
        es_id=str(info["es_id"].native),
        name=str(prop["name"].native),
        seal_type=int(prop["type"].native),
        vendor_id=str(header["vid"].native),
        cert_list_type=cert_list_type,
        signer_certs=entries,
        digest_type=digest_type,
        created=aware(prop["create_date"].native),
        valid_from=aware(prop["valid_start"].native),
        valid_to=aware(prop["valid_end"].native),
        picture=SealPicture(
            str(picture["type"].native),
            bytes(picture["data"].native),
            int(picture["width"].native),
            int(picture["height"].native),
        ),
        maker_cert_der=bytes(load_cert(maker_der, "seal maker certificate").dump()),
        algorithm_oid=algorithm_oid,
        signed_bytes=signed,
        signature=signature,
        timestamp=timestamp,
        header_version=header_version,
        extensions=extensions,
    )


def _cert_list(cert_list_type: int, value: core.Any) -> tuple[tuple[bytes, ...], str | None]:
    if cert_list_type == 1:
        certs = value.parse(asn.CertInfoList)
        asn.check_shape(certs, "certList")
        return tuple(bytes(c) for c in certs.native), None
    if cert_list_type == 2:
        digests = value.parse(asn.CertDigestList)
        asn.check_shape(digests, "certDigestList")
        types = {str(d["type"].native) for d in digests}
        if len(types) > 1:
            raise MalformedInputError(f"the certDigestList mixes digest types {sorted(types)}")
        return tuple(bytes(d["value"].native) for d in digests), (types.pop() if types else None)
    raise MalformedInputError(f"certListType is 1 or 2, not {cert_list_type}")


# --- making ----------------------------------------------------------------------------------


def _ascii(text: str, what: str, *, limit: int = 256) -> str:
    if not isinstance(text, str) or not text or not text.isascii() or len(text) > limit:
        raise MalformedInputError(f"{what} must be 1-{limit} ASCII characters")
    return text


def _check_spec(spec: SealSpec) -> tuple[datetime, datetime]:
    _ascii(spec.es_id, "the seal code (esID)")
    _ascii(spec.vendor_id, "the vendor id")
    _ascii(spec.picture.type, "the picture type", limit=16)
    if not spec.name.strip():
        raise MalformedInputError("the seal needs a name")
    if spec.seal_type < 0:
        raise MalformedInputError("the seal type is a non-negative integer")
    if spec.cert_list_type not in (1, 2):
        raise MalformedInputError("certListType is 1 (certificates) or 2 (digests)")
    if not spec.signer_certs:
        raise MalformedInputError("a seal lists at least one signer certificate")
    if not spec.picture.data or spec.picture.width_mm <= 0 or spec.picture.height_mm <= 0:
        raise MalformedInputError("the seal picture needs data and a positive size in mm")
    start = utc_arg(spec.valid_from, "valid_from").replace(microsecond=0)
    end = utc_arg(spec.valid_to, "valid_to").replace(microsecond=0)
    if end <= start:
        raise MalformedInputError("the seal's validity must end after it starts")
    return start, end


def _time(moment: datetime) -> asn.SesTime:
    value: asn.SesTime = asn.SesTime.load(generalized_time(moment))
    return value


def _seal_info(
    spec: SealSpec, version: int, created: datetime, start: datetime, end: datetime, digest: str
) -> bytes:
    if spec.cert_list_type == 1:
        cert_list: core.Asn1Value = asn.CertInfoList([bytes(c.dump()) for c in spec.signer_certs])
    else:
        cert_list = asn.CertDigestList(
            [
                {"type": _DIGEST_TYPE_TEXT[digest], "value": hashlib.new(digest, c.dump()).digest()}
                for c in spec.signer_certs
            ]
        )
    info = asn.SesSealInfoV4(
        {
            "header": {"id": "ES", "version": version, "vid": spec.vendor_id},
            "es_id": spec.es_id,
            "property": {
                "type": spec.seal_type,
                "name": spec.name,
                "cert_list_type": spec.cert_list_type,
                "cert_list": cert_list,
                "create_date": _time(created),
                "valid_start": _time(start),
                "valid_end": _time(end),
            },
            "picture": {
                "type": spec.picture.type,
                "data": spec.picture.data,
                "width": spec.picture.width_mm,
                "height": spec.picture.height_mm,
            },
        }
    )
    return bytes(info.dump())


def make_seal(
    spec: SealSpec,
    maker_key: KeyHandle,
    maker_cert: x509.Certificate,
    *,
    version: int = 4,
    timestamper: Timestamper | None = None,
    clock: Clock = system_clock,
) -> bytes:
    """A DER SESeal signed by the maker: v4 (GB/T 38540) or v5 (GM/T 0031-2025, which needs
    ``timestamper`` for the timestamp over the maker's signature; v4 has no place for one).

    v1 seals are read, never made. Raises MalformedInputError for a bad spec, ForbiddenError
    when the maker certificate may not sign now, ConfigurationError for a key that is not the
    certificate's or a v5 seal without a timestamper.
    """
    if version not in (4, 5):
        raise MalformedInputError(
            f"seals are made as version 4 (GB/T 38540-2020) or 5 (GM/T 0031-2025), not {version}"
        )
    if version == 5 and timestamper is None:
        raise ConfigurationError("a v5 seal needs a timestamping service")
    start, end = _check_spec(spec)
    created = utc_arg(spec.created or clock(), "created").replace(microsecond=0)
    if created > end:
        raise MalformedInputError("the seal would be created after its validity ends")
    check_key_pair(maker_key, maker_cert, "seal maker")
    check_cert_period(maker_cert, created, "seal maker")
    usage = maker_cert.key_usage_value
    if usage is not None and "digital_signature" not in usage.native:
        raise ForbiddenError("the seal maker certificate does not allow digital signatures")

    alg = default_algorithm(maker_key)
    info = _seal_info(spec, version, created, start, end, data_hash_name(maker_key.key_type))
    signature = maker_key.sign(info, alg)
    parts = [
        info,
        core.OctetString(bytes(maker_cert.dump())).dump(),
        core.ObjectIdentifier(alg.oid).dump(),
        bit_string(signature),
    ]
    if version == 5:
        assert timestamper is not None
        parts.append(asn.explicit_bit_string(timestamper.timestamp(signature, alg.hash_name)))
    out = sequence(*parts)
    if len(out) > MAX_SEAL_BYTES:
        raise InputTooLargeError(f"the seal would be {len(out)} bytes; at most {MAX_SEAL_BYTES}")
    return out


# --- verification ----------------------------------------------------------------------------

# Integrity first, then what the seal allows, then trust: a forged signature is FAILED for its
# forgery even when the chain is also unknown, expired or revoked.
_PRIORITY = {
    "FORMAT_FAILURE": 0,
    "SIG_CRYPTO_FAILURE": 0,
    "SEAL_INVALID": 0,
    "HASH_FAILURE": 0,
    "TIMESTAMP_INVALID": 0,
    "SIGNER_NOT_ALLOWED": 1,
    "SEAL_EXPIRED": 1,
    "CRYPTO_CONSTRAINTS_FAILURE": 1,
}


@dataclass
class Findings:
    """The checks of one verification and the problems they found, concluded in one report."""

    checks: list[Check] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, result: str, detail: str, reason: str | None = None) -> None:
        self.record(check(name, result, detail), reason)  # type: ignore[arg-type]

    def record(self, found: Check, reason: str | None) -> None:
        """Keep ``found``; a failed or undecided one counts against the verdict as ``reason``."""
        self.checks.append(found)
        if reason is not None and reason != "OK" and found["result"] in ("failed", "indeterminate"):
            self.problems.append((reason, found["detail"]))

    def signature(
        self, name: str, failure: str, verify: Callable[[], SignatureAlgorithm]
    ) -> SignatureAlgorithm | None:
        """Run ``verify`` and record its outcome; ``failure`` names a signature that is wrong."""
        try:
            alg = verify()
        except InvalidSignatureError as exc:
            self.add(name, "failed", exc.message, failure)
        except (UnsupportedAlgorithmError, WeakKeyError) as exc:
            self.add(name, "indeterminate", exc.message, "CRYPTO_CONSTRAINTS_FAILURE")
        except MalformedInputError as exc:
            self.add(name, "failed", exc.message, "FORMAT_FAILURE")
        else:
            self.add(name, "passed", f"{alg.name} signature verifies")
            return alg
        return None

    def chain(
        self,
        ctx: VerifyContext,
        cert: x509.Certificate | bytes,
        *,
        at: datetime,
        role: str,
        proven: bool = False,
    ) -> None:
        """``proven``: a verified timestamp backs ``at`` (see VerifyContext.validate_certificate)."""
        reason, found, _ = ctx.validate_certificate(
            cert, at=at, role=role, key_usage=_SIGNER_USAGE, proven=proven
        )
        self.record(found, reason)

    def conclude(self, format: str, details: dict[str, Any]) -> Report:
        """One report. Integrity failures decide first. Short of those, a chain that reaches
        no trusted root decides (INDETERMINATE, as in ETSI EN 319 102-1): what an unknown maker
        or signer asserts (the seal's validity, its allowed signers) cannot condemn or clear
        the document, so such findings are named beside the verdict, not as it."""
        ordered = sorted(self.problems, key=lambda p: _PRIORITY.get(p[0], 2))
        unknown = [p for p in ordered if p[0] == "NO_CERTIFICATE_CHAIN_FOUND"]
        if unknown and _PRIORITY.get(ordered[0][0], 2) > 0:
            built = combine(format, [], checks=self.checks, findings=unknown[:1], details=details)
            return noting(built, [p for p in ordered if p[0] != "NO_CERTIFICATE_CHAIN_FOUND"])
        return combine(
            format, [], checks=self.checks, findings=ordered or [("OK", "")], details=details
        )


def _stamp(moment: datetime) -> str:
    """``2026-11-27 08:00:00Z`` (isoformat: several times cheaper than strftime)."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat(" ") + "Z"


def check_seal(
    seal: ParsedSeal,
    ctx: VerifyContext,
    findings: Findings,
    *,
    at: datetime,
    proven: bool = False,
) -> None:
    """GB/T 38540 seal verification (standards.md §1.7-A) at ``at``, into ``findings``;
    ``proven`` when a verified timestamp backs ``at``.

    The maker certificate is judged at ``at`` for v1/v4. For v5 it is judged at createDate, as
    GM/T 0031-2025 asks (a later expiry or revocation does not undo a seal made before it), but
    only when the seal's timestamp verifies and is not earlier: otherwise createDate is merely
    the maker's claim, and a backdated one would hide an expired or revoked certificate.
    """
    findings.signature("seal.signature", "SEAL_INVALID", lambda: check_seal_signature(seal))
    maker_at, maker_proven = at, proven
    if seal.timestamp is None:
        findings.add("seal.timestamp", "skipped", f"the v{seal.version} seal carries no timestamp")
    else:
        info, found = ctx.verify_timestamp(seal.timestamp, data=seal.signature)
        found = check("seal.timestamp", found["result"], found["detail"])
        if info is not None and info.gen_time < seal.created:
            found = check(
                "seal.timestamp",
                "failed",
                f"the seal says it was created at {_stamp(seal.created)}, after its timestamp "
                f"{_stamp(info.gen_time)}",
            )
        findings.record(found, "TIMESTAMP_INVALID" if found["result"] == "failed" else None)
        if seal.version == 5 and found["result"] == "passed":
            maker_at, maker_proven = seal.created, True
    period = f"valid from {_stamp(seal.valid_from)} to {_stamp(seal.valid_to)}"
    if seal.valid_at(at):
        findings.add("seal.validity", "passed", f"{period}; checked at {_stamp(at)}")
    else:
        findings.add(
            "seal.validity",
            "failed",
            f"the seal is {period}, not at {_stamp(at)}",
            "SEAL_EXPIRED",
        )
    findings.chain(ctx, seal.maker_cert_der, at=maker_at, role="seal.maker", proven=maker_proven)


def seal_details(seal: ParsedSeal) -> dict[str, Any]:
    """Facts about a seal for a report's details."""
    return {
        "seal_name": seal.name,
        "es_id": seal.es_id,
        "seal_version": seal.version,
        "seal_standard": GENERATIONS[seal.version],
        "seal_type": seal.seal_type,
        "vendor_id": seal.vendor_id,
        "seal_maker": _subject_text(seal.maker_cert_der),
        "seal_created": seal.created.isoformat(),
        "seal_valid_from": seal.valid_from.isoformat(),
        "seal_valid_to": seal.valid_to.isoformat(),
        "cert_list_type": seal.cert_list_type,
    }


def verify_seal(der: bytes, ctx: VerifyContext, *, at: datetime | None = None) -> Report:
    """Verify a seal on its own (format "esl") at ``at`` (default: the context's now).

    Never raises for a bad seal: malformed input is FAILED (FORMAT_FAILURE), an unexpected
    error INDETERMINATE (INTERNAL, logged). A naive ``at`` is a programming error and raises.
    """
    moment = utc_arg(at, "at") if at is not None else ctx.now()
    try:
        findings = Findings()
        try:
            seal = parse_seal(der)
        except MalformedInputError as exc:
            findings.add("seal.parse", "failed", exc.message, "FORMAT_FAILURE")
            return findings.conclude("esl", {})
        findings.add(
            "seal.parse", "passed", f"a v{seal.version} ({GENERATIONS[seal.version]}) seal"
        )
        check_seal(seal, ctx, findings, at=moment)
        return findings.conclude("esl", {**seal_details(seal), "checked_at": moment.isoformat()})
    except Exception:
        log.exception("seal verification failed unexpectedly")
        return report("esl", "INTERNAL", "the seal verification stopped on an unexpected error")
