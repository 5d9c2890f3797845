"""The injected clock: everything that asks the time takes a ``Clock`` so tests can freeze it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def fixed_clock(moment: datetime) -> Clock:
    """A clock that always answers ``moment`` (tests, and verification "as of" a time)."""
    return lambda: moment
