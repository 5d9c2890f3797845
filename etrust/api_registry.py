"""Admin API of the registry's set-up: departments and license types.

Admin clients only; the checks and the audit records are those of ``etrust department add`` and
``etrust license-type define`` (:mod:`etrust.registry_ops`). A PUT answers 201 when it created
the department or type, 200 when it changed it or found nothing to change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from etrust import registry_ops
from etrust.api import ClientDep, require_role
from etrust.pki_routes import ServicesDep
from license_store.errors import LicenseTypeError

router = APIRouter(prefix="/api/v1", tags=["registry"])

ADMIN_ROLES = frozenset({"admin"})


class DepartmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200, examples=["呼和浩特市市场监督管理局"])
    uscc: str = Field(max_length=64, description="unified social credit code (GB 32100)")
    area_code: str = Field(max_length=6, description="6-digit area code (GB/T 2260)")


class LicenseTypeIn(BaseModel):
    """A definition file (docs/license-types.md) plus the issuing departments."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: str | None = Field(None, max_length=21, description="if given, the path's code")
    name: str = Field(max_length=200)
    authority: str = Field(max_length=200)
    holder_kind: str = Field(description="person or organisation")
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema 2020-12 of fields")
    labels: dict[str, str] = Field(description="field → printed label, in print order")
    holder_code_types: list[str] = Field(examples=[["111"]])
    validity_years: int | None = Field(description="null: long-term (长期)")
    qr_name: str = "masked"
    example: dict[str, Any] = Field(default_factory=dict)
    issuers: list[str] = Field(min_length=1, description="departments that issue the type")


@router.get("/departments", summary="Departments (admin)")
def list_departments(client: ClientDep, services: ServicesDep) -> list[dict[str, str]]:
    require_role(client, ADMIN_ROLES)
    return [d.to_dict() for d in registry_ops.departments(services.runtime)]


@router.put("/departments/{code}", summary="Add a department or change it (admin)")
def put_department(
    code: str, body: DepartmentIn, client: ClientDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """Its USCC is the issuer code of every identifier it issues: it cannot change once the
    department has issued a license (409 ``REGISTRY_IN_USE``)."""
    require_role(client, ADMIN_ROLES)
    change = registry_ops.put_department(
        services.runtime, f"api:{client.name}", code, body.name, body.uscc, body.area_code
    )
    if change.created:
        response.status_code = 201
    return change.to_dict()


@router.put("/license-types/{code}", summary="Define or redefine a license type (admin)")
def put_license_type(
    code: str, body: LicenseTypeIn, client: ClientDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """A redefinition must keep every license issued under the type valid: a schema their
    stored fields fail, another holder kind or dropping a holder code type in use is refused
    (409 ``REGISTRY_IN_USE``)."""
    require_role(client, ADMIN_ROLES)
    if body.code not in (None, code):
        raise LicenseTypeError(f"the body defines {body.code}, the address {code}")
    definition = body.model_dump(by_alias=True, exclude={"issuers"})
    change = registry_ops.define_type(
        services.runtime, f"api:{client.name}", {**definition, "code": code}, body.issuers
    )
    if change.created:
        response.status_code = 201
    return change.to_dict()
