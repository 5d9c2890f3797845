"""Electronic signatures with a seal (电子签章, GB/T 38540 SES_Signature): sign, parse, verify.

A signer listed by a seal signs TBS_Sign = {version, the whole seal, time, hash of the
protected original, what it protects}. v4 and v5 keep the signer certificate outside the
signed part and may add a timestamp over the signature; v1 (GM/T 0031-2014, read only) signs
the certificate and algorithm too. Verification follows standards.md §1.7-B and reports every
step; it never raises for a bad signature.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import core, x509

from signing import ses_asn1 as asn
from signing.context import Timestamper, VerifyContext
from signing.report import Report, report
from signing.seal import (
    CHINA_TIME,
    GENERATIONS,
    MAX_SEAL_BYTES,
    Findings,
    ParsedSeal,
    aware,
    certificate_der,
    check_cert_period,
    check_key_pair,
    check_seal,
    check_seal_signature,
    check_size,
    data_hash_name,
    digest_match,
    malformed,
    parse_seal,
    public_key_of,
    seal_details,
    signature_algorithm,
    subject_text,
    utc_arg,
    verify_span,
)
from trust.der import Tlv, bit_string, generalized_time, integer, one_tlv, sequence, tlvs
from trust.errors import (
    ForbiddenError,
    MalformedInputError,
    UnsupportedAlgorithmError,
)
from trust.keys import KeyHandle, default_algorithm

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "ParsedSesSignature",
    "data_hash_name",
    "parse_ses_signature",
    "sign_ses",
    "verify_ses",
]

log = logging.getLogger(__name__)

MAX_SIGNATURE_BYTES = MAX_SEAL_BYTES + (64 << 10)
"""A signature embeds a whole seal; 64 KiB more leaves room for the certificate and timestamp."""

_V1_TIME_FORMATS = ("%Y%m%d%H%M%SZ", "%y%m%d%H%M%SZ", "%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S")


@dataclass(frozen=True)
class ParsedSesSignature:
    """An SES_Signature as read, with the exact bytes its signer signed."""

    version: int  # 1, 4 or 5
    der: bytes = field(repr=False)
    tbs_bytes: bytes = field(repr=False)
    seal: ParsedSeal
    time_info: datetime | None  # None when v1 timeInfo bytes are not a time we can read
    data_hash: bytes
    property_info: str
    signer_cert_der: bytes = field(repr=False)
    algorithm_oid: str
    signature: bytes = field(repr=False)
    timestamp: bytes | None = field(repr=False)

    @property
    def signer_cert(self) -> x509.Certificate:
        """The signer certificate, a fresh object each time (its DER is what is kept)."""
        return x509.Certificate.load(self.signer_cert_der)


# --- signing ---------------------------------------------------------------------------------


def sign_ses(
    seal_der: bytes,
    signer_key: KeyHandle,
    signer_cert: x509.Certificate,
    *,
    data_hash: bytes,
    property_info: str,
    signing_time: datetime | None = None,
    timestamper: Timestamper | None = None,
) -> bytes:
    """A DER SES_Signature over ``data_hash`` (the caller's hash of the protected original,
    :func:`data_hash_name` of the signer's key), of the seal's version (4 or 5).

    Before signing (GB/T 38540 §1.6): the seal must parse (MalformedInputError), its maker
    signature verify (InvalidSignatureError), the seal be valid at the signing time and list
    this signer, whose certificate must be valid then too (ForbiddenError). A key that is not
    the certificate's is a ConfigurationError. ``timestamper`` adds a timestamp over the
    signature value.
    """
    seal = _seal_for_signing(bytes(seal_der))
    moment = utc_arg(signing_time or datetime.now(UTC), "the signing time").replace(microsecond=0)
    if not seal.valid_at(moment):
        raise ForbiddenError(
            f"the seal {seal.name!r} is valid from {seal.valid_from:%Y-%m-%d %H:%M:%S}Z to "
            f"{seal.valid_to:%Y-%m-%d %H:%M:%S}Z, not at {moment:%Y-%m-%d %H:%M:%S}Z"
        )
    check_key_pair(signer_key, signer_cert, "signer")
    if not seal.allows(signer_cert):
        raise ForbiddenError(
            f"the seal {seal.name!r} does not list this signer certificate; if the certificate "
            "was renewed or re-issued, the seal must be re-made with it"
        )
    check_cert_period(signer_cert, moment, "signer")
    hash_name = data_hash_name(signer_key.key_type)
    if not isinstance(data_hash, bytes) or len(data_hash) != hashlib.new(hash_name).digest_size:
        raise MalformedInputError(f"data_hash must be a {hash_name} digest of the original")
    if not property_info or not property_info.isascii():
        raise MalformedInputError("property_info must be ASCII text naming what is protected")

    alg = default_algorithm(signer_key)
    tbs = sequence(
        integer(seal.version),
        seal.der,  # embedded byte for byte
        generalized_time(moment),
        bit_string(data_hash),
        core.IA5String(property_info).dump(),
    )
    signature = signer_key.sign(tbs, alg)
    parts = [
        tbs,
        core.OctetString(bytes(signer_cert.dump())).dump(),
        core.ObjectIdentifier(alg.oid).dump(),
        bit_string(signature),
    ]
    if timestamper is not None:
        parts.append(asn.explicit_bit_string(timestamper.timestamp(signature, alg.hash_name)))
    return sequence(*parts)


@functools.lru_cache(maxsize=256)
def _seal_for_signing(seal_der: bytes) -> ParsedSeal:
    """A seal parsed and its maker signature checked, once per seal: a department signs
    thousands of documents with the same seal, and the check is a full SM2 verification.
    Failures are not cached (lru_cache does not keep exceptions)."""
    seal = parse_seal(seal_der)
    if seal.version == 1:
        raise MalformedInputError(
            "GM/T 0031-2014 (v1) seals are accepted for verification only; re-make the seal "
            "as GB/T 38540 to sign with it"
        )
    check_seal_signature(seal)
    return seal


# --- parsing ---------------------------------------------------------------------------------


def parse_ses_signature(der: bytes) -> ParsedSesSignature:
    """Read an SES_Signature of any generation; :class:`MalformedInputError` for bad input."""
    data = check_size(der, MAX_SIGNATURE_BYTES, "SES signature")
    with malformed("SES signature"):
        fast = _parse_v4_fast(data)
        if fast is not None:
            return fast
        elements = len(asn.Elements.load(data, strict=True))
        if elements == 2:
            return _parse_v1(data)
        if elements in (4, 5):
            return _parse_v4(data)
        raise MalformedInputError(
            f"an SES_Signature has 2 (v1) or 4-5 (v4/v5) elements, not {elements}"
        )


def _embedded_seal(value: core.Any, generations: tuple[int, ...], layout: str) -> ParsedSeal:
    return _embedded_seal_der(asn.raw(value), generations, layout)


def _embedded_seal_der(der: bytes, generations: tuple[int, ...], layout: str) -> ParsedSeal:
    try:
        seal = parse_seal(der)
    except MalformedInputError as exc:
        raise MalformedInputError(f"the embedded seal: {exc.message}") from exc
    if seal.version not in generations:
        raise MalformedInputError(
            f"a {layout} SES_Signature embeds a v{seal.version} ({GENERATIONS[seal.version]}) seal"
        )
    return seal


_SEQUENCE, _INTEGER, _BIT_STRING, _OCTET_STRING, _OID, _IA5, _GENERALIZED_TIME = (
    16, 2, 3, 4, 6, 22, 24,
)  # fmt: skip


def _parse_v4_fast(data: bytes) -> ParsedSesSignature | None:
    """The usual v4/v5 shape read by walking its TLVs, or None for anything else.

    Verification reads thousands of signatures; asn1crypto builds an object per value. Only
    the exact shape GB/T 38540 writes (and we write) is taken here; any variant (a [0]
    extDatas, an OCTET STRING dataHash, an IMPLICIT timestamp, extra elements) returns None and
    goes through :func:`_parse_v4`, which reads every tolerated form and names what is wrong.
    """
    outer = one_tlv(data, "SES signature")
    parts = tlvs(outer.contents, "SES signature", limit=6)
    if not _shape(outer, _SEQUENCE, True) or len(parts) not in (4, 5):
        return None
    tbs, cert, alg, value = parts[:4]
    fields = tlvs(tbs.contents, "TBS_Sign", limit=7)
    kinds = (
        (tbs, _SEQUENCE, True),
        (cert, _OCTET_STRING, False),
        (alg, _OID, False),
        (value, _BIT_STRING, False),
    )
    if len(fields) != 5 or not all(_shape(t, tag, c) for t, tag, c in kinds):
        return None
    version, eseal, time_info, data_hash, property_info = fields
    expected = (
        (version, _INTEGER, False),
        (eseal, _SEQUENCE, True),
        (time_info, _GENERALIZED_TIME, False),
        (data_hash, _BIT_STRING, False),
        (property_info, _IA5, False),
    )
    if not all(_shape(t, tag, c) for t, tag, c in expected) or not property_info.contents.isascii():
        return None
    stamp: bytes | None = None
    if len(parts) == 5:
        tagged = parts[4]
        if (tagged.cls, tagged.constructed, tagged.tag) != (2, True, 0):
            return None
        inner = one_tlv(tagged.contents, "timeStamp")
        if not _shape(inner, _BIT_STRING, False):
            return None
        stamp = asn.bit_string_octets(inner.contents, "timeStamp")
    seal = _embedded_seal_der(eseal.encoded, (4, 5), "GB/T 38540 (v4/v5)")
    number = int.from_bytes(version.contents, "big", signed=True)
    if number != seal.version:
        raise MalformedInputError(
            f"TBS_Sign says version {number}, but the embedded seal is version {seal.version}"
        )
    return ParsedSesSignature(
        version=seal.version,
        der=data,
        tbs_bytes=tbs.encoded,
        seal=seal,
        time_info=_generalized_time(time_info),
        data_hash=asn.bit_string_octets(data_hash.contents, "dataHash"),
        property_info=property_info.contents.decode("ascii"),
        signer_cert_der=certificate_der(cert.contents, "signer certificate"),
        algorithm_oid=_dotted(alg.encoded),
        signature=asn.bit_string_octets(value.contents, "signature"),
        timestamp=stamp,
    )


def _generalized_time(item: Tlv) -> datetime:
    """``YYYYMMDDHHMMSSZ`` read directly (what GB/T 38540 signatures carry); other forms of
    GeneralizedTime through asn1crypto."""
    text = item.contents
    if len(text) == 15 and text.endswith(b"Z") and text[:14].isdigit():
        try:
            return datetime(
                int(text[0:4]), int(text[4:6]), int(text[6:8]),
                int(text[8:10]), int(text[10:12]), int(text[12:14]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError as exc:
            raise MalformedInputError(f"timeInfo: not a valid time ({exc})") from exc
    return aware(core.GeneralizedTime.load(item.encoded, strict=True).native)


@functools.lru_cache(maxsize=64)
def _dotted(encoded: bytes) -> str:
    """An OBJECT IDENTIFIER's dotted form, remembered (signatures carry a handful of OIDs)."""
    return str(core.ObjectIdentifier.load(encoded, strict=True).dotted)


def _shape(item: Tlv, tag: int, constructed: bool) -> bool:
    """A universal value of this tag and form (definite length: our TLV walk checked that)."""
    return (item.cls, item.tag, item.constructed) == (0, tag, constructed)


def _parse_v1(data: bytes) -> ParsedSesSignature:
    parsed = asn.SESSignatureV1.load(data, strict=True)
    asn.check_shape(parsed, "SES_Signature")
    tbs = parsed["to_sign"]
    seal = _embedded_seal(tbs["eseal"], (1,), "two-element GM/T 0031-2014 (v1)")
    return ParsedSesSignature(
        version=1,
        der=data,
        tbs_bytes=bytes(tbs.dump()),
        seal=seal,
        time_info=_v1_time(asn.octets(tbs["time_info"], "timeInfo")),
        data_hash=asn.octets(tbs["data_hash"], "dataHash"),
        property_info=str(tbs["property_info"].native),
        signer_cert_der=certificate_der(bytes(tbs["cert"].native), "signer certificate"),
        algorithm_oid=tbs["signature_algorithm"].dotted,
        signature=asn.bit_string_octets(parsed["signature"].contents, "signature"),
        timestamp=None,
    )


def _parse_v4(data: bytes) -> ParsedSesSignature:
    parsed = asn.SESSignatureV4.load(data, strict=True)
    asn.check_shape(parsed, "SES_Signature")
    tbs = parsed["to_sign"]
    seal = _embedded_seal(tbs["eseal"], (4, 5), "GB/T 38540 (v4/v5)")
    version = int(tbs["version"].native)
    if version != seal.version:
        raise MalformedInputError(
            f"TBS_Sign says version {version}, but the embedded seal is version {seal.version}"
        )
    if not isinstance(tbs["ext_datas"], core.Void):
        asn.ext_datas(tbs["ext_datas"], "TBS_Sign extDatas")
    stamp = parsed["time_stamp"]
    return ParsedSesSignature(
        version=seal.version,
        der=data,
        tbs_bytes=bytes(tbs.dump()),
        seal=seal,
        time_info=aware(tbs["time_info"].native),
        data_hash=asn.octets(tbs["data_hash"], "dataHash"),
        property_info=str(tbs["property_info"].native),
        signer_cert_der=certificate_der(bytes(parsed["cert"].native), "signer certificate"),
        algorithm_oid=parsed["signature_alg_id"].dotted,
        signature=asn.bit_string_octets(parsed["signature"].contents, "signature"),
        timestamp=None
        if isinstance(stamp, core.Void)
        else asn.tagged_bit_string(stamp, "timeStamp"),
    )


def _v1_time(raw: bytes) -> datetime | None:
    """v1 timeInfo is bytes: a DER UTCTime/GeneralizedTime, or an ASCII time string."""
    if raw[:1] in (b"\x17", b"\x18"):
        try:
            return aware(asn.SesTime.load(raw, strict=True).native)
        except ValueError:
            pass
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    for layout in _V1_TIME_FORMATS:
        try:
            moment = datetime.strptime(text, layout)  # the zone is set just below
        except ValueError:
            continue
        return moment.replace(tzinfo=UTC if layout.endswith("Z") else CHINA_TIME).astimezone(UTC)
    return None


# --- verification ----------------------------------------------------------------------------


def verify_ses(
    der: bytes,
    ctx: VerifyContext,
    *,
    original: bytes | None = None,
    format: str = "ses",
) -> Report:
    """Verify an SES_Signature (standards.md §1.7-B) and, given ``original``, its dataHash.

    Certificates and the seal's validity are judged at the signing time: the timestamp's
    genTime when a valid timestamp is present, else the signer's timeInfo. Never raises for a
    bad signature; an unexpected error gives INDETERMINATE (INTERNAL) and is logged.
    """
    try:
        return _verify(der, ctx, original, format)
    except Exception:
        log.exception("SES signature verification failed unexpectedly")
        return report(
            format, "INTERNAL", "the signature verification stopped on an unexpected error"
        )


def _verify(der: bytes, ctx: VerifyContext, original: bytes | None, format: str) -> Report:
    findings = Findings()
    try:
        sig = parse_ses_signature(der)
    except MalformedInputError as exc:
        findings.add("ses.parse", "failed", exc.message, "FORMAT_FAILURE")
        return findings.conclude(format, {})
    findings.add(
        "ses.parse", "passed", f"a v{sig.version} ({GENERATIONS[sig.version]}) SES_Signature"
    )
    findings.signature(
        "ses.signature",
        "SIG_CRYPTO_FAILURE",
        lambda: verify_span(
            public_key_of(sig.signer_cert_der),
            sig.algorithm_oid,
            sig.signature,
            sig.tbs_bytes,
            raw_rs=sig.version == 1,
        ),
    )
    match = sig.seal.signer_match(sig.signer_cert_der)
    if match is None:
        findings.add(
            "ses.signer_in_seal",
            "failed",
            "the signer certificate is not in the seal's certList",
            "SIGNER_NOT_ALLOWED",
        )
    else:
        findings.add("ses.signer_in_seal", "passed", f"listed by the seal ({match})")

    moment, source = _signing_time(sig, ctx, findings)
    proven = source == TIMESTAMPED
    check_seal(sig.seal, ctx, findings, at=moment, proven=proven)
    findings.chain(ctx, sig.signer_cert_der, at=moment, role="signer", proven=proven)
    hash_used = _check_data_hash(sig, original, findings)

    details: dict[str, Any] = {
        **seal_details(sig.seal),
        "ses_version": sig.version,
        "signer": subject_text(sig.signer_cert_der),
        "signing_time": moment.isoformat(),
        "signing_time_source": source,
        "property_info": sig.property_info,
        "signature_algorithm": sig.algorithm_oid,
    }
    if sig.time_info is not None:
        details["time_info"] = sig.time_info.isoformat()
    if hash_used is not None:
        details["data_hash_algorithm"] = hash_used
    return findings.conclude(format, details)


TIMESTAMPED = "timestamp genTime"


def _signing_time(
    sig: ParsedSesSignature, ctx: VerifyContext, findings: Findings
) -> tuple[datetime, str]:
    """The moment to judge certificates and the seal at, and where it came from."""
    if sig.timestamp is None:
        findings.add("timestamp", "skipped", "the signature carries no timestamp")
    else:
        info, found = ctx.verify_timestamp(sig.timestamp, data=sig.signature)
        findings.record(found, "TIMESTAMP_INVALID" if found["result"] == "failed" else None)
        if info is not None:
            return info.gen_time.astimezone(UTC), TIMESTAMPED
    if sig.time_info is not None:
        return sig.time_info, "timeInfo (stated by the signer)"
    return ctx.now(), "verification time (timeInfo is not a readable time)"


def _check_data_hash(
    sig: ParsedSesSignature, original: bytes | None, findings: Findings
) -> str | None:
    if original is None:
        findings.add(
            "ses.data_hash", "skipped", "no original was given: its integrity was not checked"
        )
        return None
    try:
        names: tuple[str, ...] = (signature_algorithm(sig.algorithm_oid).hash_name,)
    except UnsupportedAlgorithmError:
        names = ("sm3", "sha256")
    matched = digest_match(sig.data_hash, original, names, public_key_of(sig.signer_cert_der))
    if matched is None:
        findings.add(
            "ses.data_hash",
            "failed",
            f"dataHash is not the {' or '.join(names)} hash of the original",
            "HASH_FAILURE",
        )
        return None
    how = "SM3 with the SM2 Z prefix (a vendor variant)" if matched == "sm3-with-z" else matched
    findings.add("ses.data_hash", "passed", f"dataHash matches the original ({how})")
    return matched
