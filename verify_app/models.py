"""Tables of verification: every check made (who, when, which license, verdict), and the
presentation codes holders show (so a replayed one is refused)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.schema import Base


class VerificationCheckRow(Base):
    """One check at a window, on the citizen page or over the API."""

    __tablename__ = "verification_checks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    """``api:<client>`` for a signed-in clerk, ``public`` for the citizen page."""
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    """code, image, document or presentation."""
    identifier: Mapped[str | None] = mapped_column(String(128), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))


class PresentationRow(Base):
    """A dynamic presentation code (亮证): valid a few minutes, verified once."""

    __tablename__ = "presentations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(128))
    holder_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(128))
