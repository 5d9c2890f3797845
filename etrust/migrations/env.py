"""Alembic environment: runs on the connection ``etrust.db.migrate`` hands over.

Run from the command line too, for writing new revisions against a scratch database::

    alembic -c etrust/migrations/alembic.ini -x url=sqlite:///scratch.db revision \\
        --autogenerate -m "what changed" --rev-id 0002_what
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import etrust.models  # noqa: F401  (registers the tables on the shared base)
from etrust.db import make_engine
from storage.schema import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database with -x url=... (or sqlalchemy.url in the ini)")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; give a database with -x url=")
_main()
