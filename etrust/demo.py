"""Demo data for ``etrust init --demo``: a department's seal certificates, an SM2 and an RSA
seal, an API client, two license types and a sample license of each."""

from __future__ import annotations

import os
from pathlib import Path

from etrust.runtime import Runtime
from license_store.types import LicenseType, text_schema
from trust.certificates import make_name
from trust.errors import ConflictError, KeyNotFoundError

DEMO_DEPARTMENT = "示范盟市场监督管理局"
DEMO_DEPARTMENT_CODE = "152500-scjg"
DEMO_DEPARTMENT_USCC = "11152500MB00000012"
"""A made-up USCC with a valid check character (GB 32100)."""
DEMO_AREA = "152500"
DEMO_CLIENT = "demo-ra"
DEMO_TOKEN_FILE = "demo-api-token.txt"  # noqa: S105 (a file name, not a secret)
DEMO_DEPARTMENT_CLIENT = "demo-department"
DEMO_DEPARTMENT_TOKEN_FILE = "demo-department-token.txt"  # noqa: S105 (a file name)
"""The market regulator's own client: it issues and manages its licenses over the API."""
DEMO_DESK_CLIENT = "demo-desk"
DEMO_DESK_TOKEN_FILE = "demo-desk-token.txt"  # noqa: S105 (a file name)
"""A service desk (政务服务窗口): it hands holders links to their licenses."""


def seed_demo(rt: Runtime) -> list[str]:
    """Seal certificates and seals, license types and licenses, an RA client and the
    department's client; idempotent."""
    created: list[str] = []
    pki = rt.pki()
    for kind, spec in (("sm2", "sm2"), ("rsa", "rsa-2048")):
        label = f"demo-seal-{kind}"
        try:
            rt.keystore.find(f"soft:object={label}")
            continue  # already seeded
        except KeyNotFoundError:
            key = rt.keystore.generate(label, spec)
        pki.ca(f"issuing-{kind}").issue(
            key.public_key_info,
            make_name(
                {
                    "C": "CN",
                    "O": DEMO_DEPARTMENT,
                    "CN": f"{DEMO_DEPARTMENT}电子印章（{kind.upper()}）",
                }
            ),
            "seal-signer",
            identity={"organization_code": DEMO_DEPARTMENT_USCC},
        )
        created.append(f"{label} certificate")
    created += _demo_seals(rt)
    created += _demo_licenses(rt)
    for name, role, department, file in (
        (DEMO_CLIENT, "ra-officer", "152500", DEMO_TOKEN_FILE),
        (DEMO_DEPARTMENT_CLIENT, "department", DEMO_DEPARTMENT_CODE, DEMO_DEPARTMENT_TOKEN_FILE),
        (DEMO_DESK_CLIENT, "service-desk", DEMO_DEPARTMENT_CODE, DEMO_DESK_TOKEN_FILE),
    ):
        try:
            token = rt.clients.create(name, role, department=department)
        except ConflictError:
            continue
        path = rt.settings.home / file
        _write_private(path, token + "\n")
        created.append(f"API client {name} (token in {path})")
    return created


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _demo_seals(rt: Runtime) -> list[str]:
    """One SM2 and one RSA seal of the demo department, unless it has them already."""
    from etrust.cli_io import actor
    from etrust.seals import SealRequest, SealStore, make_department_seal

    have = {s.alg for s in SealStore(rt.sessions).list(DEMO_DEPARTMENT_CODE)}
    made = []
    for alg in ("sm2", "rsa"):
        if alg in have:
            continue
        seal = make_department_seal(
            rt,
            actor(),
            SealRequest(DEMO_DEPARTMENT_CODE, DEMO_DEPARTMENT, alg=alg),  # type: ignore[arg-type]
            None,
        )
        made.append(f"{alg} seal {seal.es_id}")
    return made


def demo_license_types() -> list[LicenseType]:
    """A license of persons (a real type code of the housing ministry, standards.md §3.2) and
    one of companies (a made-up authority code with a valid check character)."""
    return [
        LicenseType(
            code="11100000000013338W032",
            name="建筑施工特种作业人员操作资格证书",
            authority="中华人民共和国住房和城乡建设部",
            holder_kind="person",
            holder_code_types=("111",),
            validity_years=2,
            qr_name="masked",
            schema={
                "type": "object",
                "additionalProperties": False,
                "required": ["gender", "birth_date", "category"],
                "properties": {
                    "gender": {"enum": ["男", "女"]},
                    "birth_date": {"type": "string", "format": "date"},
                    "category": {
                        "enum": ["建筑电工", "建筑架子工", "建筑起重信号司索工", "建筑焊工"]
                    },
                    "first_issue": {"type": "string", "format": "date"},
                },
            },
            labels={
                "gender": "性别",
                "birth_date": "出生日期",
                "category": "操作类别",
                "first_issue": "初次领证日期",
            },
            example={"gender": "男", "birth_date": "1990-03-07", "category": "建筑电工"},
        ),
        LicenseType(
            code="11100000MB0143028R001",
            name="营业执照",
            authority="国家市场监督管理总局（示范）",
            holder_kind="organisation",
            holder_code_types=("001",),
            validity_years=None,
            qr_name="full",
            schema={
                "type": "object",
                "additionalProperties": False,
                "required": ["company_type", "legal_representative", "founded", "address"],
                "properties": {
                    "company_type": text_schema(50),
                    "legal_representative": text_schema(50),
                    "registered_capital": text_schema(50),
                    "founded": {"type": "string", "format": "date"},
                    "address": text_schema(200),
                    "business_scope": text_schema(500),
                },
            },
            labels={
                "company_type": "类型",
                "legal_representative": "法定代表人",
                "registered_capital": "注册资本",
                "founded": "成立日期",
                "address": "住所",
                "business_scope": "经营范围",
            },
            example={
                "company_type": "有限责任公司（自然人投资或控股）",
                "legal_representative": "王五",
                "registered_capital": "壹佰万元整",
                "founded": "2019-05-20",
                "address": "内蒙古自治区锡林郭勒盟锡林浩特市示范路1号",
                "business_scope": "软件开发；信息技术咨询服务。",
            },
        ),
    ]


DEMO_HOLDERS = {
    "11100000000013338W032": ("张三", "152501199003071234", "111"),
    "11100000MB0143028R001": ("锡林浩特示范科技有限公司", "91152502MA0N1A2B3A", "001"),
}


def _demo_licenses(rt: Runtime) -> list[str]:
    """The demo department, both license types and one license of each, unless present."""
    from etrust.cli_io import actor
    from etrust.licenses import department_signer, license_service
    from license_store.issuance import IssueRequest

    service = license_service(rt)
    registry = service.registry
    registry.add_department(DEMO_DEPARTMENT_CODE, DEMO_DEPARTMENT, DEMO_DEPARTMENT_USCC, DEMO_AREA)
    have = {t.code for t, _ in registry.license_types()}
    made = []
    for license_type in demo_license_types():
        if license_type.code in have:
            continue
        registry.define_type(license_type, [DEMO_DEPARTMENT_CODE])
        name, code, code_type = DEMO_HOLDERS[license_type.code]
        issued = service.issue(
            IssueRequest(
                type_code=license_type.code,
                department=DEMO_DEPARTMENT_CODE,
                holder_name=name,
                holder_code=code,
                holder_code_type=code_type,
                data=license_type.example,
            ),
            department_signer(rt, DEMO_DEPARTMENT_CODE),
            actor(),
        )
        made.append(f"license type {license_type.code} and license {issued.license.identifier}")
    return made
