"""How long verification leaves traces: check records for the audit period, presentation codes
a day past their expiry (after that they are only rows nobody can use)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from storage.engine import transaction
from verify_app.models import PresentationRow, VerificationCheckRow

CHECKS_KEPT = timedelta(days=365 * 3)
"""Checks are kept three years by default (who checked what is an audit question)."""
PRESENTATIONS_KEPT = timedelta(days=1)


def purge(
    sessions: sessionmaker[Session],
    now: datetime,
    *,
    checks_kept: timedelta = CHECKS_KEPT,
    presentations_kept: timedelta = PRESENTATIONS_KEPT,
) -> tuple[int, int]:
    """Delete check records older than ``checks_kept`` and presentation codes expired more
    than ``presentations_kept`` ago; returns how many of each went."""
    with transaction(sessions, write=True) as session:
        checks = session.execute(
            delete(VerificationCheckRow).where(VerificationCheckRow.at < now - checks_kept)
        )
        presentations = session.execute(
            delete(PresentationRow).where(PresentationRow.expires_at < now - presentations_kept)
        )
        return checks.rowcount, presentations.rowcount  # type: ignore[attr-defined]
