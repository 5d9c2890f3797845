"""The registry's set-up, shared by ``etrust department`` / ``etrust license-type define`` and
the admin API: departments and license types, with the checks that keep every license already
issued valid, and an audit record of each change (and of each refused one).

A license type is written and read in one JSON format (``docs/license-types.md``), so
``define(export(x))`` gives back ``x``. Redefining a type may not break what was issued under it:
the new schema must accept the stored fields of every license of the type, the holder kind may
not change once licenses exist, and a holder code type in use stays. A department's USCC is the
issuer code inside every identifier it issued, so it is fixed once the department has issued.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry as SchemaRegistry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select

from etrust.audit import AuditEvent
from etrust.cli_io import read_file
from etrust.runtime import Runtime
from license_store.bulk_import import STANDARD_COLUMNS
from license_store.errors import (
    HolderCodeError,
    LicenseDataError,
    LicenseTypeError,
    RegistryInUseError,
)
from license_store.holder_codes import HOLDER_CODE_TYPES, check_uscc
from license_store.models import DepartmentRow, LicenseRow
from license_store.registry import Department, Registry
from license_store.types import LicenseType
from signing.jcs import canonicalize
from storage.engine import transaction
from trust.errors import ConflictError, EtrustError, NotFoundError

DEPARTMENT_ACTION = "registry.department"
TYPE_ACTION = "registry.type"

MAX_DEFINITION_BYTES = 1024 * 1024
"""A type definition file: a schema, labels and an example, not a data set."""

REQUIRED_KEYS = (
    "code",
    "name",
    "authority",
    "holder_kind",
    "schema",
    "labels",
    "holder_code_types",
    "validity_years",
)
OPTIONAL_KEYS: Mapping[str, Any] = {"qr_name": "masked", "example": {}}
"""Keys a definition may leave out, with what they then are (``export`` writes them all)."""

FACE_LABELS = ("持证人", "持证单位", "证照编号", "有效期", "发证机关", "发证日期")
"""Lines every license prints besides its fields (license_store/render.py): a field's label
that repeated one would make the document ambiguous."""

_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
"""Schema keywords whose values are data, not schemas: no references inside them."""


@dataclass(frozen=True)
class DepartmentChange:
    department: Department
    created: bool
    changed: list[str] = field(default_factory=list)
    """The fields that changed (empty: nothing did, and nothing was written)."""

    def to_dict(self) -> dict[str, Any]:
        return {**self.department.to_dict(), "created": self.created, "changed": self.changed}


@dataclass(frozen=True)
class TypeChange:
    license_type: LicenseType
    issuers: list[str]
    created: bool
    changed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.license_type.to_dict(self.issuers),
            "created": self.created,
            "changed": self.changed,
        }


# --- departments -------------------------------------------------------------------------------


def departments(rt: Runtime) -> list[Department]:
    return Registry(rt.sessions).departments()


def put_department(
    rt: Runtime, actor: str, code: str, name: str, uscc: str, area_code: str
) -> DepartmentChange:
    """Create a department or change its name, area or (before it has issued) its USCC."""
    event = AuditEvent(actor, DEPARTMENT_ACTION, code)
    registry = Registry(rt.sessions)
    try:
        try:
            uscc = check_uscc(uscc)
        except HolderCodeError as exc:
            raise HolderCodeError(f"the department's USCC: {exc.message}") from exc
        old = _department(registry, code)
        with transaction(rt.sessions) as session:
            owner = session.scalar(select(DepartmentRow.code).where(DepartmentRow.uscc == uscc))
            if owner is not None and owner != code:
                raise ConflictError(f"USCC {uscc} is department {owner!r}'s")
            if old is not None and old.uscc != uscc:
                issued = session.scalar(
                    select(LicenseRow.identifier)
                    .where(LicenseRow.department == code)
                    .order_by(LicenseRow.id)
                    .limit(1)
                )
                if issued is not None:
                    raise RegistryInUseError(
                        f"department {code!r} has issued licenses (e.g. {issued}): its USCC "
                        f"{old.uscc} is the issuer code inside their identifiers and stays"
                    )
        department = registry.add_department(code, name, uscc, area_code)
    except EtrustError as exc:
        rt.record(replace(event, outcome="refused", detail={"error": exc.code}))
        raise
    changed = (
        [k for k, v in department.to_dict().items() if old.to_dict()[k] != v]
        if old is not None
        else []
    )
    if old is None or changed:
        detail = {**department.to_dict(), "created": old is None, "changed": changed}
        rt.record(replace(event, detail=detail))
    return DepartmentChange(department, old is None, changed)


def _department(registry: Registry, code: str) -> Department | None:
    try:
        return registry.department(code)
    except NotFoundError:
        return None


# --- license types -----------------------------------------------------------------------------


def read_definition(path: str) -> dict[str, Any]:
    """A definition file (UTF-8 JSON, one object; a key given twice is refused)."""
    raw = read_file(path, MAX_DEFINITION_BYTES)
    try:
        data = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise LicenseTypeError(f"{path} is not UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise LicenseTypeError(f"{path} is not JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise LicenseTypeError(f"{path} holds a JSON object (see docs/license-types.md)")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise LicenseTypeError(f"key {key!r} is given twice")
        found[key] = value
    return found


def definition_of(license_type: LicenseType) -> dict[str, Any]:
    """A type in the definition format (what ``export`` writes and ``define`` reads)."""
    return {
        "code": license_type.code,
        "name": license_type.name,
        "authority": license_type.authority,
        "holder_kind": license_type.holder_kind,
        "schema": license_type.schema,
        "labels": dict(license_type.labels),
        "holder_code_types": list(license_type.holder_code_types),
        "validity_years": license_type.validity_years,
        "qr_name": license_type.qr_name,
        "example": dict(license_type.example),
    }


def export_type(rt: Runtime, code: str) -> dict[str, Any]:
    return definition_of(Registry(rt.sessions).license_type(code))


def parse_definition(data: Mapping[str, Any]) -> LicenseType:
    """A coherent license type from the definition format, else LicenseTypeError naming what
    is wrong: the shape here, then :meth:`LicenseType.checked`, then what issuing, printing
    and importing licenses of the type need of it."""
    unknown = sorted(k for k in data if k not in REQUIRED_KEYS and k not in OPTIONAL_KEYS)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if unknown or missing:
        problems = [f"unknown keys {unknown}"] if unknown else []
        problems += [f"missing keys {missing}"] if missing else []
        raise LicenseTypeError(
            f"a type definition has the keys {', '.join((*REQUIRED_KEYS, *OPTIONAL_KEYS))}: "
            + "; ".join(problems)
        )
    spec = {**OPTIONAL_KEYS, **data}
    for key in ("code", "name", "authority", "holder_kind", "qr_name"):
        _expect(spec, key, str, "a string")
    for key in ("schema", "labels", "example"):
        _expect(spec, key, dict, "a JSON object")
    _expect(spec, "holder_code_types", list, 'a list of code types, e.g. ["111"]')
    years = spec["validity_years"]
    if years is not None and (isinstance(years, bool) or not isinstance(years, int)):
        raise LicenseTypeError("validity_years is a whole number of years, or null (长期)")
    name, authority = _line(spec["name"], "name"), _line(spec["authority"], "authority")
    code_types = spec["holder_code_types"]
    if not all(isinstance(c, str) for c in code_types) or len(set(code_types)) != len(code_types):
        raise LicenseTypeError("holder_code_types lists distinct code types (strings)")
    labels: dict[str, str] = {}
    for field_name, label in spec["labels"].items():
        if not isinstance(label, str):
            raise LicenseTypeError(f"the label of {field_name} is text")
        labels[field_name] = _line(label, f"label of {field_name}", 50)
    license_type = LicenseType(
        code=spec["code"],
        name=name,
        authority=authority,
        holder_kind=spec["holder_kind"],
        schema=spec["schema"],
        labels=labels,
        holder_code_types=tuple(code_types),
        validity_years=years,
        qr_name=spec["qr_name"],
        example=spec["example"],
    )
    # Without the example first: validating it would follow references not yet checked.
    replace(license_type, example={}).checked()
    _check_holder_codes(license_type)
    _check_names(license_type)
    _check_references(license_type.schema)
    try:
        return license_type.checked()
    except LicenseDataError as exc:  # the only data checked() validates is the example
        raise LicenseTypeError(f"the example does not match the schema: {exc.message}") from exc


def _expect(spec: Mapping[str, Any], key: str, kind: type, what: str) -> None:
    if not isinstance(spec[key], kind):
        raise LicenseTypeError(f"{key} is {what}")


def _line(text: str, what: str, limit: int = 200) -> str:
    text = text.strip()
    if not 1 <= len(text) <= limit or "\n" in text or "\r" in text:
        raise LicenseTypeError(f"the {what} is one line of 1-{limit} characters")
    return text


def _check_holder_codes(license_type: LicenseType) -> None:
    """GB/T 36903 Appendix A: 0xx codes name organisations, the others persons."""
    for code in license_type.holder_code_types:
        if (code.startswith("0")) != (license_type.holder_kind == "organisation"):
            raise LicenseTypeError(
                f"code type {code} ({HOLDER_CODE_TYPES.get(code, '?')}) cannot name a holder "
                f"of kind {license_type.holder_kind}"
            )


def _check_names(license_type: LicenseType) -> None:
    """Field names and labels must say one thing each: on the document (a label the face
    already prints, or two fields printed alike) and as columns of a bulk import."""
    reserved = {*FACE_LABELS, *HOLDER_CODE_TYPES.values()}
    for column, aliases in STANDARD_COLUMNS.items():
        reserved.update((column, *aliases))
    meanings: dict[str, set[str]] = {alias: {"(every license)"} for alias in reserved}
    for name in license_type.schema.get("properties", {}):
        for alias in {name, license_type.labels.get(name)}:
            if alias:
                meanings.setdefault(alias, set()).add(f"field {name}")
    clashes = sorted(alias for alias, meant in meanings.items() if len(meant) > 1)
    if clashes:
        raise LicenseTypeError(
            "field names and labels must be distinct from each other and from the standard "
            f"lines and columns of a license ({', '.join(STANDARD_COLUMNS)}, "
            f"{', '.join(FACE_LABELS)}); these are ambiguous: {', '.join(clashes)}"
        )


def _check_references(schema: Mapping[str, Any]) -> None:
    """Every ``$ref`` must point inside the schema: nothing is fetched, and a reference that
    leads nowhere would otherwise fail only when a license is issued."""
    resource = DRAFT202012.create_resource(schema)
    base = resource.id() or ""
    resolver = SchemaRegistry().with_resource(base, resource).resolver(base_uri=base)
    for ref in _references(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise LicenseTypeError(
                f"the schema refers to {ref!r}, which it does not hold (only references inside "
                "the schema are followed, e.g. #/$defs/address)"
            ) from None


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield value
            elif key not in _DATA_KEYWORDS:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def define_type(
    rt: Runtime, actor: str, definition: Mapping[str, Any], issuers: Sequence[str]
) -> TypeChange:
    """Define a license type, or redefine one in a way every license issued under it
    survives; ``issuers`` (the departments that may issue it) replace the current ones."""
    code = definition.get("code")
    event = AuditEvent(actor, TYPE_ACTION, code if isinstance(code, str) else None)
    registry = Registry(rt.sessions)
    try:
        new = parse_definition(definition)
        wanted = _issuers(rt, issuers)
        try:
            old: LicenseType | None = registry.license_type(new.code)
            old_issuers = registry.issuers(new.code)
        except NotFoundError:
            old, old_issuers = None, []
        if old is not None:
            _check_compatible(rt, old, new)
        changed = _changes(old, old_issuers, new, wanted)
        if changed or old is None:
            registry.define_type(new, wanted)
    except EtrustError as exc:
        rt.record(replace(event, outcome="refused", detail={"error": exc.code}))
        raise
    if changed or old is None:
        detail = {
            "created": old is None,
            "changed": changed,
            "name": new.name,
            "issuers": wanted,
            "definition_sha256": hashlib.sha256(canonicalize(definition_of(new))).hexdigest(),
        }
        rt.record(replace(event, detail=detail))
    return TypeChange(new, wanted, old is None, changed)


def _issuers(rt: Runtime, issuers: Sequence[str]) -> list[str]:
    wanted = sorted(set(issuers))
    if not wanted:
        raise LicenseTypeError("name at least one issuing department")
    with transaction(rt.sessions) as session:
        known = set(
            session.scalars(select(DepartmentRow.code).where(DepartmentRow.code.in_(wanted)))
        )
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise LicenseTypeError(
            f"no department {', '.join(map(repr, unknown))}: add it first (etrust department add)"
        )
    return wanted


def _changes(
    old: LicenseType | None, old_issuers: list[str], new: LicenseType, issuers: list[str]
) -> list[str]:
    if old is None:
        return []
    before, after = definition_of(old), definition_of(new)
    # json.dumps without sort_keys: a new print order of the labels is a change too.
    changed = [k for k in after if json.dumps(before[k]) != json.dumps(after[k])]
    return changed + (["issuers"] if old_issuers != issuers else [])


def _check_compatible(rt: Runtime, old: LicenseType, new: LicenseType) -> None:
    """RegistryInUseError unless every license stored under ``old`` is valid under ``new``
    (all versions and statuses: a superseded or revoked license is still shown and verified)."""
    code = new.code
    with transaction(rt.sessions) as session:
        of_type = LicenseRow.type_code == code
        count = session.scalar(select(func.count()).select_from(LicenseRow).where(of_type)) or 0
        if not count:
            return
        if new.holder_kind != old.holder_kind:
            raise RegistryInUseError(
                f"type {code} has {count} licenses of {old.holder_kind} holders: "
                "its holder kind stays"
            )
        in_use = set(session.scalars(select(LicenseRow.holder_code_type).where(of_type).distinct()))
        dropped = sorted(in_use - set(new.holder_code_types))
        if dropped:
            raise RegistryInUseError(
                f"licenses of type {code} are held under code types {', '.join(dropped)}: "
                "keep them in holder_code_types"
            )
        if canonicalize(old.schema) == canonicalize(new.schema):
            return
        # The same validator LicenseType.validate builds; stored fields are already the
        # canonical JSON it would produce, so each row is parsed and checked, nothing more.
        validator = Draft202012Validator(new.schema, format_checker=FormatChecker())
        rows = session.execute(
            select(LicenseRow.identifier, LicenseRow.data)
            .where(of_type)
            .order_by(LicenseRow.id)
            .execution_options(yield_per=1000)
        )
        first, problems, failing = "", "", 0
        for identifier, data in rows:
            errors = list(validator.iter_errors(json.loads(data)))
            if errors:
                failing += 1
                if not first:
                    first, problems = identifier, _summary(errors)
    if failing:
        others = f"; {failing - 1} more licenses fail it too" if failing > 1 else ""
        raise RegistryInUseError(
            f"license {first} does not match the new schema ({problems}){others}: "
            "a new schema must accept every license already issued"
        )


def _summary(errors: list[Any]) -> str:
    """Where and by which keyword the fields fail, never their values (they are a holder's)."""
    found = sorted(
        {f"{'/'.join(map(str, e.absolute_path)) or '(fields)'}: {e.validator}" for e in errors}
    )
    return ", ".join(found[:10])
