"""Admin API of the registry's set-up: departments and license types (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["registry"])
