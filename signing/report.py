"""Verification reports: one shape for every signed format (OFD, PDF, seals, SES, CMS).

A verification never raises for a bad document; it returns a :class:`Report` with a verdict
(PASSED / FAILED / INDETERMINATE, as in ETSI EN 319 102-1), a stable sub-reason code, a one-line
message for experts and one in plain Chinese for a window clerk, and every check that was made.
A document with several signatures has one report per signature under ``signatures``; its own
verdict is the worst of them and of its own checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from trust.validation import Check, ValidationReport

Verdict = Literal["PASSED", "FAILED", "INDETERMINATE"]
CheckResult = Literal["passed", "failed", "indeterminate", "skipped"]

__all__ = [
    "REASONS",
    "Check",
    "Report",
    "Verdict",
    "chain_reason",
    "check",
    "combine",
    "noting",
    "report",
]


@dataclass(frozen=True)
class _Reason:
    verdict: Verdict
    en: str
    zh: str


REASONS: dict[str, _Reason] = {
    "OK": _Reason("PASSED", "Every signature and seal checked out.", "签章有效，文件未被修改"),
    "UNSUPPORTED_FORMAT": _Reason(
        "INDETERMINATE",
        "This is not a signed document of a kind we verify.",
        "无法识别的文件类型，不能验证",
    ),
    "FORMAT_FAILURE": _Reason(
        "FAILED", "The signed document is malformed.", "签章文件格式错误或已损坏"
    ),
    "NO_SIGNATURE": _Reason("FAILED", "The document carries no signature.", "文件中没有签章"),
    "HASH_FAILURE": _Reason(
        "FAILED", "The signed content was changed after signing.", "文件内容在签章后被修改"
    ),
    "UNPROTECTED_CONTENT": _Reason(
        "FAILED",
        "The document holds content that no signature covers (added after signing).",
        "文件中有未被签章保护的内容（可能在签章后被添加）",
    ),
    "SIG_CRYPTO_FAILURE": _Reason(
        "FAILED", "A signature value does not verify.", "签名值验证失败，签章可能是伪造的"
    ),
    "SEAL_INVALID": _Reason(
        "FAILED", "The seal's own signature (by its maker) does not verify.", "印章数据验证失败"
    ),
    "SEAL_EXPIRED": _Reason(
        "FAILED",
        "The seal was outside its validity period (at the signing time; for a seal file, now).",
        "印章不在有效期内",
    ),
    "SIGNER_NOT_ALLOWED": _Reason(
        "FAILED",
        "The signer's certificate is not among those the seal allows.",
        "签章人证书不在印章授权列表中",
    ),
    "SEAL_MISMATCH": _Reason(
        "FAILED",
        "The seal stored beside the signature differs from the one signed.",
        "签章所附印章与签名中的印章不一致",
    ),
    "REVOKED": _Reason("FAILED", "A certificate has been revoked.", "证书已被吊销"),
    "EXPIRED": _Reason(
        "FAILED", "A certificate was expired at the signing time.", "签章时证书已过期"
    ),
    "NOT_YET_VALID": _Reason(
        "FAILED", "A certificate was not yet valid at the signing time.", "签章时证书尚未生效"
    ),
    "CHAIN_CONSTRAINTS_FAILURE": _Reason(
        "FAILED", "A certificate chain is not valid.", "证书链无效"
    ),
    "NO_CERTIFICATE_CHAIN_FOUND": _Reason(
        "INDETERMINATE",
        "No chain to a trusted root: the signer's certification authority is not known here.",
        "签名正确，但签发证书的机构不在信任列表中，无法确认签章人身份",
    ),
    "REVOCATION_UNKNOWN": _Reason(
        "INDETERMINATE",
        "Whether a certificate was revoked could not be established.",
        "无法确认证书是否已被吊销",
    ),
    "TIMESTAMP_INVALID": _Reason("FAILED", "The timestamp does not verify.", "时间戳验证失败"),
    "CRYPTO_CONSTRAINTS_FAILURE": _Reason(
        "INDETERMINATE",
        "A signature uses an algorithm we cannot verify or do not accept.",
        "签名算法不受支持，无法验证",
    ),
    "INTERNAL": _Reason(
        "INDETERMINATE",
        "The verification could not be completed (an internal error, logged).",
        "验证过程中发生内部错误，无法得出结论",
    ),
}

_RANK: dict[Verdict, int] = {"PASSED": 0, "INDETERMINATE": 1, "FAILED": 2}


def check(name: str, result: CheckResult, detail: str = "") -> Check:
    """One step of a verification (same shape as the chain validator's checks)."""
    return Check(name=name, result=result, detail=detail)


@dataclass(frozen=True)
class Report:
    """What a verification found. ``details`` holds facts for experts (signer, seal, times)."""

    format: str
    verdict: Verdict
    reason: str
    message: str
    message_zh: str
    checks: tuple[Check, ...] = ()
    signatures: tuple[Report, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASSED"

    def all_checks(self) -> list[Check]:
        """This report's checks and those of every signature under it."""
        return [*self.checks, *(c for s in self.signatures for c in s.all_checks())]

    def assessment(self) -> dict[str, str]:
        """Integrity and trust told apart: a document can be intact (every signature and digest
        verifies) while its signer's authority is unknown here, and people need to know which.
        """
        integrity, trust = _assess(self.all_checks())
        return {
            "integrity": integrity,
            "integrity_zh": _INTEGRITY_ZH[integrity],
            "trust": trust,
            "trust_zh": _TRUST_ZH[trust],
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "verdict": self.verdict,
            "reason": self.reason,
            "message": self.message,
            "message_zh": self.message_zh,
            "assessment": self.assessment(),
            "checks": [dict(c) for c in self.checks],
            "details": dict(self.details),
        }
        if self.signatures:
            out["signatures"] = [s.to_dict() for s in self.signatures]
        return out


_INTEGRITY_ZH = {
    "intact": "签名与文件内容完整，未被篡改",
    "broken": "签名或文件内容已被篡改或损坏",
    "unknown": "无法检查签名与文件的完整性",
}
_TRUST_ZH = {
    "established": "签发机构可信，证书有效",
    "not established": "无法确认签发机构是否可信",
    "failed": "证书或时间戳验证未通过",
    "unknown": "未检查证书",
}
_TRUST_SUFFIXES = (".chain", "timestamp")
"""Checks about who signed and when: certificate chains and timestamps."""
_POLICY_SUFFIXES = (".validity", ".signer_in_seal", ".key_usage", ".signing_certificate")
"""Checks of rules (validity periods, allowed signers): neither integrity nor trust."""


def _assess(checks: Iterable[Check]) -> tuple[str, str]:
    integrity: list[str] = []
    trust: list[str] = []
    for item in checks:
        name = item["name"].split(" ")[0]
        if name.endswith(_TRUST_SUFFIXES) or name.startswith("timestamp"):
            trust.append(item["result"])
        elif not name.endswith(_POLICY_SUFFIXES):
            integrity.append(item["result"])
    if "failed" in integrity:
        integrity_state = "broken"
    elif "passed" in integrity and "indeterminate" not in integrity:
        integrity_state = "intact"
    else:
        integrity_state = "unknown"
    if "failed" in trust:
        trust_state = "failed"
    elif "indeterminate" in trust:
        trust_state = "not established"
    elif "passed" in trust:
        trust_state = "established"
    else:
        trust_state = "unknown"
    return integrity_state, trust_state


def report(
    format: str,
    reason: str,
    detail: str = "",
    *,
    checks: Iterable[Check] = (),
    signatures: Iterable[Report] = (),
    details: Mapping[str, Any] | None = None,
) -> Report:
    """A report for ``reason`` (a key of :data:`REASONS`); ``detail`` adds the specifics."""
    spec = REASONS[reason]
    message = f"{spec.en} {detail}".strip() if detail and reason != "OK" else spec.en
    return Report(
        format=format,
        verdict=spec.verdict,
        reason=reason,
        message=message,
        message_zh=spec.zh,
        checks=tuple(checks),
        signatures=tuple(signatures),
        details=dict(details or {}),
    )


def combine(
    format: str,
    signatures: Sequence[Report],
    *,
    checks: Iterable[Check] = (),
    findings: Sequence[tuple[str, str]] = (),
    details: Mapping[str, Any] | None = None,
) -> Report:
    """A document's report: the worst of its signatures' verdicts and its own ``findings``
    (``(reason, detail)`` pairs for document-level problems); the first worst one names it."""
    candidates: list[tuple[Verdict, str, str]] = [
        (REASONS[reason].verdict, reason, detail) for reason, detail in findings
    ]
    candidates += [(s.verdict, s.reason, s.message) for s in signatures]
    if not signatures and not findings:
        candidates.append(("FAILED", "NO_SIGNATURE", ""))
    worst = max(candidates, key=lambda c: _RANK[c[0]], default=("PASSED", "OK", ""))
    if worst[0] == "PASSED":
        worst = ("PASSED", "OK", "")
    _, reason, detail = worst
    source = next((s for s in signatures if reason == s.reason and detail == s.message), None)
    if source is not None:
        detail = ""  # the signature's own report already says it
    built = report(format, reason, detail, checks=checks, signatures=signatures, details=details)
    zh = source.message_zh if source is not None else built.message_zh  # with what it notes
    if len(signatures) > 1 and reason != "OK":
        index = next((i for i, s in enumerate(signatures) if s.reason == reason), None)
        if index is not None:
            return _with_message(built, f"Signature {index + 1}: {REASONS[reason].en}", zh)
    return _with_message(built, built.message, zh)


def noting(built: Report, also: Sequence[tuple[str, str]]) -> Report:
    """``built`` with further problems ``also`` (reason, detail) named in both messages: they
    did not decide the verdict, but a clerk should hear of them."""
    if not also:
        return built
    reasons = list(dict.fromkeys(reason for reason, _ in also))
    return _with_message(
        built,
        f"{built.message} Also: " + " ".join(detail or REASONS[r].en for r, detail in also),
        f"{built.message_zh}；另：" + "；".join(REASONS[r].zh for r in reasons),
    )


def _with_message(built: Report, message: str, message_zh: str | None = None) -> Report:
    return Report(
        built.format,
        built.verdict,
        built.reason,
        message,
        built.message_zh if message_zh is None else message_zh,
        built.checks,
        built.signatures,
        built.details,
    )


_CHAIN_REASONS = {
    "OK": "OK",
    "EXPIRED": "EXPIRED",
    "NOT_YET_VALID": "NOT_YET_VALID",
    "REVOKED": "REVOKED",
    "NO_PATH": "NO_CERTIFICATE_CHAIN_FOUND",
    # A root we do not trust is, for a document, an unknown authority: we cannot say who signed.
    "UNTRUSTED_ROOT": "NO_CERTIFICATE_CHAIN_FOUND",
    "REVOCATION_UNKNOWN": "REVOCATION_UNKNOWN",
    "ALGORITHM_UNSUPPORTED": "CRYPTO_CONSTRAINTS_FAILURE",
    "ALGORITHM_DISALLOWED": "CRYPTO_CONSTRAINTS_FAILURE",
    "SIGNATURE_INVALID": "CHAIN_CONSTRAINTS_FAILURE",
    "MALFORMED": "FORMAT_FAILURE",
    "INTERNAL": "INTERNAL",
}


def chain_reason(validation: ValidationReport) -> str:
    """The document-level sub-reason for a certificate chain's validation report."""
    return _CHAIN_REASONS.get(validation.reason, "CHAIN_CONSTRAINTS_FAILURE")
