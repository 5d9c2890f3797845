"""Rules of the code checker on their own: the moment a QR key is judged at, and which codes
of a withdrawn key still count."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from license_store.records import CHINA
from verify_app.code_check import _moment_on, _withdrawn
from verify_app.trust_list import QrKeyEntry

DAY = date(2026, 11, 28)


def test_a_key_certified_in_the_afternoon_is_judged_after_it_was_certified() -> None:
    certified = datetime(2026, 11, 28, 15, 0, tzinfo=CHINA)
    moment = _moment_on(DAY, certified, certified + timedelta(days=1000))
    assert moment == certified  # not noon, when it was not yet certified
    assert _moment_on(DAY, certified - timedelta(days=30), certified + timedelta(days=9)) == (
        datetime(2026, 11, 28, 12, tzinfo=CHINA)
    )
    ends = datetime(2026, 11, 28, 9, 0, tzinfo=CHINA)
    assert _moment_on(DAY, ends - timedelta(days=900), ends) == ends  # its last moment
    # a day the certificate did not cover at all: noon, where the chain check then fails
    assert _moment_on(DAY, certified + timedelta(days=2), certified + timedelta(days=9)) == (
        datetime(2026, 11, 28, 12, tzinfo=CHINA)
    )


def entry(reason: str | None, at: str | None) -> QrKeyEntry:
    return QrKeyEntry("00" * 8, "d", "部门", "11152500MB00000012", b"", at, reason)


def test_which_codes_of_a_withdrawn_key_still_count() -> None:
    assert not _withdrawn(entry(None, None), DAY)
    retired = entry("superseded", "2026-11-28T03:00:00+00:00")
    assert not _withdrawn(retired, DAY)  # the day it was retired: made before the switch
    assert not _withdrawn(retired, DAY - timedelta(days=1))
    assert _withdrawn(retired, DAY + timedelta(days=1))
    stolen = entry("key_compromise", "2026-11-28T03:00:00+00:00")
    assert _withdrawn(stolen, DAY - timedelta(days=400))  # a stolen key can backdate
    assert _withdrawn(entry(None, "2026-11-28T03:00:00+00:00"), DAY - timedelta(days=1))
