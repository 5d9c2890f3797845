"""``etrust department`` and ``etrust license-type define``: the registry's set-up (to be written)."""

from __future__ import annotations

from typing import Any


def add_commands(sub: Any, command: Any, license_type_commands: Any) -> None:
    """Register the department commands and ``license-type define``."""
