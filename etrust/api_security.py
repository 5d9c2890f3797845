"""API for security officers and auditors: the audit log, managed keys, approvals.

Auditors read; security officers register officers, request and approve operations, change
key states (destruction included) and run ceremonies. An approval arrives already signed (the
officer signs the request's message with their own key, e.g. a USB key at their desk); the
server checks it against the officer's registered key. The operations are the CLI's own
(:mod:`etrust.security_ops`), under the same dual control.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, Literal

from asn1crypto import keys as asn1_keys
from fastapi import APIRouter
from pydantic import BaseModel, Field

from etrust import security_ops as ops
from etrust.api import ClientDep, require_role
from etrust.approvals import ApprovalRequest, approval_message
from etrust.audit import AuditEvent
from etrust.lifecycle import ManagedKey
from etrust.pki_routes import ServicesDep
from etrust.store import ApiClient
from trust.certificates import unarmor
from trust.errors import EtrustError, MalformedInputError
from trust.repository import REVOCATION_REASONS

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
    state: Literal["active", "suspended", "revoked", "rotated", "destroyed"]
    reason: str = Field(min_length=1, max_length=2000)
    successor: str | None = Field(None, max_length=64, description="for rotated: the new key")
    revocation_reason: str = Field("key_compromise", description="for revoked: the CRL reason")
    confirm: str | None = Field(None, max_length=64, description="for destroyed: the key's name")
    approval: str | None = Field(None, max_length=64, description="approval request id")


class OfficerIn(BaseModel):
    name: str = Field(max_length=64)
    public_key: str = Field(max_length=8192, description="PEM SubjectPublicKeyInfo (SM2, EC, RSA)")
    approval: str | None = Field(None, max_length=64)


class ApprovalRequestIn(BaseModel):
    operation: str = Field(max_length=64)
    target: str = Field(max_length=256)
    params: dict[str, str] = Field(default_factory=dict, max_length=32)
    requester: str = Field(max_length=64, description="the officer asking (cannot approve it)")


class CeremonyIn(BaseModel):
    file: str = Field(max_length=200_000, description="the ceremony file (TOML)")
    approval: str | None = Field(None, max_length=64)


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


@contextmanager
def _failures_audited(services: ServicesDep, client: ApiClient, action: str) -> Iterator[str]:
    """Yield the actor name; a refused or failed operation is recorded before it propagates."""
    actor = f"api:{client.name}"
    try:
        yield actor
    except EtrustError as exc:
        with suppress(EtrustError):  # the caller gets the original error either way
            services.runtime.record(
                AuditEvent(actor, action, outcome="failure", detail={"error": exc.code})
            )
        raise


def _request_out(request: ApprovalRequest) -> ApprovalRequestOut:
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


@router.post("/keys/{name}/state", response_model=ManagedKeyOut, summary="Change a key's state")
def key_state(
    name: str, body: KeyStateIn, client: ClientDep, services: ServicesDep
) -> ManagedKeyOut:
    """Activate, suspend, rotate, revoke or destroy a key (destroy: `confirm` repeats the name;
    dual control where configured)."""
    require_role(client, OFFICERS)
    if (
        body.revocation_reason not in REVOCATION_REASONS
        or body.revocation_reason == "remove_from_crl"
    ):
        raise MalformedInputError(f"unknown revocation reason {body.revocation_reason!r}")
    with _failures_audited(services, client, "key.change") as actor:
        key = ops.change_key_state(
            services.runtime,
            actor,
            name,
            body.state,
            body.reason,
            successor=body.successor,
            revocation_reason=body.revocation_reason,
            confirm=body.confirm,
            approval=body.approval,
        )
    return _key_out(key)


@router.get("/officers", response_model=list[str], summary="Active security officers")
def officers(client: ClientDep, services: ServicesDep) -> list[str]:
    require_role(client, READERS)
    return services.runtime.dual_control.officers()


@router.post("/officers", status_code=201, summary="Register a security officer's key")
def add_officer(body: OfficerIn, client: ClientDep, services: ServicesDep) -> dict[str, str]:
    require_role(client, OFFICERS)
    with _failures_audited(services, client, "officer.add") as actor:
        der = unarmor(body.public_key.encode(), "public key", ("PUBLIC KEY",))
        try:
            public = asn1_keys.PublicKeyInfo.load(der, strict=True)
            public.native  # noqa: B018  (parse it all now: malformed keys are a 400 here)
        except ValueError as exc:
            raise MalformedInputError(f"unreadable public key: {exc}") from None
        ops.register_officer(services.runtime, actor, body.name, public, body.approval)
    return {"officer": body.name}


@router.post(
    "/approvals", status_code=201, response_model=ApprovalRequestOut, summary="Ask for approvals"
)
def request_approval(
    body: ApprovalRequestIn, client: ClientDep, services: ServicesDep
) -> ApprovalRequestOut:
    require_role(client, OFFICERS)
    with _failures_audited(services, client, "approval.request") as actor:
        request = ops.request_approval(
            services.runtime, actor, body.operation, body.target, body.params, body.requester
        )
    return _request_out(request)


@router.post("/ceremonies", summary="Run a ceremony file; returns its signed transcript")
def run_ceremony(body: CeremonyIn, client: ClientDep, services: ServicesDep) -> dict[str, Any]:
    require_role(client, OFFICERS)
    with _failures_audited(services, client, "ceremony.run") as actor:
        return ops.run_ceremony(services.runtime, actor, body.file.encode(), body.approval)


@router.get(
    "/approvals/{request_id}", response_model=ApprovalRequestOut, summary="An approval request"
)
def approval_request(
    request_id: str, client: ClientDep, services: ServicesDep
) -> ApprovalRequestOut:
    require_role(client, READERS)
    return _request_out(services.runtime.dual_control.get(request_id))


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
