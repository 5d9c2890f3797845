"""Key protocol, key URIs and the encrypted software keystore."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trust.algorithms import RSA_PSS_SHA256, SM2_SM3, by_name
from trust.errors import (
    ConfigurationError,
    KeyExistsError,
    KeyNotFoundError,
    KeyStoreLockedError,
    MalformedInputError,
    UnsupportedAlgorithmError,
)
from trust.keys import DeferredKey, KeyHandle, KeyRegistry, KeyUri, default_algorithm
from trust.softkeys import SoftwareKeyStore, _to_pkcs8


@pytest.mark.parametrize("spec", ["sm2", "rsa-2048", "ec-p256"])
def test_generate_sign_verify_and_reopen(tmp_path: Path, spec: str) -> None:
    store = SoftwareKeyStore.open(tmp_path / "keys")
    key = store.generate("k1", spec)
    assert isinstance(key, KeyHandle)
    assert key.key_uri == "soft:object=k1"
    sig = key.sign(b"payload")
    default_algorithm(key).verify(key.public_key_info, sig, b"payload")
    reopened = SoftwareKeyStore.open(tmp_path / "keys").find("soft:object=k1")
    assert reopened.public_key_info.dump() == key.public_key_info.dump()
    default_algorithm(key).verify(key.public_key_info, reopened.sign(b"again"), b"again")


def test_rsa_pss_is_a_peer(tmp_path: Path) -> None:
    key = SoftwareKeyStore.open(tmp_path / "keys").generate("r", "rsa-2048")
    RSA_PSS_SHA256.verify(key.public_key_info, key.sign(b"m", RSA_PSS_SHA256), b"m")
    with pytest.raises(UnsupportedAlgorithmError):
        key.sign(b"m", SM2_SM3)


def test_private_key_is_not_on_disk_in_clear(tmp_path: Path) -> None:
    store = SoftwareKeyStore.open(tmp_path / "keys")
    store.generate("secret", "ec-p256")
    pkcs8 = _to_pkcs8(store.find("soft:object=secret")._private)
    raw = (tmp_path / "keys" / "secret.key").read_bytes()
    assert pkcs8 not in raw and pkcs8[-32:] not in raw
    assert b"PRIVATE KEY" not in raw
    assert oct((tmp_path / "keys" / "secret.key").stat().st_mode & 0o777) == "0o600"
    handle = store.find("soft:object=secret")
    assert str(handle._private.private_numbers().private_value) not in repr(handle)  # type: ignore[union-attr]


def test_passphrase_store(tmp_path: Path) -> None:
    store = SoftwareKeyStore.open(tmp_path / "k", passphrase="correct horse")
    store.generate("a", "sm2")
    assert SoftwareKeyStore.open(tmp_path / "k", passphrase="correct horse").find("soft:object=a")
    with pytest.raises(KeyStoreLockedError):
        SoftwareKeyStore.open(tmp_path / "k", passphrase="wrong horse")
    with pytest.raises(KeyStoreLockedError):
        SoftwareKeyStore.open(tmp_path / "k")
    meta = json.loads((tmp_path / "k" / "kek.json").read_text())
    assert "correct horse" not in json.dumps(meta)


def test_kek_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    SoftwareKeyStore.open(tmp_path / "k").generate("a", "sm2")
    assert not list((tmp_path / "k").glob("*kek*.bin")) and (tmp_path / "k.kek").exists()
    os.chmod(tmp_path / "k.kek", 0o644)
    with pytest.raises(KeyStoreLockedError, match="chmod 600"):
        SoftwareKeyStore.open(tmp_path / "k")


def test_tampered_or_swapped_key_file_does_not_open(tmp_path: Path) -> None:
    store = SoftwareKeyStore.open(tmp_path / "k")
    store.generate("a", "sm2")
    store.generate("b", "sm2")
    record = json.loads((tmp_path / "k" / "a.key").read_text())
    record["label"] = "b"
    (tmp_path / "k" / "b.key").write_text(json.dumps(record))  # a's box under b's name
    with pytest.raises(KeyStoreLockedError):
        SoftwareKeyStore.open(tmp_path / "k").find("soft:object=b")


def test_label_rules_duplicates_and_destroy(tmp_path: Path) -> None:
    store = SoftwareKeyStore.open(tmp_path / "k")
    with pytest.raises(MalformedInputError):
        store.generate("../escape", "sm2")
    store.generate("x", "sm2")
    with pytest.raises(KeyExistsError):
        store.generate("x", "rsa-2048")
    assert store.list() == ["soft:object=x"]
    store.destroy("soft:object=x")
    assert store.list() == []
    with pytest.raises(KeyNotFoundError):
        store.find("soft:object=x")
    with pytest.raises(UnsupportedAlgorithmError):
        store.generate("y", "rsa-1024")


def test_key_uri_parsing_and_registry(tmp_path: Path) -> None:
    uri = KeyUri.parse(
        "pkcs11:token=hall%201;object=seal-key?module-path=/usr/lib/x.so&pin-source=file:pin.txt"
    )
    assert uri.scheme == "pkcs11"
    assert uri.path == {"token": "hall 1", "object": "seal-key"}
    assert uri.query["module-path"] == "/usr/lib/x.so"
    assert KeyUri.parse(str(uri)) == uri
    for bad in ("no-scheme", "soft:object", "1x:a=b"):
        with pytest.raises(MalformedInputError):
            KeyUri.parse(bad)
    store = SoftwareKeyStore.open(tmp_path / "k")
    store.generate("z", "sm2")
    registry = KeyRegistry(store)
    assert registry.find("soft:object=z").key_type == "sm2"
    with pytest.raises(KeyNotFoundError, match="no key backend"):
        registry.find("pkcs11:object=z")


def test_registry_names() -> None:
    assert by_name("sm2-sm3") is SM2_SM3
    with pytest.raises(UnsupportedAlgorithmError):
        by_name("md5-rsa")


def test_damaged_keystore_files_give_a_clear_error(tmp_path: Path) -> None:
    store = SoftwareKeyStore.open(tmp_path / "k")
    store.generate("a", "sm2")
    (tmp_path / "k" / "a.key").write_text('{"label": "a"}')
    with pytest.raises(KeyStoreLockedError, match="damaged"):
        SoftwareKeyStore.open(tmp_path / "k").find("soft:object=a")
    (tmp_path / "k" / "kek.json").write_text("{not json")
    with pytest.raises(KeyStoreLockedError, match="damaged"):
        SoftwareKeyStore.open(tmp_path / "k")


def test_label_with_trailing_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MalformedInputError):
        SoftwareKeyStore.open(tmp_path / "k").generate("abc\n", "sm2")


def test_uri_errors_never_echo_a_pin() -> None:
    for bad in (
        "pkcs11:token=t?pin-value",
        "pkcs11:token=t?pin-value1234",
        "no scheme pin-value=1234",
    ):
        with pytest.raises(MalformedInputError) as info:
            KeyUri.parse(bad)
        assert "1234" not in str(info.value) and "pin-value" not in str(info.value)


def test_deferred_keys_are_looked_up_when_they_first_sign(tmp_path: Path) -> None:
    store = SoftwareKeyStore.open(tmp_path / "k")
    real = store.generate("a", "sm2")
    store.generate("b", "sm2")
    registry = KeyRegistry(store)
    missing = DeferredKey(registry, "soft:object=missing", real.public_key_info)
    assert missing.key_type == "sm2"  # known from the certificate's key, nothing asked yet
    with pytest.raises(KeyNotFoundError):
        missing.sign(b"x")
    with pytest.raises(ConfigurationError, match="not the key of its certificate"):
        DeferredKey(registry, "soft:object=b", real.public_key_info).sign(b"x")
    deferred = DeferredKey(registry, "soft:object=a", real.public_key_info)
    SM2_SM3.verify(real.public_key_info, deferred.sign(b"x"), b"x")
