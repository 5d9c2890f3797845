"""API for security officers and auditors: the audit log, managed keys, approvals.

Auditors read; security officers change key states and approve requests. An approval arrives
already signed (the officer signs the request's message with their own key, e.g. a USB key at
their desk); the server checks it against the officer's registered key. Destroying keys and
running ceremonies stay on the CA host's command line.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from etrust.api import ClientDep, require_role
from etrust.approvals import approval_message
from etrust.audit import AuditEvent
from etrust.lifecycle import ManagedKey, revoke_key
from etrust.pki_routes import ServicesDep
from trust.errors import MalformedInputError

router = APIRouter(prefix="/api/v1", tags=["security"])

READERS = frozenset({"auditor", "security-officer", "admin"})
OFFICERS = frozenset({"security-officer"})


class AuditRecordOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    key_uri: str | None
    request_hash: str | None
    outcome: str
    detail: dict[str, Any]
    record_hash: str


class AuditVerificationOut(BaseModel):
    intact: bool
    records: int
    checkpoints: int
    first_broken: int | None
    reason: str


class ManagedKeyOut(BaseModel):
    name: str
    purpose: str
    key_type: str
    key_uri: str
    state: str
    ca: str | None
    replaced_by: str | None
    updated_at: datetime


class KeyEventOut(BaseModel):
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime


class KeyStateIn(BaseModel):
    state: Literal["active", "suspended", "revoked"]
    reason: str = Field(min_length=1, max_length=2000)


class ApprovalRequestOut(BaseModel):
    id: str
    operation: str
    target: str
    request_hash: str
    requester: str
    required: int
    expires_at: datetime
    status: str
    message: str = Field(description="base64 of the bytes an officer signs to approve")


class ApprovalIn(BaseModel):
    officer: str = Field(max_length=64)
    signature: str = Field(max_length=4096, description="base64 signature over `message`")


class ApprovalOut(BaseModel):
    id: str
    approvals: int
    required: int


def _key_out(key: ManagedKey) -> ManagedKeyOut:
    return ManagedKeyOut(
        name=key.name,
        purpose=key.purpose,
        key_type=key.key_type,
        key_uri=key.key_uri,
        state=key.state,
        ca=key.ca_name,
        replaced_by=key.replaced_by,
        updated_at=key.updated_at,
    )


@router.get("/audit/records", response_model=list[AuditRecordOut], summary="Audit records")
def audit_records(
    client: ClientDep, services: ServicesDep, after: int = 0, limit: int = 100
) -> list[AuditRecordOut]:
    require_role(client, READERS)
    if not 1 <= limit <= 1000 or not 0 <= after < 1 << 62:
        raise MalformedInputError("limit is 1-1000 and after is not negative")
    return [
        AuditRecordOut(**r.to_dict())
        for r in services.runtime.audit.records(after=after, limit=limit)
    ]


@router.get(
    "/audit/verification", response_model=AuditVerificationOut, summary="Check the audit log"
)
def audit_verification(client: ClientDep, services: ServicesDep) -> AuditVerificationOut:
    require_role(client, READERS)
    result = services.runtime.audit.verify(services.runtime.audit_keys())
    return AuditVerificationOut(**dataclasses.asdict(result))


@router.get("/keys", response_model=list[ManagedKeyOut], summary="Managed keys and their states")
def keys(client: ClientDep, services: ServicesDep) -> list[ManagedKeyOut]:
    require_role(client, READERS)
    return [_key_out(k) for k in services.runtime.lifecycle.list()]


@router.get(
    "/keys/{name}/events", response_model=list[KeyEventOut], summary="A key's state changes"
)
def key_events(name: str, client: ClientDep, services: ServicesDep) -> list[KeyEventOut]:
    require_role(client, READERS)
    services.runtime.lifecycle.get(name)  # 404 for an unknown key
    return [
        KeyEventOut(
            from_state=e.from_state, to_state=e.to_state, actor=e.actor, reason=e.reason, at=e.at
        )
        for e in services.runtime.lifecycle.events(name)
    ]


@router.post(
    "/keys/{name}/state", response_model=ManagedKeyOut, summary="Activate, suspend or revoke a key"
)
def key_state(
    name: str, body: KeyStateIn, client: ClientDep, services: ServicesDep
) -> ManagedKeyOut:
    require_role(client, OFFICERS)
    rt = services.runtime
    actor = f"api:{client.name}"
    if body.state == "revoked":
        key = revoke_key(rt.lifecycle, services.pki, name, actor, body.reason)
    else:
        key = rt.lifecycle.transition(name, body.state, actor, body.reason)
    rt.record(
        AuditEvent(
            actor, f"key.{body.state}", name, key.key_uri, None, "success", {"reason": body.reason}
        )
    )
    return _key_out(key)


@router.get(
    "/approvals/{request_id}", response_model=ApprovalRequestOut, summary="An approval request"
)
def approval_request(
    request_id: str, client: ClientDep, services: ServicesDep
) -> ApprovalRequestOut:
    require_role(client, READERS)
    request = services.runtime.dual_control.get(request_id)
    return ApprovalRequestOut(
        id=request.id,
        operation=request.operation,
        target=request.target,
        request_hash=request.request_hash,
        requester=request.requester,
        required=request.required,
        expires_at=request.expires_at,
        status=request.status,
        message=base64.b64encode(approval_message(request)).decode(),
    )


@router.post(
    "/approvals/{request_id}/approvals", response_model=ApprovalOut, summary="Approve (signed)"
)
def approve(
    request_id: str, body: ApprovalIn, client: ClientDep, services: ServicesDep
) -> ApprovalOut:
    require_role(client, OFFICERS)
    try:
        signature = base64.b64decode(body.signature, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedInputError("the signature is not base64") from None
    rt = services.runtime
    count = rt.dual_control.record_signed(request_id, body.officer, signature)
    rt.record(
        AuditEvent(
            f"api:{client.name}",
            "approval.sign",
            request_id,
            None,
            None,
            "success",
            {"officer": body.officer},
        )
    )
    return ApprovalOut(
        id=request_id, approvals=count, required=rt.dual_control.get(request_id).required
    )
