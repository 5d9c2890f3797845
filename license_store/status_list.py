"""The signed status list: every license that is not simply valid (suspended, revoked,
superseded, expired), for verifiers that work offline and refresh when they can.

Like a CRL it lists the exceptions, so a million licenses with a few thousand revoked make a
small list. It is numbered by the transparency log's size: every status change appends to the
log, so the list changes exactly when the log grows, and a verifier can tell from the number
how far behind its copy is. Signed by the log key (SM2) over the canonical JSON.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asn1crypto import keys as asn1_keys
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from license_store.models import LicenseRow
from license_store.records import today
from license_store.translog import TransparencyLog, verify_signature
from signing.jcs import canonicalize
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import EtrustError, InvalidSignatureError, MalformedInputError
from trust.keys import KeyHandle

FORMAT = "etrust-license-status/1"
NEXT_UPDATE = timedelta(hours=24)
"""How long a verifier may rely on a list without a fresher one."""


@dataclass(frozen=True)
class StatusList:
    number: int
    """The log size it reflects."""
    body: bytes
    signature: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "list": json.loads(self.body),
            "signature": base64.b64encode(self.signature).decode(),
        }

    @functools.cached_property
    def json_bytes(self) -> bytes:
        """The document served (made once per list: it is downloaded many times)."""
        signature = base64.b64encode(self.signature)
        return b'{"list":' + self.body + b',"signature":"' + signature + b'"}'

    def to_json(self) -> bytes:
        return self.json_bytes


class StatusLists:
    """The current list, re-signed only when the log has grown or the list is half-way to
    its next update (so every download is not a signature)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: TransparencyLog,
        key: KeyHandle,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[int, datetime, StatusList] | None = None

    def current(self) -> StatusList:
        size = self._log.size()
        now = self._clock()
        with self._lock:
            if self._current is not None:
                number, made, listed = self._current
                if number == size and now - made < NEXT_UPDATE / 2:
                    return listed
            listed = self._build(size, now)
            self._current = (size, now, listed)
            return listed

    def _build(self, size: int, now: datetime) -> StatusList:
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(LicenseRow.identifier, LicenseRow.status, LicenseRow.status_changed_at)
                .where(LicenseRow.status != "valid")
                .order_by(LicenseRow.identifier)
            ).all()
        body = canonicalize(
            {
                "format": FORMAT,
                "number": size,
                "this_update": now.isoformat(),
                "next_update": (now + NEXT_UPDATE).isoformat(),
                "entries": [
                    {"id": identifier, "status": status, "since": today(since).isoformat()}
                    for identifier, status, since in rows
                ],
            }
        )
        return StatusList(size, body, self._key.sign(body))


def read_status_list(data: bytes, public_key: asn1_keys.PublicKeyInfo) -> dict[str, Any]:
    """The list's content if ``data`` is a status list signed by ``public_key``; raises
    MalformedInputError for anything else and InvalidSignatureError for a bad signature."""
    try:
        outer = json.loads(data)
        body = canonicalize(outer["list"])
        signature = base64.b64decode(outer["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedInputError(f"not a license status list: {exc}") from exc
    if not isinstance(outer["list"], dict) or outer["list"].get("format") != FORMAT:
        raise MalformedInputError("not a license status list of this format")
    try:
        verify_signature(public_key, body, signature)
    except EtrustError as exc:
        raise InvalidSignatureError(f"the status list's signature does not verify: {exc}") from exc
    return dict(outer["list"])
