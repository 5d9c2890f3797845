"""The SKF backend against the simulator's real C ABI, in both ULONG widths."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from asn1crypto import keys

from hsm_adapters.skf import SkfBackend, SkfKey, parse_public_key_blob
from tests.conftest import SM2_ID_OPT, Hierarchy, openssl, openssl_key
from tests.skfsim import Container, SkfSimulator, skf_libraries, skf_sim  # noqa: F401
from trust.algorithms import RSA_PKCS1_SHA256, RSA_PSS_SHA256, SM2_SM3
from trust.ca import CertificateAuthority
from trust.certificates import load_certificate, make_name, to_pem
from trust.errors import (
    ConfigurationError,
    DeviceError,
    DeviceUnavailableError,
    InvalidSignatureError,
    KeyNotFoundError,
    MechanismUnsupportedError,
    PinIncorrectError,
    PinLockedError,
)
from trust.repository import MemoryRepository

PIN = "11223344"
MESSAGE = "电子证照 e-license 0001".encode()


@dataclass
class Material:
    key_pem: bytes
    spki: keys.PublicKeyInfo
    cert_der: bytes


def _material(folder: Path, kind: str, hierarchy: Hierarchy) -> Material:
    key = openssl_key(folder / f"{kind}.pem", kind)
    spki_der = openssl("pkey", "-in", key, "-pubout", "-outform", "DER").stdout
    spki = keys.PublicKeyInfo.load(spki_der)
    cert = hierarchy.issuing.issue(
        spki, make_name({"C": "CN", "O": "测试局", "CN": f"USB key {kind}"}), "seal-signer"
    )
    return Material(key.read_bytes(), spki, cert.dump())


@pytest.fixture(scope="session")
def sm2_material(tmp_path_factory: pytest.TempPathFactory, sm2_hierarchy: Hierarchy) -> Material:
    return _material(tmp_path_factory.mktemp("skf-sm2"), "sm2", sm2_hierarchy)


@pytest.fixture(scope="session")
def rsa_material(tmp_path_factory: pytest.TempPathFactory, rsa_hierarchy: Hierarchy) -> Material:
    return _material(tmp_path_factory.mktemp("skf-rsa"), "rsa", rsa_hierarchy)


@dataclass
class Device:
    sim: SkfSimulator
    backend: SkfBackend
    pin_file: Path

    def uri(self, container: str, **query: str) -> str:
        q = {
            "module-path": str(self.sim.library),
            "ulong": str(self.sim.bits),
            "pin-source": f"file:{self.pin_file}",
            **query,
        }
        return f"skf:device=UKEY01;application=ETRUST;container={container}?" + "&".join(
            f"{k}={quote(v, safe='/:')}" for k, v in q.items()
        )


@pytest.fixture
def device(
    tmp_path: Path,
    skf_sim: SkfSimulator,  # noqa: F811
    sm2_material: Material,
    rsa_material: Material,
) -> Iterator[Device]:
    skf_sim.provision(
        tmp_path / "devices",
        [
            Container("seal", sm2_material.key_pem, sm2_material.cert_der),
            Container("rsa-seal", rsa_material.key_pem, rsa_material.cert_der),
            Container("bare", sm2_material.key_pem),
        ],
        pin=PIN,
    )
    pin_file = tmp_path / "pin.txt"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    backend = SkfBackend(str(skf_sim.library), ulong_bits=skf_sim.bits, environ={})
    yield Device(skf_sim, backend, pin_file)
    backend.close()


def _openssl_verify_sm2(folder: Path, spki: keys.PublicKeyInfo, sig: bytes, data: bytes) -> None:
    (folder / "pub.der").write_bytes(spki.dump())
    (folder / "msg").write_bytes(data)
    (folder / "sig").write_bytes(sig)
    openssl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID_OPT,
        "-pubin", "-keyform", "DER", "-inkey", folder / "pub.der",
        "-in", folder / "msg", "-sigfile", folder / "sig",
    )  # fmt: skip


def test_sm2_signature_verifies_with_registry_and_openssl(
    device: Device, sm2_material: Material, tmp_path: Path
) -> None:
    key = device.backend.find(device.uri("seal"))
    assert isinstance(key, SkfKey) and key.key_type == "sm2"
    assert key.public_key_info.dump() == sm2_material.spki.dump()
    assert key.certificate == sm2_material.cert_der
    assert "pin" not in key.key_uri.split("?")[0] and PIN not in key.key_uri

    sig = key.sign(MESSAGE)
    SM2_SM3.verify(key.public_key_info, sig, MESSAGE)
    _openssl_verify_sm2(tmp_path, key.public_key_info, sig, MESSAGE)
    with pytest.raises(InvalidSignatureError):
        SM2_SM3.verify(key.public_key_info, sig, MESSAGE + b"!")


def test_sm2_other_id_enters_z(device: Device) -> None:
    key = device.backend.find(device.uri("seal"))
    sig = key.sign(MESSAGE, SM2_SM3, sm2_id=b"ALICE123@YAHOO.COM")
    SM2_SM3.verify(key.public_key_info, sig, MESSAGE, sm2_id=b"ALICE123@YAHOO.COM")
    with pytest.raises(InvalidSignatureError):
        SM2_SM3.verify(key.public_key_info, sig, MESSAGE)


def test_rsa_signature_verifies_with_registry_and_openssl(
    device: Device, rsa_material: Material, tmp_path: Path
) -> None:
    key = device.backend.find(device.uri("rsa-seal"))
    assert key.key_type == "rsa"
    assert key.public_key_info.dump() == rsa_material.spki.dump()
    sig = key.sign(MESSAGE)
    assert len(sig) == 256
    RSA_PKCS1_SHA256.verify(key.public_key_info, sig, MESSAGE)
    (tmp_path / "pub.der").write_bytes(key.public_key_info.dump())
    (tmp_path / "msg").write_bytes(MESSAGE)
    (tmp_path / "sig").write_bytes(sig)
    openssl(
        "dgst", "-sha256", "-verify", tmp_path / "pub.der", "-keyform", "DER",
        "-signature", tmp_path / "sig", tmp_path / "msg",
    )  # fmt: skip
    with pytest.raises(MechanismUnsupportedError):
        key.sign(MESSAGE, RSA_PSS_SHA256)


def test_wrong_pin_counts_down_by_one_then_locks(device: Device) -> None:
    wrong = "99999999"
    uri = device.uri("seal", **{"pin-source": "env:UKEY_PIN"})
    backend = SkfBackend(environ={"UKEY_PIN": wrong})
    seen = []
    for _ in range(5):
        key = backend.find(uri)  # each explicit find allows the PIN source one more try
        with pytest.raises(PinIncorrectError) as info:
            key.sign(MESSAGE)
        assert wrong not in str(info.value)
        seen.append(info.value.attempts_left)
    assert seen == [5, 4, 3, 2, 1]
    probe = backend.probe(uri)
    assert probe["devices"][0]["applications"][0]["user_pin"]["retries_left"] == 1
    with pytest.raises(PinLockedError):
        backend.find(uri).sign(MESSAGE)
    with pytest.raises(PinLockedError):  # the right PIN no longer helps
        device.backend.find(device.uri("seal")).sign(MESSAGE)
    backend.close()


def test_finding_a_key_asks_for_no_pin(device: Device) -> None:
    """A service or command that only names a USB key must not spend a PIN try."""
    uri = device.uri("seal", **{"pin-source": "env:UKEY_PIN"})
    key = SkfBackend(environ={"UKEY_PIN": "00000000"}).find(uri)
    assert (
        key.public_key_info.dump() == device.backend.find(device.uri("seal")).public_key_info.dump()
    )
    pin = device.backend.probe()["devices"][0]["applications"][0]["user_pin"]
    assert pin["retries_left"] == 6


def test_right_pin_resets_the_counter(device: Device) -> None:
    uri = device.uri("seal", **{"pin-source": "env:UKEY_PIN"})
    with pytest.raises(PinIncorrectError) as info:
        SkfBackend(environ={"UKEY_PIN": "00000000"}).find(uri).sign(MESSAGE)
    assert info.value.attempts_left == 5
    device.backend.find(device.uri("seal")).sign(MESSAGE)
    pin = device.backend.probe()["devices"][0]["applications"][0]["user_pin"]
    assert pin == {"max_retries": 6, "retries_left": 6, "default_pin": False}


def test_removal_mid_use_then_reinsertion(device: Device) -> None:
    key = device.backend.find(device.uri("seal"))
    SM2_SM3.verify(key.public_key_info, key.sign(MESSAGE), MESSAGE)
    device.sim.remove()
    with pytest.raises(DeviceUnavailableError):
        key.sign(MESSAGE)
    with pytest.raises(DeviceUnavailableError):  # still out: reconnecting fails cleanly
        key.sign(MESSAGE)
    with pytest.raises(DeviceUnavailableError):
        device.backend.find(device.uri("seal"))
    device.sim.insert()
    SM2_SM3.verify(key.public_key_info, key.sign(MESSAGE), MESSAGE)  # PIN re-verified from file
    device.backend.close()
    assert device.sim.open_handles() == 0


def test_key_pulled_and_put_back_between_calls(device: Device) -> None:
    key = device.backend.find(device.uri("seal"))
    key.sign(MESSAGE)
    device.sim.remove()
    device.sim.insert()
    SM2_SM3.verify(key.public_key_info, key.sign(MESSAGE), MESSAGE)
    device.backend.close()
    assert device.sim.open_handles() == 0


def test_refused_pin_after_reinsertion_is_not_retried(device: Device) -> None:
    key = device.backend.find(device.uri("seal"))
    device.pin_file.write_text("55555555\n")
    device.sim.remove()
    device.sim.insert()
    with pytest.raises(PinIncorrectError) as info:
        key.sign(MESSAGE)
    assert info.value.attempts_left == 5
    with pytest.raises(PinIncorrectError):
        key.sign(MESSAGE)
    pin = device.backend.probe()["devices"][0]["applications"][0]["user_pin"]
    assert pin["retries_left"] == 5  # the second call did not spend a try
    device.pin_file.write_text(PIN + "\n")
    key = device.backend.find(device.uri("seal"))
    SM2_SM3.verify(key.public_key_info, key.sign(MESSAGE), MESSAGE)


def test_missing_things_have_specific_errors(device: Device, tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError):
        device.backend.find(device.uri("no-such-container"))
    with pytest.raises(KeyNotFoundError):
        device.backend.find(device.uri("seal").replace("application=ETRUST", "application=NOPE"))
    with pytest.raises(DeviceUnavailableError):
        device.backend.find(device.uri("seal").replace("device=UKEY01", "device=UKEY99"))
    with pytest.raises(DeviceUnavailableError):
        SkfBackend(str(tmp_path / "missing.so")).find("skf:container=seal")
    with pytest.raises(ConfigurationError):
        SkfBackend(environ={}).find("skf:container=seal")
    with pytest.raises(ConfigurationError):
        device.backend.find(device.uri("seal", ulong="48"))
    with pytest.raises(MechanismUnsupportedError):
        device.backend.generate("seal2", "sm2")
    with pytest.raises(MechanismUnsupportedError):
        device.backend.destroy(device.uri("seal"))


def test_mismatched_ulong_width_is_a_clear_error(device: Device) -> None:
    other = 64 if device.sim.bits == 32 else 32
    with pytest.raises(ConfigurationError, match=f"writes {device.sim.bits}-bit ULONGs"):
        device.backend.find(device.uri("seal", ulong=str(other)))


def test_public_key_blob_of_another_width_is_refused() -> None:
    with pytest.raises(DeviceError, match="ulong"):
        parse_public_key_blob(bytes(136), 32)
    with pytest.raises(DeviceError, match="right-aligned"):
        parse_public_key_blob(bytes(4) + b"\x01" * 128, 32)


def test_list_and_probe(device: Device, sm2_material: Material) -> None:
    names = sorted(device.backend.list())
    assert names == [
        "skf:device=UKEY01;application=ETRUST;container=bare",
        "skf:device=UKEY01;application=ETRUST;container=rsa-seal",
        "skf:device=UKEY01;application=ETRUST;container=seal",
    ]
    probe = json.loads(json.dumps(device.backend.probe()))
    assert probe["ulong"] == probe["ulong_measured"] == device.sim.bits
    (dev,) = probe["devices"]
    assert dev["name"] == "UKEY01" and dev["info"]["manufacturer"] == "etrust skfsim"
    containers = {c["name"]: c for c in dev["applications"][0]["containers"]}
    assert containers["seal"]["type"] == "sm2" and containers["rsa-seal"]["type"] == "rsa"
    assert containers["bare"]["certificate"] is None
    subject = load_certificate(sm2_material.cert_der).subject.human_friendly
    assert containers["seal"]["certificate"]["subject"] == subject
    assert device.sim.open_handles() == 0  # probing closes what it opens


def test_threads_share_the_device(device: Device) -> None:
    key = device.backend.find(device.uri("seal"))
    rsa = device.backend.find(device.uri("rsa-seal"))
    errors: list[BaseException] = []

    def work(k: SkfKey, n: int) -> None:
        try:
            for i in range(5):
                data = MESSAGE + bytes([n, i])
                alg = SM2_SM3 if k.key_type == "sm2" else RSA_PKCS1_SHA256
                alg.verify(k.public_key_info, k.sign(data), data)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k, n)) for n, k in enumerate([key, rsa] * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_issuing_ca_key_on_the_usb_key(
    tmp_path: Path,
    skf_sim: SkfSimulator,  # noqa: F811
    sm2_hierarchy: Hierarchy,
) -> None:
    key_pem = openssl_key(tmp_path / "ca.pem", "sm2")
    spki = keys.PublicKeyInfo.load(
        openssl("pkey", "-in", key_pem, "-pubout", "-outform", "DER").stdout
    )
    ca_cert = sm2_hierarchy.root.issue(
        spki, make_name({"C": "CN", "O": "测试局", "CN": "USB 签发 CA"}), "issuing-ca"
    )
    skf_sim.provision(tmp_path / "dev", [Container("ca", key_pem.read_bytes(), ca_cert.dump())])
    backend = SkfBackend(environ={"ETRUST_SKF_PIN": PIN})
    uri = f"skf:container=ca?module-path={skf_sim.library}&ulong={skf_sim.bits}"
    key = backend.find(uri)  # device and application are found when there is only one
    assert key.certificate is not None
    ca = CertificateAuthority("usb-ca", load_certificate(key.certificate), key, MemoryRepository())
    leaf_key = sm2_hierarchy.new_key(f"usb-leaf-{skf_sim.bits}")
    leaf = ca.issue(leaf_key.public_key_info, make_name({"CN": "盖章人"}), "seal-signer")
    (tmp_path / "issuer.pem").write_bytes(to_pem(ca.certificate))
    (tmp_path / "leaf.pem").write_bytes(to_pem(leaf))
    openssl(
        "verify", "-vfyopt", SM2_ID_OPT, "-partial_chain",
        "-CAfile", tmp_path / "issuer.pem", tmp_path / "leaf.pem",
    )  # fmt: skip
    backend.close()
    assert skf_sim.open_handles() == 0
