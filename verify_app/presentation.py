"""Presentation codes (出示码, 亮证): a holder shows a license with a code valid a few minutes,
verified online once.

The code is ``<base>/v#P.<id>.<mac>``: ``id`` is 16 random bytes (base64url), ``mac`` the first
16 bytes of HMAC-SM3 of the id under the presentation key (derived from the holder key), in
base64url. The code carries no personal data: the registry looks the id up. A code this
registry did not make is refused on its MAC, before any database is asked; a well-formed one is
spent by one conditional UPDATE (``used_at IS NULL`` and not expired), so two windows scanning
it at once get one answer and one refusal (on SQLite and PostgreSQL alike). Only the spending
verification learns the license and whether a typed holder code matches it: a replayed,
expired or unknown code tells nothing, and a stolen code yields at most one holder-code guess.

An offline verifier cannot spend a code, so it answers "cannot tell" (needs the network).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from license_store.consent import check_identifier
from license_store.errors import LicenseStateError
from license_store.holder_codes import mask_name
from license_store.models import DepartmentRow, LicenseRow, LicenseTypeRow
from license_store.records import License, license_of, row_by_identifier, today
from license_store.types import LicenseType
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import (
    ConfigurationError,
    CryptoUnavailableError,
    EtrustError,
    MalformedInputError,
    NotFoundError,
)
from verify_app import code_check
from verify_app.code_check import PRESENTATION_PREFIX as PRESENTATION_MARK
from verify_app.code_check import CodeCheck, Status, Verdict
from verify_app.code_check import fragment_of as _fragment
from verify_app.models import PresentationRow

MIN_MINUTES, MAX_MINUTES, DEFAULT_MINUTES = 1, 10, 3
ID_BYTES = 16
MAC_BYTES = 16
MIN_KEY_BYTES = 16
MAX_TEXT = 2000
"""What the verify API takes at most; a presentation code is about 70 characters with its URL."""
ACTOR_LENGTH = 128
"""``PresentationRow.used_by``."""

KEY_CONTEXT = b"presentations"
"""What the presentation key is derived under from the holder key (apart from the holder-link
secret, derived under ``holder-links``)."""
_MAC_CONTEXT = b"etrust presentation\x00"
_PART = re.compile(r"[A-Za-z0-9_-]{22}")
"""16 bytes as unpadded base64url."""

PRESENTATION_REASONS: dict[str, tuple[Verdict, str]] = {
    "PRESENTATION_FORGED": ("invalid", "出示码校验未通过，可能是伪造的或不是本平台生成的"),
    "UNKNOWN_PRESENTATION": ("invalid", "没有这个出示码，请持证人重新生成"),
    "PRESENTATION_EXPIRED": ("invalid", "出示码已过期，请持证人重新生成"),
    "PRESENTATION_REPLAYED": ("invalid", "出示码已被使用过，请持证人重新生成"),
    "PRESENTATION_NEEDS_NETWORK": ("unknown", "出示码需联网核验"),
}
"""The reasons of presentation codes, added to :data:`verify_app.code_check.REASONS`."""
REASONS: dict[str, tuple[Verdict, str]] = {**code_check.REASONS, **PRESENTATION_REASONS}

_STATUS_REASONS = {
    "revoked": "REVOKED",
    "suspended": "SUSPENDED",
    "superseded": "SUPERSEDED",
    "expired": "EXPIRED",
    "not_yet_valid": "NOT_YET_VALID",
}


class LicenseNotPresentableError(LicenseStateError):
    """A presentation code asked for a license that is not valid today (revoked, suspended,
    superseded by a new version, expired or not yet valid)."""

    code = "LICENSE_NOT_PRESENTABLE"
    message_zh = "证照当前不是有效状态，不能生成出示码"


class Presentation(NamedTuple):
    """A presentation code just made: its fragment (``P.<id>.<mac>``, to put after
    ``<base>/v#``, see :func:`presentation_text`) and when it expires."""

    fragment: str
    expires_at: datetime


def presentation_key(holder_key: bytes) -> bytes:
    """The MAC key of presentation codes: HMAC-SM3 of a fixed context under the holder key."""
    return _sm3_mac(holder_key, KEY_CONTEXT)


def presentation_text(fragment: str, base_url: str) -> str:
    """The code's text, as a QR code holds it: ``<base_url>/v#<fragment>``."""
    return f"{base_url.rstrip('/')}/v#{fragment}"


def is_presentation(text: str) -> bool:
    """Whether ``text`` (a scanned URL or a bare fragment) is a presentation code, well formed
    or not: it is then for :func:`check_presentation`, never for the license-code checker."""
    return isinstance(text, str) and _fragment(text).startswith(PRESENTATION_MARK)


def check_presentation(
    service: PresentationService,
    text: str,
    holder_code: str | None,
    actor: str,
    now: datetime,
) -> CodeCheck:
    """The verdict on a presentation code, spending it (the entry of ``POST /api/v1/verify``)."""
    return service.verify(text, actor, holder_code=holder_code, now=now)


def needs_network(now: datetime) -> CodeCheck:
    """What an offline verifier answers for a presentation code."""
    return _result("PRESENTATION_NEEDS_NETWORK", checked_at=now)


class PresentationService:
    """Presentation codes over ``sessions``, MACed under ``key`` (:func:`presentation_key`).

    ``hasher`` is the registry's holder-code hash (``LicenseService.holder_hash``), for telling
    whether a holder code typed at the window is the license's holder.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        key: bytes,
        hasher: Callable[[str], str],
        clock: Clock = system_clock,
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(f"a presentation key has at least {MIN_KEY_BYTES} bytes")
        self._sessions = sessions
        self._key = key
        self._hasher = hasher
        self._clock = clock

    def create(
        self, holder_hash: str, identifier: str, minutes: int = DEFAULT_MINUTES
    ) -> Presentation:
        """A code for one of the holder's licenses, valid ``minutes`` (1-10).

        A license of another holder is "not found" exactly as a missing one; a lineage stands
        for its newest version; a license that is not valid today is refused
        (:class:`LicenseNotPresentableError`).
        """
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not MIN_MINUTES <= minutes <= MAX_MINUTES
        ):
            raise MalformedInputError(
                f"a presentation code lives {MIN_MINUTES}-{MAX_MINUTES} minutes, not {minutes!r}"
            )
        identifier = check_identifier(identifier)
        now = self._clock()
        with transaction(self._sessions, write=True) as session:
            row = row_by_identifier(session, identifier)
            if not secrets.compare_digest(row.holder_hash, holder_hash):
                raise NotFoundError(f"no license {identifier!r}")
            status = license_of(row).status_on(today(now))
            if status != "valid":
                raise LicenseNotPresentableError(
                    f"license {row.identifier} is {status}: only a valid license can be shown"
                )
            presentation_id = secrets.token_urlsafe(ID_BYTES)
            expires_at = now + timedelta(minutes=minutes)
            session.add(
                PresentationRow(
                    id=presentation_id,
                    identifier=row.identifier,
                    holder_hash=row.holder_hash,
                    created_at=now,
                    expires_at=expires_at,
                    used_at=None,
                    used_by=None,
                )
            )
        fragment = f"{PRESENTATION_MARK}{presentation_id}.{self._mac(presentation_id)}"
        return Presentation(fragment, expires_at)

    def verify(
        self,
        text: str,
        actor: str,
        *,
        holder_code: str | None = None,
        now: datetime | None = None,
    ) -> CodeCheck:
        """The verdict on a presentation code, spending it if it is good. Never raises for bad
        input. ``actor`` is who checked (``api:<client>`` or ``public``)."""
        now = now or self._clock()
        parsed = _parse(text)
        if parsed is None:
            return _result("NOT_A_LICENSE_CODE", checked_at=now)
        presentation_id, mac = parsed
        if not hmac.compare_digest(mac, self._mac(presentation_id)):
            return _result("PRESENTATION_FORGED", checked_at=now)
        with transaction(self._sessions, write=True) as session:
            spent = session.execute(
                update(PresentationRow)
                .where(
                    PresentationRow.id == presentation_id,
                    PresentationRow.used_at.is_(None),
                    PresentationRow.expires_at > now,
                )
                .values(used_at=now, used_by=actor[:ACTOR_LENGTH])
                .returning(PresentationRow.identifier)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if spent is None:
                return _result(_refusal(session, presentation_id), checked_at=now)
            row = session.scalar(select(LicenseRow).where(LicenseRow.identifier == spent))
            if row is None:
                return _result("NOT_FOUND", checked_at=now)
            lic = license_of(row)
            holder_hash = row.holder_hash
            fields = _license_fields(session, lic)
        common: dict[str, Any] = {"license": fields, "checked_at": now}
        if holder_code is not None:
            common["holder_match"] = self._holder_matches(holder_code, holder_hash)
        status = lic.status_on(today(now))
        common["status"] = Status(status, now, "online")
        reason = "OK" if status == "valid" else _STATUS_REASONS.get(status, "STATUS_UNKNOWN")
        return _result(reason, **common)

    def _mac(self, presentation_id: str) -> str:
        digest = _sm3_mac(self._key, _MAC_CONTEXT + presentation_id.encode("ascii"))
        return base64.urlsafe_b64encode(digest[:MAC_BYTES]).rstrip(b"=").decode("ascii")

    def _holder_matches(self, holder_code: str, holder_hash: str) -> bool:
        try:
            typed = self._hasher(holder_code.strip())
        except EtrustError:  # empty, say: no holder's
            return False
        return secrets.compare_digest(typed, holder_hash)


def _refusal(session: Session, presentation_id: str) -> str:
    """Why a code with a good MAC was not spent: gone, spent before, or expired."""
    row = session.get(PresentationRow, presentation_id)
    if row is None:
        return "UNKNOWN_PRESENTATION"
    if row.used_at is not None:
        return "PRESENTATION_REPLAYED"
    return "PRESENTATION_EXPIRED"


def _license_fields(session: Session, lic: License) -> dict[str, Any]:
    """What a license code would show (the same keys), from the registry: the holder's name
    in full only if the type's QR codes carry it in full."""
    type_row = session.get(LicenseTypeRow, lic.type_code)
    department = session.get(DepartmentRow, lic.department)
    license_type = (
        LicenseType.from_definition(
            type_row.code,
            type_row.name,
            type_row.authority,
            type_row.holder_kind,
            type_row.definition,
        )
        if type_row is not None
        else None
    )
    full = license_type is not None and license_type.qr_name == "full"
    return {
        "identifier": lic.identifier,
        "version": lic.version,
        "type_code": lic.type_code,
        "type_name": license_type.name if license_type is not None else None,
        "issuer_code": department.uscc if department is not None else None,
        "issuer": department.name if department is not None else lic.department,
        "holder_name": lic.holder_name if full else mask_name(lic.holder_name),
        "issue_date": lic.issue_date.isoformat(),
        "valid_from": lic.valid_from.isoformat(),
        "valid_to": lic.valid_to.isoformat() if lic.valid_to else None,
    }


def _parse(text: str) -> tuple[str, str] | None:
    """``(id, mac)`` of a well-formed presentation code, else None."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return None
    parts = _fragment(text).split(".")
    if len(parts) != 3 or parts[0] + "." != PRESENTATION_MARK:
        return None
    presentation_id, mac = parts[1], parts[2]
    if not _PART.fullmatch(presentation_id) or not _PART.fullmatch(mac):
        return None
    return presentation_id, mac


def _result(reason: str, **details: Any) -> CodeCheck:
    verdict, zh = REASONS[reason]
    return CodeCheck(verdict, reason, zh, **details)


def _sm3_mac(key: bytes, data: bytes) -> bytes:
    try:
        return hmac.new(key, data, "sm3").digest()
    except ValueError as exc:
        raise CryptoUnavailableError("this OpenSSL has no SM3 for presentation codes") from exc
