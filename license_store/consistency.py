"""Do the registry's statuses say what the log says?

The transparency log is the signed history; the ``licenses`` table is what answers queries and
feeds the status list. Replaying the log's license events gives each license's status, which
must equal the table's: a database edit that quietly un-revokes a license shows up here, even
though the log itself is intact.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from license_store.models import LicenseRow, LogEntryRow
from storage.engine import transaction

_BATCH = 1000
_MAX_PROBLEMS = 20


def status_problems(sessions: sessionmaker[Session]) -> list[str]:
    """Licenses whose stored status differs from the log's history, or that one side lacks."""
    expected: dict[str, str] = {}
    problems: list[str] = []
    with transaction(sessions) as session:
        entries = session.execute(
            select(LogEntryRow.index, LogEntryRow.entry).order_by(LogEntryRow.index)
        ).yield_per(_BATCH)
        for index, entry in entries:
            try:
                record = json.loads(entry)
                action = record["action"]
                if action in ("issue", "amend"):
                    expected[record["identifier"]] = "valid"
                    if action == "amend":
                        expected[record["previous"]] = "superseded"
                elif action in ("suspend", "resume", "revoke", "expire"):
                    expected[record["identifier"]] = record["to"]
            except (ValueError, KeyError, TypeError):
                problems.append(f"log entry {index} is not a record this registry writes")
        rows = session.execute(select(LicenseRow.identifier, LicenseRow.status)).yield_per(_BATCH)
        seen = set()
        for identifier, status in rows:
            seen.add(identifier)
            logged = expected.get(identifier)
            if logged is None:
                problems.append(f"license {identifier} is in no log entry")
            elif logged != status:
                problems.append(
                    f"license {identifier} is {status} in the registry but {logged} in the log"
                )
    missing = [i for i in expected if i not in seen]
    problems += [f"license {i} of the log is missing from the registry" for i in missing]
    if len(problems) > _MAX_PROBLEMS:
        problems = [*problems[:_MAX_PROBLEMS], f"... and {len(problems) - _MAX_PROBLEMS} more"]
    return problems
