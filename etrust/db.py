"""Schema migrations (Alembic) for SQLite and PostgreSQL.

PostgreSQL gets an advisory lock so app workers starting together migrate one at a time.
Engines and sessions come from :mod:`storage.engine`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select

from storage.engine import SQLITE_BEGIN, make_engine, session_factory, transaction
from trust.errors import ConfigurationError

__all__ = [
    "current_revision",
    "head_revision",
    "make_engine",
    "migrate",
    "session_factory",
    "transaction",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_MIGRATION_LOCK = 0x6574_7275_7374  # "etrust": a fixed key shared by every worker
"""PostgreSQL advisory lock key held while migrating."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code, independent of the current directory.

    With ``connection`` the migrations run on it (inside its transaction).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise ConfigurationError("no database migrations are installed")
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None when it was never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to run again and from several workers.

    All of it runs in one transaction (PostgreSQL and SQLite both have transactional DDL), so
    a failed upgrade leaves the previous schema in place.
    """
    backend = engine.dialect.name
    with engine.connect() as connection:
        if backend == "sqlite":
            connection = connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with connection.begin():
            if backend == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            command.upgrade(alembic_config(connection), "head")
