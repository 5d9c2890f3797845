"""Dual control: m-of-n signed approvals by distinct officers, bound to what is approved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from etrust.approvals import DualControl
from etrust.models import ApprovalRow
from storage.engine import transaction
from trust.errors import ApprovalError, ApprovalRequiredError, ConflictError, MalformedInputError
from trust.keys import KeyHandle
from trust.softkeys import SoftwareKeyStore

pytest_plugins = ["tests.db_fixtures"]

OP, TARGET, PARAMS = (
    "ca.issue.root",
    "root-sm2",
    {"profile": "issuing-ca", "subject": "CN=新签发CA"},
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def officers(tmp_path: Path) -> dict[str, KeyHandle]:
    store = SoftwareKeyStore.open(tmp_path / "officer-keys")
    return {
        "zhang": store.generate("zhang", "sm2"),
        "li": store.generate("li", "rsa-2048"),
        "wang": store.generate("wang", "sm2"),
    }


@pytest.fixture
def setup(
    db_sessions: sessionmaker[Session], officers: dict[str, KeyHandle]
) -> tuple[DualControl, Clock]:
    clock = Clock()
    dc = DualControl(db_sessions, {OP: 2}, clock=clock)
    for name, key in officers.items():
        dc.add_officer(name, key.public_key_info)
    return dc, clock


def test_m_of_n_then_exactly_once(
    setup: tuple[DualControl, Clock], officers: dict[str, KeyHandle]
) -> None:
    dc, _ = setup
    req = dc.request(OP, TARGET, PARAMS, requester="zhang")
    with pytest.raises(ApprovalRequiredError, match="has 0"):
        dc.authorize(req.id, OP, TARGET, PARAMS)
    assert dc.approve(req.id, "li", officers["li"]) == 1
    with pytest.raises(ApprovalRequiredError, match="has 1"):
        dc.authorize(req.id, OP, TARGET, PARAMS)
    assert dc.approve(req.id, "wang", officers["wang"]) == 2
    assert dc.authorize(req.id, OP, TARGET, PARAMS).id == req.id
    with pytest.raises(ApprovalError, match="used"):
        dc.authorize(req.id, OP, TARGET, PARAMS)


def test_self_double_and_wrong_key_approvals_are_refused(
    setup: tuple[DualControl, Clock], officers: dict[str, KeyHandle]
) -> None:
    dc, _ = setup
    req = dc.request(OP, TARGET, PARAMS, requester="zhang")
    with pytest.raises(ApprovalError, match="own request"):
        dc.approve(req.id, "zhang", officers["zhang"])
    dc.approve(req.id, "li", officers["li"])
    with pytest.raises(ApprovalError, match="already approved"):
        dc.approve(req.id, "li", officers["li"])
    with pytest.raises(ApprovalError, match="not the one registered"):
        dc.approve(req.id, "wang", officers["li"])
    with pytest.raises(ApprovalError, match="not an active"):
        dc.approve(req.id, "nobody", officers["li"])
    with pytest.raises(ApprovalRequiredError):
        dc.authorize(req.id, OP, TARGET, PARAMS)


def test_approvals_are_bound_to_the_operation(
    setup: tuple[DualControl, Clock], officers: dict[str, KeyHandle]
) -> None:
    dc, _ = setup
    req = dc.request(OP, TARGET, PARAMS, requester="zhang")
    dc.approve(req.id, "li", officers["li"])
    dc.approve(req.id, "wang", officers["wang"])
    with pytest.raises(ApprovalError, match="different operation"):
        dc.authorize(req.id, OP, TARGET, {**PARAMS, "subject": "CN=另一个CA"})
    with pytest.raises(ApprovalError, match="different operation"):
        dc.authorize(req.id, OP, "root-rsa", PARAMS)


def test_expired_requests_count_for_nothing(
    setup: tuple[DualControl, Clock], officers: dict[str, KeyHandle]
) -> None:
    dc, clock = setup
    req = dc.request(OP, TARGET, PARAMS, requester="zhang", lifetime=timedelta(minutes=10))
    dc.approve(req.id, "li", officers["li"])
    dc.approve(req.id, "wang", officers["wang"])
    clock.now += timedelta(minutes=11)
    with pytest.raises(ApprovalError, match="expired"):
        dc.authorize(req.id, OP, TARGET, PARAMS)
    with pytest.raises(ApprovalError, match="expired"):
        dc.approve(req.id, "zhang", officers["zhang"])


def test_rows_written_by_hand_do_not_count(
    setup: tuple[DualControl, Clock],
    officers: dict[str, KeyHandle],
    db_sessions: sessionmaker[Session],
) -> None:
    dc, clock = setup
    req = dc.request(OP, TARGET, PARAMS, requester="zhang")
    dc.approve(req.id, "li", officers["li"])
    with transaction(db_sessions, write=True) as session:
        session.add(
            ApprovalRow(
                request_id=req.id,
                officer="wang",
                signature=b"\x30\x06\x02\x01\x01\x02\x01\x01",
                at=clock.now,
            )
        )
    with pytest.raises(ApprovalRequiredError, match="has 1"):
        dc.authorize(req.id, OP, TARGET, PARAMS)


def test_policy_and_registration_errors(
    setup: tuple[DualControl, Clock], officers: dict[str, KeyHandle]
) -> None:
    dc, _ = setup
    assert dc.required("key.destroy") == 0
    with pytest.raises(MalformedInputError, match="not under dual control"):
        dc.request("key.destroy", "soft:object=x", {}, requester="zhang")
    with pytest.raises(ConflictError):
        dc.add_officer("li", officers["li"].public_key_info)
    assert dc.officers() == ["li", "wang", "zhang"]


def test_requester_must_be_an_active_officer_and_disabled_ones_do_not_count(
    setup: tuple[DualControl, Clock], officers: dict[str, KeyHandle]
) -> None:
    dc, _ = setup
    with pytest.raises(ApprovalError, match="not an active"):
        dc.request(OP, TARGET, PARAMS, requester="nobody")
    req = dc.request(OP, TARGET, PARAMS, requester="zhang")
    dc.approve(req.id, "li", officers["li"])
    dc.approve(req.id, "wang", officers["wang"])
    dc.disable_officer("wang")
    assert "wang" not in dc.officers()
    with pytest.raises(ApprovalRequiredError, match="has 1"):
        dc.authorize(req.id, OP, TARGET, PARAMS)


def test_a_raised_policy_applies_to_open_requests(
    db_sessions: sessionmaker[Session],
    setup: tuple[DualControl, Clock],
    officers: dict[str, KeyHandle],
) -> None:
    dc, clock = setup
    req = dc.request(OP, TARGET, PARAMS, requester="zhang")
    dc.approve(req.id, "li", officers["li"])
    dc.approve(req.id, "wang", officers["wang"])
    stricter = DualControl(db_sessions, {OP: 3}, clock=clock)
    with pytest.raises(ApprovalRequiredError, match="needs 3"):
        stricter.authorize(req.id, OP, TARGET, PARAMS)
