"""License types on their own: coherent definitions, field validation that names the rule but
never repeats the value, validity rules across leap years."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from etrust.demo import demo_license_types
from license_store.errors import LicenseDataError, LicenseTypeError

WORKER, COMPANY = demo_license_types()


def test_demo_types_are_coherent() -> None:
    for license_type in (WORKER, COMPANY):
        assert license_type.checked() is license_type
        assert license_type.validate(license_type.example) == dict(license_type.example)


def test_errors_name_the_rule_not_the_value() -> None:
    secret = "152501199003071234"
    with pytest.raises(LicenseDataError) as caught:
        WORKER.validate(
            {"gender": f"女{secret}", "birth_date": f"{secret}", "category": "建筑电工"}
        )
    message = caught.value.message
    assert "gender" in message and "birth_date" in message and "(enum)" in message
    assert secret not in message
    with pytest.raises(LicenseDataError) as caught:
        COMPANY.validate({**COMPANY.example, "address": secret * 20})
    assert "longer than 200 characters" in caught.value.message
    assert secret not in caught.value.message
    with pytest.raises(LicenseDataError, match="'nickname' was unexpected"):
        WORKER.validate({**WORKER.example, "nickname": "x"})
    with pytest.raises(LicenseDataError, match="JSON object"):
        WORKER.validate(["not", "an", "object"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"code": "11100000000013338W03"}, "18-character USCC"),
        ({"code": "11100000000013338X032"}, "USCC is wrong"),
        ({"holder_code_types": ("777",)}, "unknown holder code types"),
        ({"validity_years": 0}, "validity_years"),
        ({"schema": {"type": "array"}}, "describes an object"),
        ({"schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}, "not valid"),
        ({"labels": {"nickname": "昵称"}}, "fields the schema does not have"),
        ({"example": {"gender": "?"}}, "do not match"),
    ],
)
def test_incoherent_definitions_are_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises((LicenseTypeError, LicenseDataError), match=match):
        replace(WORKER, **changes).checked()  # type: ignore[arg-type]


def test_validity_rule_across_leap_years() -> None:
    assert WORKER.valid_to(date(2024, 2, 29)) == date(2026, 2, 28)
    assert WORKER.valid_to(date(2025, 3, 1)) == date(2027, 3, 1)
    assert COMPANY.valid_to(date(2024, 2, 29)) is None  # long-term
