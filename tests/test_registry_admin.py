"""Setting up a production home's registry: departments and license types by command line and
admin API, on a fresh home (``init`` without ``--demo``: nothing exists) and on a demo home.
The example of docs/license-types.md defines a type that issues; every refusal is tried, and
the audit records of it all are checked."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.audit import AuditRecord
from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE, DEMO_DEPARTMENT_USCC, demo_license_types
from etrust.registry_ops import definition_of
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from tests.officers import api_headers

pytest_plugins = ["tests.db_fixtures"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "license-types.md"
DEPT = "150100-scjg"
DEPT_NAME = "呼和浩特市市场监督管理局"
DEPT_USCC = "11150100MB1A2C3D06"
OTHER_USCC = "12150100MB1A2C3D03"
HOLDER_USCC = "91150102MA0R8K2M23"


def doc_example() -> dict[str, Any]:
    """The complete definition in docs/license-types.md: the documented format must define."""
    block = re.search(r"```json\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert block is not None
    found: dict[str, Any] = json.loads(block.group(1))
    return found


FOOD = doc_example()


def etrust(home: Path, *args: str) -> tuple[int, Any]:
    """``etrust --home HOME ARGS --json``: the exit code and the JSON it printed."""
    out = StringIO()
    with redirect_stdout(out):
        code = main(["--home", str(home), *args, "--json"])
    return code, json.loads(out.getvalue())


def ok(home: Path, *args: str) -> Any:
    code, answer = etrust(home, *args)
    assert code == 0, answer
    return answer


def refused(home: Path, *args: str) -> dict[str, str]:
    """A command that must fail: its JSON error (``error`` code and ``message``)."""
    code, answer = etrust(home, *args)
    assert code == 1, answer
    error: dict[str, str] = answer
    return error


def write(path: Path, definition: dict[str, Any]) -> str:
    path.write_text(json.dumps(definition, ensure_ascii=False, indent=2), "utf-8")
    return str(path)


def audit_records(home: Path, action: str) -> list[AuditRecord]:
    rt = open_runtime(load_settings(home))
    try:
        return [r for r in rt.audit.records(limit=100_000) if r.event.action == action]
    finally:
        rt.close()


def add_department(home: Path, uscc: str = DEPT_USCC, name: str = DEPT_NAME) -> Any:
    return etrust(
        home, "department", "add", DEPT, "--name", name, "--uscc", uscc, "--area", "150100"
    )


def define(home: Path, definition: dict[str, Any], *issuers: str) -> tuple[int, Any]:
    path = write(home / "definition.json", definition)
    return etrust(
        home, "license-type", "define", path, *(a for i in issuers for a in ("--issuer", i))
    )


def issue(home: Path, data: dict[str, Any]) -> str:
    issued = ok(
        home,
        *("license", "issue", "--type", FOOD["code"], "--department", DEPT),
        *("--holder-name", "呼和浩特示范餐饮有限公司", "--holder-code", HOLDER_USCC),
        *("--holder-code-type", "001", "--number", "JY21501020012345"),
        *("--data", json.dumps(data, ensure_ascii=False)),
    )
    identifier: str = issued["identifier"]
    return identifier


def build_home(home: Path) -> str:
    """``init`` (no demo), the department, its seal, the documented type and a license of it,
    checking each step; answers the license's identifier."""
    assert main(["--home", str(home), "init"]) == 0
    assert ok(home, "department", "list") == []
    assert ok(home, "license-type", "list") == []

    code, added = add_department(home)
    assert code == 0, added
    assert added == {
        "code": DEPT,
        "name": DEPT_NAME,
        "uscc": DEPT_USCC,
        "area_code": "150100",
        "created": True,
        "changed": [],
    }
    assert ok(home, "department", "list") == [
        {"code": DEPT, "name": DEPT_NAME, "uscc": DEPT_USCC, "area_code": "150100"}
    ]
    code, defined = define(home, FOOD, DEPT)
    assert code == 0, defined
    assert (defined["code"], defined["created"], defined["issuers"]) == (FOOD["code"], True, [DEPT])
    shown = ok(home, "license-type", "show", FOOD["code"])
    assert list(shown["labels"]) == list(FOOD["labels"])  # the print order is kept
    assert shown["authority_code"] == FOOD["code"][:18]

    ok(home, "seal", "create", "--department", DEPT, "--name", DEPT_NAME)
    identifier = issue(home, FOOD["example"])
    assert f".{FOOD['code']}.{DEPT_USCC}." in identifier  # the department's USCC is the issuer
    lic = ok(home, "license", "show", identifier)
    assert lic["status"] == "valid"
    assert lic["data"]["business_items"] == ["热食类食品制售", "自制饮品制售"]
    return identifier


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh SQLite home set up by build_home (shared: tests leave it as they found it)."""
    path = tmp_path_factory.mktemp("registry")
    return path, build_home(path)


# --- a fresh home, end to end (SQLite and PostgreSQL) ----------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_home(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_database")
        monkeypatch.setenv("ETRUST_DATABASE_URL", url)
    return tmp_path / "home"


def test_a_fresh_home_issues_after_set_up(fresh_home: Path) -> None:
    identifier = build_home(fresh_home)

    # export, then define what was exported: the same type, nothing written
    out = fresh_home / "exported.json"
    ok(fresh_home, "license-type", "export", FOOD["code"], "--out", str(out))
    exported = json.loads(out.read_text("utf-8"))
    assert exported == FOOD and list(exported["labels"]) == list(FOOD["labels"])
    again = ok(fresh_home, "license-type", "define", str(out), "--issuer", DEPT)
    assert (again["created"], again["changed"]) == (False, [])
    assert (
        refused(fresh_home, "license-type", "export", FOOD["code"], "--out", str(out))["error"]
        == "MALFORMED_INPUT"
    )  # never over an existing file

    # the USCC of a department that has issued is in its identifiers: it stays
    code, error = add_department(fresh_home, OTHER_USCC)
    assert (code, error["error"]) == (1, "REGISTRY_IN_USE")
    assert identifier in error["message"]
    assert ok(fresh_home, "department", "list")[0]["uscc"] == DEPT_USCC

    # a compatible redefinition: a new optional field
    wider = copy.deepcopy(FOOD)
    wider["schema"]["properties"]["remarks"] = {"type": "string", "maxLength": 200}
    wider["labels"]["remarks"] = "备注"
    code, changed = define(fresh_home, wider, DEPT)
    assert code == 0, changed
    assert changed["changed"] == ["schema", "labels"]

    departments = audit_records(fresh_home, "registry.department")
    assert [(r.event.outcome, r.event.target) for r in departments] == [
        ("success", DEPT),
        ("refused", DEPT),
    ]
    assert departments[0].event.actor.startswith("cli:")
    assert departments[0].event.detail["uscc"] == DEPT_USCC
    assert departments[1].event.detail == {"error": "REGISTRY_IN_USE"}
    types = audit_records(fresh_home, "registry.type")
    assert [(r.event.outcome, r.event.detail.get("created")) for r in types] == [
        ("success", True),  # defined; its export defined again changed nothing: no record
        ("success", False),
    ]
    assert types[1].event.detail["changed"] == ["schema", "labels"]


# --- departments --------------------------------------------------------------------------------


def test_department_changes_and_refusals(home: tuple[Path, str]) -> None:
    path, _ = home
    code, renamed = add_department(path, name="呼和浩特市市场监管局")
    assert (code, renamed["created"], renamed["changed"]) == (0, False, ["name"])
    code, same = add_department(path, name="呼和浩特市市场监管局")
    assert (code, same["changed"]) == (0, [])
    code, _ = add_department(path)  # back as it was
    assert code == 0

    bad_check = DEPT_USCC[:-1] + "7"
    code, error = add_department(path, bad_check)
    assert (code, error["error"]) == (1, "HOLDER_CODE_INVALID")
    assert "department's USCC" in error["message"] and "check character" in error["message"]
    area = ("--name", "x", "--uscc", OTHER_USCC)
    error = refused(path, "department", "add", "other", *area, "--area", "15010")
    assert error["error"] == "MALFORMED_INPUT" and "area code" in error["message"]
    error = refused(path, "department", "add", "bad code!", *area, "--area", "150100")
    assert error["error"] == "MALFORMED_INPUT"
    taken = ("--name", "另一部门", "--uscc", DEPT_USCC, "--area", "150100")
    error = refused(path, "department", "add", "150100-other", *taken)
    assert error["error"] == "CONFLICT" and DEPT in error["message"]
    assert [d["code"] for d in ok(path, "department", "list")] == [DEPT]


# --- license types: what a definition may not be ---------------------------------------------


def _with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    definition = copy.deepcopy(FOOD)
    change(definition)
    return definition


def _set(*path_and_value: Any) -> Callable[[dict[str, Any]], None]:
    *keys, value = path_and_value

    def change(definition: dict[str, Any]) -> None:
        node = definition
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


BAD_DEFINITIONS = {
    "wrong check character in the type code": (
        _set("code", "11100000MB0159273Y101"),
        "defining authority's USCC is wrong",
    ),
    "type code too short": (_set("code", "11100000MB0159273X01"), "18-character USCC"),
    "schema not valid JSON Schema": (
        _set("schema", "properties", "address", {"type": "text"}),
        "schema is not valid",
    ),
    "schema of no object": (_set("schema", "type", "array"), "describes an object"),
    "label of an unknown field": (
        _set("labels", "colour", "颜色"),
        "labels for fields the schema does not have: ['colour']",
    ),
    "example not matching": (
        _set("example", "business_form", "网吧"),
        "example does not match the schema",
    ),
    "unknown key": (_set("validity", 5), "unknown keys ['validity']"),
    "missing key": (lambda d: d.pop("labels"), "missing keys ['labels']"),
    "validity as text": (_set("validity_years", "5"), "validity_years is a whole number"),
    "unknown holder code type": (_set("holder_code_types", ["777"]), "unknown holder code"),
    "a person's code type for an organisation": (
        _set("holder_code_types", ["001", "111"]),
        "code type 111",
    ),
    "a label every license prints": (_set("labels", "signer", "发证日期"), "ambiguous: 发证日期"),
    "two fields printed alike": (_set("labels", "premises", "住所"), "ambiguous: 住所"),
    "a field named like a standard column": (
        _set("schema", "properties", "holder_name", {"type": "string"}),
        "ambiguous: holder_name",
    ),
    "a reference outside the schema": (
        _set("schema", "properties", "address", {"$ref": "https://example.com/address.json"}),
        "refers to 'https://example.com/address.json'",
    ),
    "a reference to nothing": (
        _set("schema", "properties", "address", {"$ref": "#/$defs/address"}),
        "refers to '#/$defs/address'",
    ),
    "a multi-line label": (_set("labels", "signer", "签\n发人"), "label of signer is one line"),
}


@pytest.mark.parametrize("case", BAD_DEFINITIONS)
def test_definitions_refused(home: tuple[Path, str], case: str) -> None:
    path, _ = home
    change, message = BAD_DEFINITIONS[case]
    code, error = define(path, _with(change), DEPT)
    assert (code, error["error"]) == (1, "LICENSE_TYPE_INVALID"), error
    assert message in error["message"]


def test_definition_files_refused(home: tuple[Path, str]) -> None:
    path, _ = home
    text = json.dumps(FOOD, ensure_ascii=False)
    cases = {
        "not json": ("{", "is not JSON"),
        "a key twice": (text[:-1] + ', "qr_name": "full"}', "key 'qr_name' is given twice"),
        "no object": ("[]", "holds a JSON object"),
    }
    for content, message in cases.values():
        (path / "bad.json").write_text(content, "utf-8")
        error = refused(path, "license-type", "define", str(path / "bad.json"), "--issuer", DEPT)
        assert error["error"] == "LICENSE_TYPE_INVALID" and message in error["message"], error
    error = refused(path, "license-type", "define", str(path / "missing.json"), "--issuer", DEPT)
    assert error["error"] == "MALFORMED_INPUT"
    code, error = define(path, FOOD, "no-such-department")
    assert (code, error["error"]) == (1, "LICENSE_TYPE_INVALID")
    assert "no department 'no-such-department'" in error["message"]


# --- license types: redefinitions that issued licenses would not survive -------------------


def test_redefinitions_keep_issued_licenses_valid(home: tuple[Path, str]) -> None:
    path, identifier = home
    before = ok(path, "license-type", "show", FOOD["code"])

    def narrower(d: dict[str, Any]) -> None:
        d["schema"]["properties"]["business_form"]["enum"].remove("餐饮服务经营者")
        d["example"]["business_form"] = "食品销售经营者"

    def required_signer(d: dict[str, Any]) -> None:
        d["schema"]["required"].append("signer")
        d["example"]["signer"] = "孙七"

    def person(d: dict[str, Any]) -> None:
        d["holder_kind"], d["holder_code_types"] = "person", ["111"]

    cases: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (narrower, "business_form: enum"),
        (required_signer, "(fields): required"),
        (person, "holder kind stays"),
        (_set("holder_code_types", ["099"]), "code types 001"),
    ]
    for change, message in cases:
        code, error = define(path, _with(change), DEPT)
        assert (code, error["error"]) == (1, "REGISTRY_IN_USE"), error
        assert message in error["message"]
        if change in (narrower, required_signer):
            assert f"license {identifier} does not match the new schema" in error["message"]
            assert "餐饮服务经营者" not in error["message"]  # where and why, never the values
    assert ok(path, "license-type", "show", FOOD["code"]) == before  # nothing changed

    # A second license the narrower schema also refuses: named as one more.
    second = issue(path, FOOD["example"])
    code, error = define(path, _with(narrower), DEPT)
    assert f"license {identifier} " in error["message"] and "1 more licenses" in error["message"]
    assert second not in error["message"]

    # What every license survives: a new print order, another validity, more code types.
    def reordered(d: dict[str, Any]) -> None:
        d["labels"] = dict(reversed(list(d["labels"].items())))
        d["validity_years"] = 3
        d["holder_code_types"] = ["001", "099"]

    code, changed = define(path, _with(reordered), DEPT)
    assert code == 0, changed
    assert changed["changed"] == ["labels", "holder_code_types", "validity_years"]
    assert next(iter(ok(path, "license-type", "show", FOOD["code"])["labels"])) == "signer"
    code, back = define(path, FOOD, DEPT)
    assert (code, back["changed"]) == (0, ["labels", "holder_code_types", "validity_years"])
    refusals = [
        r.event.detail
        for r in audit_records(path, "registry.type")
        if r.event.outcome == "refused" and r.event.target == FOOD["code"]
    ]
    assert {"error": "REGISTRY_IN_USE"} in refusals


# --- a demo home -----------------------------------------------------------------------------


def test_demo_home(tmp_path: Path) -> None:
    assert main(["--home", str(tmp_path), "init", "--demo"]) == 0
    worker = demo_license_types()[0]
    out = tmp_path / "worker.json"
    ok(tmp_path, "license-type", "export", worker.code, "--out", str(out))
    exported = json.loads(out.read_text("utf-8"))
    assert exported == definition_of(worker)
    again = ok(tmp_path, "license-type", "define", str(out), "--issuer", DEMO_DEPARTMENT_CODE)
    assert again["changed"] == []

    # the demo license is a 建筑电工: a schema without that category is refused
    exported["schema"]["properties"]["category"]["enum"].remove("建筑电工")
    exported["example"]["category"] = "建筑焊工"
    code, error = define(tmp_path, exported, DEMO_DEPARTMENT_CODE)
    assert (code, error["error"]) == (1, "REGISTRY_IN_USE")
    assert f".{worker.code}.{DEMO_DEPARTMENT_USCC}." in error["message"]

    dept = ok(tmp_path, "department", "list")[0]
    moved = ("--name", dept["name"], "--uscc", OTHER_USCC, "--area", dept["area_code"])
    error = refused(tmp_path, "department", "add", DEMO_DEPARTMENT_CODE, *moved)
    assert error["error"] == "REGISTRY_IN_USE"
    renamed = ("--name", "示范盟市场监管局", "--uscc", dept["uscc"], "--area", dept["area_code"])
    assert ok(tmp_path, "department", "add", DEMO_DEPARTMENT_CODE, *renamed)["changed"] == ["name"]


# --- the admin API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(home: tuple[Path, str]) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home[0]))) as c:
        yield c


def test_api_is_for_admins(home: tuple[Path, str], client: TestClient) -> None:
    path, _ = home
    body = {"name": "x", "uscc": OTHER_USCC, "area_code": "150100"}
    for name, role, department in (
        ("ra-1", "ra-officer", None),
        ("dept-1", "department", DEPT),
        ("auditor-1", "auditor", None),
    ):
        headers = api_headers(path, name, role, department)
        assert client.get("/api/v1/departments", headers=headers).status_code == 403
        resp = client.put("/api/v1/departments/150102-x", json=body, headers=headers)
        assert (resp.status_code, resp.json()["code"]) == (403, "FORBIDDEN")
        resp = client.put(
            f"/api/v1/license-types/{FOOD['code']}",
            json={**FOOD, "issuers": [DEPT]},
            headers=headers,
        )
        assert resp.status_code == 403
    assert client.get("/api/v1/departments").status_code == 401
    assert [d["code"] for d in ok(path, "department", "list")] == [DEPT]


def test_api_admin_sets_up(home: tuple[Path, str], client: TestClient) -> None:
    path, identifier = home
    admin = api_headers(path, "registry-admin", "admin")
    code = "150102-scjg"
    body = {"name": "呼和浩特市新城区市场监督管理局", "uscc": OTHER_USCC, "area_code": "150102"}
    resp = client.put(f"/api/v1/departments/{code}", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {**body, "code": code, "created": True, "changed": []}
    resp = client.put(
        f"/api/v1/departments/{code}", json={**body, "name": "新城区市场监管局"}, headers=admin
    )
    assert (resp.status_code, resp.json()["changed"]) == (200, ["name"])
    listed = client.get("/api/v1/departments", headers=admin).json()
    assert [d["code"] for d in listed] == [DEPT, code]
    resp = client.put(
        f"/api/v1/departments/{code}", json={**body, "uscc": OTHER_USCC[:-1] + "4"}, headers=admin
    )
    assert (resp.status_code, resp.json()["code"]) == (400, "HOLDER_CODE_INVALID")
    resp = client.put(
        f"/api/v1/departments/{DEPT}", json={**body, "uscc": "91150100MB1A2C3D0X"}, headers=admin
    )
    assert (resp.status_code, resp.json()["code"]) == (409, "REGISTRY_IN_USE")
    assert identifier in resp.json()["detail"]
    resp = client.put(f"/api/v1/departments/{code}", json={**body, "extra": 1}, headers=admin)
    assert resp.status_code == 422

    # a second type, by the API, issued by both departments
    new_code = FOOD["code"][:-3] + "102"
    second = {k: v for k, v in FOOD.items() if k != "code"}  # the address names it
    second["name"] = "食品经营许可证（第二类）"
    url = f"/api/v1/license-types/{new_code}"
    resp = client.put(url, json={**second, "issuers": [DEPT, code]}, headers=admin)
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert (made["code"], made["issuers"], made["created"]) == (new_code, [DEPT, code], True)
    assert client.get(url, headers=admin).json()["labels"] == FOOD["labels"]
    resp = client.put(url, json={**second, "issuers": [DEPT, code]}, headers=admin)
    assert (resp.status_code, resp.json()["changed"]) == (200, [])
    resp = client.put(url, json={**second, "issuers": [DEPT]}, headers=admin)
    assert resp.json()["changed"] == ["issuers"]

    # the same checks as the command line (requests of the wrong shape are no attempt to
    # change the registry: they are refused before it, and not recorded)
    resp = client.put(url, json={**second, "code": FOOD["code"], "issuers": [DEPT]}, headers=admin)
    assert (resp.status_code, resp.json()["code"]) == (400, "LICENSE_TYPE_INVALID")
    bad = {**_with(_set("labels", "colour", "颜色")), "code": new_code}
    resp = client.put(url, json={**bad, "issuers": [DEPT]}, headers=admin)
    assert (resp.status_code, resp.json()["code"]) == (400, "LICENSE_TYPE_INVALID")
    assert "labels for fields the schema does not have" in resp.json()["detail"]
    resp = client.put(url, json={**second, "issuers": ["nobody"]}, headers=admin)
    assert (resp.status_code, resp.json()["code"]) == (400, "LICENSE_TYPE_INVALID")
    resp = client.put(url, json={**second, "issuers": []}, headers=admin)
    assert resp.status_code == 422
    resp = client.put(url, json={**second, "validity_years": "5", "issuers": [DEPT]}, headers=admin)
    assert resp.status_code == 422  # strict: no text for a number
    narrower = _with(_set("schema", "properties", "business_form", {"enum": ["单位食堂"]}))
    narrower["example"]["business_form"] = "单位食堂"
    resp = client.put(
        f"/api/v1/license-types/{FOOD['code']}", json={**narrower, "issuers": [DEPT]}, headers=admin
    )
    assert (resp.status_code, resp.json()["code"]) == (409, "REGISTRY_IN_USE")
    assert identifier in resp.json()["detail"]

    by_api = [
        (r.event.action, r.event.target, r.event.outcome)
        for action in ("registry.department", "registry.type")
        for r in audit_records(path, action)
        if r.event.actor == "api:registry-admin"
    ]
    assert by_api == [
        ("registry.department", code, "success"),
        ("registry.department", code, "success"),
        ("registry.department", code, "refused"),
        ("registry.department", DEPT, "refused"),
        ("registry.type", new_code, "success"),  # the same again changed nothing: no record
        ("registry.type", new_code, "success"),
        ("registry.type", new_code, "refused"),
        ("registry.type", new_code, "refused"),
        ("registry.type", FOOD["code"], "refused"),
    ]
