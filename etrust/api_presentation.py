"""Presentation codes (出示码, 亮证) over HTTP: a holder makes, from one of their licenses, a code
valid a few minutes, to show at a window; ``POST /api/v1/verify`` spends it (once, online).

A ``read`` holder token is enough: showing a license is not consenting to anything, and the
code tells its verifier no more than the license's own QR code would.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from etrust.api_consent import NO_STORE, HolderDep
from etrust.licenses import holder_key, license_service
from etrust.pki_routes import ServicesDep
from etrust.runtime import Runtime
from license_store.holder_access import READ
from license_store.models import IDENTIFIER_LENGTH
from signing.qr import qr_symbol
from verify_app.presentation import (
    DEFAULT_MINUTES,
    MAX_MINUTES,
    MIN_MINUTES,
    PresentationService,
    presentation_key,
    presentation_text,
)

router = APIRouter(prefix="/api/v1", tags=["presentation"])


def presentation_service(rt: Runtime) -> PresentationService:
    """The runtime's presentation codes, MACed under a key derived from the holder key."""
    cached: PresentationService | None = rt.__dict__.get("_presentations")
    if cached is None:
        cached = PresentationService(
            rt.sessions, presentation_key(holder_key(rt)), license_service(rt).holder_hash
        )
        rt.__dict__["_presentations"] = cached
    return cached


class PresentationIn(BaseModel):
    identifier: str = Field(
        max_length=IDENTIFIER_LENGTH, description="a license identifier, or its lineage"
    )
    minutes: int = Field(
        DEFAULT_MINUTES, ge=MIN_MINUTES, le=MAX_MINUTES, strict=True, description="lifetime"
    )


@router.post(
    "/holder/presentations",
    status_code=201,
    summary="A presentation code (出示码) of one's own license, valid a few minutes",
)
def create_presentation(
    body: PresentationIn, holder: HolderDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """The code's text (a URL of the verify page), its expiry and its QR code (PNG, base64).
    Only a license valid today can be shown; another holder's is "not found"."""
    holder.require(READ)
    rt = services.runtime
    made = presentation_service(rt).create(holder.holder_hash, body.identifier, body.minutes)
    text = presentation_text(made.fragment, rt.settings.base_url)
    response.headers.update(NO_STORE)
    return {
        "code": text,
        "expires_at": made.expires_at.isoformat(),
        "qr_png_base64": base64.b64encode(qr_symbol(text).png).decode("ascii"),
    }
