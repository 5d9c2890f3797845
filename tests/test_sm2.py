"""SM2 engine: GB/T 32918 known answers, OpenSSL interoperability, and refusal of bad input."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from asn1crypto import algos, core, keys

from tests import sm2_reference
from tests.conftest import SM2_ID_OPT, openssl
from trust import sm2 as sm2_module
from trust.errors import CryptoUnavailableError, InvalidSignatureError, MalformedInputError
from trust.sm2 import DEFAULT_ID, RECOMMENDED_CURVE, Sm2PrivateKey, Sm2PublicKey, z_value

VECTORS = (
    Path(__file__).resolve().parents[2] / "shared" / "vectors" / "sm2" / "sm2_sign_vectors.json"
)


def _vectors() -> list[dict[str, object]]:
    if not VECTORS.exists():  # CI lays shared/ beside the clone
        pytest.fail(f"shared SM2 vectors not found at {VECTORS}")
    return list(json.loads(VECTORS.read_text())["signature_vectors"])


def _h(vector: dict[str, object], key: str) -> int:
    return int(str(vector[key]), 16)


def _curve(vector: dict[str, object]) -> dict[str, int]:
    return {k: int(v, 16) for k, v in dict(vector["curve"]).items()}  # type: ignore[call-overload]


def _spki(x: int, y: int) -> bytes:
    point = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    return keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="named", value="sm2p256v1"),
            },
            "public_key": point,
        }
    ).dump()


def _pkcs8(d: int) -> bytes:
    return keys.PrivateKeyInfo(
        {
            "version": 0,
            "private_key_algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="named", value="sm2p256v1"),
            },
            "private_key": keys.ECPrivateKey({"version": "ecPrivkeyVer1", "private_key": d}),
        }
    ).dump()


def _der_sig(r: int, s: int) -> bytes:
    return algos.DSASignature({"r": r, "s": s}).dump()


@pytest.mark.parametrize("index", [0, 1])
def test_z_and_e_match_the_standard(index: int) -> None:
    v = _vectors()[index]
    curve = _curve(v)
    z = z_value(_h(v, "public_key_x"), _h(v, "public_key_y"), str(v["user_id"]).encode(), curve)
    assert z.hex().upper() == v["Z_A"]
    e = hashlib.new("sm3", z + str(v["message"]).encode()).hexdigest().upper()
    assert e == v["e"]


def test_recommended_curve_parameters_are_what_openssl_uses() -> None:
    out = openssl(
        "ecparam", "-name", "SM2", "-param_enc", "explicit", "-text", "-noout"
    ).stdout.decode()
    flat = "".join(out.split()).replace(":", "").lower()
    for name in ("p", "a", "b"):
        assert format(RECOMMENDED_CURVE[name], "x") in flat


@pytest.mark.parametrize("index", [0, 1])
def test_reference_signature_reproduces_the_standard(index: int) -> None:
    v = _vectors()[index]
    curve = _curve(v)
    r, s = sm2_reference.sign_with_k(_h(v, "e"), _h(v, "private_key"), _h(v, "k"), curve)
    assert (r, s) == (_h(v, "r"), _h(v, "s"))
    assert sm2_reference.verify(
        _h(v, "e"), r, s, (_h(v, "public_key_x"), _h(v, "public_key_y")), curve
    )


def test_openssl_binding_verifies_the_standard_signature() -> None:
    v = _vectors()[1]
    public = Sm2PublicKey(_spki(_h(v, "public_key_x"), _h(v, "public_key_y")))
    sig = _der_sig(_h(v, "r"), _h(v, "s"))
    public.verify(sig, str(v["message"]).encode(), str(v["user_id"]).encode())
    with pytest.raises(InvalidSignatureError):
        public.verify(sig, b"message digesT", str(v["user_id"]).encode())
    with pytest.raises(InvalidSignatureError):
        public.verify(_der_sig(_h(v, "r"), _h(v, "s") ^ 1), str(v["message"]).encode())


def test_standard_private_key_loads_and_signs() -> None:
    v = _vectors()[1]
    key = Sm2PrivateKey.from_pkcs8(_pkcs8(_h(v, "private_key")))
    assert key.public_key.point == (_h(v, "public_key_x"), _h(v, "public_key_y"))
    sig = key.sign(b"message digest")
    r, s = algos.DSASignature.load(sig).native.values()
    e = int.from_bytes(
        hashlib.new("sm3", z_value(*key.public_key.point) + b"message digest").digest(), "big"
    )
    assert sm2_reference.verify(e, r, s, key.public_key.point, _curve(v))


def test_nonces_differ_between_signatures() -> None:
    key = Sm2PrivateKey.generate()
    sigs = {key.sign(b"same message") for _ in range(20)}
    assert len(sigs) == 20


def test_openssl_cli_verifies_our_signature(tmp_path: Path) -> None:
    key = Sm2PrivateKey.generate()
    (tmp_path / "pub.der").write_bytes(key.public_key.spki_der)
    (tmp_path / "msg").write_bytes(b"\xe7\x94\xb5\xe5\xad\x90\xe8\xaf\x81\xe7\x85\xa7")
    (tmp_path / "sig").write_bytes(key.sign((tmp_path / "msg").read_bytes()))
    args = ["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-keyform", "DER"]
    files = ["-inkey", tmp_path / "pub.der", "-in", tmp_path / "msg", "-sigfile", tmp_path / "sig"]
    assert b"Verified Successfully" in openssl(*args, "-pkeyopt", SM2_ID_OPT, *files).stdout
    # Without the ID OpenSSL 3.0 uses an empty one, and the signature must not verify.
    assert openssl(*args, *files, check=False).returncode != 0


def test_we_verify_openssl_signatures_and_keys(tmp_path: Path) -> None:
    openssl("genpkey", "-algorithm", "SM2", "-outform", "DER", "-out", tmp_path / "k.der")
    openssl(
        "pkey",
        "-inform",
        "DER",
        "-in",
        tmp_path / "k.der",
        "-pubout",
        "-outform",
        "DER",
        "-out",
        tmp_path / "p.der",
    )
    (tmp_path / "msg").write_bytes(b"hello")
    openssl(
        "pkeyutl",
        "-sign",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        SM2_ID_OPT,
        "-keyform",
        "DER",
        "-inkey",
        tmp_path / "k.der",
        "-in",
        tmp_path / "msg",
        "-out",
        tmp_path / "sig",
    )
    Sm2PublicKey((tmp_path / "p.der").read_bytes()).verify(
        (tmp_path / "sig").read_bytes(), b"hello"
    )
    key = Sm2PrivateKey.from_pkcs8((tmp_path / "k.der").read_bytes())
    assert key.public_key.spki_der == (tmp_path / "p.der").read_bytes()
    with pytest.raises(InvalidSignatureError):
        key.public_key.verify((tmp_path / "sig").read_bytes(), b"hello", sm2_id=b"")


def test_pkcs8_round_trip() -> None:
    key = Sm2PrivateKey.generate()
    again = Sm2PrivateKey.from_pkcs8(key.to_pkcs8())
    key.public_key.verify(again.sign(b"x"), b"x")


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"garbage" * 10, _spki(1, 2)],
    ids=["empty", "truncated", "not-a-key", "garbage", "point-off-curve"],
)
def test_malformed_public_keys_are_refused(bad: bytes) -> None:
    with pytest.raises(MalformedInputError):
        Sm2PublicKey(bad)


def test_rsa_key_is_not_an_sm2_key(tmp_path: Path) -> None:
    openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-outform",
        "DER",
        "-out",
        tmp_path / "r.der",
    )
    with pytest.raises(MalformedInputError):
        Sm2PrivateKey.from_pkcs8((tmp_path / "r.der").read_bytes())


def test_trailing_bytes_after_key_are_refused() -> None:
    key = Sm2PrivateKey.generate()
    with pytest.raises(MalformedInputError):
        Sm2PublicKey(key.public_key.spki_der + b"\x00")


def test_forged_and_truncated_signatures_fail() -> None:
    key = Sm2PrivateKey.generate()
    sig = key.sign(b"data")
    for forged in (sig[:-1], sig + b"\x00", b"\x00" * len(sig), sig[:10], core.Null().dump()):
        with pytest.raises(InvalidSignatureError):
            key.public_key.verify(forged, b"data")
    other = Sm2PrivateKey.generate()
    with pytest.raises(InvalidSignatureError):
        other.public_key.verify(sig, b"data")
    with pytest.raises(InvalidSignatureError):
        key.public_key.verify(sig, b"data", sm2_id=b"ALICE123@YAHOO.COM")
    assert DEFAULT_ID == b"1234567812345678"


def test_signing_from_threads() -> None:
    key = Sm2PrivateKey.generate()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(50):
                msg = f"m{i}".encode()
                key.public_key.verify(key.sign(msg), msg)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("library", ["libdoes-not-exist.so.9", "libc.so.6"])
def test_sm2_fails_closed_without_a_capable_libcrypto(
    monkeypatch: pytest.MonkeyPatch, library: str
) -> None:
    """No SM2 engine means no SM2 signing at all, with a clear error, never a fallback."""
    monkeypatch.setattr(sm2_module, "_lib", None)
    monkeypatch.setattr(sm2_module.ctypes.util, "find_library", lambda _name: library)
    with pytest.raises(CryptoUnavailableError, match="SM2"):
        sm2_module.ensure_available()
    with pytest.raises(CryptoUnavailableError):
        Sm2PrivateKey.generate()


@pytest.mark.parametrize(
    ("r", "s"),
    [
        (b"\x00" * 31 + b"\x01", b"\xff" * 32),  # leading zeros stripped; high bit padded
        (b"\x7f" + b"\x00" * 31, b"\x80" + b"\x00" * 31),
        (b"\x00" * 32 + b"\x12" * 32, b"\x00" * 33 + b"\x34" * 31),  # 64-byte device fields
    ],
)
def test_raw_signature_matches_asn1crypto(r: bytes, s: bytes) -> None:
    expected = algos.DSASignature(
        {"r": int.from_bytes(r, "big"), "s": int.from_bytes(s, "big")}
    ).dump()
    assert sm2_module.raw_signature(r, s) == expected


@pytest.mark.parametrize(
    ("r", "s"), [(b"\x00" * 32, b"\x01"), (b"\x01", b""), (b"\x01" * 33, b"\x01")]
)
def test_raw_signature_refuses_values_out_of_range(r: bytes, s: bytes) -> None:
    with pytest.raises(MalformedInputError):
        sm2_module.raw_signature(r, s)
