"""Changes of a license's status after issuance: suspend, resume, revoke, expire.

Each change is a signed record (by the issuing department's seal key) appended to the
transparency log, in the same transaction as the new status, so the status a verifier reads
and the log an auditor checks cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from license_store.errors import LicenseStateError
from license_store.issuance import LicenseSigner
from license_store.models import LicenseEventRow, LicenseRow
from license_store.records import License, license_of, row_by_identifier, today
from license_store.translog import Checkpoint, TransparencyLog
from signing.jcs import canonicalize
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import EtrustError, ForbiddenError, MalformedInputError

TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "suspend": (("valid",), "suspended"),
    "resume": (("suspended",), "valid"),
    "revoke": (("valid", "suspended"), "revoked"),
    "expire": (("valid", "suspended"), "expired"),
}
"""action -> (statuses it may start from, status it leaves)."""


@dataclass(frozen=True)
class StatusChange:
    license: License
    checkpoint: Checkpoint
    log_index: int


class LicenseLifecycle:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: TransparencyLog,
        commit: Callable[[str, bytes], str],
        *,
        clock: Clock = system_clock,
    ) -> None:
        """``commit(label, data)``: the registry's keyed commitment (LicenseService.commit)."""
        self._sessions = sessions
        self._log = log
        self._commit = commit
        self._clock = clock

    def change(
        self,
        identifier: str,
        action: str,
        reason: str,
        signer: LicenseSigner,
        actor: str,
        *,
        department: str | None = None,
    ) -> StatusChange:
        """Apply ``action`` to the license; ``department`` (a department client's) must be
        the issuer. Revoking needs a reason; a revoked license stays revoked."""
        if action not in TRANSITIONS:
            raise MalformedInputError(f"a license can be {', '.join(TRANSITIONS)}d")
        if action == "expire":
            raise MalformedInputError("licenses expire by date (see expire_due), not by hand")
        return self._change(identifier, action, reason, signer, actor, department=department)

    def expire_due(
        self, signer_for: Callable[[str, str], LicenseSigner], actor: str
    ) -> tuple[list[StatusChange], list[tuple[str, str]]]:
        """Record the expiry of every license whose validity ended before today (Beijing
        date): a signed, logged event each, so the log shows when the registry noticed.
        ``signer_for(department, seal)`` gives a seal of the issuing department. Returns the
        changes and the licenses that could not be expired (identifier, why): one failing
        department (no active seal, say) does not stop the others."""
        day = today(self._clock())
        with transaction(self._sessions) as session:
            due = session.execute(
                select(LicenseRow.identifier, LicenseRow.department, LicenseRow.seal)
                .where(LicenseRow.status.in_(("valid", "suspended")), LicenseRow.valid_to < day)
                .order_by(LicenseRow.id)
            ).all()
        changes: list[StatusChange] = []
        failures: list[tuple[str, str]] = []
        for identifier, department, seal in due:
            try:
                ended = "validity ended"
                changes.append(
                    self._change(identifier, "expire", ended, signer_for(department, seal), actor)
                )
            except LicenseStateError:  # changed meanwhile (revoked, say): nothing to expire
                continue
            except EtrustError as exc:
                failures.append((identifier, f"{exc.code}: {exc.message}"))
        return changes, failures

    def _change(
        self,
        identifier: str,
        action: str,
        reason: str,
        signer: LicenseSigner,
        actor: str,
        *,
        department: str | None = None,
    ) -> StatusChange:
        reason = " ".join(reason.split())
        if not 1 <= len(reason) <= 500:
            raise MalformedInputError("give a reason of 1-500 characters")
        allowed_from, target = TRANSITIONS[action]
        now = self._clock()
        with transaction(self._sessions, write=True) as session:
            row = row_by_identifier(session, identifier)
            if department is not None and row.department != department:
                raise ForbiddenError("only the issuing department changes a license's status")
            before = row.status
            if before not in allowed_from:
                raise LicenseStateError(f"a {before} license cannot be {action}d")
            record = canonicalize(
                {
                    "action": action,
                    "identifier": row.identifier,
                    "version": row.version,
                    "from": before,
                    "to": target,
                    # the reason is free text a department typed: kept in the registry, only
                    # its keyed commitment goes to the public log
                    "reason": self._commit("reason", reason.encode("utf-8")),
                    "seal": signer.seal_id,
                    "at": now.isoformat(),
                }
            )
            signature = signer.sign(record)
            # Conditional: of two concurrent changes (revoke and suspend, revoke and amend)
            # only the first one that commits finds the status it started from.
            changed = session.execute(
                update(LicenseRow)
                .where(LicenseRow.id == row.id, LicenseRow.status == before)
                .values(status=target, status_reason=reason, status_changed_at=now)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise LicenseStateError("the license changed meanwhile; read it and try again")
            (index,) = self._log.append(session, [record])
            session.add(
                LicenseEventRow(
                    license_id=row.id,
                    action=action,
                    actor=actor,
                    reason=reason,
                    record=record,
                    signature=signature,
                    log_index=index,
                    at=now,
                )
            )
            checkpoint = self._log.sign_head(session)
            session.refresh(row)
            return StatusChange(license_of(row), checkpoint, index)
