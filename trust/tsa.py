"""RFC 3161 time-stamping: the authority that answers requests, a request builder, a verifier.

One code path serves SM2 and RSA: the TSA key decides the signature algorithm and, with it, the
digest of the CMS signed attributes and of the ESS certificate hash (SM3 for SM2, SHA-256 for
RSA), so an RSA token passes ``openssl ts -verify`` and an SM2 token is what GB/T 20520 (which
is RFC 3161 in structure) expects.

SM2 tokens name their signature ``sm2-with-sm3`` (1.2.156.10197.1.501) rather than the bare
``SM2-1`` scheme (1.2.156.10197.1.301.1) some GM/T 0010 producers write: it names the hash,
as ``sha256WithRSAEncryption`` does, it is the identifier our certificates and CRLs carry (one
registry entry), and OpenSSL 3 prints it by name. On read both are accepted, as are the GM/T 0010
``signedData`` content-type OID and the plain ``rsaEncryption`` / ``id-ecPublicKey`` identifiers
many CMS producers put in a SignerInfo.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import algos, cms, core, parser, tsp, x509

from trust import (
    asn1_gm,  # noqa: F401  (SM3 and SM2 OIDs known to asn1crypto)
)
from trust.algorithms import (
    DEFAULT_FOR_KEY,
    ECDSA_P256_SHA256,
    RSA_PKCS1_SHA256,
    SM2_SM3,
    SignatureAlgorithm,
    check_key_matches,
    from_identifier,
    key_type_of,
)
from trust.certificates import parse_der, random_serial, verify_issued_by
from trust.clock import Clock, system_clock
from trust.der import one_tlv, set_of, tlv, tlvs
from trust.errors import (
    BuilderError,
    ConfigurationError,
    EtrustError,
    InputTooLargeError,
    InvalidSignatureError,
    MalformedInputError,
    TimestampCertificateError,
    TimestampImprintMismatchError,
    TimestampRejectedError,
    TimestampRequestError,
    TimestampTokenError,
    UnsupportedAlgorithmError,
)
from trust.keys import KeyHandle
from trust.sm2 import DEFAULT_ID

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
"""Largest TimeStampReq we read; a real one is under 200 bytes."""

MAX_TOKEN = 1 << 20
"""Largest token or reply :func:`verify_token` reads."""

EXPIRY_WARNING = timedelta(days=30)
"""A TSA whose certificate expires sooner than this logs a warning when it is set up."""

IMPRINT_HASHES: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32}
"""Message-imprint hashes we stamp and accept, with their digest lengths."""

GM_SIGNED_DATA_OID = "1.2.156.10197.6.1.4.2.2"
"""GM/T 0010 ``signedData``; accepted on read in place of PKCS#7 1.2.840.113549.1.7.2."""

_RSA_ENCRYPTION_OID = "1.2.840.113549.1.1.1"
_EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
_MAX_CHAIN = 8
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_MAX_REQUEST_VALUES = 256  # a TimeStampReq holds about a dozen DER values


class TimeStampResp(tsp.TimeStampResp):
    """RFC 3161 §2.4.2 TimeStampResp; asn1crypto 1.5 forgets that timeStampToken is OPTIONAL.

    Without this a rejection (which carries no token) can be neither written nor read.
    """

    _fields = [  # noqa: RUF012 (asn1crypto declares structures as class lists)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _ReadDigestAlgorithm(core.Sequence):
    """A digest AlgorithmIdentifier with parameters left raw.

    asn1crypto insists on NULL for SHA-2, so a request with other parameters would not parse
    and be answered ``badDataFormat``; ``badAlg`` says what is wrong (OpenSSL answers so too).
    """

    _fields = [  # noqa: RUF012
        ("algorithm", algos.DigestAlgorithmId),
        ("parameters", core.Any, {"optional": True}),
    ]


class _ReadMessageImprint(core.Sequence):
    _fields = [  # noqa: RUF012
        ("hash_algorithm", _ReadDigestAlgorithm),
        ("hashed_message", core.OctetString),
    ]


class _ReadTimeStampReq(core.Sequence):
    """tsp.TimeStampReq as it is read from a client (see :class:`_ReadDigestAlgorithm`)."""

    _fields = [  # noqa: RUF012
        ("version", tsp.Version),
        ("message_imprint", _ReadMessageImprint),
        ("req_policy", core.ObjectIdentifier, {"optional": True}),
        ("nonce", core.Integer, {"optional": True}),
        ("cert_req", core.Boolean, {"default": False}),
        ("extensions", tsp.Extensions, {"implicit": 0, "optional": True}),
    ]


_NULL = b"\x05\x00"


@dataclass(frozen=True)
class TimestampOutcome:
    """What one request produced: the reply to send, and why, for the access log."""

    response: bytes
    status: str
    failure_info: str | None = None
    message: str | None = None
    serial: int | None = None
    gen_time: datetime | None = None
    hash_algorithm: str | None = None

    @property
    def granted(self) -> bool:
        return self.status == "granted"


@dataclass(frozen=True)
class TimestampInfo:
    """The checked content of a token: when, under which policy, over which imprint."""

    gen_time: datetime
    serial: int
    policy: str
    hash_algorithm: str
    hashed_message: bytes
    nonce: int | None
    accuracy: timedelta | None
    certificate: x509.Certificate
    signature_algorithm: str


@dataclass(frozen=True)
class TimestampRequest:
    """A checked TimeStampReq: the imprint is kept as received, to be echoed byte for byte."""

    message_imprint: tsp.MessageImprint
    hash_name: str
    nonce: int | None
    cert_req: bool
    policy: str | None


def _check_oid(oid: str, what: str) -> str:
    if not _OID.match(oid):
        raise ConfigurationError(f"{what} {oid!r} is not a dotted OID")
    return oid


def _accuracy(value: timedelta | None) -> dict[str, int] | None:
    if value is None or value == timedelta(0):
        return None
    if value < timedelta(0):
        raise ConfigurationError("the TSA accuracy cannot be negative")
    micros_total = value // timedelta(microseconds=1)
    seconds, rest = divmod(micros_total, 1_000_000)
    millis, micros = divmod(rest, 1000)
    parts = {"seconds": seconds, "millis": millis, "micros": micros}
    return {k: v for k, v in parts.items() if v}


def _gen_time(now: datetime, accuracy: timedelta | None) -> datetime:
    """UTC, cut to the resolution the accuracy justifies (whole seconds unless it is finer)."""
    now = now.astimezone(UTC)
    if accuracy is None or accuracy >= timedelta(seconds=1):
        return now.replace(microsecond=0)
    if accuracy >= timedelta(milliseconds=1):
        return now.replace(microsecond=now.microsecond // 1000 * 1000)
    return now


def cms_time(moment: datetime) -> cms.Time:
    moment = moment.replace(microsecond=0)
    return cms.Time({"utc_time" if moment.year < 2050 else "generalized_time": moment})


_SEQUENCE, _SET, _OCTET_STRING, _CONTEXT_0 = 0x30, 0x31, 0x04, 0xA0
_V1 = core.Integer(1).dump()
_V3 = core.Integer(3).dump()
_SIGNED_DATA = cms.ContentType("signed_data").dump()
_TST_INFO = cms.ContentType("tst_info").dump()
_CONTENT_TYPE_ATTR = cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}).dump()
_MESSAGE_DIGEST = cms.CMSAttributeType("message_digest").dump()
_GRANTED = tsp.PKIStatusInfo({"status": "granted"}).dump()


def new_nonce() -> int:
    """A 64-bit nonce from ``secrets`` (the size OpenSSL uses)."""
    return int.from_bytes(secrets.token_bytes(8), "big")


def check_tsa_certificate(cert: x509.Certificate) -> None:
    """RFC 3161 §2.3: the only extended key usage is id-kp-timeStamping, and it is critical."""
    eku = cert.extended_key_usage_value
    if eku is None or "extended_key_usage" not in cert.critical_extensions:
        raise TimestampCertificateError("the certificate has no critical extended key usage")
    if list(eku.native) != ["time_stamping"]:
        raise TimestampCertificateError(
            "a TSA certificate's sole extended key usage must be id-kp-timeStamping"
        )
    usage = cert.key_usage_value
    if usage is not None and not usage.native & {"digital_signature", "non_repudiation"}:
        raise TimestampCertificateError("the certificate's key usage does not allow signing")


class TimeStampAuthority:
    """Answers RFC 3161 requests with tokens signed through a :class:`KeyHandle`.

    ``policy`` is stamped when the request names none; a requested policy is honoured only if it
    is ``policy`` or in ``accepted_policies``. Everything constant across replies (the ESS
    certificate ID, the certificate set, the signer ID) is built once here, not per request.

    A certificate that is not valid at the clock's time does not stop the service from starting
    (it is logged); each request is then refused with ``systemFailure``, since a token it signed
    would fail every verifier.
    """

    def __init__(
        self,
        certificate: x509.Certificate,
        key: KeyHandle,
        *,
        policy: str,
        accepted_policies: Iterable[str] = (),
        chain: Sequence[x509.Certificate] = (),
        clock: Clock = system_clock,
        accuracy: timedelta | None = timedelta(seconds=1),
        serial_source: Callable[[], int] = random_serial,
        include_tsa_name: bool = False,
        algorithm: SignatureAlgorithm | None = None,
    ) -> None:
        if key.public_key_info.dump() != certificate.public_key.dump():
            raise ConfigurationError("the TSA key does not match the TSA certificate")
        try:
            check_tsa_certificate(certificate)
        except TimestampCertificateError as exc:
            raise ConfigurationError(f"not a TSA certificate: {exc.message}") from exc
        self.certificate = certificate
        self.key = key
        self._not_before: datetime = certificate.not_valid_before
        self._not_after: datetime = certificate.not_valid_after
        self.policy = _check_oid(policy, "TSA policy")
        self.accepted_policies = frozenset(
            {self.policy, *(_check_oid(p, "accepted policy") for p in accepted_policies)}
        )
        self.clock = clock
        self.accuracy = accuracy
        self._accuracy = _accuracy(accuracy)
        self.serial_source = serial_source
        self.algorithm = algorithm or DEFAULT_FOR_KEY[key.key_type]
        check_key_matches(self.algorithm, key.public_key_info)
        self._hash = self.algorithm.hash_name
        self._tsa_name = (
            x509.GeneralName(name="directory_name", value=certificate.subject)
            if include_tsa_name
            else None
        )
        # The constant parts of every reply, as DER, built once.
        cert_der = certificate.dump()
        self._certificates_der = tlv(_CONTEXT_0, *sorted({cert_der, *(c.dump() for c in chain)}))
        issuer_serial = {
            "issuer": [x509.GeneralName(name="directory_name", value=certificate.issuer)],
            "serial_number": certificate.serial_number,
        }
        self._ess_der = cms.CMSAttribute(
            {
                "type": "signing_certificate_v2",
                "values": [
                    {
                        "certs": [
                            {
                                "hash_algorithm": {"algorithm": self._hash},
                                "cert_hash": hashlib.new(self._hash, cert_der).digest(),
                                "issuer_serial": issuer_serial,
                            }
                        ]
                    }
                ],
            }
        ).dump()
        self._sid_der = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": certificate.issuer, "serial_number": certificate.serial_number},
        ).dump()
        self._digest_algorithm_der = algos.DigestAlgorithm({"algorithm": self._hash}).dump()
        self._signature_algorithm_der = self.algorithm.algorithm_identifier().dump()
        self._log_validity()

    def _log_validity(self) -> None:
        """Say at start-up, not at the first refused request, that the certificate is unusable."""
        try:
            now = self.clock()
        except Exception:  # process() answers timeNotAvailable while the clock fails
            log.warning("TSA clock failed at start-up; certificate validity not checked")
            return
        if now.tzinfo is None:  # refused request by request, see process_parsed()
            return
        problem = self._validity_problem(now)
        subject = self.certificate.subject.human_friendly
        if problem is not None:
            log.error("TSA %s: %s; every request will be refused", subject, problem)
        elif self._not_after - now < EXPIRY_WARNING:
            log.warning(
                "TSA %s: the certificate expires on %s", subject, self._not_after.isoformat()
            )

    def _validity_problem(self, moment: datetime) -> str | None:
        if moment < self._not_before:
            return "the TSA certificate is not yet valid"
        if moment > self._not_after:
            return "the TSA certificate has expired"
        return None

    def respond(self, request_der: bytes) -> bytes:
        """The TimeStampResp for an ``application/timestamp-query`` body; never raises."""
        return self.process(request_der).response

    def process(self, request_der: bytes) -> TimestampOutcome:
        """Like :meth:`respond`, but also says what happened and why, for logging."""
        try:
            request = parse_request(request_der)
        except TimestampRequestError as exc:
            return rejection(exc.failure_info, exc.message)
        return self.process_parsed(request)

    def process_parsed(self, request: TimestampRequest) -> TimestampOutcome:
        """:meth:`process` for a request already read with :func:`parse_request`.

        For a caller that reads the request first (to pick the SM2 or RSA TSA by its imprint
        hash) and should not pay for reading it twice. Never raises.
        """
        policy = request.policy or self.policy
        if policy not in self.accepted_policies:
            return rejection("unaccepted_policy", f"policy {policy} is not offered")
        try:
            now = self.clock()
            if now.tzinfo is None:
                raise ConfigurationError("the TSA clock answered a naive datetime")
        except Exception as exc:
            log.exception("TSA clock failed")
            return rejection("time_not_available", "time source unavailable", detail=str(exc))
        gen_time = _gen_time(now, self.accuracy)
        problem = self._validity_problem(gen_time)
        if problem is not None:
            log.error("TSA %s: %s", self.certificate.subject.human_friendly, problem)
            return rejection("system_failure", problem, detail=f"at {gen_time.isoformat()}")
        try:
            serial = self.serial_source()
            if serial <= 0 or serial.bit_length() > 159:
                raise ConfigurationError("TSA serial numbers are positive and at most 20 octets")
            token = self._token(request, policy, gen_time, serial)
        except Exception as exc:
            log.exception("TSA could not sign a token")
            return rejection("system_failure", "system failure", detail=str(exc))
        return TimestampOutcome(
            tlv(_SEQUENCE, _GRANTED, token),
            "granted",
            serial=serial,
            gen_time=gen_time,
            hash_algorithm=request.hash_name,
        )

    def _token(
        self, request: TimestampRequest, policy: str, gen_time: datetime, serial: int
    ) -> bytes:
        """The DER ContentInfo: SignedData v3 over the TSTInfo, one SignerInfo (RFC 3161 §2.4.2)."""
        tst: dict[str, Any] = {
            "version": "v1",
            "policy": policy,
            "message_imprint": request.message_imprint,
            "serial_number": serial,
            "gen_time": gen_time,
            "accuracy": self._accuracy,
            "nonce": request.nonce,
        }
        if self._tsa_name is not None:
            tst["tsa"] = self._tsa_name
        tst_der = tsp.TSTInfo(tst).dump()
        signing_time = cms.CMSAttribute(
            {"type": "signing_time", "values": [cms_time(gen_time)]}
        ).dump()
        message_digest = tlv(
            _SEQUENCE,
            _MESSAGE_DIGEST,
            tlv(_SET, tlv(_OCTET_STRING, hashlib.new(self._hash, tst_der).digest())),
        )
        # DER orders a SET OF by the encodings of its members.
        attrs = b"".join(sorted((_CONTENT_TYPE_ATTR, signing_time, message_digest, self._ess_der)))
        signature = self.key.sign(set_of(attrs), self.algorithm, sm2_id=DEFAULT_ID)
        signer_info = tlv(
            _SEQUENCE,
            _V1,
            self._sid_der,
            self._digest_algorithm_der,
            tlv(_CONTEXT_0, attrs),
            self._signature_algorithm_der,
            tlv(_OCTET_STRING, signature),
        )
        signed_data = tlv(
            _SEQUENCE,
            _V3,
            tlv(_SET, self._digest_algorithm_der),
            tlv(_SEQUENCE, _TST_INFO, tlv(_CONTEXT_0, tlv(_OCTET_STRING, tst_der))),
            self._certificates_der if request.cert_req else b"",
            tlv(_SET, signer_info),
        )
        return tlv(_SEQUENCE, _SIGNED_DATA, tlv(_CONTEXT_0, signed_data))


def rejection(failure_info: str, text: str, *, detail: str | None = None) -> TimestampOutcome:
    status = tsp.PKIStatusInfo(
        {"status": "rejection", "status_string": [text], "fail_info": {failure_info}}
    )
    return TimestampOutcome(
        TimeStampResp({"status": status}).dump(),
        "rejection",
        failure_info=failure_info,
        message=f"{text}: {detail}" if detail else text,
    )


def parse_request(der: bytes) -> TimestampRequest:
    """Read a TimeStampReq, or raise :class:`TimestampRequestError` naming the PKIFailureInfo.

    Not DER at all (garbage, truncated, empty, too large) is ``badRequest``; DER that is not a
    TimeStampReq is ``badDataFormat``.
    """
    if not isinstance(der, bytes | bytearray) or not der:
        raise TimestampRequestError("empty request")
    if len(der) > MAX_REQUEST:
        raise TimestampRequestError(f"request larger than {MAX_REQUEST} bytes")
    der = bytes(der)
    try:
        parser.parse(der, strict=True)
    except ValueError as exc:
        raise TimestampRequestError(f"request is not DER: {exc}") from exc
    try:
        count_values(der, "request", _MAX_REQUEST_VALUES)
    except InputTooLargeError as exc:  # asn1crypto would spend ~0.1 s on 64 KiB of them
        raise TimestampRequestError(exc.message) from exc
    except MalformedInputError as exc:
        raise TimestampRequestError(exc.message, failure_info="bad_data_format") from exc
    try:
        req = _ReadTimeStampReq.load(der, strict=True)
        req.native  # noqa: B018  (asn1crypto is lazy: parse everything now)
    except Exception as exc:  # asn1crypto raises many types on hostile input
        raise TimestampRequestError(
            f"not a TimeStampReq: {exc}", failure_info="bad_data_format"
        ) from exc
    if req["version"].native != "v1":
        raise TimestampRequestError(f"unsupported request version {req['version'].native}")
    if req["extensions"].native:
        raise TimestampRequestError(
            "request extensions are not supported", failure_info="unaccepted_extensions"
        )
    imprint = req["message_imprint"]
    algorithm = imprint["hash_algorithm"]
    hash_name = algorithm["algorithm"].native
    if hash_name not in IMPRINT_HASHES:
        raise TimestampRequestError(
            f"hash algorithm {hash_name} is not accepted", failure_info="bad_alg"
        )
    parameters = algorithm["parameters"]
    if not isinstance(parameters, core.Void) and parameters.dump() != _NULL:
        raise TimestampRequestError(f"{hash_name} takes no parameters", failure_info="bad_alg")
    if len(imprint["hashed_message"].native) != IMPRINT_HASHES[hash_name]:
        raise TimestampRequestError(
            f"a {hash_name} imprint is {IMPRINT_HASHES[hash_name]} bytes, not "
            f"{len(imprint['hashed_message'].native)}"
        )
    policy = req["req_policy"]
    return TimestampRequest(
        message_imprint=tsp.MessageImprint.load(imprint.dump()),
        hash_name=hash_name,
        nonce=req["nonce"].native,
        cert_req=bool(req["cert_req"].native),
        policy=None if policy.native is None else policy.dotted,
    )


def build_request(
    data: bytes | None = None,
    *,
    digest: bytes | None = None,
    hash_name: str = "sha256",
    nonce: bool | int = True,
    cert_req: bool = True,
    policy: str | None = None,
) -> bytes:
    """A DER TimeStampReq over ``data`` (hashed here) or a ready ``digest``.

    ``nonce=True`` draws a fresh one from ``secrets``; an int is used as given (tests, retries).
    """
    if hash_name not in IMPRINT_HASHES:
        raise UnsupportedAlgorithmError(
            f"imprint hash {hash_name!r}; use one of {', '.join(IMPRINT_HASHES)}"
        )
    if (data is None) == (digest is None):
        raise BuilderError("give either data or its digest")
    if digest is None:
        assert data is not None
        digest = hashlib.new(hash_name, data).digest()
    elif len(digest) != IMPRINT_HASHES[hash_name]:
        raise MalformedInputError(f"a {hash_name} digest is {IMPRINT_HASHES[hash_name]} bytes")
    nonce_value = (new_nonce() if nonce else None) if isinstance(nonce, bool) else nonce
    if policy is not None and not _OID.match(policy):
        raise MalformedInputError(f"policy {policy!r} is not a dotted OID")
    req = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": hash_name},
                "hashed_message": digest,
            },
            "req_policy": policy,
            "nonce": nonce_value,
            "cert_req": cert_req,
        }
    )
    return bytes(req.dump())


# --- verification -------------------------------------------------------------------------


_MAX_TLVS = 10_000
"""Most values a token may hold in all, counted before asn1crypto parses any of it: ours hold
about 260 with two certificates. asn1crypto spends microseconds per value, so without a cap a
hostile 1 MiB token of tiny values costs seconds of parsing; with it, at most ~0.2 s."""

_MAX_DEPTH = 48
"""Deepest nesting :func:`count_values` follows; a token with certificates nests about 12 deep."""


def _header(data: bytes, pointer: int, end: int) -> tuple[int, int, int]:
    """Identifier octet, contents start and contents end (-1: indefinite) of the TLV at ``pointer``.

    BER as asn1crypto reads it (indefinite lengths included), so the count covers every token
    the structured readers accept; reading by offset, it copies nothing.
    """
    if end - pointer < 2:
        raise ValueError("truncated header")
    first = data[pointer]
    pointer += 1
    if first & 0x1F == 0x1F:  # high tag number: base-128 octets
        for _ in range(4):
            if pointer == end:
                raise ValueError("truncated tag")
            pointer += 1
            if not data[pointer - 1] & 0x80:
                break
        else:
            raise ValueError("tag number too long")
    if pointer == end:
        raise ValueError("truncated length")
    size = data[pointer]
    pointer += 1
    if size == 0x80:
        if not first & 0x20:
            raise ValueError("indefinite length on a primitive value")
        return first, pointer, -1
    if size & 0x80:
        count = size & 0x7F
        if count > 4 or end - pointer < count:
            raise ValueError("truncated or oversized length")
        size = int.from_bytes(data[pointer : pointer + count], "big")
        pointer += count
    if end - pointer < size:
        raise ValueError("length beyond the enclosing value")
    return first, pointer, pointer + size


def count_values(data: bytes, what: str, limit: int = _MAX_TLVS) -> int:
    """The number of TLVs in ``data``, nested ones included; more than ``limit`` is refused.

    DER wrapped in an OCTET STRING (the TSTInfo, extension values) is counted too, since
    asn1crypto parses it; an OCTET STRING that merely starts like a SEQUENCE but is not DER
    (a digest) is taken as the opaque bytes it is. Each value is visited once, by offset, and
    the walk stops at the cap, so its own cost is bounded whatever the input.
    """
    count = 0
    # Frames: [next offset, bound, indefinite, opaque root]; an indefinite frame ends at its
    # end-of-contents octets and then moves its parent's offset past them.
    stack = [[0, len(data), 0, 0]]
    while stack:
        frame = stack[-1]
        pointer, bound, indefinite, _ = frame
        try:
            if pointer == bound:
                if indefinite:
                    raise ValueError("no end-of-contents octets")
                stack.pop()
                continue
            first, start, stop = _header(data, pointer, bound)
            count += 1
            if count > limit:
                raise InputTooLargeError(f"{what}: more than {limit} DER values")
            if first == 0 and stop == start:  # end-of-contents
                if not indefinite:
                    raise ValueError("end-of-contents octets in a definite-length value")
                stack.pop()
                stack[-1][0] = start
            elif stop < 0:
                stack.append([start, bound, 1, 0])
            else:
                frame[0] = stop
                if first & 0x20:
                    stack.append([start, stop, 0, 0])
                elif first == 0x04 and stop > start and data[start] == 0x30:
                    stack.append([start, stop, 0, 1])
            if len(stack) > _MAX_DEPTH:
                raise ValueError(f"nested more than {_MAX_DEPTH} deep")
        except ValueError as exc:
            # Inside an OCTET STRING: opaque bytes after all. Elsewhere: not DER.
            while stack and not stack.pop()[3]:
                pass
            if not stack:
                raise MalformedInputError(f"{what}: malformed DER ({exc})") from exc
    return count


def token_der(der: bytes) -> bytes:
    """The token's DER, from a bare token (ContentInfo) or a whole reply (TimeStampResp)."""
    if not isinstance(der, bytes | bytearray):
        raise MalformedInputError("time-stamp token: expected bytes")
    if len(der) > MAX_TOKEN:
        raise InputTooLargeError(f"time-stamp token larger than {MAX_TOKEN} bytes")
    der = bytes(der)
    count_values(der, "time-stamp token")
    outer = one_tlv(der, "time-stamp token")
    parts = tlvs(outer.contents, "time-stamp token")
    if parts and (parts[0].cls, parts[0].tag) == (0, 6):  # OBJECT IDENTIFIER: a bare token
        return outer.encoded
    if not parts or len(parts) > 2:
        raise MalformedInputError("neither a time-stamp token nor a reply")
    status = parse_der(tsp.PKIStatusInfo, parts[0].encoded, "time-stamp reply status")
    if status["status"].native not in ("granted", "granted_with_mods"):
        failures = ", ".join(sorted(status["fail_info"].native or ())) or "none given"
        text = "; ".join(status["status_string"].native or ())
        raise TimestampRejectedError(
            f"the TSA answered {status['status'].native} ({failures}){': ' + text if text else ''}"
        )
    if len(parts) != 2:
        raise TimestampTokenError("a granted reply without a token")
    return parts[1].encoded


@dataclass(frozen=True)
class _TokenParts:
    tst_info: bytes
    signed_attrs: bytes  # re-tagged as SET OF: the bytes that were signed
    signer_info: cms.SignerInfo
    certificates: list[bytes]


def _token_parts(token_der: bytes) -> _TokenParts:
    """Split a token into its signed pieces (RFC 5652 §5, read as the bytes on the wire)."""
    what = "time-stamp token"
    info = tlvs(one_tlv(token_der, what).contents, what)
    if (
        len(info) != 2
        or (info[0].cls, info[0].tag) != (0, 6)
        or (info[1].cls, info[1].tag) != (2, 0)
    ):
        raise MalformedInputError(f"{what}: not a ContentInfo")
    content_type = parse_der(core.ObjectIdentifier, info[0].encoded, what).dotted
    if content_type not in (cms.ContentType.unmap("signed_data"), GM_SIGNED_DATA_OID):
        raise TimestampTokenError(f"a time-stamp token is SignedData, not {content_type}")
    signed = tlvs(one_tlv(info[1].contents, what).contents, what)
    if len(signed) < 4:
        raise MalformedInputError(f"{what}: SignedData is incomplete")
    encap, optional, signer_infos = signed[2], signed[3:-1], signed[-1]

    encap_parts = tlvs(encap.contents, what)
    if len(encap_parts) != 2 or (encap_parts[1].cls, encap_parts[1].tag) != (2, 0):
        raise TimestampTokenError("the token encapsulates no content")
    econtent_type = parse_der(core.ObjectIdentifier, encap_parts[0].encoded, what).dotted
    if econtent_type != cms.ContentType.unmap("tst_info"):
        raise TimestampTokenError(f"the token encapsulates {econtent_type}, not id-ct-TSTInfo")
    econtent = one_tlv(encap_parts[1].contents, what)
    if (econtent.cls, econtent.tag, econtent.constructed) == (0, 4, False):
        tst_info = econtent.contents
    elif (econtent.cls, econtent.tag) == (0, 16):  # PKCS#7 style: the TSTInfo itself
        tst_info = econtent.encoded
    else:
        raise TimestampTokenError("the TSTInfo is not in a primitive OCTET STRING")

    certificates = [
        c.encoded
        for part in optional
        if (part.cls, part.tag) == (2, 0)
        for c in tlvs(part.contents, what)
        if (c.cls, c.tag) == (0, 16)  # certificates, not attribute or other certificates
    ]
    infos = tlvs(signer_infos.contents, what)
    if len(infos) != 1:
        raise TimestampTokenError("a time-stamp token carries exactly one signature")
    attrs = [p for p in tlvs(infos[0].contents, what) if (p.cls, p.tag) == (2, 0)]
    if len(attrs) != 1:
        raise TimestampTokenError("a time-stamp token needs signed attributes")
    return _TokenParts(
        tst_info=tst_info,
        signed_attrs=set_of(attrs[0].contents),
        signer_info=parse_der(cms.SignerInfo, infos[0].encoded, "SignerInfo"),
        certificates=certificates,
    )


def single_attribute(attrs: cms.CMSAttributes, name: str, required: bool = True) -> Any:
    found = [a for a in attrs if a["type"].native == name]
    if not found:
        if required:
            raise TimestampTokenError(f"the signed attributes lack {name}")
        return None
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise TimestampTokenError(f"the signed attribute {name} must occur once, single-valued")
    return found[0]["values"][0]


def find_signer(sid: cms.SignerIdentifier, pool: Sequence[x509.Certificate]) -> x509.Certificate:
    for cert in pool:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if (
                ias["serial_number"].native == cert.serial_number
                and ias["issuer"].dump() == cert.issuer.dump()
            ):
                return cert
        elif sid.chosen.native == cert.key_identifier:
            return cert
    raise TimestampCertificateError("the TSA certificate is neither in the token nor given")


def check_ess(attrs: cms.CMSAttributes, signer: x509.Certificate) -> None:
    """The ESS signing-certificate(-v2) attribute must name the certificate that signed."""
    v2 = single_attribute(attrs, "signing_certificate_v2", required=False)
    v1 = single_attribute(attrs, "signing_certificate", required=False)
    if v2 is not None:
        cert_id = v2["certs"][0]
        hash_name = cert_id["hash_algorithm"]["algorithm"].native
        if hash_name not in IMPRINT_HASHES:
            raise UnsupportedAlgorithmError(f"ESS certificate hash {hash_name} is not supported")
    elif v1 is not None:
        cert_id = v1["certs"][0]
        hash_name = "sha1"
    else:
        raise TimestampTokenError("the signed attributes lack the ESS signing certificate")
    expected = hashlib.new(hash_name, signer.dump(), usedforsecurity=False).digest()
    if not hmac.compare_digest(expected, cert_id["cert_hash"].native):
        raise TimestampCertificateError("the ESS certificate hash names another certificate")
    issuer_serial = cert_id["issuer_serial"]
    if issuer_serial.native is not None and (
        issuer_serial["serial_number"].native != signer.serial_number
        or not any(
            g.name == "directory_name" and g.chosen == signer.issuer
            for g in issuer_serial["issuer"]
        )
    ):
        raise TimestampCertificateError("the ESS issuer and serial name another certificate")


def signer_algorithm(
    signer_info: cms.SignerInfo, signer: x509.Certificate, digest_name: str
) -> SignatureAlgorithm:
    """Our registry entry; also the bare key OIDs CMS producers often write (RFC 5754 §3)."""
    identifier = signer_info["signature_algorithm"]
    try:
        return from_identifier(identifier)
    except UnsupportedAlgorithmError:
        oid = identifier["algorithm"].dotted
        key_type = key_type_of(signer.public_key)
        if oid == _RSA_ENCRYPTION_OID and key_type == "rsa" and digest_name == "sha256":
            return RSA_PKCS1_SHA256
        if oid == _EC_PUBLIC_KEY_OID and key_type == "sm2" and digest_name == "sm3":
            return SM2_SM3
        if oid == _EC_PUBLIC_KEY_OID and key_type == "ec-p256" and digest_name == "sha256":
            return ECDSA_P256_SHA256
        raise


def _check_valid_at(cert: x509.Certificate, moment: datetime) -> None:
    if not cert.not_valid_before <= moment <= cert.not_valid_after:
        raise TimestampCertificateError(
            f"certificate {cert.subject.human_friendly!r} was not valid at {moment.isoformat()}"
        )


def _check_chain(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    at: datetime,
) -> None:
    """Walk issuer links up to a trusted certificate, checking each signature and validity.

    A link check, not full RFC 5280 path validation: for revocation, give
    :attr:`TimestampInfo.certificate` and the CRLs or OCSP answers to
    :func:`trust.validation.validate_chain` as of :attr:`TimestampInfo.gen_time`.
    """
    trusted_ders = {c.dump() for c in trusted}
    current = signer
    for depth in range(_MAX_CHAIN):
        _check_valid_at(current, at)
        if current.dump() in trusted_ders:
            return
        issuer_der = current.issuer.dump()
        for candidate in pool:
            if candidate.subject.dump() != issuer_der or candidate.dump() == current.dump():
                continue
            if not candidate.ca:
                continue
            limit = candidate.max_path_length
            if limit is not None and limit < depth:
                continue
            try:
                verify_issued_by(current, candidate.public_key)
            except (InvalidSignatureError, UnsupportedAlgorithmError):
                continue
            current = candidate
            break
        else:
            raise TimestampCertificateError(
                f"no trusted issuer for {current.subject.human_friendly!r}"
            )
    raise TimestampCertificateError(f"no trusted certificate within {_MAX_CHAIN} links")


def verify_token(
    token: bytes,
    *,
    trusted: Iterable[x509.Certificate],
    data: bytes | None = None,
    digest: bytes | None = None,
    hash_name: str | None = None,
    request: bytes | None = None,
    certificates: Iterable[x509.Certificate] = (),
) -> TimestampInfo:
    """Check a token (or a whole reply) and return what it says.

    Say what it should stamp with exactly one of ``data``, ``digest`` with its ``hash_name``, or
    the ``request`` it answers (then the nonce and any requested policy must match too).
    ``trusted`` holds CA certificates or the TSA certificate itself (pinning); ``certificates``
    supplies the TSA certificate when the token was requested without certReq.

    Raises :class:`TimestampImprintMismatchError` for a token over other data,
    :class:`TimestampCertificateError` for a signer that is no trusted TSA,
    :class:`InvalidSignatureError` for a bad signature, :class:`TimestampTokenError` for any other
    broken token and :class:`MalformedInputError` for bytes that do not parse.
    """
    if sum(x is not None for x in (data, digest, request)) != 1:
        raise BuilderError("give exactly one of data, digest or request")
    if digest is not None and hash_name is None:
        raise BuilderError("a digest needs its hash_name")
    trusted = list(trusted)
    if not trusted:
        raise BuilderError("verify_token needs trusted certificates")
    parsed_request = _relying_party_request(request) if request is not None else None
    try:
        return _verify(
            _token_parts(token_der(token)),
            trusted,
            list(certificates),
            parsed_request,
            data,
            digest,
            hash_name,
        )
    except EtrustError:
        raise
    except Exception as exc:  # lazily parsed certificates fail late on hostile input
        raise MalformedInputError(f"time-stamp token: malformed content ({exc})") from exc


def _verify(
    parts: _TokenParts,
    trusted: list[x509.Certificate],
    extra: list[x509.Certificate],
    parsed_request: TimestampRequest | None,
    data: bytes | None,
    digest: bytes | None,
    hash_name: str | None,
) -> TimestampInfo:
    tst: tsp.TSTInfo = parse_der(tsp.TSTInfo, parts.tst_info, "TSTInfo")
    if tst["version"].native != "v1":
        raise TimestampTokenError(f"unsupported TSTInfo version {tst['version'].native}")
    signer_info = parts.signer_info
    token_certs = [x509.Certificate.load(der) for der in parts.certificates]
    signer = find_signer(signer_info["sid"], [*token_certs, *extra, *trusted])

    attrs: cms.CMSAttributes = parse_der(cms.CMSAttributes, parts.signed_attrs, "signed attributes")
    content_type = single_attribute(attrs, "content_type")
    if content_type.native != "tst_info":
        raise TimestampTokenError("the content-type attribute is not id-ct-TSTInfo")
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in IMPRINT_HASHES:
        raise UnsupportedAlgorithmError(f"CMS digest {digest_name} is not supported")
    claimed = single_attribute(attrs, "message_digest").native
    if not hmac.compare_digest(hashlib.new(digest_name, parts.tst_info).digest(), claimed):
        raise TimestampTokenError("the TSTInfo does not match the signed message digest")
    check_ess(attrs, signer)

    algorithm = signer_algorithm(signer_info, signer, digest_name)
    algorithm.verify(
        signer.public_key, signer_info["signature"].native, parts.signed_attrs, sm2_id=DEFAULT_ID
    )

    check_tsa_certificate(signer)
    gen_time: datetime = tst["gen_time"].native
    _check_chain(signer, [*token_certs, *extra, *trusted], trusted, gen_time)

    imprint = tst["message_imprint"]
    imprint_hash = imprint["hash_algorithm"]["algorithm"].native
    hashed = imprint["hashed_message"].native
    if imprint_hash not in IMPRINT_HASHES:
        raise UnsupportedAlgorithmError(f"imprint hash {imprint_hash} is not supported")
    nonce = tst["nonce"].native
    if parsed_request is not None:
        wanted_hash = parsed_request.hash_name
        wanted = parsed_request.message_imprint["hashed_message"].native
        if parsed_request.nonce is not None and parsed_request.nonce != nonce:
            raise TimestampImprintMismatchError("the token's nonce is not the request's")
        if parsed_request.policy is not None and parsed_request.policy != tst["policy"].dotted:
            raise TimestampImprintMismatchError("the token's policy is not the one requested")
        if parsed_request.cert_req and signer.dump() not in parts.certificates:
            raise TimestampTokenError("certReq was set but the token lacks the TSA certificate")
    elif data is not None:
        wanted_hash = imprint_hash
        wanted = hashlib.new(imprint_hash, data).digest()
    else:
        assert digest is not None and hash_name is not None
        wanted_hash, wanted = hash_name, digest
    if wanted_hash != imprint_hash or not hmac.compare_digest(wanted, hashed):
        raise TimestampImprintMismatchError("the token stamps other data")

    accuracy = tst["accuracy"]
    return TimestampInfo(
        gen_time=gen_time,
        serial=tst["serial_number"].native,
        policy=tst["policy"].dotted,
        hash_algorithm=imprint_hash,
        hashed_message=hashed,
        nonce=nonce,
        accuracy=None
        if accuracy.native is None
        else timedelta(
            seconds=accuracy["seconds"].native or 0,
            milliseconds=accuracy["millis"].native or 0,
            microseconds=accuracy["micros"].native or 0,
        ),
        certificate=signer,
        signature_algorithm=algorithm.name,
    )


def _relying_party_request(der: bytes) -> TimestampRequest:
    """:func:`parse_request` for a relying party: a bad request is bad input, not a rejection."""
    try:
        return parse_request(der)
    except TimestampRequestError as exc:
        raise MalformedInputError(f"time-stamp request: {exc.message}") from exc
