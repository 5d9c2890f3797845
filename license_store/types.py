"""License types (GB/T 36902 catalogue entries): the fields a license holds (a JSON Schema),
their labels on the document, who may hold one, how long it is valid.

A department cannot issue what the schema refuses: the schema is checked when the type is
defined and every license's fields are validated against it before an identifier is spent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from license_store.errors import HolderCodeError, LicenseDataError, LicenseTypeError
from license_store.holder_codes import HOLDER_CODE_TYPES, check_uscc
from signing.jcs import canonicalize

HolderKind = Literal["person", "organisation"]
NamePolicy = Literal["full", "masked"]

MAX_DATA_BYTES = 32 * 1024
"""A license's fields as canonical JSON: the face of a license, not its attachments."""


@dataclass(frozen=True)
class LicenseType:
    """A license type. ``labels`` gives the printed label of each field, in print order."""

    code: str
    name: str
    authority: str
    holder_kind: HolderKind
    schema: Mapping[str, Any]
    labels: Mapping[str, str]
    holder_code_types: tuple[str, ...] = ("111",)
    validity_years: int | None = None
    """None: long-term (长期)."""
    qr_name: NamePolicy = "masked"
    """Whether the QR code carries the holder's full name or a masked one."""
    example: Mapping[str, Any] = field(default_factory=dict)

    @property
    def authority_code(self) -> str:
        """The USCC of the defining authority (the first 18 characters of the type code)."""
        return self.code[:18]

    def checked(self) -> LicenseType:
        """This type if it is coherent, else LicenseTypeError naming what is wrong."""
        if len(self.code) != 21 or not self.code[18:].isdigit() or not self.code.isascii():
            raise LicenseTypeError(
                f"type code {self.code!r}: 18-character USCC of the defining authority + 3 digits"
            )
        try:
            check_uscc(self.code[:18])
        except HolderCodeError as exc:
            raise LicenseTypeError(
                f"type code {self.code}: the defining authority's USCC is wrong ({exc.message})"
            ) from exc
        if not self.name.strip() or not self.authority.strip():
            raise LicenseTypeError("a license type needs a name and a defining authority")
        if self.holder_kind not in ("person", "organisation"):
            raise LicenseTypeError("holder_kind is person or organisation")
        unknown = [c for c in self.holder_code_types if c not in HOLDER_CODE_TYPES]
        if unknown or not self.holder_code_types:
            raise LicenseTypeError(f"unknown holder code types {unknown or '(none)'}")
        if self.validity_years is not None and not 1 <= self.validity_years <= 100:
            raise LicenseTypeError("validity_years is 1 to 100, or none for long-term")
        if self.qr_name not in ("full", "masked"):
            raise LicenseTypeError("qr_name is full or masked")
        if self.schema.get("type") != "object":
            raise LicenseTypeError("the schema of a license's fields describes an object")
        try:
            Draft202012Validator.check_schema(self.schema)
        except SchemaError as exc:
            raise LicenseTypeError(f"the fields' schema is not valid: {exc.message}") from exc
        properties = self.schema.get("properties", {})
        missing = [name for name in self.labels if name not in properties]
        if missing:
            raise LicenseTypeError(f"labels for fields the schema does not have: {missing}")
        if self.example:
            self.validate(self.example)
        return self

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` as a plain dict if the schema accepts it, else LicenseDataError listing
        every problem with its field path (the department fixes them all in one go)."""
        if not isinstance(data, Mapping):
            raise LicenseDataError("a license's fields are a JSON object")
        plain = json.loads(canonicalize(data))
        if len(canonicalize(plain)) > MAX_DATA_BYTES:
            raise LicenseDataError(f"a license's fields are at most {MAX_DATA_BYTES} bytes")
        errors = sorted(_validator(self.definition_json()).iter_errors(plain), key=_path)
        if errors:
            problems = "; ".join(f"{_path(e) or '(fields)'}: {_describe(e)}" for e in errors[:20])
            raise LicenseDataError(f"the fields do not match type {self.code}: {problems}")
        return dict(plain)

    def valid_to(self, valid_from: date) -> date | None:
        """The end of validity for a license starting on ``valid_from`` (None: long-term)."""
        if self.validity_years is None:
            return None
        try:
            return valid_from.replace(year=valid_from.year + self.validity_years)
        except ValueError:  # 29 February into a common year
            return valid_from.replace(year=valid_from.year + self.validity_years, day=28)

    def definition_json(self) -> str:
        """What is stored: everything but code, name, authority and holder kind (columns)."""
        return json.dumps(
            {
                "schema": self.schema,
                "labels": dict(self.labels),
                "holder_code_types": list(self.holder_code_types),
                "validity_years": self.validity_years,
                "qr_name": self.qr_name,
                "example": dict(self.example),
            },
            ensure_ascii=False,
        )  # not sort_keys: the labels' order is the print order

    @classmethod
    def from_definition(
        cls, code: str, name: str, authority: str, holder_kind: str, definition: str
    ) -> LicenseType:
        spec = json.loads(definition)
        return cls(
            code=code,
            name=name,
            authority=authority,
            holder_kind=holder_kind,  # type: ignore[arg-type]
            schema=spec["schema"],
            labels=spec["labels"],
            holder_code_types=tuple(spec["holder_code_types"]),
            validity_years=spec["validity_years"],
            qr_name=spec["qr_name"],
            example=spec.get("example") or {},
        )

    def to_dict(self, issuers: Sequence[str] = ()) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "authority": self.authority,
            "authority_code": self.authority_code,
            "holder_kind": self.holder_kind,
            "holder_code_types": list(self.holder_code_types),
            "validity_years": self.validity_years,
            "qr_name": self.qr_name,
            "labels": dict(self.labels),
            "schema": self.schema,
            "example": dict(self.example),
            "issuers": list(issuers),
        }


_RULES = {
    "type": "must be of type {value}",
    "enum": "is not one of the allowed values {value}",
    "const": "must be {value}",
    "pattern": "does not match the pattern {value}",
    "format": "is not a valid {value}",
    "minLength": "is shorter than {value} characters",
    "maxLength": "is longer than {value} characters",
    "minimum": "is below {value}",
    "maximum": "is above {value}",
    "exclusiveMinimum": "is not above {value}",
    "exclusiveMaximum": "is not below {value}",
    "minItems": "has fewer than {value} items",
    "maxItems": "has more than {value} items",
    "uniqueItems": "has repeated items",
}


def _describe(error: Any) -> str:
    """What rule a value broke, without the value: the fields are personal data, and error
    messages end up in logs and on screens they were never meant for."""
    rule = _RULES.get(error.validator)
    if rule is not None:
        return f"{rule.format(value=error.validator_value)} ({error.validator})"
    if error.validator in ("required", "additionalProperties", "dependentRequired"):
        return str(error.message)  # names fields, not values
    return f"breaks the rule {error.validator!r}"


def _path(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path)


@functools.lru_cache(maxsize=256)
def _validator(definition: str) -> Draft202012Validator:
    """One compiled validator per type definition (validating is then a few microseconds)."""
    schema = json.loads(definition)["schema"]
    return Draft202012Validator(schema, format_checker=FormatChecker())


def text_schema(max_length: int = 200) -> dict[str, Any]:
    """A non-empty single line of text: the common field of a license."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": r"^[^\r\n]+$"}
