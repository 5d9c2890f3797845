"""License identifiers (GB/T 36904) and holder codes (GB 11643, GB 32100, GB 11714, GB/T 36903).

Expected values come from the worked examples of docs/standards.md §3.2 and §4, and from a second,
independent MOD 37,36 implementation below; never from the code under test.
"""

from __future__ import annotations

import hmac
import secrets
import string
from collections.abc import Callable
from datetime import date

import pytest

from license_store.errors import HolderCodeError, LicenseIdError
from license_store.holder_codes import (
    HOLDER_CODE_TYPES,
    check_holder_code,
    check_resident_id,
    check_uscc,
    holder_code_hash,
    mask_holder_code,
    mask_name,
    organisation_code_check,
    organisation_code_ok,
    resident_id_check,
    uscc_check,
)
from license_store.identifiers import ROOT, LicenseId, format_serial, mod37_36_check
from trust.errors import ConfigurationError, MalformedInputError

ALPHANUMERIC = string.digits + string.ascii_uppercase
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

TYPE_CODE = "11100000000013338W032"
ISSUER_CODE = "11220000013544541J"
SERIAL = "2430599"
SAMPLE_BODY = TYPE_CODE + ISSUER_CODE + SERIAL + "001"
SAMPLE = f"{ROOT}.{TYPE_CODE}.{ISSUER_CODE}.{SERIAL}.001.F"

RESIDENT_ID = "11010519491231002X"
USCCS = [  # standards.md §4.2, all stated valid
    "11100000000013338W",
    "11220000013544541J",
    "11430000006122244L",
    "11110000000021135M",
    "91610800064834709T",
    "11330105002500287C",
    "11100000000013661B",
]
# Early pilot-region codes, legal although they break GB 32100 (standards.md §4.2 and the id-rule
# README it cites), with the check character GB 32100 would give. Their organisation code holds.
PILOT_USCCS = [
    ("91350100M0001TGQXM", "1"),
    ("91350211M0000XUF46", "R"),
    ("91350203M0001FUE2P", "J"),
]
TODAY = date(2024, 6, 1)


# --- an independent MOD 37,36: the state P, and the check as the c with (P + c) mod 36 = 1 ---


def mod37_states(text: str) -> list[int]:
    states = [36]
    for char in text:
        total = (states[-1] + ALPHANUMERIC.index(char)) % 36
        states.append(2 * (total if total else 36) % 37)
    return states


def reference_check(text: str) -> str:
    final = mod37_states(text)[-1]
    (check,) = [c for c in ALPHANUMERIC if (final + ALPHANUMERIC.index(c)) % 36 == 1]
    return check


def random_text(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def random_uscc() -> str:
    body = random_text(USCC_ALPHABET, 17)
    return body + uscc_check(body)


def substitutions(text: str, alphabet: str) -> list[str]:
    """Every string that differs from ``text`` in exactly one character drawn from ``alphabet``."""
    return [
        text[:i] + char + text[i + 1 :]
        for i in range(len(text))
        for char in alphabet
        if char != text[i]
    ]


def transpositions(text: str) -> list[str]:
    """Every string obtained by swapping two adjacent, different characters of ``text``."""
    return [
        text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        for i in range(len(text) - 1)
        if text[i] != text[i + 1]
    ]


def rejected(check: Callable[[str], object], text: str) -> bool:
    try:
        check(text)
    except MalformedInputError:
        return True
    return False


def mod37_valid(text: str) -> bool:
    return mod37_36_check(text[:-1]) == text[-1]


# --- MOD 37,36 ---


def test_mod37_36_worked_example() -> None:
    assert len(SAMPLE_BODY) == 49
    states = mod37_states(SAMPLE_BODY)
    assert states[:7] == [36, 2, 6, 14, 28, 19, 1]
    assert states[-1] == 22
    assert mod37_36_check(SAMPLE_BODY) == reference_check(SAMPLE_BODY) == "F"


def test_mod37_36_matches_the_reference_on_random_strings() -> None:
    for _ in range(1000):
        text = random_text(ALPHANUMERIC, 1 + secrets.randbelow(60))
        assert mod37_36_check(text) == reference_check(text), text


@pytest.mark.parametrize("text", ["abc", "A.B", "１２３", "A B", "Ä"])
def test_mod37_36_refuses_characters_outside_the_alphabet(text: str) -> None:
    with pytest.raises(MalformedInputError):
        mod37_36_check(text)


def test_mod37_36_detects_every_single_substitution() -> None:
    full = SAMPLE_BODY + "F"
    assert mod37_valid(full)
    assert not any(mod37_valid(wrong) for wrong in substitutions(full, ALPHANUMERIC))


def test_mod37_36_transpositions_missed_are_exactly_the_known_blind_spot() -> None:
    """MOD 37,36 misses a swap of x and y exactly when {(P + x) mod 36, (P + y) mod 36} is
    {18, 19}, P being the state before them: one pair in 630 per state. Checked for every state
    (a one-character prefix reaches each) and every pair."""
    prefix_for_state = {mod37_states(char)[-1]: char for char in ALPHANUMERIC}
    assert sorted(prefix_for_state) == list(range(1, 37))
    for state, prefix in prefix_for_state.items():
        for i, x in enumerate(ALPHANUMERIC):
            for y in ALPHANUMERIC[i + 1 :]:
                missed = mod37_36_check(prefix + x + y) == mod37_36_check(prefix + y + x)
                assert missed == (
                    {(state + int(x, 36)) % 36, (state + int(y, 36)) % 36} == {18, 19}
                )


def test_mod37_36_blind_spot_is_covered_by_the_uscc_check_in_the_sample() -> None:
    full = SAMPLE_BODY + "F"
    missed = [swapped for swapped in transpositions(full) if mod37_valid(swapped)]
    # Characters 36-37 ("54" in the issuer code) fall in the blind spot...
    assert missed == [full[:35] + "45" + full[37:]]
    # ...but the issuer code's own GB 32100 check catches the swap.
    assert all(rejected(LicenseId.parse, swapped) for swapped in transpositions(SAMPLE))


# --- LicenseId ---


def test_license_id_worked_example() -> None:
    license_id = LicenseId(TYPE_CODE, ISSUER_CODE, SERIAL, 1)
    assert license_id.check == "F"
    assert str(license_id) == SAMPLE
    assert LicenseId.parse(SAMPLE) == license_id


def test_with_version_changes_version_and_check() -> None:
    reissued = LicenseId.parse(SAMPLE).with_version(2)
    assert reissued.version == 2
    assert (
        str(reissued)
        == f"{ROOT}.{TYPE_CODE}.{ISSUER_CODE}.{SERIAL}.002.{reference_check(SAMPLE_BODY[:-3] + '002')}"
    )
    assert LicenseId.parse(str(reissued)) == reissued
    for version in (0, 1000, -1):
        with pytest.raises(LicenseIdError, match="version"):
            reissued.with_version(version)


def test_random_identifiers_round_trip() -> None:
    for _ in range(200):
        license_id = LicenseId(
            random_uscc() + random_text(string.digits, 3),
            random_uscc(),
            random_text(ALPHANUMERIC, 1 + secrets.randbelow(32)),
            1 + secrets.randbelow(999),
        )
        text = str(license_id)
        assert text.endswith("." + reference_check(text[len(ROOT) + 1 : -2].replace(".", "")))
        assert LicenseId.parse(text) == license_id
        assert str(LicenseId.parse(text)) == text


def replace_field(index: int, value: str) -> str:
    fields = SAMPLE.split(".")
    fields[5 + index] = value  # the root code has five dot-separated parts
    return ".".join(fields)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SAMPLE.replace("3005", "3003"), "root code 1.2.156.3003.2 is a nonconforming variant"),
        (SAMPLE.replace("1.2.156", "1.2.157"), "does not start with the root code"),
        (SAMPLE[:-1] + "G", "check character is F, not G"),
        (SAMPLE[:-2], "4 fields after the root code, expected 5"),
        (SAMPLE + ".F", "6 fields after the root code"),
        (replace_field(0, TYPE_CODE[:-1]), "has 20 characters, expected 21"),
        (replace_field(0, "11100000000013338X032"), "USCC check character is W, not X"),
        (replace_field(0, "11100000000013338w032"), "must be in upper case"),
        (replace_field(0, "11100000000013338W03A"), "must end with 3 ASCII digits"),
        (replace_field(1, "340100"), "expected the 18-character USCC"),
        (replace_field(1, "11220000013544541K"), "USCC check character is J, not K"),
        (replace_field(1, "11220000013544541I"), "check character is J, not I"),
        (replace_field(2, ""), "serial has 0 characters"),
        (replace_field(2, "1" * 33), "serial has 33 characters"),
        (replace_field(2, "abc"), "may only use 0-9 and A-Z"),
        (replace_field(2, "24-0599"), "may only use 0-9 and A-Z"),
        (replace_field(3, "01"), "version '01' is not 3 digits"),
        (replace_field(3, "0a1"), "is not 3 digits"),
        (replace_field(3, "000"), "version 0 is outside 001-999"),
        (SAMPLE.replace("2430599", "２430599"), "non-ASCII"),
        (SAMPLE.replace("2430599", "吉A042012"), "non-ASCII"),
        (SAMPLE + "0" * 200, "identifier has 269 characters, at most 256"),
        ("", "does not start with the root code"),
    ],
)
def test_parse_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(LicenseIdError, match=message) as raised:
        LicenseId.parse(text)
    assert raised.value.code == "LICENSE_ID_INVALID"
    assert raised.value.message_zh == "证照标识不正确"
    assert raised.value.http_status == 400


def test_parse_detects_every_single_substitution() -> None:
    wrongs = substitutions(SAMPLE, ALPHANUMERIC + ".")
    assert all(rejected(LicenseId.parse, wrong) for wrong in wrongs)


def test_constructor_checks_like_parse() -> None:
    with pytest.raises(LicenseIdError, match="serial"):
        LicenseId(TYPE_CODE, ISSUER_CODE, "a", 1)
    with pytest.raises(LicenseIdError, match="issuer code"):
        LicenseId(TYPE_CODE, "340100", SERIAL, 1)
    with pytest.raises(LicenseIdError, match="version must be an integer"):
        LicenseId(TYPE_CODE, ISSUER_CODE, SERIAL, True)


def test_format_serial() -> None:
    assert format_serial(42) == "0000000042"
    assert format_serial(999, 3) == "999"
    assert format_serial(10**32 - 1, 32) == "9" * 32
    assert LicenseId(TYPE_CODE, ISSUER_CODE, format_serial(7), 1).serial == "0000000007"
    for number, width, message in [
        (-1, 10, "negative"),
        (1000, 3, "does not fit in 3 digits"),
        (1, 0, "width 0"),
        (1, 33, "width 33"),
    ]:
        with pytest.raises(LicenseIdError, match=message):
            format_serial(number, width)


# --- resident ID numbers (GB 11643, MOD 11-2) ---


def resident_id(body: str) -> str:
    return body + resident_id_check(body)


def test_resident_id_worked_example() -> None:
    assert resident_id_check(RESIDENT_ID[:17]) == "X"
    assert check_resident_id(RESIDENT_ID) == RESIDENT_ID
    assert check_resident_id(RESIDENT_ID.lower()) == RESIDENT_ID


def test_resident_id_detects_every_single_substitution() -> None:
    wrongs = substitutions(RESIDENT_ID, string.digits + "X")
    assert all(rejected(check_resident_id, wrong) for wrong in wrongs)


def test_resident_id_detects_every_adjacent_transposition() -> None:
    for valid in (RESIDENT_ID, resident_id("44030419850716321"), resident_id("65010120001229087")):
        assert check_resident_id(valid) == valid
        assert all(rejected(check_resident_id, swapped) for swapped in transpositions(valid))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("110105491231002", "15-digit .* convert them to the 18-character form"),
        (RESIDENT_ID[:-1], "18 characters, not 17"),
        (RESIDENT_ID + "1", "18 characters, not 19"),
        ("", "18 characters, not 0"),
        (RESIDENT_ID[:-1] + "5", "check character is X, not 5"),
        (RESIDENT_ID[:-1] + "A", "check character is X, not A"),
        ("１１０１０５１９４９１２３１００２X", "17 ASCII digits"),
        ("11010519491231002X".replace("5", "５", 1), "17 ASCII digits"),
        ("1101051949123100 X", "17 ASCII digits"),
        (resident_id("11010519490230002"), "birth date .* not a calendar date"),
        (resident_id("11010519491301002"), "not a calendar date"),
        (resident_id("11010518991231002"), "before 1900"),
        (resident_id("11010520240602002"), "in the future"),
        (resident_id("01010519491231002"), "address code .* cannot start with 0"),
    ],
)
def test_resident_id_refusals(code: str, message: str) -> None:
    with pytest.raises(HolderCodeError, match=message) as raised:
        check_resident_id(code, today=TODAY)
    assert raised.value.code == "HOLDER_CODE_INVALID"
    assert raised.value.message_zh == "持证主体代码不正确"


def test_resident_id_messages_keep_personal_data_out_of_logs() -> None:
    for code in (RESIDENT_ID[:-1] + "5", resident_id("11010519490230002")):
        with pytest.raises(HolderCodeError) as raised:
            check_resident_id(code)
        assert code[:6] not in raised.value.message
        assert code[6:14] not in raised.value.message


def test_resident_id_born_today_or_in_1900_is_fine() -> None:
    for body in ("11010520240601002", "11010519000101002"):
        assert check_resident_id(resident_id(body), today=TODAY) == resident_id(body)


# --- unified social credit codes (GB 32100) and organisation codes (GB 11714) ---


@pytest.mark.parametrize("code", USCCS)
def test_documented_usccs_are_valid(code: str) -> None:
    assert check_uscc(code) == code
    assert check_uscc(code.lower()) == code
    assert organisation_code_ok(code)


def test_uscc_worked_example_sum() -> None:
    weights = [pow(3, i, 31) for i in range(17)]
    assert weights == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(USCCS[0][:17], weights, strict=True))
    assert (total, 31 - total % 31, uscc_check(USCCS[0][:17])) == (437, 28, "W")


def test_uscc_detects_every_single_substitution_and_transposition() -> None:
    for code in USCCS:
        assert all(rejected(check_uscc, wrong) for wrong in substitutions(code, ALPHANUMERIC))
        assert all(rejected(check_uscc, swapped) for swapped in transpositions(code))


@pytest.mark.parametrize(("code", "gb32100_check"), PILOT_USCCS)
def test_pilot_usccs_fail_gb32100_but_pass_the_organisation_code_check(
    code: str, gb32100_check: str
) -> None:
    with pytest.raises(
        HolderCodeError, match=f"check character is {gb32100_check}, not {code[-1]}"
    ):
        check_uscc(code)
    assert organisation_code_ok(code)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("11100000000013338", "18 characters, not 17"),
        ("11100000000013338WW", "18 characters, not 19"),
        ("１１100000000013338W", "character 1 .* not in the GB 32100 alphabet"),
        ("1110000000001333ﬀW", "character 17"),  # "ﬀ".upper() would be "FF"
        ("1110000000001333IW", "character 17 \\('I'\\)"),
        ("11100000000013338 ", "check character is W, not  "),
    ],
)
def test_uscc_refusals(code: str, message: str) -> None:
    with pytest.raises(HolderCodeError, match=message):
        check_uscc(code)


def test_organisation_code() -> None:
    assert organisation_code_check("00001333") == "8"
    assert organisation_code_check("00000006") == "X"  # 11 - 18 mod 11 = 10
    assert organisation_code_check("00000000") == "0"  # 11 - 0 = 11
    assert organisation_code_ok("000013338")
    assert organisation_code_ok("00001333-8")
    assert organisation_code_ok("00000006-x")
    for wrong in ("000013337", "00001333", "0000133380", "00001333_8", "０00013338", "!!!!!!!!8"):
        assert not organisation_code_ok(wrong), wrong
    with pytest.raises(HolderCodeError):
        organisation_code_check("0000133")


def test_check_uscc_does_not_enforce_the_organisation_code() -> None:
    body = "11100000000013337"  # organisation code 00001333-7, where GB 11714 wants 8
    code = body + uscc_check(body)
    assert check_uscc(code) == code
    assert not organisation_code_ok(code)


# --- holder codes by type ---


def test_holder_code_types_table() -> None:
    assert len(HOLDER_CODE_TYPES) == 16
    assert all(len(code) == 3 and code.isdigit() for code in HOLDER_CODE_TYPES)
    assert HOLDER_CODE_TYPES["001"] == "统一社会信用代码"
    assert HOLDER_CODE_TYPES["111"] == "公民身份号码"
    assert HOLDER_CODE_TYPES["414"] == "普通护照"
    assert HOLDER_CODE_TYPES["999"] == "其他自然人有效证件代码"


def test_check_holder_code_dispatches_on_type() -> None:
    assert check_holder_code(RESIDENT_ID.lower(), "111") == RESIDENT_ID
    assert check_holder_code(USCCS[0].lower(), "001") == USCCS[0]
    assert check_holder_code("E12345678", "414") == "E12345678"
    assert check_holder_code("H1234567-01", "516") == "H1234567-01"
    assert check_holder_code("X" * 64, "999") == "X" * 64
    assert check_holder_code("军字第123号", "114") == "军字第123号"
    with pytest.raises(HolderCodeError, match="check character"):
        check_holder_code(RESIDENT_ID[:-1] + "1", "111")
    with pytest.raises(HolderCodeError, match="check character"):
        check_holder_code(USCCS[0][:-1] + "X", "001")


@pytest.mark.parametrize(
    "code",
    [
        "",
        "X" * 65,
        "E1234 5678",
        "E12345678\n",
        "\tE12345678",
        "E1234\u00a05678",
        "E1234\u200b5678",
        "E1234\x005678",
        "E1234\u30005678",
    ],
)
def test_other_holder_codes_refuse_blank_and_control_characters(code: str) -> None:
    with pytest.raises(HolderCodeError, match="414"):
        check_holder_code(code, "414")


def test_unknown_holder_code_type_is_named() -> None:
    with pytest.raises(HolderCodeError, match="unknown holder code type '112'"):
        check_holder_code("E12345678", "112")
    with pytest.raises(HolderCodeError, match="'112'"):
        mask_holder_code("E12345678", "112")


# --- masking ---


@pytest.mark.parametrize(
    ("code", "code_type", "masked"),
    [
        ("152901199001011234", "111", "152901********1234"),
        (RESIDENT_ID, "111", "110105********002X"),
        ("1529011234", "111", "**********"),
        (USCCS[0], "001", USCCS[0]),
        ("E12345678", "414", "E1*****78"),
        ("ABCDE", "999", "AB*DE"),
        ("AB12", "511", "****"),
        ("A", "099", "*"),
    ],
)
def test_mask_holder_code(code: str, code_type: str, masked: str) -> None:
    assert mask_holder_code(code, code_type) == masked


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三", "张*"), ("欧阳娜娜", "欧***"), ("买买提·艾力", "买*****"), ("张", "*"), ("", "")],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


# --- keyed hash ---


def test_holder_code_hash() -> None:
    key = secrets.token_bytes(32)
    digest = holder_code_hash(RESIDENT_ID, key)
    assert digest == hmac.new(key, RESIDENT_ID.encode(), "sm3").hexdigest()
    assert len(digest) == 64
    assert holder_code_hash(RESIDENT_ID, key) == digest
    assert holder_code_hash(RESIDENT_ID.lower(), key) == digest
    assert holder_code_hash(RESIDENT_ID, secrets.token_bytes(32)) != digest
    assert holder_code_hash(resident_id("11010519491231003"), key) != digest
    assert holder_code_hash(USCCS[0].lower(), key) == holder_code_hash(USCCS[0], key)


def test_holder_code_hash_refuses_weak_keys_and_empty_codes() -> None:
    with pytest.raises(ConfigurationError):
        holder_code_hash(RESIDENT_ID, b"")
    with pytest.raises(ConfigurationError):
        holder_code_hash(RESIDENT_ID, b"k" * 15)
    with pytest.raises(HolderCodeError):
        holder_code_hash("", b"k" * 16)
