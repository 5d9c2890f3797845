"""Certificate path validation (RFC 5280) on pyhanko-certvalidator, with SM2 as a peer of RSA.

certvalidator builds and walks the path; every signature it meets (certificates, CRLs, OCSP
answers) goes through our algorithm registry via :class:`Sm2CapableSignatureValidator`, so SM2
is checked with the GM/T 0009 default ID. Its errors are mapped onto stable reason codes and a
:class:`ValidationReport`: a verification never raises for a bad document.

certvalidator is async inside. :func:`avalidate_chain` is the async API; :func:`validate_chain`
runs it with ``asyncio.run`` or, when the calling thread already runs an event loop (a FastAPI
``async def`` handler), on a worker thread with its own loop. Nothing is ever fetched from the
network: CRLs and OCSP responses are given by the caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, TypedDict, TypeVar

from asn1crypto import algos, crl, keys, ocsp, x509
from cryptography.exceptions import InvalidSignature
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    AlgorithmNotSupported,
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    AlgorithmUsageConstraint,
    DisallowWeakAlgorithmsPolicy,
)
from pyhanko_certvalidator.registry import CertificateRegistry, SimpleTrustManager
from pyhanko_certvalidator.revinfo import validate_ocsp as _certvalidator_ocsp
from pyhanko_certvalidator.sig_validate import (
    DEFAULT_VALIDATION_CONTEXT,
    SignatureValidationContext,
    SignatureValidator,
)
from pyhanko_certvalidator.validate import validate_usage

from trust import asn1_gm  # noqa: F401  (SM2 OIDs known to asn1crypto)
from trust.algorithms import key_type_of, signature_octets, verify, verify_signed
from trust.ca import describe_name
from trust.certificates import load_certificate, load_certificates, parse_der, unarmor
from trust.crl import load_crl
from trust.errors import (
    EtrustError,
    InvalidSignatureError,
    MalformedInputError,
    UnsupportedAlgorithmError,
    WeakKeyError,
)
from trust.sm2 import DEFAULT_ID

log = logging.getLogger(__name__)

Verdict = Literal["PASSED", "FAILED", "INDETERMINATE"]
RevocationMode = Literal["require", "hard-fail", "soft-fail", "none"]
CertificateInput: TypeAlias = bytes | x509.Certificate
CrlInput: TypeAlias = bytes | crl.CertificateList
OcspInput: TypeAlias = bytes | ocsp.OCSPResponse

REVOCATION_MODES: tuple[RevocationMode, ...] = ("require", "hard-fail", "soft-fail", "none")
"""certvalidator's legacy modes: ``require`` needs a CRL or OCSP answer for every certificate
below the root; ``hard-fail`` only for those that name a CRL or OCSP location; ``soft-fail``
uses what is given and ignores what is missing; ``none`` skips revocation."""

_SM2_SIGNATURES = frozenset({"sm2_sm3", "sm2"})


# --------------------------------------------------------------------------------------------
# Reasons: stable codes, their verdicts and plain messages


@dataclass(frozen=True)
class _Reason:
    verdict: Verdict
    en: str
    zh: str


REASONS: dict[str, _Reason] = {
    "OK": _Reason("PASSED", "The certificate chain is valid.", "证书链验证通过"),
    "SIGNATURE_INVALID": _Reason(
        "FAILED", "A signature in the certificate chain does not verify.", "证书签名验证未通过"
    ),
    "EXPIRED": _Reason("FAILED", "A certificate in the chain has expired.", "证书已过期"),
    "NOT_YET_VALID": _Reason(
        "FAILED", "A certificate in the chain is not yet valid.", "证书尚未生效"
    ),
    "REVOKED": _Reason("FAILED", "A certificate in the chain has been revoked.", "证书已被吊销"),
    "NO_PATH": _Reason(
        "INDETERMINATE",
        "No chain to a trusted root could be built: an issuer certificate is missing.",
        "无法构建到可信根证书的证书链（缺少签发者证书）",
    ),
    "UNTRUSTED_ROOT": _Reason(
        "FAILED", "The chain ends at a root that is not trusted.", "证书链的根证书不受信任"
    ),
    "NAME_CHAINING": _Reason(
        "FAILED",
        "The chain is broken: an issuer is not a CA, or its name does not match.",
        "证书链不连贯：签发者不是证书机构或名称不匹配",
    ),
    "KEY_USAGE": _Reason(
        "FAILED", "A certificate is not allowed to be used for this purpose.", "证书用途不符"
    ),
    "PATH_LENGTH": _Reason(
        "FAILED", "The chain is longer than a CA allows.", "证书链长度超出证书机构的限制"
    ),
    "REVOCATION_UNKNOWN": _Reason(
        "INDETERMINATE",
        "The revocation status could not be established from the data given.",
        "无法确认证书是否已被吊销",
    ),
    "ALGORITHM_UNSUPPORTED": _Reason(
        "INDETERMINATE", "A signature uses an algorithm we cannot verify.", "不支持的签名算法"
    ),
    "ALGORITHM_DISALLOWED": _Reason(
        "FAILED", "A signature uses an algorithm or key too weak to accept.", "签名算法强度不足"
    ),
    "CRITICAL_EXTENSION": _Reason(
        "FAILED",
        "A certificate carries a critical extension we do not understand.",
        "证书含有无法识别的关键扩展",
    ),
    "NAME_CONSTRAINTS": _Reason(
        "FAILED",
        "A certificate name is outside what its CA may certify.",
        "证书名称超出签发者的限制",
    ),
    "POLICY": _Reason(
        "FAILED", "The chain has no acceptable certificate policy.", "证书策略不符合要求"
    ),
    "PATH_INVALID": _Reason("FAILED", "The certificate chain is not valid.", "证书链无效"),
    "MALFORMED": _Reason(
        "FAILED",
        "An input (certificate, CRL or OCSP response) is not well-formed.",
        "证书或吊销信息格式错误",
    ),
    "INTERNAL": _Reason(
        "INDETERMINATE",
        "The validation could not be completed because of an internal error (it was logged).",
        "验证过程中发生内部错误，无法得出结论",
    ),
}


class Check(TypedDict):
    """One step of the verification, for people and logs: name, result, detail."""

    name: str
    result: Literal["passed", "failed", "indeterminate", "skipped"]
    detail: str


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of one path validation; never an exception for a bad document."""

    verdict: Verdict
    reason: str
    message: str
    message_zh: str
    moment: datetime
    path: tuple[str, ...] = ()
    """Subjects from the leaf to the root (on failure: the candidate path, if one was built)."""
    certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    checks: tuple[Check, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == "PASSED"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (certificates left out: callers add PEM if they want it)."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "message": self.message,
            "message_zh": self.message_zh,
            "moment": self.moment.isoformat(),
            "path": list(self.path),
            "checks": [dict(c) for c in self.checks],
        }


def _report(
    reason: str,
    detail: str,
    moment: datetime,
    *,
    checks: list[Check],
    certificates: Iterable[x509.Certificate] = (),
) -> ValidationReport:
    spec = REASONS[reason]
    shared = tuple(certificates)
    message = spec.en if reason == "OK" or not detail else f"{spec.en} {detail}"
    return ValidationReport(
        verdict=spec.verdict,
        reason=reason,
        message=message,
        message_zh=spec.zh,
        moment=moment,
        path=tuple(_subject_text(c.subject) for c in shared),
        certificates=tuple(_copy(c) for c in shared),  # never hand out the shared objects
        checks=tuple(checks),
    )


# --------------------------------------------------------------------------------------------
# certvalidator hooks: signatures through the registry, and an algorithm policy that knows SM2


class Sm2CapableSignatureValidator(SignatureValidator):  # type: ignore[misc]
    """certvalidator's signature hook, answered by :func:`trust.algorithms.verify`.

    certvalidator's own validator goes through ``cryptography``, which cannot do SM2. Errors are
    translated to what certvalidator expects: ``InvalidSignature`` for a bad signature and
    ``AlgorithmNotSupported`` (itself an ``InvalidSignature``) for what the registry lacks.

    Signatures that verified are remembered (``cache_size`` of them, 0 to turn it off), keyed
    by SHA-256 over every input: certvalidator checks the issuing CA's certificate and each CRL
    again in every validation, and the answer to the same question cannot change. Failures
    are never remembered.
    """

    def __init__(self, sm2_id: bytes = DEFAULT_ID, *, cache_size: int = 4096) -> None:
        self._sm2_id = sm2_id
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def validate_signature(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext = DEFAULT_VALIDATION_CONTEXT,
    ) -> None:
        if context.prehashed:
            raise AlgorithmNotSupported("pre-hashed signature checks are not supported")
        key = self._key(signature, signed_data, public_key_info, signature_algorithm)
        if key is not None:
            with self._lock:
                if key in self._verified:
                    self._verified.move_to_end(key)
                    return
        try:
            verify(
                public_key_info, signature_algorithm, signature, signed_data, sm2_id=self._sm2_id
            )
        except InvalidSignatureError as exc:
            raise InvalidSignature(exc.message) from exc
        except (UnsupportedAlgorithmError, WeakKeyError) as exc:
            raise AlgorithmNotSupported(exc.message) from exc
        except (EtrustError, ValueError, TypeError, KeyError) as exc:
            # An unreadable key or algorithm parameters: the signature cannot be valid.
            raise InvalidSignature(f"signature could not be checked: {exc}") from exc
        if key is not None:
            with self._lock:
                self._verified[key] = None
                if len(self._verified) > self._cache_size:
                    self._verified.popitem(last=False)

    def _key(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
    ) -> bytes | None:
        if self._cache_size <= 0:
            return None
        digest = hashlib.sha256()
        for part in (
            self._sm2_id,
            public_key_info.dump(),
            signature_algorithm.dump(),
            signature,
            signed_data,
        ):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.digest()


class GmAlgorithmPolicy(DisallowWeakAlgorithmsPolicy):  # type: ignore[misc]
    """certvalidator's default policy (deny md2/md5/sha1, RSA below 2048 bits), SM2 on purpose.

    The default is a deny-list that lets names it does not know through, so it allows sm2_sm3
    only by accident (asn1crypto cannot derive a hash from it). Here SM3 and SM2 are judged
    explicitly: SM3 is a sound digest; an SM2 signature is accepted only with an SM2 key.
    """

    def digest_algorithm_allowed(
        self, algo: algos.DigestAlgorithm, moment: datetime | None
    ) -> AlgorithmUsageConstraint:
        if algo["algorithm"].native == "sm3":
            return AlgorithmUsageConstraint(allowed=True)
        result: AlgorithmUsageConstraint = super().digest_algorithm_allowed(algo, moment)
        return result

    def signature_algorithm_allowed(
        self,
        algo: algos.SignedDigestAlgorithm,
        moment: datetime | None,
        public_key: keys.PublicKeyInfo | None,
    ) -> AlgorithmUsageConstraint:
        if algo["algorithm"].native in _SM2_SIGNATURES:
            if public_key is not None and _key_type_or_none(public_key) != "sm2":
                return AlgorithmUsageConstraint(
                    allowed=False, failure_reason="an SM2 signature needs an SM2 public key"
                )
            return AlgorithmUsageConstraint(allowed=True)
        result: AlgorithmUsageConstraint = super().signature_algorithm_allowed(
            algo, moment, public_key
        )
        return result


def _key_type_or_none(public_key: keys.PublicKeyInfo) -> str | None:
    try:
        return key_type_of(public_key)
    except EtrustError:
        return None


SIGNATURE_VALIDATOR = Sm2CapableSignatureValidator()
ALGORITHM_POLICY = GmAlgorithmPolicy()  # type: ignore[no-untyped-call]

validator_in_use: ContextVar[SignatureValidator | None] = ContextVar(
    "etrust_signature_validator", default=None
)


class _InheritingValidationContext(ValidationContext):
    """A ValidationContext that, unless told otherwise, uses the running validation's validator.

    certvalidator checks a delegated OCSP responder's certificate that carries ocsp-nocheck in
    a ValidationContext of its own (``revinfo/validate_ocsp.py``), built without our
    ``signature_validator``: that link would go to pyca/cryptography, which cannot do SM2 and
    raises ``UnsupportedAlgorithm`` instead of ``InvalidSignature``. certvalidator offers no
    hook there, so that module's name for the class is pointed here. Outside our validations
    the variable is unset and certvalidator's default validator applies, as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("signature_validator") is None:
            kwargs["signature_validator"] = validator_in_use.get()
        super().__init__(*args, **kwargs)


_certvalidator_ocsp.ValidationContext = _InheritingValidationContext  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Parsing: each distinct certificate or CRL is parsed, checked and prepared once


def _der_of(value: Any, kind: type[Any], what: str) -> bytes:
    if isinstance(value, kind):
        der: bytes = value.dump()
        return der
    if not isinstance(value, bytes | bytearray):
        raise MalformedInputError(f"{what}: expected bytes or an asn1crypto {kind.__name__}")
    return bytes(value)


def _warm(cert: x509.Certificate) -> x509.Certificate:
    """Compute now everything certvalidator reads, so threads sharing ``cert`` only read it.

    asn1crypto parses and caches lazily, and some of its caches are filled in several steps
    (the extension attributes): two threads filling one at once could see half of it. RFC 4518
    name preparation is also the costliest step of a validation for Chinese names.
    """
    cert.critical_extensions  # noqa: B018  (fills every extension attribute at once)
    cert.subject.hashable  # noqa: B018
    cert.issuer.hashable  # noqa: B018
    cert.issuer_serial  # noqa: B018
    cert.public_key.sha1  # noqa: B018
    cert.self_signed  # noqa: B018
    cert.sha256  # noqa: B018
    return cert


def _warm_crl(value: crl.CertificateList) -> crl.CertificateList:
    value.critical_extensions  # noqa: B018
    value.issuer.hashable  # noqa: B018
    value.sha256  # noqa: B018
    for entry in value["tbs_cert_list"]["revoked_certificates"]:
        entry.critical_extensions  # noqa: B018
        entry.issuer_name  # noqa: B018
    return value


@functools.lru_cache(maxsize=256)  # about 45 kB each once parsed
def _parsed_certificate(data: bytes) -> x509.Certificate:
    """A fully parsed and prepared certificate, shared by every call that presents these bytes.

    A department's seal certificate and its issuing CA come with thousands of documents, so
    most validations find their certificates here. Callers never see these objects (reports
    hand out copies), so nobody can alter a cached certificate.
    """
    cert = load_certificate(data)
    _whole_octets(cert["signature_value"], "certificate")
    return _warm(cert)


@functools.lru_cache(maxsize=32)
def _parsed_crl(data: bytes) -> crl.CertificateList:
    """A CRL is reused for every validation until its nextUpdate: parse and index it once."""
    value = load_crl(data)
    _whole_octets(value["signature"], "CRL")
    return _warm_crl(value)


def _whole_octets(signature: Any, what: str) -> None:
    """Refuse a signature BIT STRING with unused bits before certvalidator reads it.

    certvalidator reads signatures with asn1crypto's ``.native``, which drops unused bits
    silently: the same signed object would pass under two encodings (two fingerprints).
    """
    try:
        signature_octets(signature)
    except InvalidSignatureError as exc:
        raise MalformedInputError(f"{what}: {exc.message}") from exc


def certificate_of(value: CertificateInput, what: str) -> x509.Certificate:
    try:
        return _parsed_certificate(_der_of(value, x509.Certificate, what))
    except MalformedInputError as exc:
        message = exc.message.removeprefix("certificate: ")
        raise MalformedInputError(f"{what}: {message}") from exc


def crl_of(value: CrlInput) -> crl.CertificateList:
    return _parsed_crl(_der_of(value, crl.CertificateList, "CRL"))


def ocsp_of(value: OcspInput) -> ocsp.OCSPResponse:
    der = unarmor(
        _der_of(value, ocsp.OCSPResponse, "OCSP response"), "OCSP response", ("OCSP RESPONSE",)
    )
    response: ocsp.OCSPResponse = parse_der(ocsp.OCSPResponse, der, "OCSP response")
    body = response["response_bytes"]
    if body.native is not None and body["response_type"].native == "basic_ocsp_response":
        basic = body["response"].parsed
        _whole_octets(basic["signature"], "OCSP response")
        for cert in basic["certs"] or ():
            _whole_octets(cert["signature_value"], "OCSP response certificate")
    return response


_subject_texts: dict[bytes, str] = {}


def _subject_text(name: x509.Name) -> str:
    """describe_name, remembered: a CA's name is shown in every report that passes through it."""
    der: bytes = name.dump()
    text = _subject_texts.get(der)
    if text is None:
        text = describe_name(name)
        if len(_subject_texts) >= 1024:
            _subject_texts.clear()
        _subject_texts[der] = text
    return text


def _copy(cert: x509.Certificate) -> x509.Certificate:
    """A private copy of a shared certificate (cheap: it is parsed lazily from the same DER)."""
    return x509.Certificate.load(cert.dump())


# --------------------------------------------------------------------------------------------
# Trust store: parsed once, shared by every validation


class TrustStore:
    """Trusted roots (and optionally well-known intermediates), parsed once and reused.

    Build one at start-up and pass it to every :func:`validate_chain` call: parsing, name
    preparation and indexing are then not repeated per validation. Read-only after
    construction, so threads may share it.
    """

    def __init__(
        self,
        roots: Iterable[CertificateInput],
        intermediates: Iterable[CertificateInput] = (),
    ) -> None:
        self._roots = tuple(certificate_of(r, "trust root") for r in roots)
        if not self._roots:
            raise MalformedInputError("a trust store needs at least one root certificate")
        self._intermediates = tuple(
            certificate_of(c, "intermediate certificate") for c in intermediates
        )
        self._manager = SimpleTrustManager.build(trust_roots=self._roots)

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        return tuple(_copy(c) for c in self._roots)

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return tuple(_copy(c) for c in self._intermediates)

    @classmethod
    def from_pem(cls, roots_pem: bytes, intermediates_pem: bytes = b"") -> TrustStore:
        """A store from PEM bundles (as kept in a file or a settings value)."""
        return cls(
            load_certificates(roots_pem),
            load_certificates(intermediates_pem) if intermediates_pem.strip() else (),
        )

    def context_for(
        self,
        intermediates: Iterable[x509.Certificate],
        *,
        crls: list[crl.CertificateList],
        ocsps: list[ocsp.OCSPResponse],
        moment: datetime | None,
        revocation: RevocationMode,
        retroactive: bool = False,
    ) -> ValidationContext:
        registry = CertificateRegistry.build((*self._intermediates, *intermediates))
        return ValidationContext(
            retroactive_revinfo=retroactive,
            trust_manager=self._manager,
            certificate_registry=registry,
            crls=crls,
            ocsps=ocsps,
            moment=moment,
            allow_fetching=False,
            revocation_mode=revocation,
            algorithm_usage_policy=ALGORITHM_POLICY,
            signature_validator=SIGNATURE_VALIDATOR,
        )


# --------------------------------------------------------------------------------------------
# Validation


async def avalidate_chain(
    cert: CertificateInput,
    *,
    trust_roots: TrustStore | Iterable[CertificateInput],
    intermediates: Iterable[CertificateInput] = (),
    crls: Iterable[CrlInput] = (),
    ocsp_responses: Iterable[OcspInput] = (),
    at: datetime | None = None,
    revocation: RevocationMode = "require",
    key_usage: set[str] | None = None,
    extended_key_usage: set[str] | None = None,
    retroactive_revocation: bool = False,
) -> ValidationReport:
    """Validate ``cert`` up to a trusted root at ``at`` (default: now); see :func:`validate_chain`.

    A revocation proven by the data given outweighs data missing for another certificate of
    the path: certvalidator stops at the first certificate it cannot decide, so when it reports
    REVOCATION_UNKNOWN the path is checked again with what there is, and REVOKED wins.
    """
    moment = _moment(at, revocation)
    crl_list, ocsp_list = list(crls), list(ocsp_responses)

    async def once(mode: RevocationMode) -> ValidationReport:
        checks: list[Check] = []
        token = validator_in_use.set(SIGNATURE_VALIDATOR)
        try:
            return await _validate_path(
                cert,
                trust_roots=trust_roots,
                intermediates=intermediate_list,
                crls=crl_list,
                ocsp_responses=ocsp_list,
                moment=moment,
                fixed_moment=at is not None,
                revocation=mode,
                key_usage=key_usage,
                extended_key_usage=extended_key_usage,
                checks=checks,
                retroactive=retroactive_revocation,
            )
        except Exception as exc:
            log.exception("path validation failed unexpectedly")
            return _internal_failure(exc, moment, checks)
        finally:
            validator_in_use.reset(token)

    intermediate_list = list(intermediates)
    report = await once(revocation)
    if report.reason == "REVOCATION_UNKNOWN" and (crl_list or ocsp_list):
        again = await once("soft-fail")
        if again.reason == "REVOKED":
            return again
    return report


def _moment(at: datetime | None, revocation: RevocationMode) -> datetime:
    """The validation time in UTC; raises for misuse of the API (a naive time, unknown mode)."""
    if revocation not in REVOCATION_MODES:
        raise MalformedInputError(
            f"unknown revocation mode {revocation!r}; use one of {', '.join(REVOCATION_MODES)}"
        )
    if at is not None and at.utcoffset() is None:
        raise MalformedInputError("the validation time must be timezone-aware")
    return at.astimezone(UTC) if at is not None else datetime.now(UTC)


def _internal_failure(exc: Exception, moment: datetime, checks: list[Check]) -> ValidationReport:
    """The last resort for what nobody foresaw (a library bug, hostile input): undecided.

    A verification must not turn a bad document into an exception; a bug must not turn into a
    verdict either, so the report says INDETERMINATE and the traceback goes to the log.
    """
    detail = f"the validation stopped on an unexpected {type(exc).__name__}"
    checks.append(Check(name="internal", result="indeterminate", detail=detail))
    return _report("INTERNAL", detail, moment, checks=checks)


async def _validate_path(
    cert: CertificateInput,
    *,
    trust_roots: TrustStore | Iterable[CertificateInput],
    intermediates: Iterable[CertificateInput],
    crls: Iterable[CrlInput],
    ocsp_responses: Iterable[OcspInput],
    moment: datetime,
    fixed_moment: bool,
    revocation: RevocationMode,
    key_usage: set[str] | None,
    extended_key_usage: set[str] | None,
    checks: list[Check],
    retroactive: bool = False,
) -> ValidationReport:
    try:
        store = trust_roots if isinstance(trust_roots, TrustStore) else TrustStore(trust_roots)
        leaf = certificate_of(cert, "certificate")
        extra = [certificate_of(c, "intermediate certificate") for c in intermediates]
        crl_list = [crl_of(c) for c in crls]
        ocsp_list = [ocsp_of(o) for o in ocsp_responses]
    except MalformedInputError as exc:
        checks.append(Check(name="format", result="failed", detail=exc.message))
        return _report("MALFORMED", exc.message, moment, checks=checks)
    checks.append(
        Check(
            name="format",
            result="passed",
            detail=f"certificate, {len(extra)} intermediate(s), {len(crl_list)} CRL(s), "
            f"{len(ocsp_list)} OCSP response(s) read",
        )
    )
    try:
        context = store.context_for(
            extra,
            crls=crl_list,
            ocsps=ocsp_list,
            moment=moment if fixed_moment else None,
            revocation=revocation,
            retroactive=retroactive,
        )
        validator = CertificateValidator(leaf, validation_context=context)
        try:
            path: ValidationPath = await validator.async_validate_path()
        except (PathBuildingError, InvalidCertificateError):
            reason, detail = _explain_no_path(leaf, context)
            checks.append(Check(name="path", result="failed", detail=detail))
            return _report(reason, detail, moment, checks=checks, certificates=(leaf,))
        except PathValidationError as exc:
            return _path_failure(exc, moment, checks)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        # asn1crypto parses lazily: structure errors may only surface deep inside certvalidator.
        detail = f"a certificate, CRL or OCSP response could not be read ({exc})"
        checks.append(Check(name="format", result="failed", detail=detail))
        return _report("MALFORMED", detail, moment, checks=checks, certificates=(leaf,))

    certs = list(reversed(list(path.iter_certs(include_root=True))))
    checks.extend(_passed_checks(certs, moment, revocation, context))
    if key_usage or extended_key_usage:
        try:
            validate_usage(leaf, set(key_usage or ()), set(extended_key_usage or ()), False)
        except (InvalidCertificateError, ValueError) as exc:
            detail = str(exc)
            checks.append(Check(name="key_usage", result="failed", detail=detail))
            return _report("KEY_USAGE", detail, moment, checks=checks, certificates=certs)
        wanted = sorted((key_usage or set()) | (extended_key_usage or set()))
        checks.append(
            Check(name="key_usage", result="passed", detail="allows " + ", ".join(wanted))
        )
    else:
        checks.append(Check(name="key_usage", result="skipped", detail="no usage was asked for"))
    return _report("OK", "", moment, checks=checks, certificates=certs)


def validate_chain(
    cert: CertificateInput,
    *,
    trust_roots: TrustStore | Iterable[CertificateInput],
    intermediates: Iterable[CertificateInput] = (),
    crls: Iterable[CrlInput] = (),
    ocsp_responses: Iterable[OcspInput] = (),
    at: datetime | None = None,
    revocation: RevocationMode = "require",
    key_usage: set[str] | None = None,
    extended_key_usage: set[str] | None = None,
    retroactive_revocation: bool = False,
) -> ValidationReport:
    """Validate ``cert`` up to a trusted root and report PASSED, FAILED or INDETERMINATE.

    ``trust_roots`` is best a :class:`TrustStore` built once. ``crls`` and ``ocsp_responses``
    (DER, PEM for CRLs, or asn1crypto objects) are the only revocation data used; ``revocation``
    says how much of it is needed (default ``require``: every certificate below the root).
    ``key_usage`` / ``extended_key_usage`` name what the leaf must allow (asn1crypto names, e.g.
    ``{"digital_signature"}``, ``{"time_stamping"}``). ``retroactive_revocation`` accepts CRLs
    and OCSP answers issued after ``at``: right for a past moment a trusted timestamp proves (a
    later "not revoked" covers it), wrong for a moment only the signer claims (a revoked key
    could backdate). Raises only for misuse of the API (an unknown revocation mode, a naive
    ``at``); a bad document yields a report.

    Works from plain threads and from inside a running event loop (there it runs on a worker
    thread and blocks the caller until done; async code should ``await avalidate_chain``).
    """
    return run_sync(
        avalidate_chain(
            cert,
            trust_roots=trust_roots,
            intermediates=intermediates,
            crls=crls,
            ocsp_responses=ocsp_responses,
            at=at,
            revocation=revocation,
            key_usage=key_usage,
            extended_key_usage=extended_key_usage,
            retroactive_revocation=retroactive_revocation,
        )
    )


_T = TypeVar("_T")
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run``, or on a worker thread when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:  # (not inside the except block: errors raised in there would chain to it)
        return asyncio.run(coro)
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="etrust-validate")
    return _executor.submit(asyncio.run, coro).result()


def _explain_no_path(leaf: x509.Certificate, context: ValidationContext) -> tuple[str, str]:
    """Why no path was found: a missing issuer, an untrusted root, or a name that does not chain.

    certvalidator only says "no issuer matching ... was found"; walking up the supplied
    certificates by name tells the three cases apart.
    """
    registry: CertificateRegistry = context.certificate_registry
    seen: set[bytes] = set()
    cert = leaf
    for _ in range(16):
        seen.add(cert.sha256)
        aki = cert.authority_key_identifier
        candidates = [
            c
            for c in registry.retrieve_by_name(cert.issuer)
            if c.sha256 not in seen and (aki is None or c.key_identifier in (None, aki))
        ]
        if not candidates:
            break
        cert = candidates[0]
    subject = _subject_text(cert.subject)
    if cert.self_signed in ("yes", "maybe") and not context.path_builder.trust_manager.is_root(
        cert
    ):
        return "UNTRUSTED_ROOT", f"The chain ends at {subject!r}, which is not a trusted root."
    issuer = _subject_text(cert.issuer)
    aki = cert.authority_key_identifier
    if aki is not None:
        for known in registry:
            if known.key_identifier == aki and known.subject != cert.issuer:
                return (
                    "NAME_CHAINING",
                    f"{subject!r} names its issuer {issuer!r}, but the CA holding its signing "
                    f"key is {_subject_text(known.subject)!r}.",
                )
    return "NO_PATH", f"No certificate of {issuer!r}, the issuer of {subject!r}, was given."


# (class or message fragment, reason, check name); the first match wins. certvalidator raises
# plain PathValidationError for most RFC 5280 step failures, so its wording is matched; a test
# per reason keeps this honest when certvalidator is upgraded.
_PATH_FAILURES: tuple[tuple[type[Exception] | str, str, str], ...] = (
    (RevokedError, "REVOKED", "revocation"),
    (InsufficientRevinfoError, "REVOCATION_UNKNOWN", "revocation"),
    (ExpiredError, "EXPIRED", "validity"),
    (NotYetValidError, "NOT_YET_VALID", "validity"),
    (DisallowedAlgorithmError, "ALGORITHM_DISALLOWED", "algorithms"),
    ("could not be verified", "SIGNATURE_INVALID", "signatures"),
    ("signature parameters", "SIGNATURE_INVALID", "signatures"),
    ("maximum path length", "PATH_LENGTH", "path_length"),
    ("is not a CA", "NAME_CHAINING", "basic_constraints"),
    ("issuer name could not be matched", "NAME_CHAINING", "name_chaining"),
    ("not allowed to sign certificates", "KEY_USAGE", "key_usage"),
    ("unsupported critical extension", "CRITICAL_EXTENSION", "extensions"),
    ("namespace of the issuing authority", "NAME_CONSTRAINTS", "name_constraints"),
    ("polic", "POLICY", "policies"),
)


def _path_failure(
    exc: PathValidationError, moment: datetime, checks: list[Check]
) -> ValidationReport:
    certs = list(reversed(list(exc.original_path.iter_certs(include_root=True))))
    detail = str(exc)
    reason, check = "PATH_INVALID", "path"
    for matcher, code, name in _PATH_FAILURES:
        if isinstance(matcher, str) and matcher in detail:
            reason, check = code, name
            break
        if isinstance(matcher, type) and isinstance(exc, matcher):
            reason, check = code, name
            break
    if reason == "SIGNATURE_INVALID":
        unsupported = _unsupported_link(certs)
        if unsupported is not None:
            reason, check = "ALGORITHM_UNSUPPORTED", "algorithms"
            detail = f"{detail}: {unsupported}"
    checks.append(Check(name="path", result="passed", detail=f"{len(certs)} certificates"))
    result: Literal["failed", "indeterminate"] = (
        "indeterminate" if REASONS[reason].verdict == "INDETERMINATE" else "failed"
    )
    checks.append(Check(name=check, result=result, detail=detail))
    return _report(reason, detail, moment, checks=checks, certificates=certs)


def _unsupported_link(certs: list[x509.Certificate]) -> str | None:
    """The registry's words if the first failing signature failed for want of an algorithm.

    certvalidator reports every signature failure alike ("could not be verified"). It checks
    the path from the root down and stops at the first failure, so the links are checked
    again in that order, with the same validator (only on this failure path; good links come
    from its cache), to tell "cannot verify" from "does not verify".
    """
    chain = certs[::-1]  # root first
    for issuer, cert in itertools.pairwise(chain):
        try:
            SIGNATURE_VALIDATOR.validate_signature(
                signature_octets(cert["signature_value"]),
                cert["tbs_certificate"].dump(),
                issuer.public_key,
                cert["signature_algorithm"],
            )
        except AlgorithmNotSupported as exc:
            return str(exc)
        except (InvalidSignature, InvalidSignatureError):
            return None
    return None


_REVOCATION_PASSED = {
    "require": "every certificate below the root was shown unrevoked by a CRL or OCSP response",
    "hard-fail": "every certificate that names a CRL or OCSP location was shown unrevoked",
    "soft-fail": "no CRL or OCSP response given shows a revocation (soft-fail: missing data "
    "is ignored)",
}


def _passed_checks(
    certs: list[x509.Certificate],
    moment: datetime,
    revocation: RevocationMode,
    context: ValidationContext,
) -> list[Check]:
    anchor = _subject_text(certs[-1].subject)
    signed = certs[:-1]  # the trust anchor's self-signature is not part of the path
    algorithms = sorted({c["signature_algorithm"]["algorithm"].native for c in signed})
    if revocation == "none":
        rev = Check(name="revocation", result="skipped", detail="revocation checking was off")
    else:
        detail = _REVOCATION_PASSED[revocation]
        soft = context.soft_fail_exceptions
        if soft:
            detail += "; ignored: " + "; ".join(str(e) for e in soft)
        rev = Check(name="revocation", result="passed", detail=detail)
    return [
        Check(name="path", result="passed", detail=f"{len(certs)} certificates to {anchor!r}"),
        Check(
            name="signatures",
            result="passed",
            detail=f"{len(signed)} signature(s) verified ({', '.join(algorithms) or 'none'})",
        ),
        Check(name="validity", result="passed", detail=f"all valid at {moment.isoformat()}"),
        Check(
            name="constraints",
            result="passed",
            detail="names chain, CA flags, path lengths and CA key usages hold",
        ),
        rev,
    ]


def validate_crl(
    crl_data: CrlInput,
    *,
    trust_roots: TrustStore | Iterable[CertificateInput],
    intermediates: Iterable[CertificateInput] = (),
    crls: Iterable[CrlInput] = (),
    at: datetime | None = None,
    revocation: RevocationMode = "soft-fail",
) -> ValidationReport:
    """Check a CRL: its issuer is known, its signature verifies, it is current, its issuer valid.

    The issuer's own certificate is then validated like any other (for ``crl_sign``), so a
    report for a CRL answers "can I rely on this list?" with the same reasons as for a chain.
    Like :func:`validate_chain`, raises only for misuse of the API (an unknown revocation
    mode, a naive ``at``); a bad CRL or trust root yields a report.
    """
    moment = _moment(at, revocation)
    checks: list[Check] = []
    try:
        return _validate_crl(
            crl_data,
            trust_roots=trust_roots,
            intermediates=list(intermediates),
            crls=crls,
            moment=moment,
            revocation=revocation,
            checks=checks,
        )
    except Exception as exc:
        log.exception("CRL validation failed unexpectedly")
        return _internal_failure(exc, moment, checks)


def _validate_crl(
    crl_data: CrlInput,
    *,
    trust_roots: TrustStore | Iterable[CertificateInput],
    intermediates: list[CertificateInput],
    crls: Iterable[CrlInput],
    moment: datetime,
    revocation: RevocationMode,
    checks: list[Check],
) -> ValidationReport:
    try:
        parsed = crl_of(crl_data)
        tbs = parsed["tbs_cert_list"]
        issuer_der = tbs["issuer"].dump()
        this_update: datetime = tbs["this_update"].native
        next_update: datetime | None = tbs["next_update"].native
    except MalformedInputError as exc:
        checks.append(Check(name="crl_parse", result="failed", detail=exc.message))
        return _report("MALFORMED", exc.message, moment, checks=checks)
    checks.append(Check(name="crl_parse", result="passed", detail="the CRL is well-formed"))
    try:
        store = trust_roots if isinstance(trust_roots, TrustStore) else TrustStore(trust_roots)
        candidates = [
            *store.roots,
            *store.intermediates,
            *(certificate_of(c, "intermediate certificate") for c in intermediates),
        ]
    except MalformedInputError as exc:
        checks.append(Check(name="format", result="failed", detail=exc.message))
        return _report("MALFORMED", exc.message, moment, checks=checks)
    issuers = [c for c in candidates if c.subject.dump() == issuer_der]
    if not issuers:
        detail = f"no certificate given for the CRL issuer {_subject_text(tbs['issuer'])}"
        checks.append(Check(name="crl_issuer", result="indeterminate", detail=detail))
        return _report("NO_PATH", detail, moment, checks=checks)
    issuer = next((c for c in issuers if _crl_signed_by(parsed, c)), None)
    if issuer is None:
        detail = "the CRL signature does not verify with its issuer's key"
        checks.append(Check(name="crl_signature", result="failed", detail=detail))
        return _report("SIGNATURE_INVALID", detail, moment, checks=checks)
    checks.append(
        Check(
            name="crl_signature",
            result="passed",
            detail=f"signed by {_subject_text(issuer.subject)}",
        )
    )
    if this_update > moment:
        detail = f"the CRL's thisUpdate ({this_update.isoformat()}) has not come yet"
        checks.append(Check(name="crl_fresh", result="failed", detail=detail))
        return _report("NOT_YET_VALID", detail, moment, checks=checks)
    if next_update is not None and next_update < moment:
        detail = f"the CRL's nextUpdate ({next_update.isoformat()}) has passed"
        checks.append(Check(name="crl_fresh", result="failed", detail=detail))
        return _report("EXPIRED", detail, moment, checks=checks)
    checks.append(Check(name="crl_fresh", result="passed", detail=f"current until {next_update}"))
    if any(issuer.dump() == root.dump() for root in store.roots):
        checks.append(
            Check(name="crl_issuer", result="passed", detail="the issuer is a trust anchor")
        )
        return _report("OK", "", moment, checks=checks, certificates=[issuer])
    chain = validate_chain(
        issuer,
        trust_roots=store,
        intermediates=intermediates,
        crls=crls,
        at=moment,
        revocation=revocation,
        key_usage={"crl_sign"},
    )
    return dataclasses.replace(chain, checks=(*checks, *chain.checks))


def _crl_signed_by(parsed: crl.CertificateList, issuer: x509.Certificate) -> bool:
    try:
        verify_signed(
            issuer.public_key,
            parsed["signature_algorithm"],
            parsed["signature"],
            parsed["tbs_cert_list"].dump(),
        )
    except (EtrustError, ValueError, TypeError, KeyError):
        # Hostile input may upset asn1crypto rather than the registry: no valid signature.
        return False
    return True
