"""Dual control: operations that need m-of-n approvals from distinct security officers.

A request pins *what* is to be done (operation, target and parameters, hashed with SM3). An
approval is the officer's signature, made with their own key (software or USB key), over that
hash, the request id and its expiry; it is checked against the public key registered for the
officer, so a row written into the database by hand does not count. The requester cannot
approve their own request, an officer counts once, an expired request counts for nothing, and
a request authorises exactly one execution.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import keys
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from etrust.models import ApprovalRequestRow, ApprovalRow, SecurityOfficerRow
from etrust.store import check_name
from storage.engine import transaction
from trust.algorithms import DEFAULT_FOR_KEY, key_type_of
from trust.clock import Clock, system_clock
from trust.errors import (
    ApprovalError,
    ApprovalRequiredError,
    ConflictError,
    EtrustError,
    MalformedInputError,
    NotFoundError,
)
from trust.keys import KeyHandle

DEFAULT_LIFETIME = timedelta(hours=24)
_CONTEXT = "etrust-approval-v1"


def request_hash(operation: str, target: str, params: Mapping[str, Any]) -> str:
    """SM3 of the canonical JSON of what is to be done: what the officers sign."""
    canonical = json.dumps(
        [operation, target, dict(params)], ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.new("sm3", canonical.encode()).hexdigest()


def approval_message(request: ApprovalRequest) -> bytes:
    return (
        f"{_CONTEXT}|{request.id}|{request.operation}|{request.target}|{request.request_hash}|"
        f"{request.expires_at.isoformat()}"
    ).encode()


@dataclass(frozen=True)
class ApprovalRequest:
    id: str
    operation: str
    target: str
    request_hash: str
    requester: str
    required: int
    created_at: datetime
    expires_at: datetime
    status: str


def _request(row: ApprovalRequestRow) -> ApprovalRequest:
    return ApprovalRequest(
        row.id,
        row.operation,
        row.target,
        row.request_hash,
        row.requester,
        row.required,
        row.created_at,
        row.expires_at,
        row.status,
    )


class DualControl:
    """Officers, requests, approvals, and the check an operation makes before it runs."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: Mapping[str, int],
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessions
        self.policy = dict(policy)
        self._clock = clock

    def required(self, operation: str) -> int:
        """How many approvals ``operation`` needs (0: not under dual control)."""
        return self.policy.get(operation, 0)

    def add_officer(self, name: str, public_key: keys.PublicKeyInfo) -> None:
        check_name(name, "officer name")
        key_type_of(public_key)  # refuses keys we cannot verify with
        try:
            with transaction(self._sessions, write=True) as session:
                session.add(
                    SecurityOfficerRow(
                        name=name, public_key_der=public_key.dump(), created_at=self._clock()
                    )
                )
        except IntegrityError:
            raise ConflictError(f"a security officer named {name} already exists") from None

    def officers(self) -> builtins.list[str]:
        """Active officers (disabled ones neither approve nor witness)."""
        with transaction(self._sessions) as session:
            return list(
                session.scalars(
                    select(SecurityOfficerRow.name)
                    .where(SecurityOfficerRow.disabled.is_(False))
                    .order_by(SecurityOfficerRow.name)
                )
            )

    def disable_officer(self, name: str) -> None:
        with transaction(self._sessions, write=True) as session:
            row = session.scalar(select(SecurityOfficerRow).where(SecurityOfficerRow.name == name))
            if row is None:
                raise NotFoundError(f"no security officer named {name}")
            row.disabled = True

    def request(
        self,
        operation: str,
        target: str,
        params: Mapping[str, Any],
        requester: str,
        *,
        lifetime: timedelta = DEFAULT_LIFETIME,
    ) -> ApprovalRequest:
        required = self.required(operation)
        if required <= 0:
            raise MalformedInputError(
                f"{operation} is not under dual control; it needs no approval"
            )
        self._officer_key(requester)  # only an active, registered officer may ask
        now = self._clock()
        row = ApprovalRequestRow(
            id=secrets.token_hex(8),
            operation=operation,
            target=target,
            request_hash=request_hash(operation, target, params),
            requester=requester,
            required=required,
            created_at=now,
            expires_at=(now + lifetime).astimezone(UTC).replace(microsecond=0),
            status="open",
        )
        with transaction(self._sessions, write=True) as session:
            session.add(row)
        return _request(row)

    def get(self, request_id: str) -> ApprovalRequest:
        with transaction(self._sessions) as session:
            row = session.get(ApprovalRequestRow, request_id)
            if row is None:
                raise NotFoundError(f"no approval request {request_id!r}")
            return _request(row)

    def approve(self, request_id: str, officer: str, key: KeyHandle) -> int:
        """Sign ``request_id`` as ``officer`` with their key; returns approvals so far."""
        request = self._open_request(request_id, officer)
        if self._officer_key(officer).dump() != key.public_key_info.dump():
            raise ApprovalError(f"that key is not the one registered for officer {officer}")
        return self._store(request, officer, key.sign(approval_message(request)))

    def record_signed(self, request_id: str, officer: str, signature: bytes) -> int:
        """Store an approval signed elsewhere (an officer's USB key at their desk, via the API).

        The signature must verify with the officer's registered key over
        :func:`approval_message`; a bad one is refused, not stored.
        """
        request = self._open_request(request_id, officer)
        public = self._officer_key(officer)
        try:
            DEFAULT_FOR_KEY[key_type_of(public)].verify(
                public, signature, approval_message(request)
            )
        except EtrustError as exc:
            raise ApprovalError(f"the approval signature of {officer} does not verify") from exc
        return self._store(request, officer, signature)

    def _open_request(self, request_id: str, officer: str) -> ApprovalRequest:
        request = self.get(request_id)
        if request.status != "open":
            raise ApprovalError(f"request {request_id} is {request.status}, not open")
        if self._clock() >= request.expires_at:
            raise ApprovalError(f"request {request_id} expired at {request.expires_at.isoformat()}")
        if officer == request.requester:
            raise ApprovalError("the requester cannot approve their own request")
        return request

    def _store(self, request: ApprovalRequest, officer: str, signature: bytes) -> int:
        try:
            with transaction(self._sessions, write=True) as session:
                session.add(
                    ApprovalRow(
                        request_id=request.id,
                        officer=officer,
                        signature=signature,
                        at=self._clock(),
                    )
                )
        except IntegrityError:
            raise ApprovalError(
                f"officer {officer} has already approved request {request.id}"
            ) from None
        return len(self._valid_approvals(request))

    def authorize(
        self, request_id: str, operation: str, target: str, params: Mapping[str, Any]
    ) -> ApprovalRequest:
        """Consume an approved request for exactly this operation, or refuse it.

        Call right before the operation; the request is marked used in the same step, so it
        cannot authorise a second execution.
        """
        request = self.get(request_id)
        if (request.operation, request.target) != (
            operation,
            target,
        ) or request.request_hash != request_hash(operation, target, params):
            raise ApprovalError(f"request {request_id} approves a different operation")
        if request.status != "open":
            raise ApprovalError(f"request {request_id} is {request.status}, not open")
        if self._clock() >= request.expires_at:
            raise ApprovalError(f"request {request_id} has expired")
        valid = self._valid_approvals(request)
        required = max(request.required, self.required(operation))  # a raised policy applies now
        if len(valid) < required:
            raise ApprovalRequiredError(
                f"{operation} needs {required} approvals from distinct officers; "
                f"request {request_id} has {len(valid)}"
            )
        with transaction(self._sessions, write=True) as session:
            # One conditional UPDATE: of two concurrent executions exactly one sees a row.
            result = session.execute(
                update(ApprovalRequestRow)
                .where(ApprovalRequestRow.id == request_id, ApprovalRequestRow.status == "open")
                .values(status="used")
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise ApprovalError(f"request {request_id} was used already")
        return request

    def release(self, request_id: str) -> None:
        """Give back a request that :meth:`authorize` consumed when the operation then failed
        before it changed anything, so the officers need not approve the same thing twice."""
        with transaction(self._sessions, write=True) as session:
            session.execute(
                update(ApprovalRequestRow)
                .where(ApprovalRequestRow.id == request_id, ApprovalRequestRow.status == "used")
                .values(status="open")
            )

    def _officer_key(self, officer: str) -> keys.PublicKeyInfo:
        with transaction(self._sessions) as session:
            row = session.scalar(
                select(SecurityOfficerRow).where(SecurityOfficerRow.name == officer)
            )
            if row is None or row.disabled:
                raise ApprovalError(f"{officer} is not an active security officer")
            return keys.PublicKeyInfo.load(row.public_key_der)

    def _valid_approvals(self, request: ApprovalRequest) -> set[str]:
        """Officers whose stored approval verifies with their registered key (not the requester)."""
        message = approval_message(request)
        with transaction(self._sessions) as session:
            rows = list(
                session.scalars(select(ApprovalRow).where(ApprovalRow.request_id == request.id))
            )
        valid = set()
        for row in rows:
            if row.officer == request.requester:  # in case such a row was written by hand
                continue
            try:
                public = self._officer_key(row.officer)
                DEFAULT_FOR_KEY[key_type_of(public)].verify(public, row.signature, message)
            except EtrustError:
                continue
            valid.add(row.officer)
        return valid
