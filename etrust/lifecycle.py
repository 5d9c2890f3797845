"""The lifecycle of managed keys, as security officers run it without touching a private key.

    generated -> certified -> active -> rotated (successor active; kept for verification)
                                  \\-> suspended -> active
    any live state -> revoked (its certificate revoked: CRL and OCSP say so)
    rotated | revoked -> destroyed (explicit confirmation; dual control where configured)

Every change is one transaction that also writes a key event (who, why, from, to), and the
caller records it in the audit log.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from etrust.models import KeyEventRow, ManagedKeyRow
from etrust.pki import Pki
from etrust.store import check_name
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import ConflictError, KeyStateError, MalformedInputError, NotFoundError
from trust.keys import KeyHandle

STATES = ("generated", "certified", "active", "suspended", "rotated", "revoked", "destroyed")
TRANSITIONS: dict[str, frozenset[str]] = {
    "generated": frozenset({"certified", "revoked", "destroyed"}),
    "certified": frozenset({"active", "suspended", "revoked"}),
    "active": frozenset({"suspended", "rotated", "revoked"}),
    "suspended": frozenset({"active", "revoked"}),
    "rotated": frozenset({"revoked", "destroyed"}),
    "revoked": frozenset({"destroyed"}),
    "destroyed": frozenset(),
}
PURPOSES = ("ca", "ocsp", "tsa", "audit", "log", "seal", "officer", "signing")


@dataclass(frozen=True)
class ManagedKey:
    name: str
    purpose: str
    key_uri: str
    key_type: str
    state: str
    ca_name: str | None
    replaced_by: str | None
    certificate_der: bytes | None
    updated_at: datetime

    @property
    def certificate(self) -> x509.Certificate | None:
        return x509.Certificate.load(self.certificate_der) if self.certificate_der else None


@dataclass(frozen=True)
class KeyEvent:
    key_name: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime


def _key(row: ManagedKeyRow) -> ManagedKey:
    return ManagedKey(
        row.name,
        row.purpose,
        row.key_uri,
        row.key_type,
        row.state,
        row.ca_name,
        row.replaced_by,
        row.certificate_der,
        row.updated_at,
    )


class KeyLifecycle:
    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def register(
        self,
        name: str,
        purpose: str,
        key: KeyHandle,
        actor: str,
        reason: str,
        *,
        key_uri: str | None = None,
    ) -> ManagedKey:
        """Record a key just generated (state ``generated``); ``key_uri`` when it is found by
        another URI than its handle's (a device URI with its module and PIN source)."""
        check_name(name, "key name")
        if purpose not in PURPOSES:
            raise MalformedInputError(f"key purpose must be one of {', '.join(PURPOSES)}")
        if not reason.strip():
            raise MalformedInputError("say why: every key state change records a reason")
        now = self._clock()
        row = ManagedKeyRow(
            name=name,
            purpose=purpose,
            key_uri=key_uri or key.key_uri,
            key_type=key.key_type,
            public_key_der=key.public_key_info.dump(),
            state="generated",
            created_at=now,
            updated_at=now,
        )
        try:
            with transaction(self._sessions, write=True) as session:
                session.add(row)
                session.flush()
                session.add(
                    KeyEventRow(
                        key_name=name,
                        from_state=None,
                        to_state="generated",
                        actor=actor,
                        reason=reason,
                        at=now,
                    )
                )
        except IntegrityError:
            raise ConflictError(f"a managed key named {name} already exists") from None
        return _key(row)

    def get(self, name: str) -> ManagedKey:
        with transaction(self._sessions) as session:
            row = session.scalar(select(ManagedKeyRow).where(ManagedKeyRow.name == name))
            if row is None:
                raise NotFoundError(f"no managed key named {name}")
            return _key(row)

    def list(self) -> builtins.list[ManagedKey]:
        with transaction(self._sessions) as session:
            return [
                _key(r) for r in session.scalars(select(ManagedKeyRow).order_by(ManagedKeyRow.name))
            ]

    def events(self, name: str) -> builtins.list[KeyEvent]:
        with transaction(self._sessions) as session:
            rows = session.scalars(
                select(KeyEventRow).where(KeyEventRow.key_name == name).order_by(KeyEventRow.id)
            )
            return [
                KeyEvent(r.key_name, r.from_state, r.to_state, r.actor, r.reason, r.at)
                for r in rows
            ]

    def certify(
        self, name: str, certificate: x509.Certificate, ca_name: str, actor: str, reason: str
    ) -> ManagedKey:
        def change(row: ManagedKeyRow) -> None:
            if certificate.public_key.dump() != row.public_key_der:
                raise MalformedInputError(f"the certificate is not for key {name}")
            row.certificate_der = certificate.dump()
            row.ca_name = ca_name

        return self.transition(name, "certified", actor, reason, change)

    def transition(
        self,
        name: str,
        to_state: str,
        actor: str,
        reason: str,
        change: Callable[[ManagedKeyRow], None] | None = None,
    ) -> ManagedKey:
        """Move ``name`` to ``to_state`` if the lifecycle allows it; ``change`` edits the row too."""
        with transaction(self._sessions, write=True) as session:
            row = self._row(session, name)
            self._apply(session, row, to_state, actor, reason, change)
            return _key(row)

    def rotate(self, old: str, new: str, actor: str, reason: str) -> ManagedKey:
        """Make ``new`` (certified) active and retire ``old`` to ``rotated``, atomically."""
        with transaction(self._sessions, write=True) as session:
            old_row, new_row = self._row(session, old), self._row(session, new)
            if new_row.state != "certified":
                raise KeyStateError(
                    f"the successor {new} must be certified first (it is {new_row.state})"
                )
            if (old_row.purpose, old_row.key_type) != (new_row.purpose, new_row.key_type):
                raise KeyStateError(
                    f"{new} is not a {old_row.key_type} {old_row.purpose} key like {old}"
                )
            self._apply(session, new_row, "active", actor, f"replaces {old}: {reason}")

            def link(row: ManagedKeyRow) -> None:
                row.replaced_by = new

            self._apply(session, old_row, "rotated", actor, reason, link)
            return _key(old_row)

    @staticmethod
    def _row(session: Session, name: str) -> ManagedKeyRow:
        row = session.scalar(
            select(ManagedKeyRow).where(ManagedKeyRow.name == name).with_for_update()
        )
        if row is None:
            raise NotFoundError(f"no managed key named {name}")
        return row

    def _apply(
        self,
        session: Session,
        row: ManagedKeyRow,
        to_state: str,
        actor: str,
        reason: str,
        change: Callable[[ManagedKeyRow], None] | None = None,
    ) -> None:
        if to_state not in STATES:
            raise MalformedInputError(f"unknown key state {to_state!r}")
        if not reason.strip():
            raise MalformedInputError("say why: every key state change records a reason")
        if to_state not in TRANSITIONS[row.state]:
            raise KeyStateError(f"key {row.name} is {row.state}; it cannot become {to_state}")
        before = row.state
        if change is not None:
            change(row)
        row.state = to_state
        row.updated_at = self._clock()
        session.add(
            KeyEventRow(
                key_name=row.name,
                from_state=before,
                to_state=to_state,
                actor=actor,
                reason=reason,
                at=row.updated_at,
            )
        )
        session.flush()


def revoke_key(
    lifecycle: KeyLifecycle,
    pki: Pki,
    name: str,
    actor: str,
    reason: str,
    crl_reason: str = "key_compromise",
) -> ManagedKey:
    """Revoke a managed key: its certificate first (so CRL and OCSP say so), then its state."""
    current = lifecycle.get(name)
    if "revoked" not in TRANSITIONS[current.state]:
        raise KeyStateError(f"key {name} is {current.state}; it cannot be revoked")
    cert = current.certificate
    if cert is not None and current.ca_name:
        ca = pki.ca(current.ca_name)
        if ca.repository.get_revocation(ca.name, cert.serial_number) is None:
            ca.revoke(cert.serial_number, crl_reason)
    return lifecycle.transition(name, "revoked", actor, reason)
