"""Detached CMS signatures: RFC 5652 SignedData for RSA and ECDSA, GM/T 0010 for SM2.

One writer and one reader for every key type. SM2 signatures use the GM/T 0010 (GB/T 35275)
object identifiers (standards.md §5.5): ``signedData`` and ``data`` from 1.2.156.10197.6.1.4.2,
SM3 as the digest and the SM2-1 scheme (1.2.156.10197.1.301.1) as the signature algorithm, as
ofdrw and the OFD ``Sign`` signatures do; the value is DER ``SEQUENCE {r, s}`` over
DER(signed attributes) with the default ID. RSA and ECDSA use the PKCS#7 identifiers, so
``openssl cms -verify`` reads them.

Every signature carries contentType, messageDigest, signingTime and the ESS
signing-certificate-v2 attribute (RFC 5035: which certificate signed, so it cannot be swapped),
and may carry an RFC 3161 token over the signature value (id-aa-timeStampToken, RFC 3161
Appendix A) as proof of when it existed.

The reader takes PEM or DER, detached or attached content, and the PKCS#7 or GM/T identifiers
for any key type; it never raises for a bad signature but returns a :class:`Report`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import algos, cms, core, pem, x509

from signing.context import Timestamper, VerifyContext
from signing.report import Check, Report, check, combine, report
from trust import asn1_gm, der
from trust.algorithms import RSA_PSS_SHA256, SignatureAlgorithm, pss_salt_length
from trust.certificates import parse_der, unarmor
from trust.errors import (
    BuilderError,
    ConfigurationError,
    EtrustError,
    InvalidSignatureError,
    MalformedInputError,
    UnsupportedAlgorithmError,
    WeakKeyError,
)
from trust.keys import KeyHandle, default_algorithm
from trust.sm2 import DEFAULT_ID

# Private helpers of the timestamp reader, shared so a token and a CMS signature are read alike.
from trust.tsa import (
    GM_SIGNED_DATA_OID,
    IMPRINT_HASHES,
    check_ess,
    cms_time,
    count_values,
    find_signer,
    signer_algorithm,
    single_attribute,
)

__all__ = [
    "FORMAT",
    "GM_DATA_OID",
    "GM_SIGNED_DATA_OID",
    "MAX_SIGNATURE",
    "sign_detached",
    "verify_detached",
]

log = logging.getLogger(__name__)

FORMAT = "cms"

GM_DATA_OID = "1.2.156.10197.6.1.4.2.1"
"""GM/T 0010 ``data``: the content type of SM2 signatures."""

PKCS7_DATA_OID = "1.2.840.113549.1.7.1"
PKCS7_SIGNED_DATA_OID = "1.2.840.113549.1.7.2"

MAX_SIGNATURE = 16 << 20
"""Largest signature we read (16 MiB, attached content included); DER lengths stop there too."""

_MAX_CERTIFICATES = 32
_MAX_SIGNERS = 8
_MAX_VALUES = 20_000
"""Most DER values in the certificates, CRLs and signer infos, counted before asn1crypto parses
them (see trust.tsa.count_values); ours hold a few hundred."""

_DATA_TYPES = frozenset({PKCS7_DATA_OID, GM_DATA_OID})
_SIGNED_DATA_TYPES = frozenset({PKCS7_SIGNED_DATA_OID, GM_SIGNED_DATA_OID})
_PEM_MARKERS = ("CMS", "PKCS7", "PKCS #7 SIGNED DATA")

_SEQUENCE, _SET, _OCTET_STRING, _OID = 0x30, 0x31, 0x04, 0x06
_CONTEXT_0, _CONTEXT_1 = 0xA0, 0xA1  # also SignedData's certificates and crls
_CONTENT_TYPE = bytes(cms.CMSAttributeType("content_type").dump())
_MESSAGE_DIGEST = bytes(cms.CMSAttributeType("message_digest").dump())
_TIMESTAMP_TOKEN = bytes(cms.CMSAttributeType("signature_time_stamp_token").dump())
_SIGNER_INFO_LAYOUT = re.compile(rb"\x02[\x30\x80]\x30\xa0?\x30\x04\xa1?")
"""version, sid (issuerAndSerialNumber or [0] subjectKeyIdentifier), digestAlgorithm,
[0] signedAttrs, signatureAlgorithm, signature, [1] unsignedAttrs: as identifier octets."""
_SIGNING_KEY_USAGES = frozenset({"digital_signature", "non_repudiation"})


# --- signing -------------------------------------------------------------------------------


def _oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def _attribute(type_der: bytes, value_der: bytes) -> bytes:
    """One single-valued Attribute from pre-encoded parts (the value kept byte for byte)."""
    return der.sequence(type_der, der.set_of(value_der))


def _ess_attribute(cert: x509.Certificate, hash_name: str) -> bytes:
    """RFC 5035 signing-certificate-v2 naming ``cert`` by hash and by issuer and serial."""
    return bytes(
        cms.CMSAttribute(
            {
                "type": "signing_certificate_v2",
                "values": [
                    {
                        "certs": [
                            {
                                "hash_algorithm": {"algorithm": hash_name},
                                "cert_hash": hashlib.new(hash_name, cert.dump()).digest(),
                                "issuer_serial": {
                                    "issuer": [
                                        x509.GeneralName(name="directory_name", value=cert.issuer)
                                    ],
                                    "serial_number": cert.serial_number,
                                },
                            }
                        ]
                    }
                ],
            }
        ).dump()
    )


def _content_type_oid(content_type: str, gm: bool) -> str:
    if content_type == "data":
        return GM_DATA_OID if gm else PKCS7_DATA_OID
    try:
        return str(core.ObjectIdentifier(content_type).dotted)
    except ValueError as exc:
        raise MalformedInputError(
            f"content type {content_type!r} is neither 'data' nor a dotted OID"
        ) from exc


def _signature_identifier(algorithm: SignatureAlgorithm) -> bytes:
    """The SignerInfo signatureAlgorithm: SM2-1 for SM2 (GM/T 0010), else the registry's."""
    if algorithm.key_type == "sm2":
        return bytes(algos.SignedDigestAlgorithm({"algorithm": asn1_gm.SM2_SIGN_OID}).dump())
    return bytes(algorithm.algorithm_identifier().dump())


def sign_detached(
    data: bytes,
    key: KeyHandle,
    cert: x509.Certificate,
    *,
    chain: Sequence[x509.Certificate] = (),
    timestamper: Timestamper | None = None,
    signing_time: datetime | None = None,
    content_type: str = "data",
    algorithm: SignatureAlgorithm | None = None,
) -> bytes:
    """A DER ContentInfo holding a detached SignedData over ``data``, signed by ``key``.

    ``chain`` is embedded with ``cert`` so a verifier needs only the root. ``algorithm``
    defaults to the key's (SM2-SM3, RSA PKCS#1 v1.5 with SHA-256, ECDSA P-256 with SHA-256);
    pass ``RSA_PSS_SHA256`` for PSS. With ``timestamper`` the signature value is timestamped
    (hashed with the signature's digest) and the token added as an unsigned attribute.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInputError("only bytes can be signed")
    if key.public_key_info.dump() != cert.public_key.dump():
        raise ConfigurationError("the signing key is not the key of the signer's certificate")
    alg = algorithm or default_algorithm(key)
    if alg.key_type != key.key_type:
        raise UnsupportedAlgorithmError(f"{alg.name} cannot be used with a {key.key_type} key")
    moment = signing_time or datetime.now(UTC)
    if moment.tzinfo is None:
        raise BuilderError("the signing time must be timezone-aware")
    gm = alg.key_type == "sm2"
    hash_name = alg.hash_name
    econtent_type = _content_type_oid(content_type, gm)
    econtent_type_der = _oid(econtent_type)

    signed_attrs = b"".join(
        sorted(  # DER orders a SET OF by the encodings of its members
            (
                _attribute(_CONTENT_TYPE, econtent_type_der),
                _attribute(
                    _MESSAGE_DIGEST,
                    der.tlv(_OCTET_STRING, hashlib.new(hash_name, bytes(data)).digest()),
                ),
                bytes(
                    cms.CMSAttribute({"type": "signing_time", "values": [cms_time(moment)]}).dump()
                ),
                _ess_attribute(cert, hash_name),
            )
        )
    )
    signature = key.sign(der.set_of(signed_attrs), alg, sm2_id=DEFAULT_ID)
    unsigned = b""
    if timestamper is not None:
        token = timestamper.timestamp(signature, hash_name)
        unsigned = der.tlv(_CONTEXT_1, _attribute(_TIMESTAMP_TOKEN, token))
    digest_algorithm = bytes(algos.DigestAlgorithm({"algorithm": hash_name}).dump())
    sid = cms.SignerIdentifier(
        name="issuer_and_serial_number",
        value={"issuer": cert.issuer, "serial_number": cert.serial_number},
    ).dump()
    signer_info = der.sequence(
        der.integer(1),
        bytes(sid),
        digest_algorithm,
        der.tlv(_CONTEXT_0, signed_attrs),
        _signature_identifier(alg),
        der.tlv(_OCTET_STRING, signature),
        unsigned,
    )
    certificates = sorted({cert.dump(), *(c.dump() for c in chain)})
    # RFC 5652 §5.1: version 1 for id-data (GM/T 0010 always writes 1), 3 for other content.
    version = 1 if econtent_type in _DATA_TYPES else 3
    signed_data = der.sequence(
        der.integer(version),
        der.set_of(digest_algorithm),
        der.sequence(econtent_type_der),
        der.tlv(_CONTEXT_0, *certificates),
        der.set_of(signer_info),
    )
    outer = GM_SIGNED_DATA_OID if gm else PKCS7_SIGNED_DATA_OID
    return der.sequence(_oid(outer), der.explicit(0, signed_data))


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SignerPart:
    info: cms.SignerInfo  # without its unsigned attributes (see _signer_part)
    signed_attrs: bytes | None  # re-tagged as SET OF: the bytes that were signed
    tokens: list[bytes]  # id-aa-timeStampToken values, as on the wire


@dataclass(frozen=True)
class _Parsed:
    outer_type: str
    econtent_type: str
    content: bytes | None  # attached content, if any
    certificates: list[x509.Certificate]
    signers: list[_SignerPart]


def _elements(
    buf: bytes, start: int, end: int, what: str, limit: int = 16
) -> list[tuple[int, int, int, int]]:
    """(tag, header start, contents start, end) of each DER value in ``buf[start:end]``.

    Strict DER with definite lengths (trust.der); at most ``limit`` values, so a hostile SET of
    millions of tiny values is refused before any of it is parsed.
    """
    out: list[tuple[int, int, int, int]] = []
    while start < end:
        if len(out) == limit:
            raise MalformedInputError(f"{what}: more than {limit} values")
        tag, s, e = der.read_tlv(buf, start, end)
        out.append((tag, start, s, e))
        start = e
    return out


def _parse(signature: bytes) -> _Parsed:
    """Split a ContentInfo into what verification needs, each signed part as its wire bytes."""
    if not isinstance(signature, bytes | bytearray | memoryview):
        raise MalformedInputError("a CMS signature is bytes")
    raw = bytes(signature)
    if len(raw) > MAX_SIGNATURE:
        raise MalformedInputError(f"a CMS signature larger than {MAX_SIGNATURE} bytes")
    blob = unarmor(raw, "CMS", _PEM_MARKERS) if pem.detect(raw) else raw
    top = _elements(blob, 0, len(blob), "ContentInfo", 1)
    if not top or top[0][0] != _SEQUENCE:
        raise MalformedInputError("not a DER ContentInfo")
    info = _elements(blob, top[0][2], top[0][3], "ContentInfo", 2)
    if len(info) != 2 or info[0][0] != _OID or info[1][0] != _CONTEXT_0:
        raise MalformedInputError("not a ContentInfo")
    outer_type = _dotted(blob, info[0])
    if outer_type not in _SIGNED_DATA_TYPES:
        raise MalformedInputError(f"content type {outer_type} is not signedData")
    wrapped = _elements(blob, info[1][2], info[1][3], "ContentInfo content", 1)
    if len(wrapped) != 1 or wrapped[0][0] != _SEQUENCE:
        raise MalformedInputError("signedData content is not a SEQUENCE")
    parts = _elements(blob, wrapped[0][2], wrapped[0][3], "SignedData", 6)
    if len(parts) < 4 or parts[0][0] != 0x02 or parts[1][0] != _SET:
        raise MalformedInputError("SignedData is incomplete")
    if blob[parts[0][2] : parts[0][3]] not in (b"\x01", b"\x03", b"\x04", b"\x05"):
        raise MalformedInputError("SignedData version is not that of PKCS#7 or CMS")
    encap, optional, signer_set = parts[2], parts[3:-1], parts[-1]
    if encap[0] != _SEQUENCE or signer_set[0] != _SET:
        raise MalformedInputError("SignedData is malformed")
    if any(tag not in (_CONTEXT_0, _CONTEXT_1) for tag, *_ in optional):
        raise MalformedInputError("SignedData has unknown fields")
    econtent_type, content = _encapsulated(blob, encap)

    certificates: list[x509.Certificate] = []
    for tag, _, start, end in optional:
        what = "certificates" if tag == _CONTEXT_0 else "CRLs"
        count_values(blob[start:end], what, _MAX_VALUES)
        if tag != _CONTEXT_0:
            continue  # revocation data comes from the verification context
        for item_tag, head, _, item_end in _elements(
            blob, start, end, "certificates", _MAX_CERTIFICATES
        ):
            if item_tag == _SEQUENCE:  # other choices (attribute certificates) are not used
                certificates.append(parse_der(x509.Certificate, blob[head:item_end], "certificate"))
    count_values(blob[signer_set[2] : signer_set[3]], "signer infos", _MAX_VALUES)
    signers = [
        _signer_part(blob, element)
        for element in _elements(blob, signer_set[2], signer_set[3], "signer infos", _MAX_SIGNERS)
    ]
    if not signers:
        raise MalformedInputError("SignedData has no signer")
    return _Parsed(outer_type, econtent_type, content, certificates, signers)


def _dotted(blob: bytes, element: tuple[int, int, int, int]) -> str:
    oid = parse_der(core.ObjectIdentifier, blob[element[1] : element[3]], "object identifier")
    return str(oid.dotted)


def _encapsulated(blob: bytes, encap: tuple[int, int, int, int]) -> tuple[str, bytes | None]:
    """eContentType and the attached content (None when detached)."""
    fields = _elements(blob, encap[2], encap[3], "encapContentInfo", 2)
    if not fields or fields[0][0] != _OID:
        raise MalformedInputError("encapContentInfo has no content type")
    econtent_type = _dotted(blob, fields[0])
    if len(fields) == 1:
        return econtent_type, None
    if fields[1][0] != _CONTEXT_0:
        raise MalformedInputError("encapContentInfo content is not [0] EXPLICIT")
    inner = _elements(blob, fields[1][2], fields[1][3], "eContent", 1)
    if len(inner) != 1 or inner[0][0] != _OCTET_STRING:
        raise MalformedInputError("the attached content is not a primitive OCTET STRING")
    return econtent_type, blob[inner[0][2] : inner[0][3]]


def _signer_part(blob: bytes, element: tuple[int, int, int, int]) -> _SignerPart:
    """A SignerInfo; its timestamp tokens are kept as raw bytes, never parsed by asn1crypto.

    asn1crypto re-encodes SHA-2 AlgorithmIdentifiers it reads (forcing NULL parameters), which
    makes reading a whole RSA token thousands of times slower, and the token's bytes must reach
    the timestamp verifier exactly as they were signed anyway.
    """
    fields = _elements(blob, element[2], element[3], "SignerInfo", 7)
    if element[0] != _SEQUENCE or not _SIGNER_INFO_LAYOUT.fullmatch(
        bytes(tag for tag, *_ in fields)
    ):
        raise MalformedInputError("SignerInfo fields are not those of RFC 5652 §5.3")
    if blob[fields[0][2] : fields[0][3]] not in (b"\x01", b"\x03"):
        raise MalformedInputError("SignerInfo version is neither 1 nor 3")
    signed_attrs = next(
        (der.set_of(blob[s:e]) for tag, _, s, e in fields if tag == _CONTEXT_0), None
    )
    unsigned = [(s, e) for tag, _, s, e in fields if tag == _CONTEXT_1]
    signed_part = der.sequence(*(blob[h:e] for tag, h, _, e in fields if tag != _CONTEXT_1))
    info: cms.SignerInfo = parse_der(cms.SignerInfo, signed_part, "SignerInfo")
    tokens = []
    for start, end in unsigned:
        for tag, _, attr_start, attr_end in _elements(blob, start, end, "unsigned attributes", 64):
            parts = _elements(blob, attr_start, attr_end, "attribute", 2)
            if tag != _SEQUENCE or len(parts) != 2 or parts[1][0] != _SET:
                raise MalformedInputError("an unsigned attribute is malformed")
            if blob[parts[0][1] : parts[0][3]] == _TIMESTAMP_TOKEN:
                values = _elements(blob, parts[1][2], parts[1][3], "time-stamp tokens", 4)
                tokens += [blob[h:e] for _, h, _, e in values]
    return _SignerPart(info, signed_attrs, tokens)


# --- verifying -----------------------------------------------------------------------------


def verify_detached(signature: bytes, data: bytes | None, ctx: VerifyContext) -> Report:
    """Verify a CMS signature over ``data``; a report for anything, never an exception.

    Attached content is accepted too: it is what gets verified, and ``data``, when given, must
    equal it. Each signer is judged at the genTime of a valid timestamp on its signature, else
    at its signingTime, else now; a crypto failure (format, digest, signature, timestamp)
    outranks a trust failure (chain, revocation, expiry).
    """
    try:
        parsed = _parse(signature)
    except EtrustError as exc:
        return _format_failure(exc.message)
    except Exception:  # asn1crypto raises many types on hostile input
        log.exception("CMS signature could not be read")
        return _format_failure("the signature could not be read")
    parse_check = check("cms.parse", "passed", f"SignedData ({parsed.outer_type})")
    if data is not None and not isinstance(data, bytes | bytearray | memoryview):
        return _format_failure("the signed content must be bytes", "cms.content")
    content = parsed.content if parsed.content is not None else data
    if content is None:
        return _format_failure("detached signature: the content was not given", "cms.content")
    if parsed.content is not None and data is not None and bytes(data) != parsed.content:
        return report(
            FORMAT,
            "HASH_FAILURE",
            "the attached content is not the content given",
            checks=(parse_check, check("cms.content", "failed", "attached content differs")),
            details={"attached": True},
        )
    reports = []
    for part in parsed.signers:
        try:
            reports.append(_verify_signer(part, parsed, bytes(content), ctx, parse_check))
        except Exception:
            log.exception("CMS signer verification failed unexpectedly")
            reports.append(report(FORMAT, "INTERNAL", checks=(parse_check,)))
    if len(reports) == 1:
        return reports[0]
    return combine(FORMAT, reports, checks=(parse_check,), details={"signers": len(reports)})


def _format_failure(detail: str, name: str = "cms.parse") -> Report:
    return report(FORMAT, "FORMAT_FAILURE", detail, checks=(check(name, "failed", detail),))


def _verify_signer(
    part: _SignerPart, parsed: _Parsed, content: bytes, ctx: VerifyContext, parse_check: Check
) -> Report:
    """One SignerInfo: the crypto (digest, signature, timestamp) first, then the chain."""
    checks: list[Check] = [parse_check]
    details: dict[str, Any] = {
        "content_type": parsed.econtent_type,
        "attached": parsed.content is not None,
    }

    def done(reason: str, detail: str = "") -> Report:
        return report(FORMAT, reason, detail, checks=checks, details=details)

    def failed(name: str, reason: str, detail: str) -> Report:
        checks.append(check(name, "failed", detail))
        return done(reason, detail)

    info = part.info
    try:
        cert = find_signer(info["sid"], parsed.certificates)
    except EtrustError:
        detail = "the signer's certificate is not in the signature"
        checks.append(check("signer.certificate", "indeterminate", detail))
        return done("NO_CERTIFICATE_CHAIN_FOUND", detail)
    details.update(
        signer=cert.subject.human_friendly,
        signer_serial=format(cert.serial_number, "x"),
        signer_issuer=cert.issuer.human_friendly,
    )
    checks.append(check("signer.certificate", "passed", cert.subject.human_friendly))

    digest_name = info["digest_algorithm"]["algorithm"].native
    try:
        if digest_name not in IMPRINT_HASHES:
            raise UnsupportedAlgorithmError(f"digest {digest_name} is not supported")
        algorithm = signer_algorithm(info, cert, digest_name)
        if algorithm.hash_name != digest_name:
            raise UnsupportedAlgorithmError(f"{algorithm.name} is not used with {digest_name}")
        salt = pss_salt_length(info["signature_algorithm"]) if algorithm is RSA_PSS_SHA256 else 32
    except UnsupportedAlgorithmError as exc:
        return failed("cms.algorithm", "CRYPTO_CONSTRAINTS_FAILURE", exc.message)
    except EtrustError as exc:
        return failed("cms.algorithm", "FORMAT_FAILURE", exc.message)
    details.update(digest_algorithm=digest_name, signature_algorithm=algorithm.name)
    checks.append(check("cms.algorithm", "passed", f"{algorithm.name}, digest {digest_name}"))

    signing_time: datetime | None = None
    attrs: cms.CMSAttributes | None = None
    if part.signed_attrs is None:
        checks.append(check("cms.message_digest", "skipped", "no signed attributes"))
        signed_bytes = content
    else:
        try:
            attrs = parse_der(cms.CMSAttributes, part.signed_attrs, "signed attributes")
            content_type = single_attribute(attrs, "content_type")
            claimed = single_attribute(attrs, "message_digest").native
            time_value = single_attribute(attrs, "signing_time", required=False)
        except EtrustError as exc:
            return failed("cms.signed_attributes", "FORMAT_FAILURE", exc.message)
        if content_type.dotted != parsed.econtent_type:
            return failed(
                "cms.signed_attributes",
                "FORMAT_FAILURE",
                "the content-type attribute differs from the encapsulated content type",
            )
        if time_value is not None:
            signing_time = time_value.native
            details["signing_time"] = signing_time.isoformat() if signing_time else None
        actual = hashlib.new(digest_name, content).digest()
        if not hmac.compare_digest(actual, claimed):
            return failed(
                "cms.message_digest", "HASH_FAILURE", "the content's digest is not the one signed"
            )
        checks.append(check("cms.message_digest", "passed", f"{digest_name} {actual.hex()}"))
        signed_bytes = part.signed_attrs

    signature_value = bytes(info["signature"].native)
    try:
        algorithm.verify(
            cert.public_key, signature_value, signed_bytes, sm2_id=DEFAULT_ID, pss_salt=salt
        )
    except (InvalidSignatureError, MalformedInputError) as exc:
        return failed("cms.signature", "SIG_CRYPTO_FAILURE", exc.message)
    except (UnsupportedAlgorithmError, WeakKeyError) as exc:
        return failed("cms.signature", "CRYPTO_CONSTRAINTS_FAILURE", exc.message)
    checks.append(check("cms.signature", "passed", f"{algorithm.name} by {details['signer']}"))

    if attrs is not None and _has_ess(attrs):
        try:
            check_ess(attrs, cert)
        except EtrustError as exc:
            return failed("cms.signing_certificate", "FORMAT_FAILURE", exc.message)
        checks.append(check("cms.signing_certificate", "passed", "ESS attribute names the signer"))

    gen_time, problem = _timestamps(part.tokens, signature_value, parsed.certificates, ctx, checks)
    if problem is not None:
        return done("TIMESTAMP_INVALID", problem)
    if gen_time is not None:
        details["gen_time"] = gen_time.isoformat()

    # Without a valid timestamp the signer's own claim is all there is; a claim in the future
    # cannot be honoured, so it is judged now at the latest.
    now = ctx.now()
    at = gen_time or (min(signing_time, now) if signing_time else now)
    details["validation_time"] = at.isoformat()
    usage = cert.key_usage_value
    if usage is not None and not usage.native & _SIGNING_KEY_USAGES:
        return failed(
            "signer.key_usage",
            "CHAIN_CONSTRAINTS_FAILURE",
            "the signer's key usage allows neither digitalSignature nor nonRepudiation",
        )
    reason, chain_check, _ = ctx.validate_certificate(
        cert,
        at=at,
        role="signer",
        intermediates=parsed.certificates,
        proven=gen_time is not None,
    )
    checks.append(chain_check)
    return done(reason, "" if reason == "OK" else chain_check["detail"])


def _has_ess(attrs: cms.CMSAttributes) -> bool:
    names = {a["type"].native for a in attrs}
    return bool(names & {"signing_certificate", "signing_certificate_v2"})


def _timestamps(
    tokens: Sequence[bytes],
    signature_value: bytes,
    certificates: Sequence[x509.Certificate],
    ctx: VerifyContext,
    checks: list[Check],
) -> tuple[datetime | None, str | None]:
    """(earliest genTime of the valid tokens, the first failure) for the signature's tokens."""
    if not tokens:
        checks.append(check("timestamp", "skipped", "the signature carries no timestamp"))
        return None, None
    times = []
    for token in tokens:
        stamped, token_check = ctx.verify_timestamp(
            token, data=signature_value, certificates=certificates
        )
        checks.append(token_check)
        if token_check["result"] == "failed":
            return None, token_check["detail"]
        if stamped is not None:
            times.append(stamped.gen_time)
    return (min(times) if times else None), None
