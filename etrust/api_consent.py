"""API of holders and their consent: own licenses, grants, receipts; departments reading by
grant; holder links for the service desk.

A holder proves who they are with a holder token (``X-Holder-Token``, or ``?token=`` for a link
opened from an SMS); a department reads a citizen's licenses only through a grant id the
holder gave it. Nothing here lets a department look a holder up by code or name.

Only a ``service-desk`` client mints holder links, and only ``read`` ones: a desk lets a person
see their licenses, documents, grants and receipts, never consents in their name. Creating and
withdrawing grants takes a ``consent`` link (for now from the operator's ``etrust holder link
--scope consent``; the portal's login will mint them). Every link minted shows in the holder's
receipts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field

from etrust.api import ClientDep, require_role
from etrust.api_licenses import MEDIA_TYPES
from etrust.holder_desk import holder_receipts as all_receipts
from etrust.holder_desk import mint_holder_link
from etrust.licenses import consent_service, holder_links
from etrust.pki_routes import ServicesDep
from license_store.consent import MAX_FIELDS, MAX_GRANT_DAYS, MAX_LICENSES, MAX_USES
from license_store.holder_access import (
    CONSENT,
    DEFAULT_MINUTES,
    MAX_MINUTES,
    MIN_MINUTES,
    READ,
    HolderAuthenticator,
    HolderAuthError,
    HolderIdentity,
)
from license_store.records import FORMATS, License
from trust.clock import system_clock
from trust.errors import ForbiddenError, MalformedInputError

router = APIRouter(prefix="/api/v1", tags=["consent"])

LINK_ROLES = frozenset({"service-desk"})
"""Not admin, not ra-officer (the certificate RA): a link acts as the citizen, so minting one
is a citizen-facing desk's job and nobody else's."""
GRANTEE_ROLES = frozenset({"department"})
NO_STORE = {"Cache-Control": "no-store"}
"""Personal data: no browser or proxy keeps a copy."""


def holder_authenticator(request: Request) -> HolderAuthenticator:
    """The one place that decides how holders authenticate (signed links, until the portal's
    own login takes over behind the same interface)."""
    return holder_links(request.app.state.services.runtime)


def authenticated_holder(
    request: Request,
    x_holder_token: Annotated[str | None, Header(description="the holder token")] = None,
    token: Annotated[
        str | None, Query(description="the holder token, for links opened from an SMS")
    ] = None,
) -> HolderIdentity:
    presented = x_holder_token or token
    if not presented:
        raise HolderAuthError("send the holder token as X-Holder-Token (or ?token=)")
    return holder_authenticator(request).holder_of(presented)


HolderDep = Annotated[HolderIdentity, Depends(authenticated_holder)]


class GrantIn(BaseModel):
    department: str = Field(max_length=64, description="the grantee department's code")
    licenses: list[str] = Field(
        min_length=1, max_length=MAX_LICENSES, description="identifiers or lineages"
    )
    fields: list[str] = Field(
        min_length=1,
        max_length=MAX_FIELDS,
        description="license fields, holder_name, holder_code, license_number, documents",
    )
    purpose: str = Field(max_length=200)
    expires_at: datetime | None = Field(None, description="with a time zone; or give days")
    days: int | None = Field(None, ge=1, le=MAX_GRANT_DAYS)
    max_uses: int | None = Field(None, ge=1, le=MAX_USES, description="none: unlimited")


class HolderLinkIn(BaseModel):
    holder_code: str = Field(max_length=64)
    holder_code_type: str = Field("111", max_length=3)
    minutes: int = Field(DEFAULT_MINUTES, ge=MIN_MINUTES, le=MAX_MINUTES)
    scope: Literal["read", "consent"] = Field(
        "read", description="read only: a service desk never mints consent links"
    )


def _base(services: ServicesDep) -> str:
    return services.runtime.settings.base_url.rstrip("/")


def _document(lic: License, fmt: str, content: bytes) -> Response:
    return Response(
        content,
        media_type=MEDIA_TYPES[fmt],
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{lic.identifier}.{fmt}"',
        },
    )


# --- the holder -------------------------------------------------------------------------------


@router.get("/holder/licenses", summary="The holder's own licenses, in full")
def holder_licenses(
    holder: HolderDep, services: ServicesDep, response: Response
) -> list[dict[str, Any]]:
    response.headers.update(NO_STORE)
    now = system_clock()
    root = f"{_base(services)}/api/v1/holder/licenses"
    return [
        {
            **lic.to_dict(now, reveal=True),
            "links": {fmt: f"{root}/{lic.identifier}/document.{fmt}" for fmt in FORMATS},
        }
        for lic in consent_service(services.runtime).licenses(holder.holder_hash)
    ]


@router.get(
    "/holder/licenses/{identifier}/document.{fmt}", summary="A sealed document of one's own"
)
def holder_document(
    identifier: str, fmt: str, holder: HolderDep, services: ServicesDep
) -> Response:
    lic, content = consent_service(services.runtime).document(holder.holder_hash, identifier, fmt)
    return _document(lic, fmt, content)


@router.post("/holder/grants", status_code=201, summary="Let a department read licenses")
def create_grant(
    body: GrantIn, holder: HolderDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    holder.require(CONSENT)
    now = system_clock()
    if (body.expires_at is None) == (body.days is None):
        raise MalformedInputError("give either expires_at or days")
    expires_at = body.expires_at or now + timedelta(days=body.days or 0)
    grant = consent_service(services.runtime).grant(
        holder.holder_hash,
        body.department,
        body.licenses,
        body.fields,
        body.purpose,
        expires_at,
        body.max_uses,
    )
    url = f"{_base(services)}/api/v1/grants/{grant.id}/licenses"
    response.headers.update({**NO_STORE, "Location": url})
    return {**grant.to_dict(now), "url": url}


@router.get("/holder/grants", summary="The holder's grants")
def holder_grants(
    holder: HolderDep, services: ServicesDep, response: Response
) -> list[dict[str, Any]]:
    response.headers.update(NO_STORE)
    now = system_clock()
    return [g.to_dict(now) for g in consent_service(services.runtime).grants(holder.holder_hash)]


@router.delete("/holder/grants/{grant_id}", summary="Withdraw a grant")
def revoke_grant(grant_id: str, holder: HolderDep, services: ServicesDep) -> dict[str, Any]:
    holder.require(CONSENT)
    grant = consent_service(services.runtime).revoke(holder.holder_hash, grant_id)
    return grant.to_dict(system_clock())


@router.get("/holder/receipts", summary="Who read the holder's licenses, when and why")
def holder_receipts(
    holder: HolderDep, services: ServicesDep, response: Response
) -> list[dict[str, Any]]:
    """Reads and downloads through the holder's grants, and every link minted for them (kind
    ``link``: who, when, scope, expiry), newest first."""
    response.headers.update(NO_STORE)
    return all_receipts(services.runtime, holder.holder_hash)


# --- the service desk -------------------------------------------------------------------------


@router.post("/holder-links", summary="A signed link for a holder (service desk, portal)")
def create_holder_link(
    body: HolderLinkIn, client: ClientDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """A ``read`` link (role ``service-desk`` only), shown in the holder's receipts. The holder
    code's check digits are verified; whether it holds licenses is not looked at, so the
    answer is alike for everyone."""
    require_role(client, LINK_ROLES)
    if body.scope != READ:
        raise ForbiddenError(
            "a service desk mints read links only: consenting for a citizen is the citizen's",
            code="HOLDER_SCOPE",
        )
    response.headers.update(NO_STORE)
    return mint_holder_link(
        services.runtime,
        f"api:{client.name}",
        body.holder_code,
        body.holder_code_type,
        body.minutes,
        READ,
        client.department,
    )


# --- the grantee department ---------------------------------------------------------------------


def _grantee(client: ClientDep) -> str:
    require_role(client, GRANTEE_ROLES)
    if client.department is None:
        raise ForbiddenError("this client belongs to no department")
    return client.department


@router.get("/grants/{grant_id}/licenses", summary="Read the licenses of a grant (one use)")
def grant_licenses(
    grant_id: str, client: ClientDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """Spends one use of the grant and leaves a receipt per license for the holder."""
    department = _grantee(client)
    shared = consent_service(services.runtime).fetch(grant_id, department, f"api:{client.name}")
    root = f"{_base(services)}/api/v1/grants/{grant_id}/licenses"
    for item in shared:
        if "documents" in item:
            item["links"] = {
                fmt: f"{root}/{item['identifier']}/document.{fmt}" for fmt in item["documents"]
            }
    response.headers.update(NO_STORE)
    return {"grant": grant_id, "licenses": shared}


@router.get(
    "/grants/{grant_id}/licenses/{identifier}/document.{fmt}",
    summary="A sealed document through a grant that includes documents",
)
def grant_document(
    grant_id: str, identifier: str, fmt: str, client: ClientDep, services: ServicesDep
) -> Response:
    department = _grantee(client)
    lic, content = consent_service(services.runtime).grant_document(
        grant_id, department, f"api:{client.name}", identifier, fmt
    )
    return _document(lic, fmt, content)
