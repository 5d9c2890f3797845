"""Engines and sessions for SQLite (embedded) and PostgreSQL (production).

Both databases run the same code. The differences that matter are settled here once:
SQLite gets foreign keys, WAL, a busy timeout and ``BEGIN IMMEDIATE`` for transactions that
write (so two writers queue instead of failing half-way); PostgreSQL gets ``pool_pre_ping``.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from trust.errors import ConfigurationError, MalformedInputError

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
"""How long an SQLite writer waits for another to finish before giving up."""

SQLITE_BEGIN = "etrust_sqlite_begin"
"""Execution option read by our SQLite ``begin`` hook: ``DEFERRED`` or ``IMMEDIATE``."""


def make_engine(url: str) -> Engine:
    """An engine for a ``sqlite:`` or ``postgresql:`` URL; other databases are refused.

    A bare ``postgresql://`` URL is taken to mean psycopg 3, the driver we ship with.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True)
    elif backend == "sqlite":
        engine = _sqlite_engine(url)
    else:
        raise ConfigurationError(
            f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://..."
        )
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


def _refuse_nul(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: Any,
    executemany: bool,
) -> None:
    """PostgreSQL text cannot hold a NUL character (the driver fails, an HTTP 500 upstream);
    SQLite can. Both refuse it here alike, as malformed input, before the statement runs."""
    if _has_nul(parameters):
        raise MalformedInputError("text with a NUL character cannot be stored or looked up")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    }
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty database.
        # Good for single-threaded tests only; real use wants a file.
        kwargs["poolclass"] = StaticPool
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
            if not in_memory:
                _enable_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY if
        # another writer got in between; an IMMEDIATE one takes the write lock up front and
        # simply waits its turn (busy timeout).
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE"):
            raise ConfigurationError(f"bad SQLite transaction mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (readers never block the writer); the mode persists in the file.

    Connections switching a new file at the same moment may get "database is locked" at once,
    without the busy timeout applying; they retry until one of them has done it.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01 + secrets.randbelow(20) / 1000)  # jitter spreads the racers out
            continue
        if mode != "wal":  # e.g. a file system without shared memory: not worth waiting for
            raise ConfigurationError(f"SQLite refused WAL mode (stays {mode!r})")
        return


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (stores hand out plain values)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session], *, write: bool = False) -> Iterator[Session]:
    """One session in one transaction: committed on success, rolled back on any exception.

    Pass ``write=True`` when the transaction reads before it writes, so SQLite takes the
    write lock first (elsewhere the flag changes nothing).
    """
    with sessions.begin() as session:
        if write:
            session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
        yield session
