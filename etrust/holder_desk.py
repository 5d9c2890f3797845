"""What a service desk does for a holder: mint a link (audited), and the holder's receipts,
which show both the desk's links and the departments' reads through grants."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from etrust.audit import AuditEvent
from etrust.licenses import HOLDER_PAGE, consent_service, holder_links
from etrust.models import AuditRecordRow
from etrust.runtime import Runtime
from license_store.holder_access import READ
from storage.engine import transaction

LINK_ACTION = "holder.link"
MAX_LINK_RECEIPTS = 500
"""The newest link records shown (a holder looked up more often than this is a case for the
auditor, who reads the whole log)."""


def mint_holder_link(
    rt: Runtime,
    who: str,
    holder_code: str,
    code_type: str,
    minutes: int,
    scope: str = READ,
    department: str | None = None,
) -> dict[str, Any]:
    """A holder link of ``scope``, audited with who minted it (and their ``department``), its
    scope and expiry: the record is the holder's receipt of it. The answer never depends on
    whether the holder has licenses. Who may mint which scope is the caller's to decide."""
    links = holder_links(rt)
    token = links.mint(holder_code, code_type, minutes, scope)
    identity = links.holder_of(token)
    assert identity.expires_at is not None  # signed links always expire
    expires_at = identity.expires_at.astimezone(UTC).isoformat()
    detail: dict[str, Any] = {
        "code_type": code_type,
        "minutes": minutes,
        "scope": scope,
        "expires_at": expires_at,
    }
    if department is not None:
        detail["department"] = department
    rt.record(AuditEvent(who, LINK_ACTION, f"holder:{identity.holder_hash}", detail=detail))
    return {
        "token": token,
        "url": f"{rt.settings.base_url.rstrip('/')}{HOLDER_PAGE}?token={token}",
        "expires_at": expires_at,
        "scope": scope,
    }


def link_receipts(rt: Runtime, holder_hash: str) -> list[tuple[datetime, dict[str, Any]]]:
    """The links minted for the holder, newest first, as receipts (kind ``link``)."""
    with transaction(rt.sessions) as session:
        rows = session.scalars(
            select(AuditRecordRow)
            .where(
                AuditRecordRow.action == LINK_ACTION,
                AuditRecordRow.target == f"holder:{holder_hash}",
                AuditRecordRow.outcome == "success",
            )
            .order_by(AuditRecordRow.id.desc())
            .limit(MAX_LINK_RECEIPTS)
        )
        found = []
        for row in rows:
            detail = json.loads(row.detail)
            minutes = detail.get("minutes")
            expires_at = detail.get("expires_at") or (
                (row.at + timedelta(minutes=minutes)).isoformat()
                if isinstance(minutes, int)
                else None
            )
            receipt = {
                "kind": "link",
                "id": row.id,
                "grant_id": None,
                "license": None,
                "grantee": None,
                "grantee_name": None,
                "accessor": row.actor,
                "department": detail.get("department"),
                "purpose": None,
                "fields": [],
                "at": row.at.isoformat(),
                # null: a record that names no scope (links minted before scopes existed)
                "scope": detail.get("scope"),
                "expires_at": expires_at,
            }
            found.append((row.at, receipt))
    return found


def holder_receipts(rt: Runtime, holder_hash: str) -> list[dict[str, Any]]:
    """Everything the holder is shown: reads and downloads through their grants and the links
    minted for them, newest first."""
    reads = [(r.at, r.to_dict()) for r in consent_service(rt).receipts(holder_hash)]
    merged = sorted(
        reads + link_receipts(rt, holder_hash),
        key=lambda item: (item[0], item[1]["kind"] != "link", item[1]["id"]),
        reverse=True,
    )
    return [receipt for _, receipt in merged]
