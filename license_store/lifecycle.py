"""Changes of a license's status after issuance: suspend, resume, revoke.

Each change is a signed record (by the issuing department's seal key) appended to the
transparency log, in the same transaction as the new status, so the status a verifier reads
and the log an auditor checks cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from license_store.errors import LicenseStateError
from license_store.issuance import LicenseSigner
from license_store.models import LicenseEventRow
from license_store.records import License, license_of, row_by_identifier
from license_store.translog import Checkpoint, TransparencyLog
from signing.jcs import canonicalize
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import ForbiddenError, MalformedInputError

TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "suspend": (("valid",), "suspended"),
    "resume": (("suspended",), "valid"),
    "revoke": (("valid", "suspended"), "revoked"),
}
"""action -> (statuses it may start from, status it leaves)."""


@dataclass(frozen=True)
class StatusChange:
    license: License
    checkpoint: Checkpoint
    log_index: int


class LicenseLifecycle:
    def __init__(
        self, sessions: sessionmaker[Session], log: TransparencyLog, *, clock: Clock = system_clock
    ) -> None:
        self._sessions = sessions
        self._log = log
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
        reason = " ".join(reason.split())
        if not 1 <= len(reason) <= 500:
            raise MalformedInputError("give a reason of 1-500 characters")
        allowed_from, target = TRANSITIONS[action]
        now = self._clock()
        with transaction(self._sessions, write=True) as session:
            row = row_by_identifier(session, identifier)
            if department is not None and row.department != department:
                raise ForbiddenError("only the issuing department changes a license's status")
            if row.status not in allowed_from:
                raise LicenseStateError(f"a {row.status} license cannot be {action}d")
            record = canonicalize(
                {
                    "action": action,
                    "identifier": row.identifier,
                    "version": row.version,
                    "from": row.status,
                    "to": target,
                    "reason": reason,
                    "seal": signer.seal_id,
                    "at": now.isoformat(),
                }
            )
            signature = signer.sign(record)
            (index,) = self._log.append(session, [record])
            row.status, row.status_reason, row.status_changed_at = target, reason, now
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
            return StatusChange(license_of(row), checkpoint, index)
