"""Holder codes (持证主体代码): checking, masking and keyed hashing.

A license names its holder by a code whose kind is a GB/T 36903 Appendix A type code
(``HOLDER_CODE_TYPES``). Two kinds carry a check character and are verified in full: the
resident ID number (GB 11643, ISO 7064 MOD 11-2) and the unified social credit code (GB 32100).
The others (passports, military IDs, ...) have no public check rule, so only their shape is
checked. Error messages never repeat a resident ID: they end up in logs.
"""

from __future__ import annotations

import hmac
import string
from datetime import date

from license_store.errors import HolderCodeError
from trust.errors import ConfigurationError, CryptoUnavailableError

HOLDER_CODE_TYPES: dict[str, str] = {
    "001": "统一社会信用代码",
    "099": "其他法人或其他组织有效证件代码",
    "111": "公民身份号码",
    "114": "解放军军官证",
    "115": "武警警官证",
    "118": "解放军士兵证",
    "119": "武警士兵证",
    "120": "解放军文职人员证",
    "122": "武警文职人员证",
    "411": "外交护照",
    "412": "公务护照",
    "413": "公务普通护照",
    "414": "普通护照",
    "511": "台湾居民来往大陆通行证",
    "516": "港澳居民来往内地通行证",
    "999": "其他自然人有效证件代码",
}
"""GB/T 36903 Appendix A: holder-code type code → name (standards.md §3.3)."""

USCC_TYPE = "001"
RESIDENT_ID_TYPE = "111"

OTHER_CODE_MAX_LENGTH = 64
MIN_HASH_KEY_BYTES = 16

_DIGITS = frozenset(string.digits)
# Only ASCII letters change case: str.upper() would turn "ﬀ" into "FF" or "ı" into "I".
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)

_RESIDENT_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_RESIDENT_ID_CHECKS = "10X98765432"
_EARLIEST_BIRTH = date(1900, 1, 1)

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: no I, O, S, V, Z
_USCC_VALUES = {char: value for value, char in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))

_ORG_VALUES = {char: value for value, char in enumerate(string.digits + string.ascii_uppercase)}
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def normalise_code(code: str) -> str:
    """Upper-case ASCII letters only: the one normalisation every code kind shares."""
    return code.translate(_ASCII_UPPER)


def resident_id_check(body: str) -> str:
    """GB 11643 check character (ISO 7064 MOD 11-2) of the first 17 digits of a resident ID."""
    if len(body) != 17 or not _DIGITS.issuperset(body):
        raise HolderCodeError("a resident ID number starts with 17 ASCII digits (not full-width)")
    total = sum(
        int(digit) * weight for digit, weight in zip(body, _RESIDENT_ID_WEIGHTS, strict=True)
    )
    return _RESIDENT_ID_CHECKS[total % 11]


def check_resident_id(code: str, *, today: date | None = None) -> str:
    """Check an 18-character resident ID number (公民身份号码) and return it with an upper-case X.

    ``today`` bounds the birth date (a person is not born in the future); it defaults to the
    local date and is a parameter so tests and back-dated checks can fix it.
    """
    if len(code) == 15:
        raise HolderCodeError(
            "15-digit resident ID numbers (before 1999) have no check digit; "
            "convert them to the 18-character form first"
        )
    if len(code) != 18:
        raise HolderCodeError(f"a resident ID number has 18 characters, not {len(code)}")
    code = normalise_code(code)
    body, given = code[:17], code[17]
    expected = resident_id_check(body)
    if body[0] == "0":
        raise HolderCodeError("the address code (characters 1-6) cannot start with 0")
    try:
        birth = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise HolderCodeError("the birth date (characters 7-14) is not a calendar date") from None
    if birth < _EARLIEST_BIRTH:
        raise HolderCodeError("the birth date (characters 7-14) is before 1900")
    if birth > (today or date.today()):
        raise HolderCodeError("the birth date (characters 7-14) is in the future")
    if given != expected:
        raise HolderCodeError(f"check character is {expected}, not {given}")
    return code


def uscc_check(body: str) -> str:
    """GB 32100 check character of the first 17 characters of a unified social credit code."""
    if len(body) != 17:
        raise HolderCodeError(f"a USCC starts with 17 characters before its check, not {len(body)}")
    total = 0
    for position, (char, weight) in enumerate(zip(body, _USCC_WEIGHTS, strict=True), 1):
        value = _USCC_VALUES.get(char)
        if value is None:
            raise HolderCodeError(
                f"USCC character {position} ({char!r}) is not in the GB 32100 alphabet "
                "(ASCII digits and upper-case letters other than I, O, S, V, Z)"
            )
        total += value * weight
    return _USCC_ALPHABET[-total % 31]


def check_uscc(code: str) -> str:
    """Check a unified social credit code (统一社会信用代码) and return it in upper case.

    Only the GB 32100 check character is enforced, not :func:`organisation_code_ok`: that
    character already covers characters 1-17, so the embedded GB 11714 check adds no error
    detection, and a code the registry issued is legal whatever its inner part says
    (standards.md §4.2 on early pilot-region codes). Refusing one would lock a real holder out.
    """
    code = normalise_code(code)
    if len(code) != 18:
        raise HolderCodeError(f"a USCC has 18 characters, not {len(code)}")
    expected = uscc_check(code[:17])
    if code[17] != expected:
        raise HolderCodeError(f"USCC check character is {expected}, not {code[17]}")
    return code


def organisation_code_check(body: str) -> str:
    """GB 11714 check character of the 8-character body of an organisation code."""
    if len(body) != 8:
        raise HolderCodeError(f"an organisation code body has 8 characters, not {len(body)}")
    try:
        total = sum(
            _ORG_VALUES[char] * weight for char, weight in zip(body, _ORG_WEIGHTS, strict=True)
        )
    except KeyError:
        raise HolderCodeError(
            f"organisation code body {body!r} may only use ASCII digits and upper-case letters"
        ) from None
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def organisation_code_ok(code: str) -> bool:
    """Whether an organisation code (9 characters, or ``XXXXXXXX-X``) or the organisation code
    inside a USCC (characters 9-17) passes the GB 11714 check.

    Advisory only (see :func:`check_uscc`): use it to flag a code for a second look.
    """
    code = normalise_code(code)
    if len(code) == 18:
        code = code[8:17]
    elif len(code) == 10 and code[8] == "-":
        code = code[:8] + code[9]
    if len(code) != 9:
        return False
    try:
        return organisation_code_check(code[:8]) == code[8]
    except HolderCodeError:
        return False


def _check_other(code: str, code_type: str) -> str:
    """Shape of a code with no public check rule: visible characters only, so a stray space or
    control character cannot make one holder look like two."""
    if not 1 <= len(code) <= OTHER_CODE_MAX_LENGTH:
        raise HolderCodeError(
            f"a {code_type} holder code has 1-{OTHER_CODE_MAX_LENGTH} characters, not {len(code)}"
        )
    if not code.isprintable() or any(char.isspace() for char in code):
        raise HolderCodeError(
            f"a {code_type} holder code cannot contain whitespace or control characters"
        )
    return code


def _require_known(code_type: str) -> None:
    if code_type not in HOLDER_CODE_TYPES:
        raise HolderCodeError(
            f"unknown holder code type {code_type!r} (GB/T 36903 Appendix A: "
            f"{', '.join(HOLDER_CODE_TYPES)})"
        )


def check_holder_code(code: str, code_type: str) -> str:
    """Check a holder code against its GB/T 36903 type and return its normalised form."""
    if code_type == RESIDENT_ID_TYPE:
        return check_resident_id(code)
    if code_type == USCC_TYPE:
        return check_uscc(code)
    _require_known(code_type)
    return _check_other(code, code_type)


def _mask(text: str, head: int, tail: int) -> str:
    hidden = len(text) - head - tail
    if hidden <= 0:
        return "*" * len(text)
    return text[:head] + "*" * hidden + text[len(text) - tail :]


def mask_holder_code(code: str, code_type: str) -> str:
    """The holder code as pages and receipts may show it.

    Resident IDs keep the area code and the last four (``152901********1234``), the usual
    display in Chinese government services; USCCs identify organisations and are public; other
    personal documents keep two characters at each end, and short ones are masked entirely.
    """
    if code_type == USCC_TYPE:
        return code
    _require_known(code_type)
    if code_type == RESIDENT_ID_TYPE:
        return _mask(code, 6, 4)
    return _mask(code, 2, 2)


def mask_name(name: str) -> str:
    """A personal name with only its first character (the surname, mostly) shown: ``张*``.

    A one-character name is masked entirely, or the mask would show all of it.
    """
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


def holder_code_hash(code: str, key: bytes) -> str:
    """HMAC-SM3 (hex) of a holder code, for indexes that must find a holder without storing the
    code in clear.

    Keyed, because resident IDs are too few for a plain hash: all of them can be enumerated.
    ASCII letters are upper-cased first, so ``…x`` and ``…X`` (or a USCC typed in lower case)
    are one holder.
    """
    if len(key) < MIN_HASH_KEY_BYTES:
        raise ConfigurationError(
            f"the holder-code hash key must have at least {MIN_HASH_KEY_BYTES} bytes"
        )
    if not code:
        raise HolderCodeError("the holder code is empty")
    try:
        mac = hmac.new(key, normalise_code(code).encode(), "sm3")
    except ValueError as exc:
        raise CryptoUnavailableError("this OpenSSL has no SM3 for the holder-code hash") from exc
    return mac.hexdigest()
