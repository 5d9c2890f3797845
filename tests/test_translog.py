"""The license transparency log on both databases: the stored tree is the RFC 9162 tree,
checkpoints sign it, rollbacks and concurrent appends keep it whole, and tampering is found."""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from license_store.models import LogCheckpointRow, LogEntryRow, LogHeadRow, LogNodeRow
from license_store.translog import (
    HASH_SIZE,
    ORIGIN,
    Checkpoint,
    TransparencyLog,
    checkpoint_body,
    parse_checkpoint_body,
    verify_checkpoint,
    verify_signature,
)
from storage.engine import session_factory, transaction
from trust import merkle
from trust.errors import (
    InvalidSignatureError,
    MalformedInputError,
    MerkleProofError,
    NotFoundError,
)
from trust.keys import KeyHandle
from trust.merkle import MemoryTree, leaf_hash, verify_consistency, verify_inclusion
from trust.softkeys import SoftwareKeyStore

pytest_plugins = ["tests.db_fixtures"]


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> SoftwareKeyStore:
    return SoftwareKeyStore.open(tmp_path_factory.mktemp("log-keys"))


@pytest.fixture(scope="module")
def log_key(keystore: SoftwareKeyStore) -> KeyHandle:
    return keystore.generate("license-log", "sm2")


@pytest.fixture(scope="module")
def other_key(keystore: SoftwareKeyStore) -> KeyHandle:
    return keystore.generate("someone-else", "sm2")


class TickingClock:
    """A clock that moves one second per reading, so two signatures never share a time."""

    def __init__(self) -> None:
        self._now = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=1, microseconds=123)
            return self._now


@pytest.fixture
def log(db_sessions: sessionmaker[Session], log_key: KeyHandle) -> TransparencyLog:
    return TransparencyLog(db_sessions, log_key, clock=TickingClock())


def entry_of(n: int, tag: str = "issue") -> bytes:
    """A canonical-JSON-like entry, with non-ASCII text as the real ones have."""
    record = {"action": tag, "id": f"11110000000000{n:06d}.许可证", "n": n}
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def batch_sizes(total: int) -> Iterator[int]:
    """1, 2, 3, ... entries per batch, the last one cut to reach ``total``."""
    done, size = 0, 1
    while done < total:
        yield min(size, total - done)
        done += size
        size += 1


def fill(
    log: TransparencyLog,
    sessions: sessionmaker[Session],
    total: int,
    *,
    sign: bool = False,
    start: int = 0,
) -> list[bytes]:
    """Append ``total`` entries in batches of 1, 2, 3, ... (one transaction each)."""
    entries: list[bytes] = []
    n = start
    for count in batch_sizes(total):
        batch = [entry_of(n + i) for i in range(count)]
        with transaction(sessions, write=True) as session:
            first = n
            assert log.append(session, batch) == list(range(first, first + count))
            if sign:
                checkpoint = log.sign_head(session)
                assert checkpoint.size == first + count
        entries += batch
        n += count
    return entries


def memory_tree(entries: list[bytes]) -> MemoryTree:
    tree = MemoryTree("sha256")
    for entry in entries:
        tree.append(entry)
    return tree


def snapshot(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four log tables, as plain tuples."""
    with transaction(sessions) as session:
        return {
            "head": [
                tuple(r) for r in session.execute(select(LogHeadRow.size, LogHeadRow.frontier))
            ],
            "entries": [
                tuple(r)
                for r in session.execute(
                    select(LogEntryRow.index, LogEntryRow.entry).order_by(LogEntryRow.index)
                )
            ],
            "nodes": [
                tuple(r)
                for r in session.execute(
                    select(LogNodeRow.level, LogNodeRow.index, LogNodeRow.hash).order_by(
                        LogNodeRow.level, LogNodeRow.index
                    )
                )
            ],
            "checkpoints": [
                tuple(r)
                for r in session.execute(
                    select(
                        LogCheckpointRow.size, LogCheckpointRow.root, LogCheckpointRow.signature
                    ).order_by(LogCheckpointRow.size)
                )
            ],
        }


def tamper(sessions: sessionmaker[Session], *statements: Any) -> None:
    with transaction(sessions, write=True) as session:
        for statement in statements:
            session.execute(statement)


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def check_sizes(total: int) -> list[int]:
    """Sizes around every power of two up to ``total``, plus a few others."""
    sizes = {1, 2, 3, total - 1, total}
    power = 1
    while power <= total:
        sizes |= {power - 1, power, power + 1}
        power *= 2
    sizes |= set(random.Random(total).sample(range(1, total + 1), 8))
    return sorted(s for s in sizes if 1 <= s <= total)


# --- the stored tree is the RFC 9162 tree -----------------------------------------------------


def test_batched_appends_match_the_memory_tree(
    db_sessions: sessionmaker[Session], log: TransparencyLog
) -> None:
    total = 300
    entries = fill(log, db_sessions, total)
    tree = memory_tree(entries)
    assert log.size() == total
    assert [log.entry(i) for i in range(total)] == entries

    sizes = check_sizes(total)
    roots = {}
    for size in sizes:
        roots[size] = log.root(size)
        assert roots[size] == _root(tree, size)
    rng = random.Random(7)
    for size in sizes:
        indexes = (
            range(size)
            if size <= 33
            else sorted({0, 1, size // 2, size - 2, size - 1, *rng.sample(range(size), 6)})
        )
        for index in indexes:
            proof = log.inclusion_proof(index, size)
            assert proof == tree.inclusion_proof(index, size)
            verify_inclusion(leaf_hash(entries[index]), index, size, proof, roots[size])
    for new in sizes:
        for old in sizes:
            if old > new:
                continue
            proof = log.consistency_proof(old, new)
            assert proof == tree.consistency_proof(old, new)
            verify_consistency(old, new, roots[old], roots[new], proof)


def _root(tree: MemoryTree, size: int) -> bytes:
    return merkle.root(size, tree)


def test_every_proof_of_a_small_log(
    db_sessions: sessionmaker[Session], log: TransparencyLog
) -> None:
    entries = fill(log, db_sessions, 40)
    tree = memory_tree(entries)
    for size in range(1, 41):
        root = log.root(size)
        assert root == _root(tree, size)
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert proof == tree.inclusion_proof(index, size)
            verify_inclusion(leaf_hash(entries[index]), index, size, proof, root)
        for old in range(1, size + 1):
            proof = log.consistency_proof(old, size)
            assert proof == tree.consistency_proof(old, size)
            verify_consistency(old, size, log.root(old), root, proof)


def test_stored_nodes_and_head_are_the_perfect_subtrees(
    db_sessions: sessionmaker[Session], log: TransparencyLog
) -> None:
    entries = fill(log, db_sessions, 77)
    tree = memory_tree(entries)
    rows = snapshot(db_sessions)
    expected_nodes = []
    level = 0
    while 77 >> level:
        expected_nodes += [(level, i, tree.subtree(level, i)) for i in range(77 >> level)]
        level += 1
    assert rows["nodes"] == expected_nodes
    # 77 = 64 + 8 + 4 + 1: the head keeps those four perfect subtrees, largest first.
    edge = [tree.subtree(6, 0), tree.subtree(3, 8), tree.subtree(2, 18), tree.subtree(0, 76)]
    assert rows["head"] == [(77, b"".join(edge))]


def test_a_proof_stays_valid_as_the_log_grows(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    entries = fill(log, db_sessions, 10, sign=True)
    old = log.latest()
    proof = log.inclusion_proof(3, old.size)
    entries += fill(log, db_sessions, 25, sign=True, start=10)
    new = log.latest()
    assert (old.size, new.size) == (10, 35)
    assert log.inclusion_proof(3, old.size) == proof  # answers for old sizes never change
    verify_inclusion(leaf_hash(entries[3]), 3, old.size, proof, old.root)
    verify_consistency(old.size, new.size, old.root, new.root, log.consistency_proof(10, 35))
    for checkpoint in (old, new):
        verify_checkpoint(checkpoint, log_key.public_key_info)


def test_an_empty_append_changes_nothing(
    db_sessions: sessionmaker[Session], log: TransparencyLog
) -> None:
    with transaction(db_sessions, write=True) as session:
        assert log.append(session, []) == []
    assert log.size() == 0
    assert snapshot(db_sessions)["head"] == []
    fill(log, db_sessions, 3)
    with transaction(db_sessions, write=True) as session:
        assert log.append(session, []) == []
    assert log.size() == 3


def test_appends_in_one_transaction_continue_each_other(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    entries = [entry_of(i) for i in range(9)]
    with transaction(db_sessions, write=True) as session:
        assert log.append(session, entries[:2]) == [0, 1]
        first = log.sign_head(session)
        assert log.append(session, entries[2:7]) == [2, 3, 4, 5, 6]
        assert log.append(session, entries[7:]) == [7, 8]
        second = log.sign_head(session)
    assert (first.size, second.size) == (2, 9)
    assert second.root == memory_tree(entries).root()
    assert log.verify([log_key.public_key_info]) == []


def test_an_empty_log(db_sessions: sessionmaker[Session], log: TransparencyLog) -> None:
    assert log.size() == 0
    with pytest.raises(NotFoundError):
        log.latest()
    with pytest.raises(NotFoundError):
        log.entry(0)
    with pytest.raises(NotFoundError):
        log.root(1)
    with pytest.raises(NotFoundError):
        log.inclusion_proof(0, 1)
    with (
        pytest.raises(MalformedInputError, match="empty log"),
        transaction(db_sessions, write=True) as session,
    ):
        log.sign_head(session)
    assert log.verify([]) == []


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoints_are_signed_by_the_log_key(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    other_key: KeyHandle,
) -> None:
    entries = fill(log, db_sessions, 21, sign=True)
    checkpoint = log.latest()
    assert checkpoint.size == 21 and checkpoint.root == memory_tree(entries).root()
    assert checkpoint.root == log.root(21)
    assert log.checkpoint(21) == checkpoint
    assert parse_checkpoint_body(checkpoint.body) == (21, checkpoint.root)
    assert checkpoint.body == checkpoint_body(21, checkpoint.root, checkpoint.signed_at)
    assert checkpoint.signed_at.tzinfo is not None
    verify_checkpoint(checkpoint, log_key.public_key_info)
    with pytest.raises(InvalidSignatureError):
        verify_checkpoint(checkpoint, other_key.public_key_info)
    with pytest.raises(InvalidSignatureError):
        verify_signature(log_key.public_key_info, checkpoint.body + b" ", checkpoint.signature)
    # Every batch signed one: sizes 1, 3, 6, 10, 15, 21.
    for size in (1, 3, 6, 10, 15):
        earlier = log.checkpoint(size)
        verify_checkpoint(earlier, log_key.public_key_info)
        verify_consistency(size, 21, earlier.root, checkpoint.root, log.consistency_proof(size, 21))
    with pytest.raises(NotFoundError):
        log.checkpoint(2)


def test_a_checkpoint_that_names_another_tree_is_refused(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    fill(log, db_sessions, 5, sign=True)
    checkpoint = log.latest()
    with pytest.raises(MerkleProofError, match="another tree"):
        verify_checkpoint(replace(checkpoint, size=4), log_key.public_key_info)
    with pytest.raises(MerkleProofError, match="another tree"):
        verify_checkpoint(replace(checkpoint, root=bytes(32)), log_key.public_key_info)
    with pytest.raises(InvalidSignatureError):
        verify_checkpoint(
            replace(checkpoint, signature=flip(checkpoint.signature, 20)), log_key.public_key_info
        )
    forged_body = checkpoint_body(5, bytes(32), checkpoint.signed_at)
    with pytest.raises(InvalidSignatureError):
        verify_checkpoint(
            replace(checkpoint, root=bytes(32), body=forged_body), log_key.public_key_info
        )


def test_checkpoint_to_dict(db_sessions: sessionmaker[Session], log: TransparencyLog) -> None:
    fill(log, db_sessions, 3, sign=True)
    checkpoint = log.latest()
    exported = checkpoint.to_dict()
    assert exported["size"] == 3
    assert base64.b64decode(str(exported["root"])) == checkpoint.root
    assert base64.b64decode(str(exported["signature"])) == checkpoint.signature
    assert str(exported["body"]).encode() == checkpoint.body
    assert datetime.fromisoformat(str(exported["signed_at"])) == checkpoint.signed_at


def test_a_size_signed_twice_keeps_the_first_checkpoint(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    fill(log, db_sessions, 4, sign=True)
    first = log.checkpoint(4)
    with transaction(db_sessions, write=True) as session:
        again = log.sign_head(session)
        assert log.sign_head(session) == first
    assert again == first
    later_log = TransparencyLog(db_sessions, log_key)  # another clock: a later time
    with transaction(db_sessions, write=True) as session:
        assert later_log.sign_head(session) == first
    with transaction(db_sessions) as session:
        assert session.scalars(select(LogCheckpointRow.size)).all() == [1, 3, 4]


def test_a_second_signature_in_one_transaction_is_the_first(
    db_sessions: sessionmaker[Session], log: TransparencyLog
) -> None:
    with transaction(db_sessions, write=True) as session:
        log.append(session, [entry_of(0), entry_of(1)])
        first = log.sign_head(session)
        assert log.sign_head(session) == first
    assert log.latest() == first


def test_signing_needs_a_key(db_sessions: sessionmaker[Session], log: TransparencyLog) -> None:
    fill(log, db_sessions, 2)
    reader = TransparencyLog(db_sessions)
    with (
        pytest.raises(MalformedInputError, match="no signing key"),
        transaction(db_sessions, write=True) as session,
    ):
        reader.sign_head(session)
    assert reader.size() == 2


def test_checkpoint_body_round_trip() -> None:
    at = datetime(2024, 5, 1, 8, 0, 1, 500, tzinfo=UTC)
    root = bytes(range(32))
    body = checkpoint_body(1234, root, at)
    assert body.startswith(ORIGIN.encode() + b"\n1234\n")
    assert parse_checkpoint_body(body) == (1234, root)
    other = checkpoint_body(1234, root, at, origin="another log")
    assert parse_checkpoint_body(other, origin="another log") == (1234, root)


def _body(*lines: str) -> bytes:
    return "\n".join(lines).encode()


ROOT_B64 = base64.b64encode(bytes(range(32))).decode()
TIME = "2024-05-01T08:00:01+00:00"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(checkpoint_body(3, bytes(32), datetime.now(UTC), "another log"), id="foreign"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe" + _body(ORIGIN, "3", ROOT_B64, TIME, ""), id="not-utf8"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64, TIME), id="no-final-newline"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64, ""), id="three-lines"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64, TIME, "extra", ""), id="five-lines"),
        pytest.param(_body(ORIGIN.upper(), "3", ROOT_B64, TIME, ""), id="origin-case"),
        pytest.param(_body(ORIGIN, "three", ROOT_B64, TIME, ""), id="size-word"),
        pytest.param(_body(ORIGIN, "-3", ROOT_B64, TIME, ""), id="size-negative"),
        pytest.param(_body(ORIGIN, " 3", ROOT_B64, TIME, ""), id="size-space"),
        pytest.param(_body(ORIGIN, "03", ROOT_B64, TIME, ""), id="size-leading-zero"),
        pytest.param(_body(ORIGIN, "1_0", ROOT_B64, TIME, ""), id="size-underscore"),
        pytest.param(_body(ORIGIN, "٣", ROOT_B64, TIME, ""), id="size-arabic-digit"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64[:-4], TIME, ""), id="root-short"),
        pytest.param(
            _body(ORIGIN, "3", base64.b64encode(bytes(33)).decode(), TIME, ""), id="root-long"
        ),
        pytest.param(_body(ORIGIN, "3", ROOT_B64.rstrip("="), TIME, ""), id="root-no-padding"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64 + "\r", TIME, ""), id="root-crlf"),
        pytest.param(_body(ORIGIN, "3", "!" * 44, TIME, ""), id="root-not-base64"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64, "yesterday", ""), id="time-word"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64, "2024-05-01T08:00:01", ""), id="time-naive"),
        pytest.param(_body(ORIGIN, "3", ROOT_B64, "2024-05-01 08:00:01Z", ""), id="time-form"),
    ],
)
def test_parse_checkpoint_body_refuses(body: bytes) -> None:
    with pytest.raises(MalformedInputError):
        parse_checkpoint_body(body)


# --- rollback ---------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_a_rolled_back_append_leaves_no_trace(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    entries = fill(log, db_sessions, 6, sign=True)
    before = snapshot(db_sessions)
    with pytest.raises(Boom), transaction(db_sessions, write=True) as session:
        assert log.append(session, [entry_of(100), entry_of(101), entry_of(102)]) == [6, 7, 8]
        assert log.sign_head(session).size == 9
        raise Boom
    assert snapshot(db_sessions) == before
    assert log.size() == 6 and log.latest().size == 6
    with pytest.raises(NotFoundError):
        log.entry(6)
    with pytest.raises(NotFoundError):
        log.root(7)
    with transaction(db_sessions, write=True) as session:
        assert log.append(session, [entry_of(6)]) == [6]
        log.sign_head(session)
    entries.append(entry_of(6))
    assert log.root(7) == memory_tree(entries).root()
    assert log.verify([log_key.public_key_info]) == []


def test_a_rolled_back_first_append_leaves_no_head(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    with pytest.raises(Boom), transaction(db_sessions, write=True) as session:
        assert log.append(session, [entry_of(0)]) == [0]
        raise Boom
    assert snapshot(db_sessions) == {"head": [], "entries": [], "nodes": [], "checkpoints": []}
    entries = fill(log, db_sessions, 5, sign=True)
    assert log.latest().root == memory_tree(entries).root()
    assert log.verify([log_key.public_key_info]) == []


# --- concurrency ------------------------------------------------------------------------------

THREADS, PER_THREAD = 8, 25
CHUNKS = [1, 2, 3, 4, 5, 6, 4]  # 25 entries in 7 transactions per thread
assert sum(CHUNKS) == PER_THREAD


def run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert errors == [], errors


def test_concurrent_appends_are_serialised(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    """The log starts empty, so the first appends also race to create the head row."""
    start = threading.Barrier(THREADS)
    results: dict[int, list[tuple[list[int], list[bytes], Checkpoint]]] = {}

    def work(thread: int) -> None:
        mine = results.setdefault(thread, [])
        n = 0
        start.wait()
        for chunk in CHUNKS:
            batch = [entry_of(thread * 1000 + n + i, f"thread-{thread}") for i in range(chunk)]
            n += chunk
            with transaction(db_sessions, write=True) as session:
                indexes = log.append(session, batch)
                checkpoint = log.sign_head(session)
            mine.append((indexes, batch, checkpoint))

    run_threads(THREADS, work)

    total = THREADS * PER_THREAD
    assert log.size() == total
    by_index: dict[int, bytes] = {}
    for batches in results.values():
        for indexes, batch, checkpoint in batches:
            assert indexes == list(range(indexes[0], indexes[0] + len(batch)))
            assert checkpoint.size == indexes[-1] + 1  # signed in the append's transaction
            for index, entry in zip(indexes, batch, strict=True):
                assert index not in by_index, f"index {index} given twice"
                by_index[index] = entry
    assert sorted(by_index) == list(range(total))
    entries = [by_index[i] for i in range(total)]
    assert [log.entry(i) for i in range(total)] == entries
    tree = memory_tree(entries)
    assert log.root(total) == tree.root() == log.latest().root
    for batches in results.values():
        for _, _, checkpoint in batches:
            assert checkpoint == log.checkpoint(checkpoint.size)
            assert checkpoint.root == _root(tree, checkpoint.size)
    assert log.verify([log_key.public_key_info]) == []


def test_concurrent_signing_of_one_size_keeps_one_checkpoint(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    fill(log, db_sessions, 12)
    start = threading.Barrier(THREADS)
    got: list[Checkpoint] = []

    def work(_: int) -> None:
        start.wait()
        with transaction(db_sessions, write=True) as session:
            got.append(log.sign_head(session))

    run_threads(THREADS, work)
    assert len(got) == THREADS and all(c == got[0] for c in got)
    assert log.latest() == got[0] and got[0].size == 12
    assert log.verify([log_key.public_key_info]) == []


def test_an_append_reads_the_head_as_committed_not_as_cached(
    postgres_engine: Engine, log_key: KeyHandle
) -> None:
    """A caller's session that loaded the head row earlier (PostgreSQL, READ COMMITTED) must
    not make the append use that stale copy once another transaction has moved the head."""
    sessions = session_factory(postgres_engine)
    log = TransparencyLog(sessions, log_key)
    fill(log, sessions, 3)
    with transaction(sessions, write=True) as session:
        stale = session.get(LogHeadRow, 1)
        assert stale is not None and stale.size == 3
        fill(log, sessions, 2, start=3)  # another transaction, committed meanwhile
        assert log.append(session, [entry_of(5)]) == [5]
        assert log.sign_head(session).size == 6
    entries = [entry_of(i) for i in range(6)]
    assert log.root(6) == memory_tree(entries).root()
    assert log.verify([log_key.public_key_info]) == []


def test_verify_during_appends_sees_one_snapshot(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    fill(log, db_sessions, 5, sign=True)
    done = threading.Event()
    results: list[list[str]] = []

    def appender(_: int) -> None:
        try:
            fill(log, db_sessions, 60, sign=True, start=5)
        finally:
            done.set()

    def auditor(_: int) -> None:
        while not done.is_set():
            results.append(log.verify([log_key.public_key_info]))

    run_threads(2, lambda n: (appender if n == 0 else auditor)(n))
    assert results and all(problems == [] for problems in results)
    assert log.size() == 65


# --- verify finds tampering -------------------------------------------------------------------


@pytest.fixture
def signed_log(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> list[bytes]:
    """20 entries in batches of 1, 2, 3, 4, 5, 5, each signed: checkpoints 1, 3, 6, 10, 15, 20."""
    entries = fill(log, db_sessions, 20, sign=True)
    assert log.verify([log_key.public_key_info]) == []
    return entries


def problems_of(log: TransparencyLog, key: KeyHandle) -> list[str]:
    problems = log.verify([key.public_key_info])
    assert problems, "tampering went unnoticed"
    return problems


def test_untouched_log_verifies(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    assert log.verify([log_key.public_key_info]) == []
    assert TransparencyLog(db_sessions).verify([log_key.public_key_info]) == []


def test_verify_needs_the_log_key(
    log: TransparencyLog, other_key: KeyHandle, log_key: KeyHandle, signed_log: list[bytes]
) -> None:
    problems = log.verify([other_key.public_key_info])
    assert len(problems) == 6 and all("signature" in p for p in problems)
    assert log.verify([other_key.public_key_info, log_key.public_key_info]) == []
    assert len(log.verify([])) == 6


def test_verify_finds_an_altered_entry(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    tamper(
        db_sessions,
        update(LogEntryRow).where(LogEntryRow.index == 7).values(entry=entry_of(7, "revoke")),
    )
    problems = problems_of(log, log_key)
    assert any("entry 7" in p for p in problems)
    # The checkpoints from size 8 on no longer match the entries; the earlier ones do.
    for size in (10, 15, 20):
        assert any(f"checkpoint at size {size}:" in p and "rewritten" in p for p in problems)
    assert not any("checkpoint at size 6:" in p for p in problems)
    assert not any("node (level" in p for p in problems)  # the stored tree itself is intact


def test_verify_finds_a_deleted_entry(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    tamper(db_sessions, delete(LogEntryRow).where(LogEntryRow.index == 11))
    problems = problems_of(log, log_key)
    assert any("entry 11 is missing" in p for p in problems)
    assert any("checkpoint at size 15:" in p for p in problems)
    assert not any("checkpoint at size 10:" in p for p in problems)


def test_verify_finds_a_deleted_last_entry(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    tamper(db_sessions, delete(LogEntryRow).where(LogEntryRow.index == 19))
    problems = problems_of(log, log_key)
    assert any("entry 19 is missing" in p for p in problems)


def test_verify_finds_an_added_entry(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    at = datetime.now(UTC)
    tamper(db_sessions, insert(LogEntryRow).values(index=20, entry=entry_of(20), at=at))
    problems = problems_of(log, log_key)
    assert any("entry 20 lies beyond" in p for p in problems)


@pytest.mark.parametrize(("level", "index"), [(0, 13), (1, 2), (2, 1), (4, 0)])
def test_verify_finds_an_altered_node(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
    level: int,
    index: int,
) -> None:
    tamper(
        db_sessions,
        update(LogNodeRow)
        .where(LogNodeRow.level == level, LogNodeRow.index == index)
        .values(hash=bytes(32)),
    )
    problems = problems_of(log, log_key)
    if level == 0:
        assert len(problems) == 1 and f"entry {index} does not hash" in problems[0]
        assert f"node level 0, index {index}" in problems[0]
    else:
        assert problems == [f"node (level {level}, index {index}) does not match the entries"]
    # Proofs through the altered node no longer verify against the signed root.
    checkpoint = log.latest()
    leaf = index << level
    proof = log.inclusion_proof(leaf ^ (1 << level), checkpoint.size)
    with pytest.raises(MerkleProofError):
        verify_inclusion(
            leaf_hash(signed_log[leaf ^ (1 << level)]),
            leaf ^ (1 << level),
            checkpoint.size,
            proof,
            checkpoint.root,
        )


def test_verify_finds_a_deleted_node(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    tamper(db_sessions, delete(LogNodeRow).where(LogNodeRow.level == 1, LogNodeRow.index == 4))
    problems = problems_of(log, log_key)
    assert problems == ["node (level 1, index 4) is missing"]
    with pytest.raises(NotFoundError):  # a proof that needs it says so, no SQL error
        log.inclusion_proof(10, 20)


def test_verify_finds_an_added_node(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    tamper(db_sessions, insert(LogNodeRow).values(level=2, index=5, hash=bytes(32)))
    assert problems_of(log, log_key) == ["node (level 2, index 5) lies beyond the log"]


def test_verify_finds_an_altered_signature(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    with transaction(db_sessions) as session:
        signature = session.scalars(
            select(LogCheckpointRow.signature).where(LogCheckpointRow.size == 10)
        ).one()
    tamper(
        db_sessions,
        update(LogCheckpointRow)
        .where(LogCheckpointRow.size == 10)
        .values(signature=flip(signature, len(signature) // 2)),
    )
    assert problems_of(log, log_key) == [
        "checkpoint at size 10: the signature is not the log key's"
    ]


def test_verify_finds_an_altered_signing_time(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    tamper(
        db_sessions,
        update(LogCheckpointRow)
        .where(LogCheckpointRow.size == 6)
        .values(signed_at=datetime(2020, 1, 1, tzinfo=UTC)),
    )
    assert problems_of(log, log_key) == [
        "checkpoint at size 6: its stored time is not the signed one"
    ]


def _rewrite_history(sessions: sessionmaker[Session], entries: list[bytes], index: int) -> bytes:
    """What an administrator with database access could do: rewrite one entry and every
    node and the head to match, so that the stored tree is self-consistent again."""
    forged = list(entries)
    forged[index] = entry_of(index, "forged")
    tree = memory_tree(forged)
    stored_nodes = snapshot(sessions)["nodes"]
    with transaction(sessions, write=True) as session:
        session.execute(
            update(LogEntryRow).where(LogEntryRow.index == index).values(entry=forged[index])
        )
        for level, node_index, _ in stored_nodes:
            session.execute(
                update(LogNodeRow)
                .where(LogNodeRow.level == level, LogNodeRow.index == node_index)
                .values(hash=tree.subtree(level, node_index))
            )
        edge = [tree.subtree(4, 0), tree.subtree(2, 4)]  # 20 = 16 + 4
        session.execute(update(LogHeadRow).values(frontier=b"".join(edge)))
    return tree.root()


def test_a_consistent_rewrite_is_caught_by_the_checkpoint_signatures(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    forged_root = _rewrite_history(db_sessions, signed_log, 4)
    # The checkpoints are rewritten too, each text re-made around the forged tree; only the
    # signatures cannot be.
    tree = memory_tree([entry_of(4, "forged") if i == 4 else e for i, e in enumerate(signed_log)])
    with transaction(db_sessions, write=True) as session:
        for cp in session.scalars(select(LogCheckpointRow)):
            cp.root = _root(tree, cp.size)
            cp.body = checkpoint_body(cp.size, cp.root, cp.signed_at)
    assert tree.root() == forged_root
    problems = problems_of(log, log_key)
    assert sorted(problems) == sorted(
        f"checkpoint at size {size}: the signature is not the log key's" for size in (6, 10, 15, 20)
    )


def test_a_consistent_rewrite_with_only_the_roots_changed(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    _rewrite_history(db_sessions, signed_log, 4)
    tree = memory_tree([entry_of(4, "forged") if i == 4 else e for i, e in enumerate(signed_log)])
    with transaction(db_sessions, write=True) as session:
        for cp in session.scalars(select(LogCheckpointRow)):
            cp.root = _root(tree, cp.size)
    problems = problems_of(log, log_key)
    assert sorted(problems) == sorted(
        f"checkpoint at size {size}: its signed text names another tree" for size in (6, 10, 15, 20)
    )


def test_a_consistent_rewrite_under_untouched_checkpoints(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    _rewrite_history(db_sessions, signed_log, 4)
    problems = problems_of(log, log_key)
    assert sorted(problems) == sorted(
        f"checkpoint at size {size}: the entries do not hash to its root (the log was rewritten)"
        for size in (6, 10, 15, 20)
    )


@pytest.mark.parametrize("how", ["flipped", "truncated", "extended", "empty"])
def test_verify_finds_an_altered_head(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
    how: str,
) -> None:
    edge = snapshot(db_sessions)["head"][0][1]
    assert len(edge) == 2 * HASH_SIZE  # 20 = 16 + 4
    altered = {
        "flipped": flip(edge, 40),
        "truncated": edge[:HASH_SIZE],
        "extended": edge + bytes(HASH_SIZE),
        "empty": b"",
    }[how]
    tamper(db_sessions, update(LogHeadRow).values(frontier=altered))
    assert problems_of(log, log_key) == [
        "the head's right edge (frontier) does not match the tree of 20"
    ]
    # An append on a broken head refuses (or is caught by verify) rather than extending it.
    if how != "flipped":
        with pytest.raises(MerkleProofError), transaction(db_sessions, write=True) as session:
            log.append(session, [entry_of(20)])
        assert log.size() == 20


def test_verify_finds_a_head_size_changed(
    db_sessions: sessionmaker[Session],
    log: TransparencyLog,
    log_key: KeyHandle,
    signed_log: list[bytes],
) -> None:
    tamper(db_sessions, update(LogHeadRow).values(size=18))
    problems = problems_of(log, log_key)
    assert any("entry 18 lies beyond" in p for p in problems)
    assert any("checkpoint at size 20: the log head says only 18" in p for p in problems)


def test_verify_caps_repeated_problems(
    db_sessions: sessionmaker[Session], log: TransparencyLog, log_key: KeyHandle
) -> None:
    fill(log, db_sessions, 60)
    roots = {size: log.root(size) for size in range(1, 61)}
    with transaction(db_sessions, write=True) as session:
        for size in range(1, 61):  # a checkpoint at every size, as one per issuance gives
            session.execute(
                insert(LogCheckpointRow).values(
                    size=size,
                    root=roots[size],
                    body=b"garbage",
                    signature=b"",
                    signed_at=datetime.now(UTC),
                )
            )
    problems = problems_of(log, log_key)
    assert len(problems) == 21
    assert problems[-1] == "... and 40 more checkpoint problems"


# --- errors for what the log does not hold ----------------------------------------------------


def test_out_of_range_requests_raise_the_documented_errors(
    db_sessions: sessionmaker[Session], log: TransparencyLog
) -> None:
    fill(log, db_sessions, 10, sign=True)
    huge = 2**70  # beyond BIGINT: must never reach the database driver
    not_found: list[Callable[[], object]] = [
        lambda: log.root(11),
        lambda: log.root(0),
        lambda: log.root(huge),
        lambda: log.inclusion_proof(3, 11),
        lambda: log.inclusion_proof(3, huge),
        lambda: log.inclusion_proof(10, 11),
        lambda: log.consistency_proof(5, 11),
        lambda: log.consistency_proof(11, 12),
        lambda: log.consistency_proof(3, huge),
        lambda: log.entry(10),
        lambda: log.entry(-1),
        lambda: log.entry(huge),
        lambda: log.entry(-huge),
        lambda: log.checkpoint(5),
        lambda: log.checkpoint(0),
        lambda: log.checkpoint(huge),
        lambda: log.checkpoint(-1),
    ]
    malformed: list[Callable[[], object]] = [
        lambda: log.root(-1),
        lambda: log.inclusion_proof(10, 10),
        lambda: log.inclusion_proof(huge, 10),
        lambda: log.inclusion_proof(-1, 10),
        lambda: log.inclusion_proof(0, -1),
        lambda: log.consistency_proof(6, 5),
        lambda: log.consistency_proof(10, 1),
        lambda: log.consistency_proof(0, 5),
        lambda: log.consistency_proof(-1, 5),
        lambda: log.consistency_proof(huge, 10),
        lambda: log.consistency_proof(1, -1),
    ]
    for call in not_found:
        try:
            call()
        except NotFoundError:
            continue
        except SQLAlchemyError as exc:  # pragma: no cover - what this test guards against
            pytest.fail(f"SQL error escaped: {exc}")
        pytest.fail("no NotFoundError")
    for call in malformed:
        try:
            call()
        except MalformedInputError:
            continue
        except SQLAlchemyError as exc:  # pragma: no cover
            pytest.fail(f"SQL error escaped: {exc}")
        pytest.fail("no MalformedInputError")
    assert log.consistency_proof(10, 10) == []
    assert log.consistency_proof(4, 10) != []
