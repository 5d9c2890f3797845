"""The license code format on its own: round trips for SM2, ECDSA and RSA keys, and every
kind of bad input refused with a plain reason."""

from __future__ import annotations

import secrets
from datetime import date
from pathlib import Path

import pytest

from signing import license_qr
from signing.license_qr import LicenseCode
from signing.qr import qr_symbol
from trust.algorithms import DEFAULT_FOR_KEY
from trust.errors import InvalidSignatureError, MalformedInputError
from trust.softkeys import SoftwareKeyStore

URL = "https://verify.example.gov.cn/v"


def code(algorithm: str, **changes: object) -> LicenseCode:
    salt = secrets.token_bytes(8)
    base = LicenseCode(
        algorithm=algorithm,
        key_id=secrets.token_bytes(8),
        type_code="11100000000013338W032",
        issuer_code="11152500MB00000012",
        serial="0000000001",
        version=1,
        issue_date=date(2026, 11, 28),
        valid_from=date(2026, 11, 28),
        valid_to=date(2028, 11, 28),
        holder_name="张*",
        holder_salt=salt,
        holder_hash=license_qr.holder_digest("152501199003071234", salt),
    )
    return LicenseCode(**{**vars(base), **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SoftwareKeyStore:
    return SoftwareKeyStore.open(tmp_path_factory.mktemp("qr-keys") / "keys")


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [("sm2", "sm2-sm3"), ("ec-p256", "ecdsa-p256-sha256"), ("rsa-2048", "rsa-pkcs1-sha256")],
)
def test_round_trip(keys: SoftwareKeyStore, spec: str, algorithm: str) -> None:
    key = keys.generate(f"qr-{spec}", spec)
    original = code(algorithm, valid_to=None if spec == "rsa-2048" else date(2028, 11, 28))
    payload = license_qr.encode(original, key.sign)
    text = license_qr.to_text(payload, URL)
    signed = license_qr.decode(license_qr.from_text(text))
    assert signed.code == original
    DEFAULT_FOR_KEY[key.key_type].verify(key.public_key_info, signed.signature, signed.signed)
    assert signed.code.holder_matches("152501199003071234")
    assert signed.code.holder_matches("152501199003071234 ")  # as typed, with a stray space
    assert not signed.code.holder_matches("152501199003071235")
    if spec == "sm2":
        assert len(payload) < 170 and qr_symbol(text).version <= 12
    tampered = bytearray(payload)
    tampered[40] ^= 1
    forged = license_qr.decode(bytes(tampered))
    with pytest.raises(InvalidSignatureError):
        DEFAULT_FOR_KEY[key.key_type].verify(key.public_key_info, forged.signature, forged.signed)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a license code"),
        ("hello world", "not a license code"),
        ("https://example.com/some/page", "not a license code"),
        ("https://evil.example/v#https://evil.example", "not a license code"),
        ("https://x/v#!!!", "not a license code"),
        ("https://x/v#" + "A" * 2000, "too long"),
    ],
)
def test_texts_that_are_not_codes(text: str, reason: str) -> None:
    with pytest.raises(MalformedInputError, match=reason):
        license_qr.decode(license_qr.from_text(text))


def test_damaged_payloads(keys: SoftwareKeyStore) -> None:
    payload = license_qr.encode(code("sm2-sm3"), keys.generate("qr-damage", "sm2").sign)
    for cut in range(2, len(payload) - 1, 7):  # truncated anywhere
        with pytest.raises(MalformedInputError):
            license_qr.decode(payload[:cut])
    with pytest.raises(MalformedInputError, match="format 02"):
        license_qr.decode(b"L\x02" + payload[2:])
    with pytest.raises(MalformedInputError, match="unknown signature algorithm"):
        license_qr.decode(payload[:2] + b"\x09" + payload[3:])
    with pytest.raises(MalformedInputError, match="too long"):
        license_qr.decode(payload + b"\x00")


def test_what_cannot_be_encoded() -> None:
    with pytest.raises(MalformedInputError):
        license_qr.encode(code("md5-rsa"), lambda data: b"")
    with pytest.raises(MalformedInputError):
        license_qr.encode(code("sm2-sm3", valid_to=date(2200, 1, 1)), lambda data: b"")
    with pytest.raises(MalformedInputError):
        license_qr.encode(code("sm2-sm3", holder_name="名" * 41), lambda data: b"")


def test_nothing_is_written_in_clear(tmp_path: Path) -> None:
    salt = secrets.token_bytes(8)
    digest = license_qr.holder_digest("152501199003071234", salt)
    assert b"152501" not in digest and len(digest) == 16
    assert license_qr.holder_digest("152501199003071234", secrets.token_bytes(8)) != digest
