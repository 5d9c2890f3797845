"""Managed keys through their lifecycle: allowed steps, refused ones, and the events left."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from etrust.lifecycle import KeyLifecycle
from tests.conftest import make_hierarchy
from trust.certificates import make_name
from trust.errors import ConflictError, KeyStateError, MalformedInputError, NotFoundError

pytest_plugins = ["tests.db_fixtures"]


def test_full_lifecycle(db_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    h = make_hierarchy("sm2", tmp_path)
    life = KeyLifecycle(db_sessions)
    old_key, new_key = h.new_key("seal-2025"), h.new_key("seal-2026")
    life.register("seal-2025", "seal", old_key, "officer:zhang", "yearly seal key")
    with pytest.raises(ConflictError):
        life.register("seal-2025", "seal", old_key, "officer:zhang", "again")
    cert = h.issuing.issue(old_key.public_key_info, make_name("CN=印章2025"), "seal-signer")
    life.register("seal-2026", "seal", new_key, "officer:zhang", "next year")
    with pytest.raises(MalformedInputError, match="not for key"):
        life.certify("seal-2026", cert, h.issuing.name, "officer:zhang", "wrong key")
    life.certify("seal-2025", cert, h.issuing.name, "officer:zhang", "issued by issuing-sm2")
    with pytest.raises(KeyStateError, match="cannot become destroyed"):
        life.transition("seal-2025", "destroyed", "officer:li", "too early")
    life.transition("seal-2025", "active", "officer:zhang", "in service")
    life.transition("seal-2025", "suspended", "officer:li", "key holder on leave")
    life.transition("seal-2025", "active", "officer:li", "back")
    with pytest.raises(KeyStateError, match="must be certified"):
        life.rotate("seal-2025", "seal-2026", "officer:zhang", "yearly rotation")
    new_cert = h.issuing.issue(new_key.public_key_info, make_name("CN=印章2026"), "seal-signer")
    life.certify("seal-2026", new_cert, h.issuing.name, "officer:zhang", "issued")
    rotated = life.rotate("seal-2025", "seal-2026", "officer:zhang", "yearly rotation")
    assert (rotated.state, rotated.replaced_by) == ("rotated", "seal-2026")
    assert life.get("seal-2026").state == "active"
    with pytest.raises(MalformedInputError, match="say why"):
        life.transition("seal-2025", "destroyed", "officer:li", "  ")
    life.transition("seal-2025", "destroyed", "officer:li", "retention period over")
    assert [(e.from_state, e.to_state) for e in life.events("seal-2025")] == [
        (None, "generated"),
        ("generated", "certified"),
        ("certified", "active"),
        ("active", "suspended"),
        ("suspended", "active"),
        ("active", "rotated"),
        ("rotated", "destroyed"),
    ]
    assert all(e.reason for e in life.events("seal-2025"))
    with pytest.raises(NotFoundError):
        life.get("nope")
    with pytest.raises(KeyStateError):
        life.transition("seal-2025", "active", "officer:li", "resurrect")
