"""Departments and license types: who may issue what."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from license_store.errors import IssuerNotAllowedError
from license_store.holder_codes import check_uscc
from license_store.models import DepartmentRow, LicenseTypeIssuerRow, LicenseTypeRow
from license_store.types import LicenseType
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import MalformedInputError, NotFoundError

_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    uscc: str
    area_code: str

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "name": self.name,
            "uscc": self.uscc,
            "area_code": self.area_code,
        }


class Registry:
    """Departments, license types and the issuers of each type, in the database."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    # --- departments -----------------------------------------------------------------------

    def add_department(self, code: str, name: str, uscc: str, area_code: str) -> Department:
        """Register (or update the name of) a department; its USCC is checked (GB 32100)."""
        if not _CODE.fullmatch(code):
            raise MalformedInputError("a department code is 1-64 letters, digits, '.', '_', '-'")
        if not name.strip() or len(name) > 200:
            raise MalformedInputError("a department name is 1-200 characters")
        if not re.fullmatch(r"[1-9]\d{5}", area_code):
            raise MalformedInputError("an area code is 6 digits (GB/T 2260)")
        department = Department(code, name.strip(), check_uscc(uscc), area_code)
        with transaction(self._sessions, write=True) as session:
            row = session.get(DepartmentRow, code)
            if row is None:
                session.add(
                    DepartmentRow(
                        code=code,
                        name=department.name,
                        uscc=department.uscc,
                        area_code=area_code,
                        created_at=self._clock(),
                    )
                )
            else:
                row.name, row.uscc, row.area_code = department.name, department.uscc, area_code
        return department

    def department(self, code: str) -> Department:
        with transaction(self._sessions) as session:
            row = session.get(DepartmentRow, code)
            if row is None:
                raise NotFoundError(f"no department {code!r}")
            return _department(row)

    def departments(self) -> list[Department]:
        with transaction(self._sessions) as session:
            rows = session.scalars(select(DepartmentRow).order_by(DepartmentRow.code))
            return [_department(r) for r in rows]

    # --- license types ---------------------------------------------------------------------

    def define_type(self, license_type: LicenseType, issuers: Iterable[str]) -> LicenseType:
        """Create or replace a license type and its issuing departments (which must exist)."""
        checked = license_type.checked()
        codes = sorted(set(issuers))
        with transaction(self._sessions, write=True) as session:
            for code in codes:
                if session.get(DepartmentRow, code) is None:
                    raise NotFoundError(f"no department {code!r}")
            row = session.get(LicenseTypeRow, checked.code)
            if row is None:
                row = LicenseTypeRow(code=checked.code, created_at=self._clock())
                session.add(row)
            row.name, row.authority = checked.name, checked.authority
            row.holder_kind, row.definition = checked.holder_kind, checked.definition_json()
            session.flush()
            session.execute(
                delete(LicenseTypeIssuerRow).where(LicenseTypeIssuerRow.type_code == checked.code)
            )
            session.add_all(
                LicenseTypeIssuerRow(type_code=checked.code, department=c) for c in codes
            )
        return checked

    def license_type(self, code: str) -> LicenseType:
        with transaction(self._sessions) as session:
            row = session.get(LicenseTypeRow, code)
            if row is None:
                raise NotFoundError(f"no license type {code!r}")
            return _license_type(row)

    def license_types(self) -> list[tuple[LicenseType, list[str]]]:
        """Every type with its issuing departments."""
        with transaction(self._sessions) as session:
            rows = list(session.scalars(select(LicenseTypeRow).order_by(LicenseTypeRow.code)))
            issuers = _issuers(session)
            return [(_license_type(r), issuers.get(r.code, [])) for r in rows]

    def issuers(self, type_code: str) -> list[str]:
        with transaction(self._sessions) as session:
            return _issuers(session).get(type_code, [])

    def issuing(self, type_code: str, department: str) -> tuple[LicenseType, Department]:
        """The type and the department, if the department issues that type."""
        with transaction(self._sessions) as session:
            type_row = session.get(LicenseTypeRow, type_code)
            if type_row is None:
                raise NotFoundError(f"no license type {type_code!r}")
            dept = session.get(DepartmentRow, department)
            allowed = session.get(LicenseTypeIssuerRow, (type_code, department))
            if dept is None or allowed is None:
                raise IssuerNotAllowedError(
                    f"department {department!r} does not issue licenses of type {type_code}"
                )
            return _license_type(type_row), _department(dept)


def _issuers(session: Session) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    rows = session.execute(
        select(LicenseTypeIssuerRow.type_code, LicenseTypeIssuerRow.department).order_by(
            LicenseTypeIssuerRow.department
        )
    )
    for type_code, department in rows:
        found.setdefault(type_code, []).append(department)
    return found


def _department(row: DepartmentRow) -> Department:
    return Department(row.code, row.name, row.uscc, row.area_code)


def _license_type(row: LicenseTypeRow) -> LicenseType:
    return LicenseType.from_definition(
        row.code, row.name, row.authority, row.holder_kind, row.definition
    )
