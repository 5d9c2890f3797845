"""API for departments and case modules: their seals, and signed case outcomes with a link
anyone holding it can verify."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from etrust.api import ClientDep, require_role
from etrust.outcomes import get_outcome, sign_case_outcome
from etrust.pki_routes import ServicesDep
from etrust.seals import SealStore
from trust.errors import NotFoundError

router = APIRouter(prefix="/api/v1", tags=["seals"])

SIGNING_ROLES = frozenset({"department", "admin"})


class OutcomeIn(BaseModel):
    seal: str = Field(max_length=32, description="the seal (id from /api/v1/seals) that signs")
    outcome: dict[str, Any] = Field(description="the case outcome, any JSON object")
    case_ref: str | None = Field(None, max_length=128, description="the case's own reference")


@router.get("/seals", summary="Seals (a department client sees its own)")
def seals(client: ClientDep, services: ServicesDep) -> list[dict[str, Any]]:
    department = client.department if client.role == "department" else None
    return [s.to_dict() for s in SealStore(services.runtime.sessions).list(department)]


@router.get("/seals/{es_id}.esl", summary="A seal as a GB/T 38540 file")
def seal_file(es_id: str, client: ClientDep, services: ServicesDep) -> Response:
    seal = SealStore(services.runtime.sessions).get(es_id)
    if client.role == "department" and seal.department != client.department:
        raise NotFoundError(f"no seal with id {es_id!r}")  # as for one that does not exist
    return Response(
        seal.seal_der,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{seal.es_id}.esl"'},
    )


@router.post("/outcomes", status_code=201, summary="Sign a case outcome")
def sign_outcome(body: OutcomeIn, client: ClientDep, services: ServicesDep) -> dict[str, Any]:
    """Canonical JSON (RFC 8785), detached CMS with a timestamp; answers the signature and a
    verification link."""
    require_role(client, SIGNING_ROLES)
    record = sign_case_outcome(
        services.runtime,
        f"api:{client.name}",
        body.seal,
        body.outcome,
        case_ref=body.case_ref,
        department=client.department if client.role == "department" else None,
    )
    return record.to_dict(services.runtime.settings.base_url)


@router.get("/outcomes/{outcome_id}", summary="A signed outcome and its verification")
def outcome(outcome_id: str, services: ServicesDep) -> dict[str, Any]:
    """No token needed: the id is an unguessable link handed out with the outcome."""
    from signing.outcome import verify_outcome

    record = get_outcome(services.runtime, outcome_id)
    result = verify_outcome(record.canonical, record.signature, services.verify_context())
    return {**record.to_dict(services.runtime.settings.base_url), "verification": result.to_dict()}
