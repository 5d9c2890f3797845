"""API of the license registry: license types, issuance (idempotent), reads, status changes,
and the transparency log's checkpoints and proofs (public: anyone may audit the log)."""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, Field

from etrust.api import ClientDep, require_role
from etrust.audit import AuditEvent
from etrust.licenses import (
    department_signer,
    license_lifecycle,
    license_service,
    status_lists,
)
from etrust.pki_routes import ServicesDep
from etrust.store import ApiClient
from license_store.issuance import Amendment, Issued, IssueRequest
from license_store.records import (
    FORMATS,
    License,
    document_of,
    events_of,
    license_of,
    row_by_identifier,
)
from storage.engine import transaction
from trust.clock import system_clock
from trust.errors import MalformedInputError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["licenses"])

ISSUING_ROLES = frozenset({"department", "admin"})
NO_STORE = "no-store"
"""Answers with personal data are kept by no cache or proxy."""
MEDIA_TYPES = {"ofd": "application/ofd", "pdf": "application/pdf"}


class LicenseIn(BaseModel):
    type_code: str = Field(max_length=21)
    department: str | None = Field(
        None, max_length=64, description="the issuing department (admin clients only)"
    )
    holder_name: str = Field(max_length=200)
    holder_code: str = Field(max_length=64)
    holder_code_type: str = Field("111", max_length=3)
    data: dict[str, Any] = Field(default_factory=dict)
    valid_from: date | None = None
    license_number: str | None = Field(None, max_length=64)
    seal: str | None = Field(None, max_length=32, description="the seal to use (default: SM2)")


class AmendIn(BaseModel):
    reason: str = Field(max_length=500)
    data: dict[str, Any] | None = Field(None, description="all the fields (replaces them)")
    holder_name: str | None = Field(None, max_length=200)
    license_number: str | None = Field(None, max_length=64)
    valid_to: date | None = None
    seal: str | None = Field(None, max_length=32)


class StatusIn(BaseModel):
    action: str = Field(description="suspend, resume or revoke")
    reason: str = Field(max_length=500)


def _department(client: ApiClient, requested: str | None) -> str:
    if client.role == "department":
        if requested not in (None, client.department):
            raise NotFoundError(f"no department {requested!r}")  # as for one that does not exist
        assert client.department is not None
        return client.department
    if not requested:
        raise MalformedInputError("name the issuing department")
    return requested


def _links(base: str, identifier: str) -> dict[str, str]:
    root = f"{base}/api/v1/licenses/{identifier}"
    return {"self": root, **{fmt: f"{root}/document.{fmt}" for fmt in FORMATS}}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _issued(services: ServicesDep, issued: Issued) -> dict[str, Any]:
    lic = issued.license
    base = services.runtime.settings.base_url
    return {
        "identifier": lic.identifier,
        "version": lic.version,
        "status": lic.status,
        "replayed": issued.replayed,
        "links": _links(base, lic.identifier),
        "qr_text": license_service(services.runtime).qr_text(lic.qr_payload),
        "log": {
            "index": lic.log_index,
            "checkpoint": issued.checkpoint.to_dict(),
            "inclusion_proof": [_b64(h) for h in issued.inclusion_proof],
        },
    }


@router.get("/license-types", summary="License types and their issuing departments")
def license_types(_client: ClientDep, services: ServicesDep) -> list[dict[str, Any]]:
    registry = license_service(services.runtime).registry
    return [t.to_dict(issuers) for t, issuers in registry.license_types()]


@router.get("/license-types/{code}", summary="A license type with its schema")
def license_type(code: str, _client: ClientDep, services: ServicesDep) -> dict[str, Any]:
    registry = license_service(services.runtime).registry
    return registry.license_type(code).to_dict(registry.issuers(code))


@router.post("/licenses", status_code=201, summary="Issue a license")
def issue_license(
    body: LicenseIn,
    client: ClientDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> dict[str, Any]:
    """Validated, sealed (OFD and PDF), stored and logged in one go. With an Idempotency-Key
    a repeated request answers the first license (200); another body under it is 409."""
    require_role(client, ISSUING_ROLES)
    rt = services.runtime
    department = _department(client, body.department)
    request = IssueRequest(
        type_code=body.type_code,
        department=department,
        holder_name=body.holder_name,
        holder_code=body.holder_code,
        holder_code_type=body.holder_code_type,
        data=body.data,
        valid_from=body.valid_from,
        license_number=body.license_number,
    )
    service = license_service(rt)
    service.registry.issuing(request.type_code, department)  # refuse before a seal is opened
    issued = service.issue(
        request,
        department_signer(rt, department, body.seal),
        f"api:{client.name}",
        client=client.name,
        idempotency_key=idempotency_key,
    )
    if issued.replayed:
        response.status_code = 200
    response.headers["Location"] = _links(rt.settings.base_url, issued.license.identifier)["self"]
    return _issued(services, issued)


def _readable(client: ApiClient, services: ServicesDep, identifier: str) -> License:
    """A license its issuer (or an admin) may read; anyone else learns nothing of it."""
    with transaction(services.runtime.sessions) as session:
        lic = license_of(row_by_identifier(session, identifier))
    if client.role == "department" and lic.department == client.department:
        return lic
    if client.role == "admin":  # outside its own department: leaves a trace
        services.runtime.record(AuditEvent(f"api:{client.name}", "license.read", lic.identifier))
        return lic
    raise NotFoundError(f"no license {identifier!r}")


@router.get("/licenses/{identifier}", summary="A license (its issuer)")
def get_license(
    identifier: str, client: ClientDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    response.headers["Cache-Control"] = NO_STORE
    lic = _readable(client, services, identifier)
    rt = services.runtime
    with transaction(rt.sessions) as session:
        events = [e.to_dict() for e in events_of(session, lic.id)]
    return {
        **lic.to_dict(system_clock(), reveal=True),
        "links": _links(rt.settings.base_url, lic.identifier),
        "events": events,
    }


@router.get("/licenses/{identifier}/document.{fmt}", summary="A license's sealed document")
def license_document(
    identifier: str, fmt: str, client: ClientDep, services: ServicesDep
) -> Response:
    lic = _readable(client, services, identifier)
    with transaction(services.runtime.sessions) as session:
        content = document_of(session, lic.id, fmt)
    return Response(
        content,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{lic.identifier}.{fmt}"',
            "Cache-Control": NO_STORE,
        },
    )


@router.post("/licenses/{identifier}/status", summary="Suspend, resume or revoke a license")
def change_status(
    identifier: str, body: StatusIn, client: ClientDep, services: ServicesDep
) -> dict[str, Any]:
    require_role(client, ISSUING_ROLES)
    rt = services.runtime
    lic = _readable(client, services, identifier)
    change = license_lifecycle(rt).change(
        lic.identifier,
        body.action,
        body.reason,
        department_signer(rt, lic.department, prefer=lic.seal),
        f"api:{client.name}",
        department=client.department if client.role == "department" else None,
    )
    return {
        "identifier": change.license.identifier,
        "status": change.license.status,
        "log": {"index": change.log_index, "checkpoint": change.checkpoint.to_dict()},
    }


@router.post("/licenses/{identifier}/versions", status_code=201, summary="Amend: a new version")
def amend_license(
    identifier: str, body: AmendIn, client: ClientDep, services: ServicesDep
) -> dict[str, Any]:
    """A new version with a new identifier and new sealed documents; the old version is
    superseded (verifiers scanning it are told so)."""
    require_role(client, ISSUING_ROLES)
    rt = services.runtime
    lic = _readable(client, services, identifier)
    issued = license_service(rt).amend(
        lic.identifier,
        Amendment(
            reason=body.reason,
            data=body.data,
            holder_name=body.holder_name,
            license_number=body.license_number,
            valid_to=body.valid_to,
        ),
        department_signer(rt, lic.department, body.seal, prefer=lic.seal),
        f"api:{client.name}",
        department=client.department if client.role == "department" else None,
    )
    return {**_issued(services, issued), "previous": lic.identifier}


# --- the transparency log (public) ----------------------------------------------------------


@router.get("/status-list", summary="The signed list of licenses that are not valid")
def status_list(services: ServicesDep) -> Response:
    """For offline verifiers: suspended, revoked, superseded and expired licenses, numbered by
    the log size and signed by the log key; cacheable for a day."""
    listed = status_lists(services.runtime).current()
    return Response(
        listed.to_json(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/trust-list", summary="The signed trust list: CAs, departments' QR keys, seals")
def trust_list(services: ServicesDep) -> Response:
    """For offline verifiers, which cache it and show its age."""
    from etrust.verification import trust_list_bytes

    return Response(
        trust_list_bytes(services.runtime),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/log/checkpoint", summary="The newest signed checkpoint of the license log")
def log_checkpoint(services: ServicesDep) -> dict[str, Any]:
    return license_service(services.runtime).log.latest().to_dict()


@router.get("/log/proof/inclusion", summary="Inclusion proof of a log entry")
def log_inclusion(
    services: ServicesDep,
    index: Annotated[int, Query(ge=0)],
    size: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    log = license_service(services.runtime).log
    if index >= size:
        raise MalformedInputError("the index must be below the tree size")
    proof = log.inclusion_proof(index, size)
    return {
        "index": index,
        "size": size,
        "entry": log.entry(index).decode("utf-8"),
        "hashes": [_b64(h) for h in proof],
    }


@router.get("/log/proof/consistency", summary="Consistency proof between two tree sizes")
def log_consistency(
    services: ServicesDep,
    old: Annotated[int, Query(ge=1)],
    new: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    if old > new:
        raise MalformedInputError("old must not exceed new")
    proof = license_service(services.runtime).log.consistency_proof(old, new)
    return {"old": old, "new": new, "hashes": [_b64(h) for h in proof]}
