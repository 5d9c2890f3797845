"""The SDF (GM/T 0018) key backend against the C simulator, through its real C ABI."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import keys, x509

from hsm_adapters.sdf import SdfBackend
from tests.conftest import SM2_ID_OPT, openssl
from tests.sdfsim import SDR_COMMFAIL, SDR_HARDFAIL, SdfSim, sdf_sim  # noqa: F401
from trust.algorithms import RSA_PKCS1_SHA256, SM2_SM3
from trust.ca import CertificateAuthority, self_signed_root
from trust.certificates import make_name, to_pem
from trust.crl import verify_crl
from trust.errors import (
    ConfigurationError,
    DeviceError,
    DeviceUnavailableError,
    InvalidSignatureError,
    KeyNotFoundError,
    MalformedInputError,
    MechanismUnsupportedError,
    PinIncorrectError,
    PinLockedError,
    UnsupportedAlgorithmError,
)
from trust.repository import MemoryRepository
from trust.softkeys import SoftwareKeyStore


def pkeyutl_verify(tmp: Path, spki: keys.PublicKeyInfo, data: bytes, sig: bytes) -> None:
    (tmp / "pub.der").write_bytes(spki.dump())
    (tmp / "msg").write_bytes(data)
    (tmp / "sig").write_bytes(sig)
    out = openssl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID_OPT, "-pubin",
        "-keyform", "DER", "-inkey", tmp / "pub.der", "-in", tmp / "msg", "-sigfile", tmp / "sig",
    )  # fmt: skip
    assert b"Signature Verified Successfully" in out.stdout


@pytest.mark.parametrize("ecc_max_len", [64, 32])
def test_signatures_verify_with_both_builds(
    sdf_sim: SdfSim,  # noqa: F811
    ecc_max_len: int,
    tmp_path: Path,
) -> None:
    card = sdf_sim.card(ecc_max_len)
    backend = SdfBackend()
    k1, k2 = backend.find(card.uri(1)), backend.find(card.uri(2))
    assert k1.public_key_info.dump() == card.public_der(1)
    assert k2.public_key_info.dump() == card.public_der(2)
    assert k1.key_type == "sm2" and k1.key_uri.startswith("sdf:key-index=1?module-path=")
    assert card.passwords[1] not in k1.key_uri + repr(k1)
    data = f"办件结果 {ecc_max_len}".encode()
    sig = k1.sign(data)
    SM2_SM3.verify(k1.public_key_info, sig, data)
    pkeyutl_verify(tmp_path, k1.public_key_info, data, sig)
    with pytest.raises(InvalidSignatureError):
        SM2_SM3.verify(k2.public_key_info, sig, data)
    with pytest.raises(InvalidSignatureError):
        SM2_SM3.verify(k1.public_key_info, sig, data + b"!")
    # Another distinguishing ID goes into Z on the host: it verifies with that ID only.
    sig_alice = k2.sign(data, SM2_SM3, sm2_id=b"alice@example")
    SM2_SM3.verify(k2.public_key_info, sig_alice, data, sm2_id=b"alice@example")
    with pytest.raises(InvalidSignatureError):
        SM2_SM3.verify(k2.public_key_info, sig_alice, data)


@pytest.mark.parametrize(("build", "setting"), [(64, 32), (32, 64)])
def test_mismatched_ecc_max_len_is_a_clear_error(
    sdf_sim: SdfSim,  # noqa: F811
    build: int,
    setting: int,
) -> None:
    card = sdf_sim.card(build)
    with pytest.raises(DeviceError, match="ecc-max-len") as info:
        SdfBackend().find(card.uri(1, ecc_max_len=setting))
    assert card.passwords[1] not in str(info.value)


def test_ecc_max_len_from_environment(sdf_sim: SdfSim) -> None:  # noqa: F811
    card = sdf_sim.card(32)
    uri = f"sdf:key-index=1?pin-value={card.passwords[1]}"
    env = {"ETRUST_SDF_MODULE": str(card.lib_path), "ETRUST_SDF_ECC_MAX_LEN": "32"}
    key = SdfBackend(environ=env).find(uri)
    SM2_SM3.verify(key.public_key_info, key.sign(b"x"), b"x")
    with pytest.raises(DeviceError):
        SdfBackend(environ={**env, "ETRUST_SDF_ECC_MAX_LEN": "64"}).find(uri)


def test_access_right_once_per_session_password_from_env(sdf_sim: SdfSim) -> None:  # noqa: F811
    card = sdf_sim.card()
    env = {"HSM_KEY1_PASSWORD": card.passwords[1]}
    key = SdfBackend(str(card.lib_path), environ=env).find(
        "sdf:key-index=1?pin-source=env:HSM_KEY1_PASSWORD"
    )
    assert card.attempts(1) == 0  # finding a key needs no password
    for i in range(5):
        SM2_SM3.verify(key.public_key_info, key.sign(b"m%d" % i), b"m%d" % i)
    assert card.attempts(1) == 1
    with pytest.raises(ConfigurationError, match="HSM_KEY1_PASSWORD"):
        SdfBackend(str(card.lib_path), environ={}).find(
            "sdf:key-index=1?pin-source=env:HSM_KEY1_PASSWORD"
        ).sign(b"x")


def test_wrong_password_is_sent_once(sdf_sim: SdfSim) -> None:  # noqa: F811
    card = sdf_sim.card()
    backend = SdfBackend()
    wrong = "not-" + card.passwords[1]
    key = backend.find(card.uri(1, password=wrong))
    with pytest.raises(PinIncorrectError) as info:
        key.sign(b"x")
    assert wrong not in str(info.value) and card.passwords[1] not in str(info.value)
    with pytest.raises(PinIncorrectError):
        key.sign(b"x")  # refused on the host: the card saw one attempt
    with pytest.raises(PinIncorrectError):
        backend.find(card.uri(1, password=wrong)).sign(b"x")  # looked up again: same handle
    assert card.attempts(1) == 1
    good = backend.find(card.uri(1))
    SM2_SM3.verify(good.public_key_info, good.sign(b"x"), b"x")
    assert card.attempts(1) == 2


def test_forget_after_fixing_a_password_source(sdf_sim: SdfSim) -> None:  # noqa: F811
    card = sdf_sim.card()
    env = {"HSM_KEY1_PASSWORD": "wrong"}
    backend = SdfBackend(str(card.lib_path), environ=env)
    uri = "sdf:key-index=1?pin-source=env:HSM_KEY1_PASSWORD"
    with pytest.raises(PinIncorrectError):
        backend.find(uri).sign(b"x")
    env["HSM_KEY1_PASSWORD"] = card.passwords[1]
    with pytest.raises(PinIncorrectError):
        backend.find(uri).sign(b"x")  # still the rejected handle: nothing sent
    assert card.attempts(1) == 1
    backend.forget(uri)
    key = backend.find(uri)
    SM2_SM3.verify(key.public_key_info, key.sign(b"x"), b"x")
    assert card.attempts(1) == 2


def test_repeated_wrong_passwords_lock_the_key(sdf_sim: SdfSim) -> None:  # noqa: F811
    card = sdf_sim.card()
    backend = SdfBackend()
    for attempt in range(3):  # the simulator locks an index at its third failure
        with pytest.raises(PinIncorrectError):
            backend.find(card.uri(2, password=f"wrong{attempt}")).sign(b"x")
    assert card.attempts(2) == 3
    with pytest.raises(PinLockedError):
        backend.find(card.uri(2)).sign(b"x")  # even the right password
    key1 = backend.find(card.uri(1))  # other indexes are unaffected
    SM2_SM3.verify(key1.public_key_info, key1.sign(b"x"), b"x")


@pytest.mark.parametrize("code", [SDR_COMMFAIL, SDR_HARDFAIL])
def test_card_failure_then_recovery(sdf_sim: SdfSim, code: int) -> None:  # noqa: F811
    card = sdf_sim.card()
    backend = SdfBackend()
    key = backend.find(card.uri(1))
    key.sign(b"before")
    card.break_device(code)
    with pytest.raises(DeviceUnavailableError):
        key.sign(b"during")
    with pytest.raises(DeviceUnavailableError):
        key.sign(b"during")  # the reopen attempt fails too while the card is down
    with pytest.raises(DeviceUnavailableError):
        backend.find(card.uri(2))
    card.repair()
    sig = key.sign(b"after")  # reopened device and session, access right acquired again
    SM2_SM3.verify(key.public_key_info, sig, b"after")
    assert card.attempts(1) == 2
    backend.close()  # closing is harmless: the next call opens the card again
    SM2_SM3.verify(key.public_key_info, key.sign(b"again"), b"again")
    assert card.attempts(1) == 3


def test_eight_threads_sign_concurrently(sdf_sim: SdfSim) -> None:  # noqa: F811
    card = sdf_sim.card()
    backend = SdfBackend()
    key = backend.find(card.uri(1))

    def work(n: int) -> list[tuple[bytes, bytes]]:
        return [(m, key.sign(m)) for m in (f"thread {n} msg {i}".encode() for i in range(10))]

    with ThreadPoolExecutor(8) as pool:
        results = [pair for batch in pool.map(work, range(8)) for pair in batch]
    assert len(results) == 80
    for message, sig in results:
        SM2_SM3.verify(key.public_key_info, sig, message)
    assert 1 <= card.attempts(1) <= 8  # once per pooled session


def test_bad_uris_and_configuration(sdf_sim: SdfSim, tmp_path: Path) -> None:  # noqa: F811
    card = sdf_sim.card()
    backend = SdfBackend(str(card.lib_path))
    with pytest.raises(KeyNotFoundError):
        backend.find("sdf:key-index=7")
    for bad in ("sdf:key-index=0", "sdf:key-index=abc", "sdf:key-index=²", "sdf:", "pkcs11:x=1"):
        with pytest.raises(MalformedInputError):
            backend.find(bad)
    with pytest.raises(ConfigurationError, match="ecc-max-len"):
        backend.find("sdf:key-index=1?ecc-max-len=48")
    with pytest.raises(ConfigurationError, match="module-path"):
        SdfBackend(environ={}).find("sdf:key-index=1")
    with pytest.raises(DeviceUnavailableError):
        backend.find(f"sdf:key-index=1?module-path={tmp_path}/missing.so")
    with pytest.raises(ConfigurationError, match="SDF"):
        backend.find("sdf:key-index=1?module-path=libcrypto.so.3")
    for bad in ("sdf:?pin-value=S3CRET", "sdf:key-index=x?pin-value=S3CRET", "x:?pin-value=S3CRET"):
        with pytest.raises(MalformedInputError) as info:
            backend.find(bad)
        assert "S3CRET" not in str(info.value)
    key = backend.find(card.uri(1))
    with pytest.raises(UnsupportedAlgorithmError):
        key.sign(b"x", RSA_PKCS1_SHA256)
    with pytest.raises(MalformedInputError):
        key.sign("text")  # type: ignore[arg-type]


def test_generate_and_destroy_are_left_to_the_card(sdf_sim: SdfSim) -> None:  # noqa: F811
    card = sdf_sim.card()
    backend = SdfBackend(str(card.lib_path))
    for spec in ("rsa-2048", "ec-p256", "sm2"):
        with pytest.raises(MechanismUnsupportedError):
            backend.generate("k", spec)
    with pytest.raises(UnsupportedAlgorithmError):
        backend.generate("k", "dsa-1024")
    with pytest.raises(MechanismUnsupportedError):
        backend.destroy("sdf:key-index=1")


@pytest.mark.parametrize("ecc_max_len", [64, 32])
def test_list_and_probe(sdf_sim: SdfSim, ecc_max_len: int) -> None:  # noqa: F811
    card = sdf_sim.card(ecc_max_len)
    backend = SdfBackend(str(card.lib_path), ecc_max_len=ecc_max_len)
    assert backend.list() == ["sdf:key-index=1", "sdf:key-index=2"]
    report = backend.probe(card.uri(1))
    text = json.dumps(report)
    assert card.passwords[1] not in text and "pin-value" not in text
    assert report["device"]["serial"] == "SIM0000000000001"
    assert report["device"]["name"] == "SDFSIM"
    assert report["ecc_max_len"] == ecc_max_len
    assert report["random_self_test"] == "ok"
    assert [k["index"] for k in report["keys"]] == [1, 2]
    for entry in report["keys"]:
        assert entry["spki_sha256"] == hashlib.sha256(card.public_der(entry["index"])).hexdigest()
        backend.find(entry["uri"])  # the URIs it returns find the keys


def test_issuing_ca_key_in_the_card(sdf_sim: SdfSim, tmp_path: Path) -> None:  # noqa: F811
    card = sdf_sim.card()
    now = datetime.now(UTC)
    store = SoftwareKeyStore.open(tmp_path / "keys")
    repo = MemoryRepository()
    root_key = store.generate("root", "sm2")
    root_cert = self_signed_root(root_key, make_name({"C": "CN", "CN": "软件根"}), now=now)
    root = CertificateAuthority("root", root_cert, root_key, repo, clock=lambda: now)
    card_key = SdfBackend().find(card.uri(2))
    issuing_cert = root.issue(
        card_key.public_key_info, make_name({"C": "CN", "CN": "密码卡签发CA"}), "issuing-ca"
    )
    issuing = CertificateAuthority("card-ca", issuing_cert, card_key, repo, clock=lambda: now)
    leaf_key = store.generate("leaf", "sm2")
    leaf = issuing.issue(leaf_key.public_key_info, make_name({"CN": "签章者"}), "seal-signer")
    issuing.revoke(leaf.serial_number, "key_compromise")
    crl_ = issuing.crl()
    verify_crl(crl_, issuing_cert)
    assert x509.Certificate.load(leaf.dump())["signature_algorithm"]["algorithm"].dotted == (
        "1.2.156.10197.1.501"
    )

    (tmp_path / "issuer.pem").write_bytes(to_pem(issuing_cert))
    (tmp_path / "leaf.pem").write_bytes(to_pem(leaf))
    out = openssl(
        "verify", "-vfyopt", SM2_ID_OPT, "-partial_chain",
        "-CAfile", tmp_path / "issuer.pem", tmp_path / "leaf.pem",
    )  # fmt: skip
    assert b": OK" in out.stdout
    pkeyutl_verify(
        tmp_path,
        issuing_cert.public_key,
        crl_["tbs_cert_list"].dump(),
        crl_["signature"].native,
    )


def test_device_is_closed_only_after_its_last_session_returns(sdf_sim: SdfSim) -> None:  # noqa: F811
    """A card failure seen by one thread must not close the device under another's session."""
    card = sdf_sim.card()
    key = SdfBackend().find(card.uri(1))
    SM2_SM3.verify(key.public_key_info, key.sign(b"warm"), b"warm")
    pool = key._card
    with pool.session() as busy:  # another thread's operation, in flight
        pool._drop(busy.generation)  # ... while this one saw the card fail
        assert pool._retired and busy.generation in pool._retired  # kept open for it
    assert not pool._retired and not pool._in_use  # closed once it came back
    SM2_SM3.verify(key.public_key_info, key.sign(b"reopened"), b"reopened")
