"""The transparency log: an append-only Merkle tree (RFC 9162 hashing) over license events and
seal uses, with tree heads signed by the log key.

Anyone holding a signed checkpoint can ask for an inclusion proof (this event is in the log)
and a consistency proof (the log only grew since an older checkpoint), and check both against
the signature alone. Appends run inside the caller's transaction (the event and its log entry
commit together or not at all) and lock one head row, so indexes are consecutive. The head
row keeps the right edge of the tree, so an append reads nothing else; every perfect subtree
is stored once, so a proof at any size is one indexed query.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import keys as asn1_keys
from sqlalchemy import insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from license_store.models import LogCheckpointRow, LogEntryRow, LogHeadRow, LogNodeRow
from storage.engine import transaction
from trust import merkle
from trust.algorithms import DEFAULT_FOR_KEY, key_type_of
from trust.clock import Clock, system_clock
from trust.errors import (
    ConfigurationError,
    EtrustError,
    MalformedInputError,
    MerkleProofError,
    NotFoundError,
)
from trust.keys import KeyHandle

HASH = "sha256"
"""RFC 9162 hashes with SHA-256; proofs from this log check with any RFC 9162 verifier."""
HASH_SIZE = 32
ORIGIN = "etrust license log"
"""The first line of every checkpoint: which log it belongs to."""

_HEAD_ID = 1
_MAX_BIGINT = 2**63 - 1
"""Indexes and sizes beyond a BIGINT cannot be in the tables (and would make the driver fail)."""
_STREAM_BATCH = 1000
_REPORT_LIMIT = 20
"""How many problems of one kind :meth:`TransparencyLog.verify` spells out before counting."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head. ``body`` is what was signed (a signed-note style text)."""

    size: int
    root: bytes
    signed_at: datetime
    body: bytes
    signature: bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "signed_at": self.signed_at.isoformat(),
            "body": self.body.decode("utf-8"),
            "signature": base64.b64encode(self.signature).decode(),
        }


def checkpoint_body(size: int, root: bytes, at: datetime, origin: str = ORIGIN) -> bytes:
    """The signed text: origin, size, base64 root and time, one per line."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n{at.isoformat()}\n".encode()


def parse_checkpoint_body(body: bytes, origin: str = ORIGIN) -> tuple[int, bytes]:
    """Size and root of a checkpoint text; MalformedInputError if it is not one of this log.

    Only the canonical form :func:`checkpoint_body` writes is accepted (plain decimal size,
    padded base64 root, ISO 8601 time with a zone), so one tree head has one signed text.
    """
    try:
        lines = body.decode("utf-8").split("\n")
        if len(lines) != 5 or lines[0] != origin or lines[4] != "":
            raise ValueError("not four lines of this log")
        size, root = int(lines[1]), base64.b64decode(lines[2], validate=True)
        if lines[1] != str(size) or lines[2] != base64.b64encode(root).decode():
            raise ValueError("size or root not in canonical form")
        _parse_time(lines[3])
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedInputError(f"not a checkpoint of {origin!r}: {exc}") from exc
    if size < 0 or len(root) != HASH_SIZE:
        raise MalformedInputError("a checkpoint's size is non-negative and its root 32 bytes")
    return size, root


def _parse_time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None or at.isoformat() != text:
        raise ValueError(f"{text!r} is not a canonical ISO 8601 time with a zone")
    return at


class _SessionNodes:
    """The stored perfect subtrees, as :class:`trust.merkle.SubtreeSource`, in one query."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def subtree(self, level: int, index: int) -> bytes:
        return self.subtrees([(level, index)])[0]

    def subtrees(self, wanted: Sequence[tuple[int, int]]) -> list[bytes]:
        if not wanted:
            return []
        rows = self._session.execute(
            select(LogNodeRow.level, LogNodeRow.index, LogNodeRow.hash).where(
                tuple_(LogNodeRow.level, LogNodeRow.index).in_(list(set(wanted)))
            )
        ).all()
        found = {(level, index): digest for level, index, digest in rows}
        missing = [w for w in wanted if w not in found]
        if missing:
            raise NotFoundError(f"the log has no node {missing[0]}: it is smaller than asked")
        return [found[w] for w in wanted]


class TransparencyLog:
    """The log over ``sessions``; ``key`` signs checkpoints (None: a read-only view)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        key: KeyHandle | None = None,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessions
        self._key = key
        self._clock = clock

    # --- writing (inside the caller's transaction) -----------------------------------------

    def append(self, session: Session, entries: Sequence[bytes]) -> list[int]:
        """Append ``entries`` (canonical JSON) in order and return their indexes.

        Run it in ``transaction(sessions, write=True)``: the head row is locked (``FOR UPDATE``
        on PostgreSQL; on SQLite the write transaction holds the database lock from its start),
        so concurrent appends queue instead of colliding and indexes stay consecutive. The
        very first append creates the head row with ``INSERT .. ON CONFLICT DO NOTHING``, so
        two first appends queue on it too. Everything is written with statements executed at
        once (nothing waits in the session for a flush); a rollback takes all of it back.
        """
        if not entries:
            return []
        head = _lock_head(session)
        if head is None:  # the first append ever: create the head row, then lock it
            _create_head(session)
            head = _lock_head(session)
            if head is None:  # pragma: no cover - the insert above or a concurrent one made it
                raise ConfigurationError("the transparency log's head row cannot be created")
        size, edge = head
        frontier = _split_hashes(edge)
        if len(edge) % HASH_SIZE or len(frontier) != size.bit_count():
            raise MerkleProofError(
                "the log head's right edge does not fit its size: refusing to append "
                "(run the log's verify to find what was altered)"
            )
        at = self._clock()
        indexes: list[int] = []
        rows: list[dict[str, object]] = []
        nodes: list[dict[str, object]] = []
        for entry in entries:
            carry = merkle.leaf_hash(entry, HASH)
            nodes.append({"level": 0, "index": size, "hash": carry})
            level = 0
            while (size >> level) & 1:  # each 1 bit closes a perfect subtree on the right edge
                carry = merkle.node_hash(frontier.pop(), carry, HASH)
                level += 1
                nodes.append({"level": level, "index": size >> level, "hash": carry})
            frontier.append(carry)
            rows.append({"index": size, "entry": entry, "at": at})
            indexes.append(size)
            size += 1
        session.execute(insert(LogEntryRow), rows)
        session.execute(insert(LogNodeRow), nodes)
        session.execute(
            update(LogHeadRow)
            .where(LogHeadRow.id == _HEAD_ID)
            .values(size=size, frontier=b"".join(frontier))
        )
        return indexes

    def sign_head(self, session: Session) -> Checkpoint:
        """Sign the tree head as it stands in ``session`` (after :meth:`append`).

        A size that has a checkpoint already keeps it: the stored one is returned and nothing
        is signed. The head row is locked as in :meth:`append`, so two transactions never
        sign the same size at once; use a write transaction here too.
        """
        if self._key is None:
            raise MalformedInputError("this log view has no signing key")
        head = _lock_head(session)
        if head is None or head[0] == 0:
            raise MalformedInputError("an empty log has no checkpoint to sign")
        size, edge = head
        existing = session.scalar(select(LogCheckpointRow).where(LogCheckpointRow.size == size))
        if existing is not None:  # signed already at this size: the first one stands
            return _checkpoint(existing)
        root = _root_of_frontier(size, edge)
        at = self._clock()
        if at.tzinfo is None or at.utcoffset() is None:
            raise ConfigurationError("the log's clock must give timezone-aware times")
        body = checkpoint_body(size, root, at)
        signature = self._key.sign(body)
        session.execute(
            insert(LogCheckpointRow).values(
                size=size, root=root, body=body, signature=signature, signed_at=at
            )
        )
        return Checkpoint(size, root, at, body, signature)

    # --- reading ---------------------------------------------------------------------------

    def size(self) -> int:
        """The number of entries (0 before the first append)."""
        with transaction(self._sessions) as session:
            return _head_size(session)

    def latest(self) -> Checkpoint:
        """The checkpoint of the largest size; NotFoundError before the first one."""
        with transaction(self._sessions) as session:
            row = session.scalar(
                select(LogCheckpointRow).order_by(LogCheckpointRow.size.desc()).limit(1)
            )
            if row is None:
                raise NotFoundError("the log has no checkpoint yet")
            return _checkpoint(row)

    def checkpoint(self, size: int) -> Checkpoint:
        """The checkpoint signed at ``size``; NotFoundError if there is none."""
        if not 0 <= size <= _MAX_BIGINT:
            raise NotFoundError(f"no checkpoint at size {size}")
        with transaction(self._sessions) as session:
            row = session.get(LogCheckpointRow, size)
            if row is None:
                raise NotFoundError(f"no checkpoint at size {size}")
            return _checkpoint(row)

    def entry(self, index: int) -> bytes:
        """The entry at ``index``; NotFoundError if the log has none there."""
        if not 0 <= index <= _MAX_BIGINT:
            raise NotFoundError(f"no log entry {index}")
        with transaction(self._sessions) as session:
            row = session.get(LogEntryRow, index)
            if row is None:
                raise NotFoundError(f"no log entry {index}")
            return row.entry

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Audit path of entry ``index`` in the tree of the first ``size`` entries, leaf first.

        NotFoundError if the log holds no tree of ``size`` (0, or more than its entries);
        MalformedInputError for a negative size or an index outside ``[0, size)``.
        """
        with transaction(self._sessions) as session:
            _check_size(session, size)
            return merkle.inclusion_proof(index, size, _SessionNodes(session), HASH)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """Proof that the tree of ``old_size`` entries is a prefix of the one of ``new_size``.

        NotFoundError if the log holds no tree of ``new_size``; MalformedInputError for a
        negative size, ``old_size`` 0 or ``old_size > new_size``.
        """
        with transaction(self._sessions) as session:
            _check_size(session, new_size)
            return merkle.consistency_proof(old_size, new_size, _SessionNodes(session), HASH)

    def root(self, size: int) -> bytes:
        """Root hash of the tree of the first ``size`` entries (errors as :meth:`inclusion_proof`)."""
        with transaction(self._sessions) as session:
            _check_size(session, size)
            return merkle.root(size, _SessionNodes(session), HASH)

    # --- auditing --------------------------------------------------------------------------

    def verify(self, public_keys: Sequence[asn1_keys.PublicKeyInfo]) -> list[str]:
        """Check the whole log; returns the problems found (empty: consistent).

        Every entry is rehashed: its leaf must be the stored leaf node, every stored node
        must be the hash the entries give it (a node is named only where the difference
        starts, not on every ancestor), no node or entry may be missing or lie beyond the
        head, and the head's right edge must be what the entries give. Every checkpoint must
        be a canonical text naming its own size, root and stored time, signed by one of
        ``public_keys``, with the entries hashing to its root. Each kind of problem (entry,
        node, head, checkpoint) is spelled out at most 20 times, then counted.

        Everything is read in one snapshot (REPEATABLE READ on PostgreSQL), so appends
        running meanwhile are not mistaken for damage. Rows are streamed, but the tree's
        hashes are rebuilt in memory (about 150 bytes per entry) and each checkpoint costs
        one signature check: fine up to a few million entries; past that, audit from the
        checkpoints and proofs instead.
        """
        report = _Report()
        tree = merkle.MemoryTree(HASH)
        with transaction(self._sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            head = session.execute(
                select(LogHeadRow.size, LogHeadRow.frontier).where(LogHeadRow.id == _HEAD_ID)
            ).one_or_none()
            size, edge = (head[0], head[1]) if head is not None else (0, b"")
            _check_entries(session, size, tree, report)
            nodes = _check_nodes(session, size, tree, report)
            _check_head(size, edge, nodes, tree, report)
            checkpoints = session.execute(
                select(
                    LogCheckpointRow.size,
                    LogCheckpointRow.root,
                    LogCheckpointRow.signed_at,
                    LogCheckpointRow.body,
                    LogCheckpointRow.signature,
                )
                .order_by(LogCheckpointRow.size)
                .execution_options(yield_per=_STREAM_BATCH)
            )
            for cp in checkpoints:
                problem = _checkpoint_problem(Checkpoint(*cp), size, tree, public_keys)
                if problem is not None:
                    report.add("checkpoint", problem)
        return report.problems()


def _lock_head(session: Session) -> tuple[int, bytes] | None:
    """The head's size and right edge, locked until the transaction ends (PostgreSQL).

    Read as plain columns, not as an ORM object, so a copy loaded earlier in the session
    can never stand in for the row as it is now.
    """
    head = session.execute(
        select(LogHeadRow.size, LogHeadRow.frontier)
        .where(LogHeadRow.id == _HEAD_ID)
        .with_for_update()
    ).one_or_none()
    return None if head is None else (head[0], head[1])


def _create_head(session: Session) -> None:
    """The empty head row, unless it exists (or a concurrent transaction is creating it: then
    PostgreSQL waits for that one to end, and SQLite has serialised writers already)."""
    values = {"id": _HEAD_ID, "size": 0, "frontier": b""}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(LogHeadRow)
            .values(values)
            .on_conflict_do_nothing(index_elements=[LogHeadRow.id])
        )
    elif dialect == "sqlite":
        session.execute(
            sqlite.insert(LogHeadRow)
            .values(values)
            .on_conflict_do_nothing(index_elements=[LogHeadRow.id])
        )
    else:  # make_engine refuses other databases; this guards hand-made engines
        raise ConfigurationError(f"the transparency log is not implemented for {dialect}")


def _head_size(session: Session) -> int:
    size = session.scalar(select(LogHeadRow.size).where(LogHeadRow.id == _HEAD_ID))
    return size or 0


def _check_size(session: Session, size: int) -> None:
    """Refuse sizes the log holds no tree of, before any query could choke on them."""
    if size < 0:
        raise MalformedInputError(f"a tree size is not negative, got {size}")
    if not 0 < size <= _head_size(session):
        raise NotFoundError(f"the log has no tree of size {size}")


def _split_hashes(data: bytes) -> list[bytes]:
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _cover(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees along the right edge of a tree of ``size``, largest first: what
    the head row keeps."""
    cover, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            cover.append((level, start >> level))
            start += 1 << level
    return cover


class _Report:
    """Problems by kind, each kind spelled out up to ``_REPORT_LIMIT`` times, then counted."""

    def __init__(self) -> None:
        self._shown: list[str] = []
        self._counts: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        if count <= _REPORT_LIMIT:
            self._shown.append(message)

    def problems(self) -> list[str]:
        more = [
            f"... and {count - _REPORT_LIMIT} more {kind} problems"
            for kind, count in self._counts.items()
            if count > _REPORT_LIMIT
        ]
        return self._shown + more


def _check_entries(session: Session, size: int, tree: merkle.MemoryTree, report: _Report) -> None:
    """Feed ``tree`` the entries from index 0 up to the first gap; report gaps and extras."""
    rows = session.execute(
        select(LogEntryRow.index, LogEntryRow.entry)
        .order_by(LogEntryRow.index)
        .execution_options(yield_per=_STREAM_BATCH)
    )
    expected = missing = extra = 0
    first_missing = first_extra = -1
    for index, entry in rows:
        if index >= size:
            first_extra = index if extra == 0 else first_extra
            extra += 1
            continue
        if index != expected:
            first_missing = expected if missing == 0 else first_missing
            missing += index - expected
        elif missing == 0:
            tree.append(entry)
        expected = index + 1
    if expected < size:
        first_missing = expected if missing == 0 else first_missing
        missing += size - expected
    if missing:
        report.add(
            "entry",
            f"entry {first_missing} is missing ({missing} of the head's {size} entries are; "
            f"only the first {tree.size} can be checked)",
        )
    if extra:
        report.add(
            "entry",
            f"entry {first_extra} lies beyond the head's size {size} ({extra} entries do)",
        )


@dataclass
class _StoredNodes:
    """What :func:`_check_nodes` learnt: the stored nodes along the right edge, and per level
    the indexes of the stored nodes that differ from the entries."""

    cover: dict[tuple[int, int], bytes]
    differ: dict[int, set[int]]


def _check_nodes(
    session: Session, size: int, tree: merkle.MemoryTree, report: _Report
) -> _StoredNodes:
    """Compare every stored node with ``tree``, naming a difference only where it starts."""
    wanted_cover = set(_cover(size))
    cover: dict[tuple[int, int], bytes] = {}
    next_index: dict[int, int] = {}  # per level, the index the next stored node should have
    differ: dict[int, set[int]] = {}  # per level, the stored nodes that differ from the tree
    rows = session.execute(
        select(LogNodeRow.level, LogNodeRow.index, LogNodeRow.hash)
        .order_by(LogNodeRow.level, LogNodeRow.index)
        .execution_options(yield_per=_STREAM_BATCH)
    )
    for level, index, digest in rows:
        if (level, index) in wanted_cover:
            cover[level, index] = digest
        if level < 0 or index < 0 or index >= size >> level:
            report.add("node", f"node (level {level}, index {index}) lies beyond the log")
            continue
        expected = next_index.get(level, 0)
        if index > expected:
            _missing_nodes(report, level, expected, index)
        next_index[level] = index + 1
        if (index + 1) << level > tree.size or digest == tree.subtree(level, index):
            continue  # beyond the entries that could be read, or right
        differ.setdefault(level, set()).add(index)
        below = differ.get(level - 1, set())
        if level == 0:
            report.add(
                "node",
                f"entry {index} does not hash to its stored leaf (node level 0, index {index}): "
                "the entry or the node was altered",
            )
        elif 2 * index not in below and 2 * index + 1 not in below:
            report.add("node", f"node (level {level}, index {index}) does not match the entries")
    for level in range(size.bit_length()):
        expected, end = next_index.get(level, 0), size >> level
        if expected < end:
            _missing_nodes(report, level, expected, end)
    return _StoredNodes(cover, differ)


def _missing_nodes(report: _Report, level: int, start: int, end: int) -> None:
    count = "" if end - start == 1 else f" (and {end - start - 1} after it)"
    report.add("node", f"node (level {level}, index {start}) is missing{count}")


def _check_head(
    size: int, edge: bytes, nodes: _StoredNodes, tree: merkle.MemoryTree, report: _Report
) -> None:
    """The head's right edge must be what the entries give. Where it differs but agrees with
    a stored node that differs from the entries too, the node's problem is reported already
    (an altered entry below it, most likely)."""
    cover = _cover(size)
    parts = _split_hashes(edge)
    problem = len(edge) != HASH_SIZE * len(cover)
    for part, (level, index) in zip(parts, cover, strict=False):
        stored = nodes.cover.get((level, index))
        if (index + 1) << level <= tree.size:
            truth = tree.subtree(level, index)
        elif stored is not None:
            truth = stored  # the entries under it are missing: reported already
        else:
            continue
        if part != truth and not (part == stored and index in nodes.differ.get(level, ())):
            problem = True
    if problem:
        report.add("head", f"the head's right edge (frontier) does not match the tree of {size}")


def _checkpoint_problem(
    cp: Checkpoint,
    size: int,
    tree: merkle.MemoryTree,
    public_keys: Sequence[asn1_keys.PublicKeyInfo],
) -> str | None:
    where = f"checkpoint at size {cp.size}"
    try:
        body_size, root = parse_checkpoint_body(cp.body)
    except MalformedInputError as exc:
        return f"{where}: {exc.message}"
    if (body_size, root) != (cp.size, cp.root):
        return f"{where}: its signed text names another tree"
    if not any(_verifies(k, cp.body, cp.signature) for k in public_keys):
        return f"{where}: the signature is not the log key's"
    if _parse_time(cp.body.decode().split("\n")[3]) != cp.signed_at:
        return f"{where}: its stored time is not the signed one"
    if cp.size > size:
        return f"{where}: the log head says only {size} entries"
    if cp.size > tree.size:
        return f"{where}: the log holds only the first {tree.size} of its entries"
    if merkle.root(cp.size, tree, HASH) != root:
        return f"{where}: the entries do not hash to its root (the log was rewritten)"
    return None


def _verifies(public_key: asn1_keys.PublicKeyInfo, body: bytes, signature: bytes) -> bool:
    try:
        verify_signature(public_key, body, signature)
    except EtrustError:
        return False
    return True


def verify_signature(public_key: asn1_keys.PublicKeyInfo, body: bytes, signature: bytes) -> None:
    """The log key's signature over ``body`` (its key type's default algorithm: SM2 with
    SM3 and the default ID for the SM2 log key)."""
    DEFAULT_FOR_KEY[key_type_of(public_key)].verify(public_key, signature, body)


def _root_of_frontier(size: int, frontier: bytes) -> bytes:
    """The root from the right edge: the perfect subtrees, largest first, folded from the
    right (RFC 9162's split at the largest power of two, applied repeatedly)."""
    hashes = _split_hashes(frontier)
    if len(frontier) % HASH_SIZE or len(hashes) != size.bit_count():
        raise MerkleProofError("the log head's right edge does not fit its size")
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = merkle.node_hash(left, root, HASH)
    return root


def _checkpoint(row: LogCheckpointRow) -> Checkpoint:
    return Checkpoint(row.size, row.root, row.signed_at, row.body, row.signature)


def verify_checkpoint(checkpoint: Checkpoint, public_key: asn1_keys.PublicKeyInfo) -> None:
    """Raise unless ``checkpoint`` is signed by ``public_key`` and its text matches it."""
    size, root = parse_checkpoint_body(checkpoint.body)
    if (size, root) != (checkpoint.size, checkpoint.root):
        raise MerkleProofError("the checkpoint's signed text names another tree")
    verify_signature(public_key, checkpoint.body, checkpoint.signature)
