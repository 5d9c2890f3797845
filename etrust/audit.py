"""The audit log: append-only, hash-chained, with signed checkpoints.

Each record's hash is SM3 over the previous record's hash and the record's canonical JSON, so an
edited, inserted or deleted record breaks the chain from that point on. A database
administrator could still rewrite the whole tail consistently; signed checkpoints (made every
``checkpoint_every`` records and on demand, by the audit key, which lives in a key backend and
not in the database) pin the chain at those points, and every periodic one must be present, so
such a rewrite is found too. What no log inside one database can show alone is the loss of the
records after its last checkpoint: keep copies of the latest checkpoint elsewhere for that.

Appends are serialised on one head row (PostgreSQL: ``SELECT ... FOR UPDATE``; SQLite: the
write transaction's lock), so ids are contiguous and every record names its predecessor.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from asn1crypto import keys
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from etrust.models import AuditCheckpointRow, AuditHeadRow, AuditRecordRow
from storage.engine import transaction
from trust.algorithms import by_name
from trust.clock import Clock, system_clock
from trust.errors import EtrustError, MalformedInputError
from trust.keys import KeyHandle, default_algorithm, redact_uri

GENESIS = "0" * 64
Outcome = Literal["success", "failure", "refused"]
_CHECKPOINT_CONTEXT = "etrust-audit-checkpoint-v1"


@dataclass(frozen=True)
class AuditEvent:
    """What happened: who did what to which object, with which key, and how it ended."""

    actor: str
    action: str
    target: str | None = None
    key_uri: str | None = None
    request_hash: str | None = None
    outcome: Outcome = "success"
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    event: AuditEvent
    prev_hash: str
    record_hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as the CLI and the API show it."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.event.actor,
            "action": self.event.action,
            "target": self.event.target,
            "key_uri": self.event.key_uri,
            "request_hash": self.event.request_hash,
            "outcome": self.event.outcome,
            "detail": dict(self.event.detail),
            "record_hash": self.record_hash,
        }


@dataclass(frozen=True)
class AuditVerification:
    intact: bool
    records: int
    checkpoints: int
    first_broken: int | None = None
    reason: str = ""


def _canonical(record_id: int, at: datetime, event: AuditEvent) -> bytes:
    fields = [
        record_id,
        at.isoformat(timespec="microseconds"),
        event.actor,
        event.action,
        event.target,
        event.key_uri,
        event.request_hash,
        event.outcome,
        dict(event.detail),
    ]
    return json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def chain_hash(prev_hash: str, record_id: int, at: datetime, event: AuditEvent) -> str:
    return hashlib.new(
        "sm3", bytes.fromhex(prev_hash) + _canonical(record_id, at, event)
    ).hexdigest()


def _checkpoint_message(last_id: int, last_hash: str, at: datetime) -> bytes:
    return f"{_CHECKPOINT_CONTEXT}|{last_id}|{last_hash}|{at.isoformat()}".encode()


def export_checkpoint(row: AuditCheckpointRow) -> dict[str, Any]:
    """A checkpoint as JSON-ready data, to be kept outside the database."""
    return {
        "context": _CHECKPOINT_CONTEXT,
        "last_id": row.last_id,
        "last_hash": row.last_hash,
        "at": row.at.isoformat(),
        "algorithm": row.algorithm,
        "public_key": base64.b64encode(row.public_key_der).decode(),
        "signature": base64.b64encode(row.signature).decode(),
    }


def import_checkpoint(data: Mapping[str, Any]) -> AuditCheckpointRow:
    """An exported checkpoint back as a (transient) row, for the same checks as stored ones."""
    try:
        if data["context"] != _CHECKPOINT_CONTEXT:
            raise ValueError("not an etrust audit checkpoint")
        return AuditCheckpointRow(
            id=0,
            at=datetime.fromisoformat(data["at"]),
            last_id=int(data["last_id"]),
            last_hash=str(data["last_hash"]),
            key_uri="",
            public_key_der=base64.b64decode(data["public_key"], validate=True),
            algorithm=str(data["algorithm"]),
            signature=base64.b64decode(data["signature"], validate=True),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedInputError(f"not an exported audit checkpoint ({exc})") from exc


def _event(row: AuditRecordRow) -> AuditEvent:
    return AuditEvent(
        actor=row.actor,
        action=row.action,
        target=row.target,
        key_uri=row.key_uri,
        request_hash=row.request_hash,
        outcome=row.outcome,  # type: ignore[arg-type]
        detail=json.loads(row.detail),
    )


class AuditLog:
    """Append, checkpoint and verify the log kept in the database behind ``sessions``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        signer: KeyHandle | None = None,
        checkpoint_every: int = 100,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._every = checkpoint_every
        self._clock = clock

    def append(self, event: AuditEvent) -> AuditRecord:
        if not event.actor or not event.action:
            raise MalformedInputError("an audit record names an actor and an action")
        if event.key_uri is not None:  # the log is forever: never a PIN in it
            event = replace(event, key_uri=redact_uri(event.key_uri))
        detail = json.dumps(dict(event.detail), ensure_ascii=False, sort_keys=True)
        with transaction(self._sessions, write=True) as session:
            head = session.scalar(
                select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
            )
            if head is None:
                head = AuditHeadRow(id=1, last_id=0, last_hash=GENESIS)
                session.add(head)
            record_id = head.last_id + 1
            at = self._clock().astimezone(UTC)
            digest = chain_hash(head.last_hash, record_id, at, event)
            session.add(
                AuditRecordRow(
                    id=record_id,
                    at=at,
                    actor=event.actor,
                    action=event.action,
                    target=event.target,
                    key_uri=event.key_uri,
                    request_hash=event.request_hash,
                    outcome=event.outcome,
                    detail=detail,
                    prev_hash=head.last_hash,
                    record_hash=digest,
                )
            )
            prev = head.last_hash
            head.last_id, head.last_hash = record_id, digest
            if self._signer is not None and record_id % self._every == 0:
                self._add_checkpoint(session, self._signer, record_id, digest)
        return AuditRecord(record_id, at, event, prev, digest)

    def checkpoint(self, signer: KeyHandle | None = None) -> dict[str, Any]:
        """Sign the chain's current head now; returns it in the exportable form (``last_id`` is
        the record it pins, 0 for an empty log). Kept outside the database, such a copy is what
        shows a later loss of records after it (``verify(anchors=...)``)."""
        key = signer or self._signer
        if key is None:
            raise MalformedInputError("no audit key to sign a checkpoint with")
        with transaction(self._sessions, write=True) as session:
            head = session.scalar(
                select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
            )
            last_id, last_hash = (head.last_id, head.last_hash) if head else (0, GENESIS)
            row = self._add_checkpoint(session, key, last_id, last_hash)
            return export_checkpoint(row)

    def _add_checkpoint(
        self, session: Session, key: KeyHandle, last_id: int, last_hash: str
    ) -> AuditCheckpointRow:
        at = self._clock().astimezone(UTC)
        algorithm = default_algorithm(key)
        row = AuditCheckpointRow(
            at=at,
            last_id=last_id,
            last_hash=last_hash,
            key_uri=key.key_uri,
            public_key_der=key.public_key_info.dump(),
            algorithm=algorithm.name,
            signature=key.sign(_checkpoint_message(last_id, last_hash, at), algorithm),
        )
        session.add(row)
        return row

    def records(self, *, after: int = 0, limit: int = 100) -> list[AuditRecord]:
        with transaction(self._sessions) as session:
            rows = session.scalars(
                select(AuditRecordRow)
                .where(AuditRecordRow.id > after)
                .order_by(AuditRecordRow.id)
                .limit(limit)
            )
            return [AuditRecord(r.id, r.at, _event(r), r.prev_hash, r.record_hash) for r in rows]

    def verify(
        self,
        trusted_keys: list[keys.PublicKeyInfo] | None = None,
        anchors: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> AuditVerification:
        """Walk the whole chain and every checkpoint; name the first record that does not hold.

        ``trusted_keys`` are the audit keys whose checkpoints count; a checkpoint by any other
        key is itself a finding (someone with database access signed with a key of their own).
        ``anchors`` are exported checkpoints kept elsewhere: the chain must still reach them.
        """
        trusted = {k.dump() for k in trusted_keys} if trusted_keys is not None else None
        with transaction(self._sessions) as session:
            head = session.scalar(select(AuditHeadRow).where(AuditHeadRow.id == 1))
            hashes: dict[int, str] = {}
            expected_prev, expected_id, count = GENESIS, 1, 0
            for row in session.scalars(
                select(AuditRecordRow).order_by(AuditRecordRow.id)
            ).yield_per(1000):
                count += 1
                if row.id != expected_id:
                    return self._broken(count, 0, expected_id, f"record {expected_id} is missing")
                try:
                    computed = chain_hash(row.prev_hash, row.id, row.at, _event(row))
                except (ValueError, TypeError) as exc:
                    return self._broken(count, 0, row.id, f"record {row.id} is unreadable ({exc})")
                if row.prev_hash != expected_prev:
                    return self._broken(
                        count, 0, row.id, f"record {row.id} does not follow record {row.id - 1}"
                    )
                if computed != row.record_hash:
                    return self._broken(count, 0, row.id, f"record {row.id} was altered")
                hashes[row.id] = computed
                expected_prev, expected_id = computed, expected_id + 1
            last_id = expected_id - 1
            if head is None or (head.last_id, head.last_hash) != (last_id, expected_prev):
                return self._broken(count, 0, last_id + 1, f"records after {last_id} were deleted")
            checkpoints = list(
                session.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.id))
            )
            for cp in checkpoints:
                problem = self._check_checkpoint(cp, hashes, trusted)
                if problem:
                    return self._broken(count, len(checkpoints), cp.last_id or 1, problem)
            for anchor in anchors:
                cp = import_checkpoint(anchor)
                if cp.last_id > last_id:
                    return self._broken(
                        count,
                        len(checkpoints),
                        last_id + 1,
                        f"records {last_id + 1} to {cp.last_id}, pinned by a kept checkpoint, are gone",
                    )
                problem = self._check_checkpoint(cp, hashes, trusted)
                if problem:
                    return self._broken(
                        count, len(checkpoints), cp.last_id or 1, f"kept copy: {problem}"
                    )
            if trusted and self._signer is not None:
                # The periodic checkpoints must all be there: deleting one (to rewrite what it
                # pinned) is itself a finding. A tail shorter than one period is only as safe
                # as the copies of the last checkpoint kept outside the database.
                pinned = {cp.last_id for cp in checkpoints}
                due = range(self._every, last_id + 1, self._every)
                missing = next((n for n in due if n not in pinned), None)
                if missing is not None:
                    return self._broken(
                        count,
                        len(checkpoints),
                        missing,
                        f"the checkpoint of record {missing} is missing",
                    )
        return AuditVerification(True, count, len(checkpoints))

    @staticmethod
    def _broken(records: int, checkpoints: int, record_id: int, reason: str) -> AuditVerification:
        return AuditVerification(False, records, checkpoints, record_id, reason)

    @staticmethod
    def _check_checkpoint(
        cp: AuditCheckpointRow, hashes: dict[int, str], trusted: set[bytes] | None
    ) -> str:
        if trusted is not None and cp.public_key_der not in trusted:
            return f"checkpoint {cp.id} is signed by a key that is not an audit key"
        try:
            public = keys.PublicKeyInfo.load(cp.public_key_der)
            by_name(cp.algorithm).verify(
                public, cp.signature, _checkpoint_message(cp.last_id, cp.last_hash, cp.at)
            )
        except (EtrustError, ValueError) as exc:
            return f"checkpoint {cp.id} has a bad signature ({exc})"
        if cp.last_id and hashes.get(cp.last_id) != cp.last_hash:
            return f"record {cp.last_id} differs from what checkpoint {cp.id} signed"
        return ""
