"""GB/T 36904 license identifiers (电子证照标识).

``1.2.156.3005.2.<type code>.<issuer code>.<serial>.<version>.<check>``: the type code is the
defining authority's USCC plus a 3-digit sequence, the issuer code the issuing authority's USCC,
and the check character is ISO/IEC 7064 MOD 37,36 (GB/T 17710) over the four fields without
dots (standards.md §3.2). A :class:`LicenseId` is valid once constructed, so code holding one
never re-checks it.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass

from license_store.errors import HolderCodeError, LicenseIdError
from license_store.holder_codes import check_uscc
from trust.errors import MalformedInputError

ROOT = "1.2.156.3005.2"
NONCONFORMING_ROOT = "1.2.156.3003.2"
"""Used by one system in the wild (standards.md §3.2); refused with a message naming it."""

SERIAL_MAX_LENGTH = 32
VERSION_MAX = 999

_ALPHABET = string.digits + string.ascii_uppercase
_VALUES = {char: value for value, char in enumerate(_ALPHABET)}
_DIGITS = frozenset(string.digits)
_FIELDS = ("type code", "issuer code", "serial", "version", "check character")
# Far above the longest valid identifier (94 characters): refuses junk before splitting it,
# while a serial a few characters too long still gets a message naming the serial.
_MAX_LENGTH = 256


def mod37_36_check(text: str) -> str:
    """ISO/IEC 7064 MOD 37,36 hybrid check character of ``text`` (over ``0-9A-Z``)."""
    product = 36
    for position, char in enumerate(text, 1):
        value = _VALUES.get(char)
        if value is None:
            raise MalformedInputError(
                f"character {position} ({char!r}) is not one of 0-9, A-Z (MOD 37,36 alphabet)"
            )
        product = 2 * ((product + value) % 36 or 36) % 37
    return _ALPHABET[(37 - product) % 36]


def _check_uscc_field(value: str, field: str) -> None:
    try:
        normalised = check_uscc(value)
    except HolderCodeError as exc:
        raise LicenseIdError(f"{field} {value!r}: {exc.message}") from exc
    if normalised != value:
        raise LicenseIdError(f"{field} {value!r} must be in upper case")


def _check_type_code(type_code: str) -> None:
    if len(type_code) != 21:
        raise LicenseIdError(
            f"type code {type_code!r} has {len(type_code)} characters, expected 21 "
            "(the defining authority's 18-character USCC and a 3-digit sequence)"
        )
    _check_uscc_field(type_code[:18], "type code: defining authority USCC")
    if not _DIGITS.issuperset(type_code[18:]):
        raise LicenseIdError(f"type code {type_code!r} must end with 3 ASCII digits")


def _check_issuer_code(issuer_code: str) -> None:
    if len(issuer_code) != 18:
        raise LicenseIdError(
            f"issuer code {issuer_code!r} has {len(issuer_code)} characters, expected the "
            "18-character USCC of the issuing authority"
        )
    _check_uscc_field(issuer_code, "issuer code")


def _check_serial(serial: str) -> None:
    if not 1 <= len(serial) <= SERIAL_MAX_LENGTH:
        raise LicenseIdError(f"serial has {len(serial)} characters, expected 1-{SERIAL_MAX_LENGTH}")
    if not all(char in _VALUES for char in serial):
        raise LicenseIdError(
            f"serial {serial!r} may only use 0-9 and A-Z: the check character covers no others"
        )


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int):
        raise LicenseIdError(f"version must be an integer, not {type(version).__name__}")
    if not 1 <= version <= VERSION_MAX:
        raise LicenseIdError(f"version {version} is outside 001-{VERSION_MAX:03d}")


@dataclass(frozen=True)
class LicenseId:
    """A license identifier, checked field by field on construction."""

    type_code: str
    issuer_code: str
    serial: str
    version: int

    def __post_init__(self) -> None:
        _check_type_code(self.type_code)
        _check_issuer_code(self.issuer_code)
        _check_serial(self.serial)
        _check_version(self.version)

    @property
    def check(self) -> str:
        """The MOD 37,36 check character over type code, issuer code, serial and version."""
        return mod37_36_check(f"{self.type_code}{self.issuer_code}{self.serial}{self.version:03d}")

    def __str__(self) -> str:
        return ".".join(
            (ROOT, self.type_code, self.issuer_code, self.serial, f"{self.version:03d}", self.check)
        )

    def with_version(self, version: int) -> LicenseId:
        """The identifier of a re-issue: same license, new version (and check character)."""
        return dataclasses.replace(self, version=version)

    @classmethod
    def parse(cls, text: str) -> LicenseId:
        """Parse and fully check an identifier; the message names the first part that is wrong."""
        if len(text) > _MAX_LENGTH:
            raise LicenseIdError(f"identifier has {len(text)} characters, at most {_MAX_LENGTH}")
        if not text.isascii():
            raise LicenseIdError(
                "identifier contains non-ASCII characters (full-width digits or letters?)"
            )
        if text.startswith(NONCONFORMING_ROOT + "."):
            raise LicenseIdError(
                f"root code {NONCONFORMING_ROOT} is a nonconforming variant; "
                f"GB/T 36904 identifiers start with {ROOT}"
            )
        if not text.startswith(ROOT + "."):
            raise LicenseIdError(f"identifier does not start with the root code {ROOT}")
        fields = text[len(ROOT) + 1 :].split(".")
        if len(fields) != len(_FIELDS):
            raise LicenseIdError(
                f"identifier has {len(fields)} fields after the root code, expected "
                f"{len(_FIELDS)}: {', '.join(_FIELDS)}"
            )
        type_code, issuer_code, serial, version, given = fields
        if len(version) != 3 or not _DIGITS.issuperset(version):
            raise LicenseIdError(f"version {version!r} is not 3 digits")
        license_id = cls(type_code, issuer_code, serial, int(version))
        if given != license_id.check:
            raise LicenseIdError(f"check character is {license_id.check}, not {given}")
        return license_id


def format_serial(number: int, width: int = 10) -> str:
    """A numeric serial as a fixed-width, zero-padded field, so serials sort as they count.

    Overflow is refused rather than widened: a wider serial would no longer sort with the rest.
    """
    if not 1 <= width <= SERIAL_MAX_LENGTH:
        raise LicenseIdError(f"serial width {width} is outside 1-{SERIAL_MAX_LENGTH}")
    if number < 0:
        raise LicenseIdError(f"serial number {number} is negative")
    text = f"{number:0{width}d}"
    if len(text) > width:
        raise LicenseIdError(f"serial number {number} does not fit in {width} digits")
    return text
