"""OCSP (RFC 6960): a transport-independent responder for our CAs, and the client helpers.

The responder sits on every relying party's hot path (target: >= 1,000 responses/s on two
cores, HTTP included), so it does not go through asn1crypto per request: measured here,
asn1crypto takes ~170 µs to read an OpenSSL request and ~360 µs to build a ResponseData, as
much as the signature itself. Instead a small strict DER reader takes the request apart and the
response is assembled from bytes precomputed once per CA (CertID issuer hashes, ResponderID,
signature AlgorithmIdentifier, responder certificate). Tests judge the output with asn1crypto
and the OpenSSL CLI. The client side (:func:`build_request`, :func:`parse_response`,
:func:`verify_response`) is not hot and uses asn1crypto.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from asn1crypto import core, x509
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp

from trust import asn1_gm
from trust.algorithms import SignatureAlgorithm, signature_octets, verify
from trust.ca import CertificateAuthority
from trust.certificates import MAX_DER, key_identifier, make_name, parse_der, verify_issued_by
from trust.clock import Clock, system_clock
from trust.der import children, generalized_time, read_tlv, tlv
from trust.errors import (
    ConfigurationError,
    EtrustError,
    InvalidSignatureError,
    MalformedInputError,
    OcspRequestError,
    OcspResponderUnauthorizedError,
    OcspResponseError,
    OcspResponseRefusedError,
    UnsupportedAlgorithmError,
)
from trust.keys import KeyHandle, default_algorithm
from trust.repository import Revocation

log = logging.getLogger(__name__)

MAX_REQUEST_SIZE = 64 * 1024
"""Largest request we read; the HTTP layer may cap the body at the same size before reading."""
MAX_CERTIFICATES = 100
"""CertIDs per request: each costs repository look-ups, so a 64 KiB request cannot ask for 700."""
MAX_NONCE = 128
"""RFC 9654 (obsoletes RFC 8954): Nonce is OCTET STRING (SIZE(1..128)); others are malformed."""
DEFAULT_VALIDITY = timedelta(hours=1)
DEFAULT_SKEW = timedelta(minutes=5)
CACHE_ENTRIES = 4096

CertStatusName = Literal["good", "revoked", "unknown"]
ResponseStatusName = Literal[
    "successful",
    "malformed_request",
    "internal_error",
    "try_later",
    "sign_required",
    "unauthorized",
]

# CertID hash algorithms we match: our name -> (OID, hashlib name). SHA-1 is OpenSSL's default
# and required by RFC 5019; SM3 is the GM/T peer of SHA-256.
CERTID_HASHES: dict[str, str] = {
    "sha1": "1.3.14.3.2.26",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
    "sm3": asn1_gm.SM3_OID,
}
_HASH_BY_OID_CONTENTS: dict[bytes, str] = {
    core.ObjectIdentifier(oid).contents: name for name, oid in CERTID_HASHES.items()
}
_HASH_BY_OID: dict[str, str] = {oid: name for name, oid in CERTID_HASHES.items()}

_NONCE_OID = core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.2").contents
# Request extensions we understand (and may therefore ignore even when marked critical).
_KNOWN_REQUEST_EXTENSIONS = frozenset(
    core.ObjectIdentifier(oid).contents
    for oid in (
        "1.3.6.1.5.5.7.48.1.2",  # nonce
        "1.3.6.1.5.5.7.48.1.4",  # acceptable responses (we only make basic ones)
        "1.3.6.1.5.5.7.48.1.7",  # service locator (we answer only for our own CAs)
        "1.3.6.1.5.5.7.48.1.8",  # preferred signature algorithms (advisory)
    )
)
_BASIC_OID_TLV = core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.1").dump()

_REASON_CODES: dict[str, int] = {name: code for code, name in asn1_crl.CRLReason._map.items()}

_STATUS_CODES: dict[ResponseStatusName, int] = {
    "successful": 0,
    "malformed_request": 1,
    "internal_error": 2,
    "try_later": 3,
    "sign_required": 5,
    "unauthorized": 6,
}


def _status_only(status: ResponseStatusName) -> bytes:
    """An OCSPResponse without responseBytes (every status but successful)."""
    return bytes((0x30, 0x03, 0x0A, 0x01, _STATUS_CODES[status]))


MALFORMED_REQUEST_RESPONSE = _status_only("malformed_request")
INTERNAL_ERROR_RESPONSE = _status_only("internal_error")
UNAUTHORIZED_RESPONSE = _status_only("unauthorized")


# --- DER, by hand (hot path) ----------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    """Aware UTC, whole seconds; naive times (some SQL drivers) are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    return read_tlv(buf, pos, end, OcspRequestError)


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    return children(buf, start, end, OcspRequestError)


def _only_child(buf: bytes, start: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """Contents of the single ``tag`` TLV that fills an EXPLICIT wrapper."""
    inner = _children(buf, start, end)
    if len(inner) != 1 or inner[0][0] != tag:
        raise OcspRequestError(f"{what} is not what RFC 6960 says")
    return inner[0][1], inner[0][2]


@dataclass(frozen=True, slots=True)
class _CertId:
    hash_name: str
    name_hash: bytes
    key_hash: bytes
    serial: int
    der: bytes  # the request's CertID, already checked to be DER; echoed in the answer


@dataclass(frozen=True, slots=True)
class _Request:
    cert_ids: tuple[_CertId, ...]
    nonce: bytes | None  # the nonce extnValue contents, echoed verbatim


def _extensions(buf: bytes, start: int, end: int, what: str) -> dict[bytes, tuple[int, int]]:
    """``[n] EXPLICIT Extensions`` -> {OID contents: extnValue span}; refuses critical unknowns."""
    s, e = _only_child(buf, start, end, 0x30, what)
    found: dict[bytes, tuple[int, int]] = {}
    for tag, es, ee in _children(buf, s, e):
        parts = _children(buf, es, ee) if tag == 0x30 else []
        if len(parts) == 3 and parts[1][0] == 0x01:
            _, bs, be = parts[1]
            if be - bs != 1 or buf[bs] not in (0x00, 0xFF):
                raise OcspRequestError(f"{what}: bad critical flag")
            critical = buf[bs] == 0xFF
            parts = [parts[0], parts[2]]
        else:
            critical = False
        if len(parts) != 2 or parts[0][0] != 0x06 or parts[1][0] != 0x04:
            raise OcspRequestError(f"{what}: not an Extension")
        oid = buf[parts[0][1] : parts[0][2]]
        if oid in found:
            raise OcspRequestError(f"{what}: extension repeated")
        if critical and oid not in _KNOWN_REQUEST_EXTENSIONS:
            raise OcspRequestError(f"{what}: unsupported critical extension")
        found[oid] = (parts[1][1], parts[1][2])
    return found


def _integer(buf: bytes, start: int, end: int) -> int:
    if end == start:
        raise OcspRequestError("empty INTEGER")
    if end - start > 1 and (
        (buf[start] == 0x00 and buf[start + 1] < 0x80)
        or (buf[start] == 0xFF and buf[start + 1] >= 0x80)
    ):
        raise OcspRequestError("non-minimal INTEGER")
    return int.from_bytes(buf[start:end], "big", signed=True)


def _cert_id(buf: bytes, tlv_start: int, start: int, end: int) -> _CertId:
    parts = _children(buf, start, end)
    if [p[0] for p in parts] != [0x30, 0x04, 0x04, 0x02]:
        raise OcspRequestError("CertID is not what RFC 6960 says")
    alg = _children(buf, parts[0][1], parts[0][2])
    if not alg or alg[0][0] != 0x06:
        raise OcspRequestError("CertID hashAlgorithm is not an AlgorithmIdentifier")
    hash_name = _HASH_BY_OID_CONTENTS.get(buf[alg[0][1] : alg[0][2]])
    if hash_name is None:
        # Matching is impossible and the client can fix it: malformedRequest, as the Go
        # responders (cfssl, boulder) answer for hashes they do not know.
        raise OcspRequestError("unsupported CertID hash algorithm (use SHA-1, SHA-256 or SM3)")
    params = alg[1:]
    if params and (len(params) > 1 or params[0][0] != 0x05 or params[0][1] != params[0][2]):
        raise OcspRequestError("CertID hash parameters must be absent or NULL")
    return _CertId(
        hash_name,
        buf[parts[1][1] : parts[1][2]],
        buf[parts[2][1] : parts[2][2]],
        _integer(buf, parts[3][1], parts[3][2]),
        buf[tlv_start:end],
    )


def _nonce_length(value: bytes) -> int:
    """Length of the nonce proper: inside its OCTET STRING (RFC 6960), or raw (older clients)."""
    try:
        tag, s, e = _tlv(value, 0, len(value))
    except OcspRequestError:
        return len(value)
    return e - s if tag == 0x04 and e == len(value) else len(value)


def _parse_request(buf: bytes, max_certificates: int) -> _Request:
    tag, s, e = _tlv(buf, 0, len(buf))
    if tag != 0x30:
        raise OcspRequestError("not an OCSPRequest")
    if e != len(buf):
        raise OcspRequestError("bytes after the OCSPRequest")
    top = _children(buf, s, e)
    if not 1 <= len(top) <= 2 or top[0][0] != 0x30:
        raise OcspRequestError("not an OCSPRequest")
    if len(top) == 2:  # optionalSignature: not verified (RFC 6960 does not require it), but framed
        if top[1][0] != 0xA0:
            raise OcspRequestError("unexpected field after tbsRequest")
        _only_child(buf, top[1][1], top[1][2], 0x30, "optionalSignature")
    fields = _children(buf, top[0][1], top[0][2])
    i = 0
    if i < len(fields) and fields[i][0] == 0xA0:
        vs, ve = _only_child(buf, fields[i][1], fields[i][2], 0x02, "version")
        if _integer(buf, vs, ve) != 0:
            raise OcspRequestError("unsupported OCSP request version")
        i += 1
    if i < len(fields) and fields[i][0] == 0xA1:  # requestorName: informational only
        i += 1
    if i >= len(fields) or fields[i][0] != 0x30:
        raise OcspRequestError("OCSPRequest without a requestList")
    requests = _children(buf, fields[i][1], fields[i][2])
    i += 1
    nonce = None
    if i < len(fields) and fields[i][0] == 0xA2:
        exts = _extensions(buf, fields[i][1], fields[i][2], "requestExtensions")
        if _NONCE_OID in exts:
            ns, ne = exts[_NONCE_OID]
            nonce = buf[ns:ne]
            if not 1 <= _nonce_length(nonce) <= MAX_NONCE:
                raise OcspRequestError(f"nonce must be 1 to {MAX_NONCE} bytes (RFC 9654)")
        i += 1
    if i != len(fields):
        raise OcspRequestError("unexpected field in tbsRequest")
    if not requests:
        raise OcspRequestError("the requestList is empty")
    if len(requests) > max_certificates:
        raise OcspRequestError(f"more than {max_certificates} certificates in one request")
    cert_ids = []
    for rtag, rs, re_ in requests:
        parts = _children(buf, rs, re_) if rtag == 0x30 else []
        if not parts or parts[0][0] != 0x30 or len(parts) > 2:
            raise OcspRequestError("Request is not what RFC 6960 says")
        if len(parts) == 2:
            if parts[1][0] != 0xA0:
                raise OcspRequestError("Request is not what RFC 6960 says")
            _extensions(buf, parts[1][1], parts[1][2], "singleRequestExtensions")
        # The CertID TLV is the first thing in the Request's contents, so it starts at rs.
        cert_ids.append(_cert_id(buf, rs, parts[0][1], parts[0][2]))
    return _Request(tuple(cert_ids), nonce)


# --- Responder ------------------------------------------------------------------------------


def issuer_hashes(issuer: x509.Certificate, hash_name: str) -> tuple[bytes, bytes]:
    """CertID issuerNameHash and issuerKeyHash of ``issuer`` with one of :data:`CERTID_HASHES`."""
    if hash_name not in CERTID_HASHES:
        raise UnsupportedAlgorithmError(
            f"CertID hash {hash_name!r} is not supported; use one of {', '.join(CERTID_HASHES)}"
        )
    name_der = issuer["tbs_certificate"]["subject"].dump()
    key_bits = issuer["tbs_certificate"]["subject_public_key_info"]["public_key"].contents[1:]
    return (
        hashlib.new(hash_name, name_der, usedforsecurity=False).digest(),
        hashlib.new(hash_name, key_bits, usedforsecurity=False).digest(),
    )


@dataclass(frozen=True)
class DelegatedResponder:
    """A CA answered for by an ``ocsp-signer`` certificate it issued, with that key."""

    ca: CertificateAuthority
    certificate: x509.Certificate
    key: KeyHandle


def delegate(
    ca: CertificateAuthority,
    key: KeyHandle,
    subject: x509.Name | None = None,
    *,
    validity: timedelta | None = None,
) -> DelegatedResponder:
    """Issue an ``ocsp-signer`` certificate for ``key`` under ``ca`` and pair the two."""
    name = subject or make_name({"CN": f"{ca.name} OCSP responder"})
    cert = ca.issue(key.public_key_info, name, "ocsp-signer", validity=validity)
    return DelegatedResponder(ca, cert, key)


@dataclass(frozen=True, slots=True)
class SingleStatus:
    """The status of one certificate, as answered or as read from a response."""

    serial: int
    status: CertStatusName
    this_update: datetime | None = None
    next_update: datetime | None = None
    revoked_at: datetime | None = None
    reason: str | None = None  # CRLReason name; "unspecified" when a revocation states none
    hash_algorithm: str = "sha1"


@dataclass(frozen=True)
class OcspAnswer:
    """What :meth:`OcspResponder.answer` did, for logs and tests; ``der`` goes on the wire."""

    response_status: ResponseStatusName
    der: bytes
    statuses: tuple[SingleStatus, ...] = ()
    ca_name: str | None = None
    nonce: bool = False
    cached: bool = False
    detail: str | None = None  # why a request was refused (never key material)


@dataclass(frozen=True, slots=True)
class _Signer:
    key: KeyHandle
    algorithm: SignatureAlgorithm
    responder_id: bytes  # ResponderID byKey, DER
    algorithm_der: bytes
    certs: bytes  # [0] EXPLICIT SEQUENCE OF Certificate, or b"" when the CA signs itself
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class _Served:
    index: int
    ca: CertificateAuthority
    signer: _Signer


_CacheKey = tuple[int, bytes, CertStatusName, Revocation | None]


class OcspResponder:
    """Answers RFC 6960 requests for a set of CAs, each signing itself or through a delegate.

    :meth:`respond` never raises: bad requests get ``malformedRequest``, requests about CAs we
    do not serve ``unauthorized`` (RFC 5019 §2.2.3), failures ``internalError``. When one
    request mixes CAs, the first CA we serve signs and the others' certificates are ``unknown``
    (RFC 6960 §2.2: "an unrecognized issuer that is not served by this responder").

    Nonce-less single-certificate answers (what browsers and RFC 5019 clients send) are cached
    for ``cache_for`` (default a tenth of ``validity``). The cache key holds the certificate's
    status and revocation record as just read from the repository, so a revocation is
    answered at once; only the signature work is saved.
    """

    def __init__(
        self,
        authorities: Iterable[CertificateAuthority | DelegatedResponder],
        *,
        clock: Clock = system_clock,
        validity: timedelta = DEFAULT_VALIDITY,
        cache_for: timedelta | None = None,
        max_request_size: int = MAX_REQUEST_SIZE,
        max_certificates: int = MAX_CERTIFICATES,
    ) -> None:
        if validity <= timedelta(0):
            raise ConfigurationError("OCSP response validity must be positive")
        self._clock = clock
        self.validity = validity
        self.cache_for = validity / 10 if cache_for is None else cache_for
        if self.cache_for >= validity:
            raise ConfigurationError("OCSP responses cannot be cached for their whole validity")
        self.max_request_size = max_request_size
        self._max_certificates = max_certificates
        self._by_issuer: dict[tuple[str, bytes, bytes], _Served] = {}
        self._cache: dict[_CacheKey, tuple[datetime, OcspAnswer]] = {}
        self._lock = threading.Lock()
        for index, entry in enumerate(authorities):
            served = _Served(index, *_prepare(entry))
            for hash_name in CERTID_HASHES:
                name_hash, key_hash = issuer_hashes(served.ca.certificate, hash_name)
                if (hash_name, name_hash, key_hash) in self._by_issuer:
                    raise ConfigurationError(f"CA {served.ca.name} is configured twice")
                self._by_issuer[(hash_name, name_hash, key_hash)] = served
        if not self._by_issuer:
            raise ConfigurationError("an OCSP responder needs at least one CA")

    def respond(self, request_der: bytes) -> bytes:
        """DER OCSPResponse for DER OCSPRequest bytes (POST body or decoded GET path)."""
        return self.answer(request_der).der

    def answer(self, request_der: bytes) -> OcspAnswer:
        """Like :meth:`respond`, with what was answered and why."""
        try:
            return self._answer(request_der)
        except OcspRequestError as exc:
            return OcspAnswer("malformed_request", MALFORMED_REQUEST_RESPONSE, detail=exc.message)
        except Exception as exc:  # a responder answers; the transport never sees a traceback
            log.exception("OCSP responder failed")
            detail = exc.message if isinstance(exc, EtrustError) else type(exc).__name__
            return OcspAnswer("internal_error", INTERNAL_ERROR_RESPONSE, detail=detail)

    def _answer(self, request_der: bytes) -> OcspAnswer:
        if not isinstance(request_der, bytes | bytearray | memoryview):
            raise OcspRequestError("an OCSP request is bytes")
        if len(request_der) > self.max_request_size:
            raise OcspRequestError(f"request larger than {self.max_request_size} bytes")
        if not request_der:
            raise OcspRequestError("empty request")
        request = _parse_request(bytes(request_der), self._max_certificates)
        served = None
        for cid in request.cert_ids:
            served = self._by_issuer.get((cid.hash_name, cid.name_hash, cid.key_hash))
            if served is not None:
                break
        if served is None:
            return OcspAnswer(
                "unauthorized", UNAUTHORIZED_RESPONSE, detail="no CA served here issued these"
            )
        now = _utc(self._clock())
        signer = served.signer
        if not signer.not_before <= now <= signer.not_after:
            log.error("OCSP signing certificate for %s is not valid now", served.ca.name)
            return OcspAnswer(
                "internal_error",
                INTERNAL_ERROR_RESPONSE,
                ca_name=served.ca.name,
                detail="the responder certificate is not valid now",
            )

        looked_up = [self._lookup(served, cid) for cid in request.cert_ids]
        cache_key: _CacheKey | None = None
        if request.nonce is None and len(looked_up) == 1 and self.cache_for:
            cid = request.cert_ids[0]
            cache_key = (served.index, cid.der, looked_up[0][0], looked_up[0][1])
            hit = self._cache.get(cache_key)
            if hit is not None and now < hit[0]:
                cached: OcspAnswer = hit[1]
                return OcspAnswer(
                    cached.response_status,
                    cached.der,
                    cached.statuses,
                    cached.ca_name,
                    cached=True,
                )

        answer = self._sign(served, request, looked_up, now)
        if cache_key is not None:
            with self._lock:
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[cache_key] = (now + self.cache_for, answer)
        return answer

    def _lookup(self, served: _Served, cid: _CertId) -> tuple[CertStatusName, Revocation | None]:
        if self._by_issuer.get((cid.hash_name, cid.name_hash, cid.key_hash)) is not served:
            return "unknown", None
        status = served.ca.repository.certificate_status(served.ca.name, cid.serial)
        if not status.issued:
            return "unknown", None  # never issued by this CA (RFC 6960 §2.2)
        if status.revocation is not None:
            return "revoked", status.revocation
        return "good", None

    def _sign(
        self,
        served: _Served,
        request: _Request,
        looked_up: list[tuple[CertStatusName, Revocation | None]],
        now: datetime,
    ) -> OcspAnswer:
        signer = served.signer
        next_update = min(now + self.validity, signer.not_after)  # never past the signer's
        times = generalized_time(now) + tlv(0xA0, generalized_time(next_update))
        singles = []
        statuses = []
        for cid, (status, revocation) in zip(request.cert_ids, looked_up, strict=True):
            revoked_at = reason = None
            if revocation is not None:
                revoked_at = _utc(revocation.revoked_at)
                reason = revocation.reason
                info = generalized_time(revoked_at)
                if reason != "unspecified":
                    info += tlv(0xA0, bytes((0x0A, 0x01, _REASON_CODES[reason])))
                cert_status = tlv(0xA1, info)
            else:
                cert_status = b"\x80\x00" if status == "good" else b"\x82\x00"
            singles.append(tlv(0x30, cid.der + cert_status + times))
            statuses.append(
                SingleStatus(
                    cid.serial, status, now, next_update, revoked_at, reason, cid.hash_name
                )
            )
        extensions = b""
        if request.nonce is not None:
            nonce_ext = tlv(0x30, tlv(0x06, _NONCE_OID) + tlv(0x04, request.nonce))
            extensions = tlv(0xA1, tlv(0x30, nonce_ext))
        tbs = tlv(
            0x30,
            signer.responder_id + generalized_time(now) + tlv(0x30, b"".join(singles)) + extensions,
        )
        signature = signer.key.sign(tbs, signer.algorithm)
        basic = tlv(
            0x30,
            tbs + signer.algorithm_der + tlv(0x03, b"\x00" + signature) + signer.certs,
        )
        der = tlv(
            0x30,
            b"\x0a\x01\x00" + tlv(0xA0, tlv(0x30, _BASIC_OID_TLV + tlv(0x04, basic))),
        )
        return OcspAnswer(
            "successful",
            der,
            tuple(statuses),
            served.ca.name,
            nonce=request.nonce is not None,
        )


def _prepare(
    entry: CertificateAuthority | DelegatedResponder,
) -> tuple[CertificateAuthority, _Signer]:
    """Check a served CA's signing identity once and precompute what each answer reuses."""
    if isinstance(entry, DelegatedResponder):
        ca, cert, key = entry.ca, entry.certificate, entry.key
        _check_delegate(ca.certificate, cert)
        algorithm = default_algorithm(key)
    else:
        ca, cert, key = entry, entry.certificate, entry.key
        algorithm = entry.signature_algorithm
    if key.public_key_info.dump() != cert.public_key.dump():
        raise ConfigurationError(f"OCSP for {ca.name}: the key does not match its certificate")
    validity = cert["tbs_certificate"]["validity"]
    return ca, _Signer(
        key=key,
        algorithm=algorithm,
        responder_id=tlv(0xA2, tlv(0x04, key_identifier(cert.public_key))),
        algorithm_der=algorithm.algorithm_identifier().dump(),
        certs=b"" if cert is ca.certificate else tlv(0xA0, tlv(0x30, cert.dump())),
        not_before=_utc(validity["not_before"].native),
        not_after=_utc(validity["not_after"].native),
    )


def _check_delegate(ca_cert: x509.Certificate, cert: x509.Certificate) -> None:
    try:
        _check_authorised(ca_cert, cert)
    except EtrustError as exc:
        raise ConfigurationError(f"delegated OCSP responder refused: {exc.message}") from exc


def _check_authorised(ca_cert: x509.Certificate, cert: x509.Certificate) -> None:
    """RFC 6960 §4.2.2.2: issued directly by the CA, with id-kp-OCSPSigning."""
    if cert.issuer.dump() != ca_cert.subject.dump():
        raise OcspResponderUnauthorizedError("the responder certificate names another issuer")
    eku = cert.extended_key_usage_value
    if eku is None or "ocsp_signing" not in eku.native:
        raise OcspResponderUnauthorizedError("the responder certificate lacks id-kp-OCSPSigning")
    key_usage = cert.key_usage_value
    if key_usage is not None and "digital_signature" not in key_usage.native:
        raise OcspResponderUnauthorizedError("the responder certificate may not sign")
    try:
        signature_octets(cert["signature_value"])
    except InvalidSignatureError as exc:  # a responder certificate that is not even well formed
        raise OcspResponderUnauthorizedError(
            f"the responder certificate's signature is malformed ({exc.message})"
        ) from exc
    verify_issued_by(cert, ca_cert.public_key)


# --- Client side ----------------------------------------------------------------------------


def build_request(
    issuer: x509.Certificate,
    items: Iterable[int | x509.Certificate],
    *,
    hash_algo: str = "sha1",
    nonce: bytes | None = None,
) -> bytes:
    """DER OCSPRequest asking about certificates (or bare serials) that ``issuer`` issued.

    A nonce (16-32 random bytes from ``secrets`` is the norm, RFC 9654) is carried as RFC 6960
    says, an OCTET STRING inside the extension value.
    """
    name_hash, key_hash = issuer_hashes(issuer, hash_algo)
    requests = []
    for item in items:
        if isinstance(item, x509.Certificate):
            if item.issuer.dump() != issuer.subject.dump():
                raise MalformedInputError("the certificate was not issued by this issuer")
            serial = item.serial_number
        elif isinstance(item, int) and not isinstance(item, bool):
            serial = item
        else:
            raise MalformedInputError("ask about certificates or serial numbers")
        requests.append(
            {
                "req_cert": {
                    "hash_algorithm": {"algorithm": hash_algo, "parameters": core.Null()},
                    "issuer_name_hash": name_hash,
                    "issuer_key_hash": key_hash,
                    "serial_number": serial,
                }
            }
        )
    if not requests:
        raise MalformedInputError("an OCSP request asks about at least one certificate")
    tbs: dict[str, object] = {"request_list": requests}
    if nonce is not None:
        if not isinstance(nonce, bytes) or not 1 <= len(nonce) <= MAX_NONCE:
            raise MalformedInputError(f"a nonce is 1 to {MAX_NONCE} bytes")
        tbs["request_extensions"] = [{"extn_id": "nonce", "extn_value": core.OctetString(nonce)}]
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump())


@dataclass(frozen=True)
class OcspResponseInfo:
    """A response read by :func:`parse_response` (unchecked) or :func:`verify_response`."""

    response_status: ResponseStatusName
    produced_at: datetime | None = None
    statuses: tuple[SingleStatus, ...] = ()
    nonce: bytes | None = None
    responder_certificate: x509.Certificate | None = None  # set when a delegate signed

    def status_of(self, serial: int) -> SingleStatus:
        for single in self.statuses:
            if single.serial == serial:
                return single
        raise OcspResponseError(f"the response says nothing about serial {serial:x}")


_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)
"""What asn1crypto raises, lazily, on structures that do not fit their spec."""


def _load(response_der: bytes) -> asn1_ocsp.OCSPResponse:
    if not isinstance(response_der, bytes | bytearray) or not response_der:
        raise OcspResponseError("an OCSP response is non-empty bytes")
    if len(response_der) > MAX_DER:
        raise OcspResponseError(f"OCSP response larger than {MAX_DER} bytes")
    try:
        value: asn1_ocsp.OCSPResponse = parse_der(
            asn1_ocsp.OCSPResponse, bytes(response_der), "OCSP response"
        )
    except MalformedInputError as exc:
        raise OcspResponseError(exc.message) from exc
    status = value["response_status"].native
    has_bytes = isinstance(value["response_bytes"], asn1_ocsp.ResponseBytes)
    if status not in _STATUS_CODES:
        raise OcspResponseError(f"unknown OCSP response status {status!r}")
    if status != "successful":
        if has_bytes:
            raise OcspResponseError("an unsuccessful OCSP response carries no responseBytes")
        return value
    if not has_bytes or value["response_bytes"]["response_type"].native != "basic_ocsp_response":
        raise OcspResponseError("a successful OCSP response without a basic response")
    value.basic_ocsp_response.native  # noqa: B018  (parse it all now, not lazily later)
    return value


def _single(single: asn1_ocsp.SingleResponse) -> SingleStatus:
    cert_id = single["cert_id"]
    status = single["cert_status"]
    revoked_at = reason = None
    if status.name == "revoked":
        revoked_at = status.chosen["revocation_time"].native
        reason = status.chosen["revocation_reason"].native or "unspecified"
    name: CertStatusName = status.name
    return SingleStatus(
        cert_id["serial_number"].native,
        name,
        single["this_update"].native,
        single["next_update"].native,
        revoked_at,
        reason,
        _HASH_BY_OID.get(cert_id["hash_algorithm"]["algorithm"].dotted, "unsupported"),
    )


def _nonce(data: asn1_ocsp.ResponseData) -> bytes | None:
    for ext in data["response_extensions"] or []:
        if ext["extn_id"].native == "nonce":
            raw = ext["extn_value"].contents
            try:
                return bytes(core.OctetString.load(raw, strict=True).native)
            except ValueError:
                return bytes(raw)
    return None


def parse_response(response_der: bytes) -> OcspResponseInfo:
    """Read a response WITHOUT checking it: for logs, tests, and refused responses."""
    try:
        return _parse_response(response_der)
    except _ASN1_ERRORS as exc:
        raise OcspResponseError(f"malformed OCSP response ({exc})") from exc


def _parse_response(response_der: bytes) -> OcspResponseInfo:
    value = _load(response_der)
    status: ResponseStatusName = value["response_status"].native
    if status != "successful":
        return OcspResponseInfo(status)
    data = value.response_data
    return OcspResponseInfo(
        status,
        data["produced_at"].native,
        tuple(_single(s) for s in data["responses"]),
        _nonce(data),
    )


def verify_response(
    response_der: bytes,
    issuer: x509.Certificate,
    *,
    nonce: bytes | None = None,
    at: datetime | None = None,
    skew: timedelta = DEFAULT_SKEW,
) -> OcspResponseInfo:
    """Check a response about certificates ``issuer`` issued, and return their statuses.

    The signer must be ``issuer`` itself or a responder certificate included in the response,
    issued by ``issuer`` and carrying id-kp-OCSPSigning; the signature is checked through the
    algorithm registry; with ``nonce`` the response must echo it; statuses must be current at
    ``at`` (default now) within ``skew``. Only the statuses about ``issuer``'s certificates are
    returned. Raises :class:`OcspResponseError` (or a subclass) or ``InvalidSignatureError``.
    """
    try:
        return _verify_response(response_der, issuer, nonce, at, skew)
    except _ASN1_ERRORS as exc:
        raise OcspResponseError(f"malformed OCSP response ({exc})") from exc


def _verify_response(
    response_der: bytes,
    issuer: x509.Certificate,
    nonce: bytes | None,
    at: datetime | None,
    skew: timedelta,
) -> OcspResponseInfo:
    value = _load(response_der)
    status: ResponseStatusName = value["response_status"].native
    if status != "successful":
        raise OcspResponseRefusedError(f"the responder answered {status}")
    basic = value.basic_ocsp_response
    data = basic["tbs_response_data"]
    when = _utc(at or datetime.now(UTC))

    signer, delegate_cert = _find_signer(basic, issuer)
    if delegate_cert is not None:
        validity = delegate_cert["tbs_certificate"]["validity"]
        if not validity["not_before"].native - skew <= when <= validity["not_after"].native + skew:
            raise OcspResponderUnauthorizedError("the responder certificate is not valid then")
    try:
        signature = signature_octets(basic["signature"])
    except InvalidSignatureError as exc:  # malformed, rather than a signature that fails
        raise OcspResponseError(exc.message) from exc
    verify(signer.public_key, basic["signature_algorithm"], signature, data.dump())

    hashes: dict[str, tuple[bytes, bytes]] = {}
    statuses = []
    for single in data["responses"]:
        cert_id = single["cert_id"]
        hash_name = _HASH_BY_OID.get(cert_id["hash_algorithm"]["algorithm"].dotted)
        if hash_name is None:
            continue
        if hash_name not in hashes:
            hashes[hash_name] = issuer_hashes(issuer, hash_name)
        if hashes[hash_name] != (
            cert_id["issuer_name_hash"].native,
            cert_id["issuer_key_hash"].native,
        ):
            continue  # about another CA's certificate: this signer cannot vouch for it
        parsed = _single(single)
        if parsed.this_update is None or parsed.this_update > when + skew:
            raise OcspResponseError("the response is not valid yet (thisUpdate in the future)")
        if parsed.next_update is not None and parsed.next_update < when - skew:
            raise OcspResponseError("the response is stale (nextUpdate has passed)")
        statuses.append(parsed)
    if not statuses:
        raise OcspResponseError("the response says nothing about this issuer's certificates")

    echoed = _nonce(data)
    if nonce is not None and echoed != nonce:
        raise OcspResponseError("the response does not echo our nonce (possible replay)")
    return OcspResponseInfo(
        status, data["produced_at"].native, tuple(statuses), echoed, delegate_cert
    )


def _find_signer(
    basic: asn1_ocsp.BasicOCSPResponse, issuer: x509.Certificate
) -> tuple[x509.Certificate, x509.Certificate | None]:
    """The certificate whose key signed: ``issuer``, or an authorised delegate in ``certs``."""
    responder_id = basic["tbs_response_data"]["responder_id"]

    def names_signer(cert: x509.Certificate) -> bool:
        if responder_id.name == "by_key":
            return bool(responder_id.chosen.native == key_identifier(cert.public_key))
        return bool(responder_id.chosen.dump() == cert.subject.dump())

    if names_signer(issuer):
        return issuer, None
    for cert in basic["certs"] or []:
        if names_signer(cert):
            _check_authorised(issuer, cert)
            return cert, cert
    raise OcspResponderUnauthorizedError(
        "the response was signed neither by the issuer nor by a responder it certified"
    )
