"""Checking a license code: three verdicts a window clerk can act on — 有效 (valid),
无效 (invalid), 无法确认 (cannot tell) — with the reason in one line.

Offline it needs the trust list (the QR keys) and, for revocations, a status list; online the
registry answers the status. Fail closed: a correct signature whose status nobody could check
is "cannot tell", not "valid".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol

from license_store.identifiers import LicenseId
from license_store.records import CHINA
from signing import license_qr
from trust.algorithms import by_name
from trust.certificates import load_certificate
from trust.errors import EtrustError, InvalidSignatureError, MalformedInputError
from trust.validation import validate_chain
from verify_app.trust_list import QrKeyEntry, TrustList

Verdict = Literal["valid", "invalid", "unknown"]
VERDICT_ZH: dict[Verdict, str] = {"valid": "有效", "invalid": "无效", "unknown": "无法确认"}

REASONS: dict[str, tuple[Verdict, str]] = {
    "OK": ("valid", "证照有效"),
    "NOT_A_LICENSE_CODE": ("invalid", "这不是电子证照二维码"),
    "UNKNOWN_FORMAT": ("unknown", "二维码格式版本未知，请更新核验程序"),
    "UNKNOWN_KEY": ("unknown", "签发部门的密钥不在信任列表中，请更新信任列表后重试"),
    "KEY_WITHDRAWN": ("invalid", "签发部门的二维码密钥已停用，此二维码无效"),
    "KEY_NOT_TRUSTED": ("unknown", "签名密钥的证书无法验证"),
    "ISSUER_MISMATCH": ("invalid", "二维码中的发证机关与签名密钥不符，可能是伪造的"),
    "SIGNATURE_INVALID": ("invalid", "二维码签名验证失败，证照可能是伪造的"),
    "NOT_YET_VALID": ("invalid", "证照尚未生效"),
    "EXPIRED": ("invalid", "证照已过有效期"),
    "REVOKED": ("invalid", "证照已被吊销"),
    "SUSPENDED": ("invalid", "证照已暂停使用"),
    "SUPERSEDED": ("invalid", "证照已有新版本，此版本已作废"),
    "NOT_FOUND": ("invalid", "证照库中没有这张证照"),
    "STATUS_UNKNOWN": ("unknown", "二维码签名有效，但无法核对证照的最新状态"),
    "PRESENTATION_NEEDS_NETWORK": ("unknown", "出示码需联网核验"),
    "PRESENTATION_AT_WINDOW": ("unknown", "出示码须由办事窗口核验，请向工作人员出示"),
    "STATUS_STALE": ("unknown", "证照状态列表已过期，请联网更新后再核验"),
    "TRUST_LIST_STALE": ("unknown", "信任列表已过期，请联网更新后再核验"),
    "FOREIGN_SITE": ("invalid", "二维码指向其他网站，不是本平台的电子证照"),
    "TYPE_NOT_ISSUED": ("invalid", "签发部门无权签发此类证照，二维码可能是伪造的"),
    "KEY_NOT_OURS": ("invalid", "二维码的签名密钥不属于本平台任何部门，可能是伪造的"),
}

PRESENTATION_PREFIX = "P."
"""How a presentation code's fragment starts (verify_app.presentation); a license code's
fragment is bare base64url of ``L\\x01...``, which never holds a dot."""


def fragment_of(text: str) -> str:
    """The fragment of a scanned URL, or the text itself when it has none."""
    text = text.strip()
    return text.split("#", 1)[1] if "#" in text else text


STATUS_REASONS = {
    "revoked": "REVOKED",
    "suspended": "SUSPENDED",
    "superseded": "SUPERSEDED",
    "expired": "EXPIRED",
    "not_found": "NOT_FOUND",
    "not_yet_valid": "NOT_YET_VALID",
}
"""A license status (not valid) and the reason a check reports for it."""


@dataclass(frozen=True)
class Status:
    """A license's status as some source knows it, and since when that knowledge dates."""

    status: str
    as_of: datetime
    source: Literal["online", "status-list"]
    fresh_until: datetime | None = None
    """After this a cached list no longer counts (its next_update): the answer is unknown."""


class StatusSource(Protocol):
    def status_of(self, identifier: str) -> Status | None:
        """The status, or None when this source cannot say (offline without a list)."""
        ...


@dataclass(frozen=True)
class CodeCheck:
    verdict: Verdict
    reason: str
    message_zh: str
    license: dict[str, Any] = field(default_factory=dict)
    status: Status | None = None
    holder_match: bool | None = None
    trust_list_number: int | None = None
    checked_at: datetime | None = None

    @property
    def verdict_zh(self) -> str:
        return VERDICT_ZH[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "verdict_zh": self.verdict_zh,
            "reason": self.reason,
            "message_zh": self.message_zh,
            "license": self.license,
            "holder_match": self.holder_match,
            "trust_list": self.trust_list_number,
        }
        if self.status is not None:
            age = (self.checked_at - self.status.as_of) if self.checked_at else None
            out["status"] = {
                "status": self.status.status,
                "as_of": self.status.as_of.isoformat(),
                "source": self.status.source,
                "age_seconds": int(age.total_seconds()) if age is not None else None,
            }
        return out


_HOLDER_MATCHES = threading.BoundedSemaphore(2)
"""Holder matches computed at once per process: the rest wait their turn."""


def result_for(reason: str, **details: Any) -> CodeCheck:
    """A check's answer for ``reason`` (a key of :data:`REASONS`)."""
    return _result(reason, **details)


def _result(reason: str, **details: Any) -> CodeCheck:
    verdict, zh = REASONS[reason]
    return CodeCheck(verdict, reason, zh, **details)


class CodeChecker:
    """Checks codes against one trust list; QR key certificates are validated once each."""

    def __init__(self, trust_list: TrustList, *, authoritative: bool = False) -> None:
        """``authoritative``: the list is the registry's current one (the server's), not a
        verifier's cached copy that may lack newer keys."""
        self.trust_list = trust_list
        self.authoritative = authoritative
        self._keys: dict[tuple[str, date], bool] = {}
        self._public: dict[str, Any] = {}
        self._lock = threading.Lock()

    def check(
        self,
        text: str,
        *,
        now: datetime,
        status: StatusSource | None = None,
        holder_code: str | None = None,
    ) -> CodeCheck:
        """The verdict on a scanned or typed code. Never raises for bad input."""
        try:
            return self._check(text, now=now, status=status, holder_code=holder_code)
        except (MalformedInputError, ValueError, UnicodeError):
            return _result("NOT_A_LICENSE_CODE", checked_at=now)

    def _check(
        self,
        text: str,
        *,
        now: datetime,
        status: StatusSource | None,
        holder_code: str | None,
    ) -> CodeCheck:
        if fragment_of(text).startswith(PRESENTATION_PREFIX):  # spent online only
            return _result("PRESENTATION_NEEDS_NETWORK", checked_at=now)
        try:
            payload = license_qr.from_text(text)
        except MalformedInputError:
            return _result("NOT_A_LICENSE_CODE", checked_at=now)
        try:
            signed = license_qr.decode(payload)
        except MalformedInputError as exc:
            reason = (
                "UNKNOWN_FORMAT" if "is not known here" in exc.message else "NOT_A_LICENSE_CODE"
            )
            return _result(reason, checked_at=now)
        code = signed.code
        if _foreign(text, self.trust_list.verify_urls):  # a genuine-looking code, elsewhere
            return _result("FOREIGN_SITE", checked_at=now)
        if now > self.trust_list.next_update:
            return _result("TRUST_LIST_STALE", checked_at=now)
        common: dict[str, Any] = {"checked_at": now, "trust_list_number": self.trust_list.number}
        entry = self.trust_list.qr_keys.get(code.key_id.hex())
        if entry is None:  # online the list is the registry's own: an unknown key is forged
            return _result("KEY_NOT_OURS" if self.authoritative else "UNKNOWN_KEY", **common)
        try:  # the signature first: what the code says counts only once it is the key's
            public = self._public.get(entry.key_id)
            if public is None:
                public = self._public[entry.key_id] = load_certificate(entry.certificate).public_key
            by_name(code.algorithm).verify(public, signed.signature, signed.signed)
        except (InvalidSignatureError, EtrustError):
            return _result("SIGNATURE_INVALID", **common)
        if _withdrawn(entry, code.issue_date):
            return _result("KEY_WITHDRAWN", **common)
        if entry.issuer_code != code.issuer_code:
            return _result("ISSUER_MISMATCH", **common)
        if entry.type_codes and code.type_code not in entry.type_codes:
            return _result("TYPE_NOT_ISSUED", **common)
        if not self._key_trusted(entry, code.issue_date):
            return _result("KEY_NOT_TRUSTED", **common)
        try:
            identifier = str(LicenseId(code.type_code, code.issuer_code, code.serial, code.version))
        except EtrustError:
            return _result("NOT_A_LICENSE_CODE", **common)
        common["license"] = _license_fields(code, identifier, entry)
        if holder_code is not None:
            with _HOLDER_MATCHES:  # scrypt: 6 ms and 4 MB each, anyone may ask for one
                common["holder_match"] = code.holder_matches(holder_code[:64])
        today = now.astimezone(CHINA).date()
        if today < code.valid_from:
            return _result("NOT_YET_VALID", **common)
        if code.valid_to is not None and today > code.valid_to:
            return _result("EXPIRED", **common)
        known = status.status_of(identifier) if status is not None else None
        if known is None:
            return _result("STATUS_UNKNOWN", **common)
        if known.fresh_until is not None and now > known.fresh_until:
            common["status"] = known
            return _result("STATUS_STALE", **common)
        common["status"] = known
        if known.status != "valid":
            return _result(STATUS_REASONS.get(known.status, "STATUS_UNKNOWN"), **common)
        return _result("OK", **common)

    def _key_trusted(self, entry: QrKeyEntry, issue_date: date) -> bool:
        """The QR key's certificate chains to the list's roots on the code's issue date (noon,
        Beijing): a code issued while the key was certified stays verifiable after the
        certificate ends; one dated outside its validity is not. One validation per key and
        date, then remembered."""
        cache_key = (entry.key_id, issue_date)
        with self._lock:
            known = self._keys.get(cache_key)
        if known is None:
            certificate = load_certificate(entry.certificate)
            moment = _moment_on(
                issue_date, certificate.not_valid_before, certificate.not_valid_after
            )
            try:
                report = validate_chain(
                    certificate,
                    trust_roots=self.trust_list.store,
                    intermediates=self.trust_list.intermediates,
                    at=moment,
                    revocation="none",
                    key_usage={"digital_signature"},
                )
                known = report.passed
            except EtrustError:
                known = False
            with self._lock:
                if len(self._keys) > 100_000:
                    self._keys.clear()
                self._keys[cache_key] = known
        return known


def _moment_on(issue_date: date, not_before: datetime, not_after: datetime) -> datetime:
    """A moment of the code's issue day (Beijing) at which the key's certificate was valid, to
    judge its chain at: noon, or the certificate's first or last moment when the day holds
    one of them (a key certified at 15:00 signs that afternoon's codes)."""
    start = datetime(issue_date.year, issue_date.month, issue_date.day, tzinfo=CHINA)
    end = start + timedelta(days=1) - timedelta(microseconds=1)
    noon = start + timedelta(hours=12)
    moment = min(max(noon, not_before), not_after)
    return moment if start <= moment <= end else noon


def _foreign(text: str, verify_urls: tuple[str, ...]) -> bool:
    """A URL whose part before the fragment is not one of our verify pages: a genuine payload
    under a phishing site's address is refused (a bare fragment is fine)."""
    text = text.strip()
    if "#" not in text:
        return False
    prefix = text.split("#", 1)[0]
    return bool(verify_urls) and prefix not in verify_urls


TRUSTED_AFTER_WITHDRAWAL = frozenset(
    {"superseded", "cessation_of_operation", "affiliation_changed"}
)
"""Revocation reasons that leave earlier codes standing: the key was retired, not stolen."""


def _withdrawn(entry: QrKeyEntry, issue_date: date) -> bool:
    """A withdrawn key's codes are all refused unless it was retired in good order, and then
    only those dated on or after the withdrawal (a stolen key can backdate anything)."""
    if entry.withdrawn_at is None:
        return False
    if entry.withdrawn_reason not in TRUSTED_AFTER_WITHDRAWAL:
        return True
    # the day it was retired still counts: the department moved to its new key at once, so a
    # code of that day under the old key was made before (codes carry no time of day)
    return issue_date.isoformat() > entry.withdrawn_at[:10]


def _license_fields(
    code: license_qr.LicenseCode, identifier: str, entry: QrKeyEntry
) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "type_code": code.type_code,
        "issuer_code": code.issuer_code,
        "issuer": entry.department_name,
        "holder_name": code.holder_name,
        "issue_date": code.issue_date.isoformat(),
        "valid_from": code.valid_from.isoformat(),
        "valid_to": code.valid_to.isoformat() if code.valid_to else None,
    }


class StatusListSource:
    """Statuses from a (verified) status list: what is not on it was valid when it was made."""

    def __init__(
        self, entries: dict[str, str], as_of: datetime, fresh_until: datetime | None = None
    ) -> None:
        self._entries = entries
        self._as_of = as_of
        self._fresh_until = fresh_until

    @classmethod
    def from_list(cls, listed: dict[str, Any]) -> StatusListSource:
        entries = {e["id"]: e["status"] for e in listed["entries"]}
        return cls(
            entries,
            datetime.fromisoformat(listed["this_update"]),
            datetime.fromisoformat(listed["next_update"]),
        )

    def status_of(self, identifier: str) -> Status | None:
        status = self._entries.get(identifier, "valid")
        return Status(status, self._as_of, "status-list", self._fresh_until)
