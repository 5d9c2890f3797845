"""The audit log: appends chain, checkpoints sign, and every kind of tampering is found."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from etrust.audit import AuditEvent, AuditLog, chain_hash
from etrust.models import AuditCheckpointRow, AuditHeadRow, AuditRecordRow
from storage.engine import transaction
from trust.errors import MalformedInputError
from trust.keys import KeyHandle
from trust.softkeys import SoftwareKeyStore

pytest_plugins = ["tests.db_fixtures"]


@pytest.fixture
def audit_key(tmp_path: Path) -> KeyHandle:
    return SoftwareKeyStore.open(tmp_path / "keys").generate("audit", "sm2")


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            AuditEvent(
                "cli:officer",
                "cert.issue",
                target=f"issuing-sm2/{i:x}",
                detail={"profile": "seal-signer", "名称": "印章"},
            )
        )


def test_append_chains_and_verifies(
    db_sessions: sessionmaker[Session], audit_key: KeyHandle
) -> None:
    log = AuditLog(db_sessions, signer=audit_key, checkpoint_every=5)
    _fill(log, 12)
    result = log.verify([audit_key.public_key_info])
    assert (result.intact, result.records, result.checkpoints) == (True, 12, 2)
    records = log.records(limit=20)
    assert [r.id for r in records] == list(range(1, 13))
    assert all(b.prev_hash == a.record_hash for a, b in itertools.pairwise(records))
    assert log.checkpoint()["last_id"] == 12
    assert log.verify([audit_key.public_key_info]).checkpoints == 3


def _tamper(sessions: sessionmaker[Session], statement: object) -> None:
    with transaction(sessions, write=True) as session:
        session.execute(statement)  # type: ignore[call-overload]


def test_edited_record_is_named(db_sessions: sessionmaker[Session], audit_key: KeyHandle) -> None:
    log = AuditLog(db_sessions, signer=audit_key)
    _fill(log, 6)
    _tamper(
        db_sessions, update(AuditRecordRow).where(AuditRecordRow.id == 4).values(outcome="refused")
    )
    result = log.verify()
    assert (result.intact, result.first_broken) == (False, 4) and "altered" in result.reason


def test_deleted_records_are_found(
    db_sessions: sessionmaker[Session], audit_key: KeyHandle
) -> None:
    log = AuditLog(db_sessions, signer=audit_key)
    _fill(log, 6)
    _tamper(db_sessions, delete(AuditRecordRow).where(AuditRecordRow.id == 3))
    result = log.verify()
    assert (result.intact, result.first_broken) == (False, 3) and "missing" in result.reason
    log2 = AuditLog(db_sessions)
    _tamper(db_sessions, delete(AuditRecordRow).where(AuditRecordRow.id >= 3))
    result = log2.verify()  # the tail is gone: the head still remembers record 6
    assert (result.intact, result.first_broken) == (False, 3)


def test_a_consistently_rewritten_tail_is_caught_by_a_checkpoint(
    db_sessions: sessionmaker[Session], audit_key
) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db_sessions, signer=audit_key, checkpoint_every=4)
    _fill(log, 8)
    # An administrator rewrites record 2 and recomputes every hash after it, and the head.
    with transaction(db_sessions, write=True) as session:
        rows = list(session.scalars(select(AuditRecordRow).order_by(AuditRecordRow.id)))
        rows[1].actor = "cli:someone-else"
        prev = rows[0].record_hash
        for row in rows[1:]:
            event = AuditEvent(
                row.actor,
                row.action,
                row.target,
                row.key_uri,
                row.request_hash,
                row.outcome,
                json.loads(row.detail),
            )  # type: ignore[arg-type]
            row.prev_hash, row.record_hash = prev, chain_hash(prev, row.id, row.at, event)
            prev = row.record_hash
        head = session.scalar(select(AuditHeadRow))
        assert head is not None
        head.last_hash = prev
    result = log.verify([audit_key.public_key_info])
    assert not result.intact and result.first_broken == 4 and "checkpoint" in result.reason


def test_checkpoint_by_a_foreign_key_is_flagged(
    db_sessions: sessionmaker[Session], audit_key, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db_sessions, signer=audit_key)
    _fill(log, 2)
    intruder = SoftwareKeyStore.open(tmp_path / "other").generate("x", "rsa-2048")
    log.checkpoint(intruder)
    assert log.verify().intact  # without a list of audit keys, any valid signature counts
    result = log.verify([audit_key.public_key_info])
    assert not result.intact and "not an audit key" in result.reason


def test_concurrent_appends_stay_contiguous(db_sessions: sessionmaker[Session]) -> None:
    log = AuditLog(db_sessions)

    def work() -> None:
        _fill(log, 15)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = log.verify()
    assert (result.intact, result.records) == (True, 60)


def test_no_pin_ever_reaches_the_log(db_sessions: sessionmaker[Session]) -> None:
    log = AuditLog(db_sessions)
    log.append(AuditEvent("cli:x", "approval.sign", key_uri="soft:object=k?pin-value=S3CRET"))
    (record,) = log.records()
    assert record.event.key_uri == "soft:object=k" and "S3CRET" not in repr(record)


def test_a_deleted_periodic_checkpoint_is_found(
    db_sessions: sessionmaker[Session], audit_key: KeyHandle
) -> None:
    log = AuditLog(db_sessions, signer=audit_key, checkpoint_every=3)
    _fill(log, 7)
    assert log.verify([audit_key.public_key_info]).intact
    with transaction(db_sessions, write=True) as session:
        session.execute(delete(AuditCheckpointRow).where(AuditCheckpointRow.last_id == 3))
    result = log.verify([audit_key.public_key_info])
    assert (result.intact, result.first_broken) == (False, 3) and "checkpoint" in result.reason


def test_a_kept_checkpoint_shows_a_lost_tail(
    db_sessions: sessionmaker[Session], audit_key: KeyHandle, tmp_path: Path
) -> None:
    """Inside one database the loss of the newest records cannot show; a kept copy shows it."""
    log = AuditLog(db_sessions, signer=audit_key, checkpoint_every=100)
    _fill(log, 5)
    kept = json.loads(json.dumps(log.checkpoint()))  # as written to and read from a file
    trusted = [audit_key.public_key_info]
    assert log.verify(trusted, [kept]).intact
    with transaction(db_sessions, write=True) as session:  # records 4-5 and the checkpoint go,
        session.execute(delete(AuditRecordRow).where(AuditRecordRow.id >= 4))
        session.execute(delete(AuditCheckpointRow))
        head = session.scalar(select(AuditHeadRow))
        assert head is not None
        last = session.scalar(select(AuditRecordRow).where(AuditRecordRow.id == 3))
        assert last is not None
        head.last_id, head.last_hash = 3, last.record_hash  # ... and the head is made to agree
    assert log.verify(trusted).intact  # what the database alone can tell
    result = log.verify(trusted, [kept])
    assert (result.intact, result.first_broken) == (False, 4) and "kept checkpoint" in result.reason
    forged = {**kept, "last_hash": "0" * 64}
    assert "kept copy" in log.verify(trusted, [{**forged, "last_id": 2}]).reason
    with pytest.raises(MalformedInputError):
        log.verify(trusted, [{"context": "something else"}])
