"""Database fixtures: every store test runs on a fresh SQLite file and a fresh PostgreSQL database.

PostgreSQL comes from ``ETRUST_TEST_POSTGRES_URL`` (default: the local trust-auth server). Each
test gets its own database, created through an AUTOCOMMIT connection to the ``postgres``
database and dropped afterwards. An unreachable server skips the PostgreSQL tests, except
under ``CI=true`` where it fails them: CI must test the production database for real.

Register with ``pytest_plugins = ["tests.db_fixtures"]``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from etrust.db import make_engine, migrate, session_factory

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI") == "true"


def postgres_url() -> URL:
    return make_url(os.environ.get("ETRUST_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))


def _admin_engine() -> Engine:
    """AUTOCOMMIT on the maintenance database: CREATE/DROP DATABASE cannot run in a transaction."""
    return create_engine(
        postgres_url().set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine]:
    """The admin engine, once the server has answered; skip (or fail under CI) otherwise."""
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        where = postgres_url().render_as_string(hide_password=True)
        reason = f"PostgreSQL at {where} is unreachable (set ETRUST_TEST_POSTGRES_URL): {exc.orig}"
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_database(postgres_server: Engine) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database that is dropped after the test."""
    name = f"etrust_test_{secrets.token_hex(4)}"
    with postgres_server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url().set(database=name).render_as_string(hide_password=False)
    finally:
        with postgres_server.connect() as conn:
            # FORCE ends connections a failed test may have left open (PostgreSQL 13+).
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_database(tmp_path: Path) -> str:
    """URL of a new SQLite file (the embedded default)."""
    return f"sqlite:///{tmp_path / 'etrust.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once per backend: tests using it run on SQLite and PostgreSQL."""
    fixture = "sqlite_database" if request.param == "sqlite" else "postgres_database"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """A migrated database on each backend."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db_sessions(db_engine: Engine) -> sessionmaker[Session]:
    return session_factory(db_engine)


@pytest.fixture
def postgres_engine(postgres_database: str) -> Iterator[Engine]:
    """A migrated PostgreSQL database, for tests of behaviour under real concurrency."""
    engine = make_engine(postgres_database)
    migrate(engine)
    yield engine
    engine.dispose()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Params of a module-scoped fixture that runs its module once per database."""


def demo_home(request: pytest.FixtureRequest, folder: Path) -> Iterator[Path]:
    """A demo home (``init --demo``) in ``folder`` on the database ``request.param`` names:
    for PostgreSQL a fresh database (``ETRUST_DATABASE_URL`` points at it while the fixture
    lives), dropped afterwards. Use from a fixture with ``params=BACKENDS``."""
    from etrust.cli import main

    patch = pytest.MonkeyPatch()
    database = None
    if request.param == "postgres":
        server: Engine = request.getfixturevalue("postgres_server")
        database = f"etrust_test_{secrets.token_hex(4)}"
        with server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        url = postgres_url().set(database=database).render_as_string(hide_password=False)
        patch.setenv("ETRUST_DATABASE_URL", url)
    try:
        assert main(["--home", str(folder), "init", "--demo"]) == 0
        yield folder
    finally:
        patch.undo()
        if database is not None:
            with server.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
