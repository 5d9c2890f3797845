"""The PKCS#11 backend against a real SoftHSM2 token: keys made inside, signatures that verify."""

from __future__ import annotations

import ctypes
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from asn1crypto import pem
from pkcs11 import Attribute, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11x

from hsm_adapters.pkcs11 import Pkcs11Backend, Pkcs11Key, parse_id, probe
from hsm_adapters.pkcs11_lib import map_error
from tests.conftest import openssl
from tests.softhsm import SoftHsm, Token
from trust.algorithms import ECDSA_P256_SHA256, RSA_PKCS1_SHA256, RSA_PSS_SHA256, SM2_SM3
from trust.ca import CertificateAuthority, self_signed_root
from trust.certificates import make_name, to_pem
from trust.errors import (
    DeviceUnavailableError,
    InvalidSignatureError,
    KeyExistsError,
    KeyNotFoundError,
    MalformedInputError,
    MechanismUnsupportedError,
    PinIncorrectError,
    PinLockedError,
    UnsupportedAlgorithmError,
)
from trust.keys import KeyHandle, default_algorithm
from trust.profiles import IssuerPointers
from trust.repository import MemoryRepository
from trust.softkeys import SoftwareKeyStore


@pytest.fixture(scope="module")
def shared(softhsm: SoftHsm) -> tuple[Token, Pkcs11Backend, Pkcs11Key, Pkcs11Key]:
    """One token with an RSA-2048 and a P-256 key, for the tests that only sign."""
    token = softhsm.take_token()
    backend = Pkcs11Backend.from_uri(token.uri())
    return token, backend, backend.generate("rsa", "rsa-2048"), backend.generate("ec", "ec-p256")


def _raw_session(token: Token) -> pkcs11.Session:
    """A session of our own on the token (no login: the backend's login covers the process)."""
    return pkcs11.lib(token.module).get_token(token_label=token.label).open()


def test_keys_are_made_inside_and_stay_there(shared: tuple[Token, Pkcs11Backend, Any, Any]) -> None:
    token, _, rsa_key, ec_key = shared
    with _raw_session(token) as session:
        for key in (rsa_key, ec_key):
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key.key_id)
            assert private[Attribute.TOKEN] is True
            assert private[Attribute.SENSITIVE] is True
            assert private[Attribute.EXTRACTABLE] is False
            assert private[Attribute.SIGN] is True
            assert private[Attribute.DECRYPT] is False
            assert private[Attribute.LABEL] == key.label
            secret = Attribute.PRIVATE_EXPONENT if key.key_type == "rsa" else Attribute.VALUE
            with pytest.raises(p11x.AttributeSensitive):
                private[secret]
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key.key_id)
            assert public[Attribute.TOKEN] is True
    assert len(rsa_key.key_id) == 16 and rsa_key.key_id != ec_key.key_id


@pytest.mark.parametrize(
    ("which", "algorithm"),
    [
        ("rsa", None),
        ("rsa", RSA_PKCS1_SHA256),
        ("rsa", RSA_PSS_SHA256),
        ("ec", None),
        ("ec", ECDSA_P256_SHA256),
    ],
)
def test_signatures_verify(
    shared: tuple[Token, Pkcs11Backend, Any, Any], which: str, algorithm: Any
) -> None:
    _, _, rsa_key, ec_key = shared
    key: Pkcs11Key = rsa_key if which == "rsa" else ec_key
    assert isinstance(key, KeyHandle)
    alg = algorithm or default_algorithm(key)
    message = os.urandom(100)
    signature = key.sign(message, algorithm)
    alg.verify(key.public_key_info, signature, message)
    with pytest.raises(InvalidSignatureError):
        alg.verify(key.public_key_info, signature, message + b"!")


def test_wrong_algorithm_for_the_key(shared: tuple[Token, Pkcs11Backend, Any, Any]) -> None:
    _, _, rsa_key, ec_key = shared
    with pytest.raises(UnsupportedAlgorithmError):
        rsa_key.sign(b"m", ECDSA_P256_SHA256)
    with pytest.raises(UnsupportedAlgorithmError):
        ec_key.sign(b"m", SM2_SM3)


def test_openssl_verifies_both(
    shared: tuple[Token, Pkcs11Backend, Any, Any], tmp_path: Path
) -> None:
    _, _, rsa_key, ec_key = shared
    message = tmp_path / "msg"
    message.write_bytes(b"an outcome to seal" * 10)
    for key in (rsa_key, ec_key):
        pub = tmp_path / f"{key.label}.pem"
        pub.write_bytes(pem.armor("PUBLIC KEY", key.public_key_info.dump()))
        sig = tmp_path / f"{key.label}.sig"
        sig.write_bytes(key.sign(message.read_bytes()))
        out = openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, message)
        assert b"Verified OK" in out.stdout


def test_find_list_destroy(softhsm_token: Token) -> None:
    backend = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin=softhsm_token.pin)
    key = backend.generate("seal-key", "ec-p256")
    other = backend.generate("other", "ec-p256")
    assert key.key_uri.startswith(f"pkcs11:token={softhsm_token.label};object=seal-key;id=%")
    hex_id = key.key_id.hex()
    fresh = Pkcs11Backend.from_uri(softhsm_token.uri())  # no cached handles
    for uri in (
        "pkcs11:object=seal-key",
        f"pkcs11:token={softhsm_token.label};object=seal-key",
        f"pkcs11:id={hex_id}",
        key.key_uri,
    ):
        found = fresh.find(uri)
        assert found.key_id == key.key_id
        assert found.public_key_info.dump() == key.public_key_info.dump()
        ECDSA_P256_SHA256.verify(found.public_key_info, found.sign(b"x"), b"x")
    assert sorted(backend.list()) == sorted([key.key_uri, other.key_uri])
    with pytest.raises(KeyExistsError):
        backend.generate("seal-key", "rsa-2048")
    with pytest.raises(KeyNotFoundError):
        backend.find("pkcs11:object=nope")
    with pytest.raises(KeyNotFoundError):
        backend.find("pkcs11:token=another-token;object=seal-key")
    with pytest.raises(MalformedInputError):
        backend.find(f"pkcs11:token={softhsm_token.label}")
    with pytest.raises(MalformedInputError):
        backend.find("soft:object=seal-key")
    backend.destroy(key.key_uri)
    assert backend.list() == [other.key_uri]
    with pytest.raises(KeyNotFoundError):
        fresh.find("pkcs11:object=seal-key")
    with _raw_session(softhsm_token) as session:  # the public half went too
        assert not list(session.get_objects({Attribute.ID: key.key_id}))
    with pytest.raises(KeyNotFoundError):
        backend.destroy(key.key_uri)


def test_ids_in_uris() -> None:
    assert parse_id("%01%a2%ff") == b"\x01\xa2\xff"
    assert parse_id("01a2ff") == b"\x01\xa2\xff"
    assert parse_id("seal") == b"seal"


def test_bad_specs_and_labels(shared: tuple[Token, Pkcs11Backend, Any, Any]) -> None:
    _, backend, _, _ = shared
    with pytest.raises(UnsupportedAlgorithmError):
        backend.generate("k", "rsa-1024")
    with pytest.raises(MalformedInputError):
        backend.generate("bad label!", "ec-p256")


def test_sm2_needs_a_vendor_mechanism(shared: tuple[Token, Pkcs11Backend, Any, Any]) -> None:
    token, backend, _, _ = shared
    with pytest.raises(MechanismUnsupportedError, match="vendor"):
        backend.generate("sm2-key", "sm2")
    # Forcing a vendor's codes exercises that path: SoftHSM refuses the unknown mechanism.
    tass = Pkcs11Backend.from_uri(token.uri() + "&x-sm2-vendor=tass")
    with pytest.raises(MechanismUnsupportedError):
        tass.generate("sm2-key", "sm2")
    assert not [u for u in backend.list() if "sm2-key" in u]


def test_wrong_pin_is_tried_once(softhsm_token: Token) -> None:
    wrong = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin="99999999")
    for _ in range(3):
        with pytest.raises(PinIncorrectError) as info:
            wrong.list()
        assert "99999999" not in str(info.value)
    assert wrong._pool.login_attempts == 1
    # The one attempt reached the token (it now flags a failed login) ...
    flags = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label).flags
    assert flags & TokenFlag.USER_PIN_COUNT_LOW
    # ... and did not lock it: the right PIN still works.
    right = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin=softhsm_token.pin)
    assert right.list() == []


def test_pin_sources(softhsm_token: Token, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_file = tmp_path / "pin.txt"
    pin_file.write_text(softhsm_token.pin + "\n")
    pin_file.chmod(0o600)
    uri = (
        f"pkcs11:token={softhsm_token.label}?module-path={softhsm_token.module}"
        f"&pin-source=file:{pin_file}"
    )
    assert Pkcs11Backend.from_uri(uri).list() == []
    monkeypatch.setenv("HALL_PIN", softhsm_token.pin)
    backend = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin_source="env:HALL_PIN")
    assert backend.list() == []


def test_error_mapping() -> None:
    assert isinstance(map_error(p11x.PinLocked(), "login"), PinLockedError)
    assert isinstance(map_error(p11x.DeviceRemoved(), "sign"), DeviceUnavailableError)
    assert isinstance(map_error(p11x.MechanismInvalid(), "sign"), MechanismUnsupportedError)


def test_missing_token_and_module(softhsm: SoftHsm) -> None:
    with pytest.raises(DeviceUnavailableError):
        Pkcs11Backend(softhsm.module, "no-such-token", pin="1234").list()
    with pytest.raises(DeviceUnavailableError):
        Pkcs11Backend("/nonexistent/libpkcs11.so", "t1", pin="1234")


def test_concurrent_signing(shared: tuple[Token, Pkcs11Backend, Any, Any]) -> None:
    _, backend, rsa_key, ec_key = shared
    assert backend.module.thread_safe  # we initialised SoftHSM with OS locking
    results: list[tuple[Pkcs11Key, bytes, bytes]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(30):
                key = rsa_key if (n + i) % 5 == 0 else ec_key
                message = f"{n}-{i}".encode()
                results.append((key, message, key.sign(message)))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 240
    for key, message, signature in results:
        default_algorithm(key).verify(key.public_key_info, signature, message)
    assert len(backend._pool._all) <= backend.pool_size == 8


# python-pkcs11 finalises the search of a dead session in __del__ and reports that failure there.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_reconnects_after_sessions_are_closed_behind_its_back(softhsm_token: Token) -> None:
    backend = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin=softhsm_token.pin)
    key = backend.generate("k", "ec-p256")
    ECDSA_P256_SHA256.verify(key.public_key_info, key.sign(b"before"), b"before")
    logins = backend._pool.login_attempts
    slot_id = (
        pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label).slot.slot_id
    )
    close_all = ctypes.CDLL(softhsm_token.module).C_CloseAllSessions
    close_all.argtypes = [ctypes.c_ulong]
    close_all.restype = ctypes.c_ulong
    assert close_all(slot_id) == 0  # every session gone, and with them the login
    ECDSA_P256_SHA256.verify(key.public_key_info, key.sign(b"after"), b"after")
    assert backend._pool.login_attempts == logins + 1
    assert close_all(slot_id) == 0
    assert backend.find("pkcs11:object=k").key_id == key.key_id


def test_probe(shared: tuple[Token, Pkcs11Backend, Any, Any]) -> None:
    token, _, rsa_key, _ = shared
    report = probe(token.uri())
    json.dumps(report)
    assert report["module"]["manufacturer"] == "SoftHSM"
    assert report["module"]["sm2_vendor"] is None
    (slot,) = report["slots"]
    assert slot["token"]["label"] == token.label
    assert "CKM_ECDSA" in slot["mechanisms"] and "CKM_SHA256_RSA_PKCS_PSS" in slot["mechanisms"]
    assert slot["login"] == "done"
    labels = {k["label"]: k for k in slot["objects"]["private_keys"]}
    assert labels["rsa"]["id"] == rsa_key.key_id.hex() and labels["rsa"]["key_type"] == "RSA"
    assert labels["ec"]["key_type"] == "EC"
    if "ETRUST_PKCS11_PIN" not in os.environ:
        public_only = probe(f"pkcs11:token={token.label}?module-path={token.module}")
        assert public_only["slots"][0]["login"] == "not attempted"
    wrong = probe(f"pkcs11:token={token.label}?module-path={token.module}&pin-value=00000000")
    # This process is logged in already, so the token does not even look at the PIN.
    assert wrong["slots"][0]["login"] in ("done", "PIN_INCORRECT")


def test_issuing_ca_key_in_the_token(softhsm_token: Token, tmp_path: Path) -> None:
    """Root in software, issuing CA key in SoftHSM: OpenSSL accepts the leaf and the CRL."""
    now = datetime.now(UTC)
    store = SoftwareKeyStore.open(tmp_path / "keys")
    repo = MemoryRepository()
    root_key = store.generate("root", "rsa-2048")
    root_cert = self_signed_root(
        root_key, make_name({"C": "CN", "O": "测试盟政务服务局", "CN": "测试根证书 HSM"}), now=now
    )
    base = "http://127.0.0.1:8000/pki"
    root = CertificateAuthority(
        "root",
        root_cert,
        root_key,
        repo,
        pointers=IssuerPointers(f"{base}/crl/root.crl", f"{base}/ocsp", f"{base}/ca/root.crt"),
        clock=lambda: now,
    )
    backend = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin=softhsm_token.pin)
    hsm_key = backend.generate("issuing-ca", "rsa-2048")
    issuing_cert = root.issue(
        hsm_key.public_key_info,
        make_name({"C": "CN", "O": "测试盟政务服务局", "CN": "测试签发证书 HSM"}),
        "issuing-ca",
    )
    issuing = CertificateAuthority(
        "issuing",
        issuing_cert,
        backend.find(hsm_key.key_uri),
        repo,
        pointers=IssuerPointers(f"{base}/crl/iss.crl", f"{base}/ocsp", f"{base}/ca/iss.crt"),
        clock=lambda: now,
    )
    leaf_key = store.generate("leaf", "rsa-2048")
    leaf = issuing.issue(
        leaf_key.public_key_info,
        make_name({"C": "CN", "O": "测试盟政务服务局", "CN": "签章者"}),
        "seal-signer",
    )
    issuing.revoke(leaf.serial_number, "key_compromise")
    files = {
        "root.pem": to_pem(root_cert),
        "issuing.pem": to_pem(issuing_cert),
        "leaf.pem": to_pem(leaf),
        "crl.pem": to_pem(issuing.crl(), "X509 CRL"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = openssl(
        "verify", "-check_ss_sig", "-CAfile", tmp_path / "root.pem",
        "-untrusted", tmp_path / "issuing.pem", tmp_path / "leaf.pem",
    )  # fmt: skip
    assert b": OK" in out.stdout
    crl = openssl(
        "crl", "-verify", "-noout", "-CAfile", tmp_path / "issuing.pem", "-in", tmp_path / "crl.pem"
    )
    assert b"verify OK" in crl.stderr
    revoked = openssl(
        "verify", "-crl_check", "-CAfile", tmp_path / "root.pem", "-untrusted",
        tmp_path / "issuing.pem", "-CRLfile", tmp_path / "crl.pem", tmp_path / "leaf.pem",
        check=False,
    )  # fmt: skip
    assert revoked.returncode != 0 and b"revoked" in revoked.stdout + revoked.stderr


def test_pool_stays_bounded_and_recovers_while_busy(softhsm_token: Token) -> None:
    """More callers than sessions wait their turn; a reset mid-load loses no caller."""
    backend = Pkcs11Backend.from_uri(softhsm_token.uri(), pool_size=2)
    key = backend.generate("bounded", "ec-p256")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                message = f"{n}-{i}".encode()
                ECDSA_P256_SHA256.verify(key.public_key_info, key.sign(message), message)
                if n == 0 and i == 5:
                    backend._pool.reset()  # as after a reconnect: old sessions drain away
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len(backend._pool._all) <= 2 and backend._pool._open_count <= 2


def test_closing_the_session_that_logged_in_keeps_the_others_logged_in(
    softhsm_token: Token,
) -> None:
    """A session python-pkcs11 logged in closes with C_Logout, which logs out the whole
    process; ours log in by our own C_Login, so closing the first one after a reset is safe."""
    backend = Pkcs11Backend.from_uri(softhsm_token.uri(), pool_size=2)
    key = backend.generate("login-holder", "ec-p256")
    key.sign(b"first")  # the pool's first session logs in
    with backend._pool.session() as first:
        backend._pool.reset()
        key.sign(b"during")  # a new session, relying on the process-wide login
    # Giving the first session back closed it; the new session, looking the key up afresh,
    # still sees it (a logged-out session would not find a private key at all).
    assert first not in backend._pool._all
    backend._pool.forget_key(key.key_id)
    ECDSA_P256_SHA256.verify(key.public_key_info, key.sign(b"after"), b"after")


def _live_sessions(module: str, below: int) -> list[int]:
    """Session handles under ``below`` that the module still knows (C_GetSessionInfo)."""

    class SessionInfo(ctypes.Structure):
        _fields_ = [(n, ctypes.c_ulong) for n in ("slot", "state", "flags", "error")]

    get_info = ctypes.CDLL(module).C_GetSessionInfo
    get_info.argtypes = [ctypes.c_ulong, ctypes.POINTER(SessionInfo)]
    get_info.restype = ctypes.c_ulong
    info = SessionInfo()
    return [h for h in range(1, below) if get_info(h, ctypes.byref(info)) == 0]


def test_a_refused_login_leaves_no_session_open(softhsm_token: Token) -> None:
    lib = pkcs11.lib(softhsm_token.module)
    before = lib.get_token(token_label=softhsm_token.label).open()
    wrong = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin="99999999")
    with pytest.raises(PinIncorrectError):
        wrong.list()
    after = lib.get_token(token_label=softhsm_token.label).open()
    assert after.handle > before.handle + 1  # the login attempt had a session of its own
    live = _live_sessions(softhsm_token.module, after.handle)
    assert before.handle in live
    assert not [h for h in live if h > before.handle], "the failed login's session is still open"
    before.close()
    after.close()


def test_a_module_without_locking_gets_one_call_at_a_time(
    softhsm_token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module that cannot lock sees every call (token lookup, mechanisms, signing) under
    the process's lock for it, and one session."""
    import dataclasses

    from hsm_adapters import pkcs11 as adapter

    real = adapter.load_module(softhsm_token.module)
    unlocked = dataclasses.replace(real, thread_safe=False, call_lock=threading.RLock())
    monkeypatch.setattr(adapter, "load_module", lambda path: unlocked)
    backend = Pkcs11Backend(softhsm_token.module, softhsm_token.label, pin=softhsm_token.pin)
    assert backend.pool_size == 1
    key = backend.generate("serial", "ec-p256")

    def blocked_while_held(call: Any) -> None:
        done = threading.Event()
        worker = threading.Thread(target=lambda: (call(), done.set()))
        with unlocked.call_lock:
            worker.start()
            assert not done.wait(0.3), "a module call ran while another held the module"
        worker.join(timeout=30)
        assert done.is_set()

    blocked_while_held(lambda: key.sign(b"x"))
    backend._mechanisms = None
    blocked_while_held(backend.mechanisms)
    backend._pool.reset()
    blocked_while_held(lambda: backend.token_label)
    blocked_while_held(lambda: probe(softhsm_token.uri()))
