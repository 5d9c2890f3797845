"""``etrust holder``: holder links, grants and receipts from the command line (to be written)."""

from __future__ import annotations

from typing import Any


def add_commands(sub: Any, command: Any) -> None:
    """Register the holder commands on the main parser."""
