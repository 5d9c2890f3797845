"""``etrust license import``: bulk import of historical licenses (to be written)."""

from __future__ import annotations

from typing import Any


def add_commands(license_commands: Any, command: Any) -> None:
    """Register ``import`` under ``etrust license``."""
