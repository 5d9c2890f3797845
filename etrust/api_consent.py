"""API of holders and their consent: own licenses, grants, receipts; departments reading by
grant (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["consent"])
