"""SM2 through the system OpenSSL 3 libcrypto, by a small ctypes binding.

Why our own binding: ``cryptography`` cannot load SM2 keys, and pure-Python SM2 is slow and, in
the popular packages, unsafe (see docs/sm2-openssl.md). ctypes releases the GIL around each call,
nonces come from OpenSSL's DRBG, and the distinguishing ID is always set explicitly (OpenSSL 3.0
defaults to an empty one). Signatures are DER ``SEQUENCE {r, s}``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from ctypes import POINTER, byref, c_char_p, c_int, c_long, c_size_t, c_ulong, c_void_p
from typing import Any

from asn1crypto import keys

from trust import (
    asn1_gm,  # noqa: F401  (registers the SM2 curve with asn1crypto)
    der,
)
from trust.errors import CryptoUnavailableError, InvalidSignatureError, MalformedInputError

DEFAULT_ID = b"1234567812345678"
"""GM/T 0009 default distinguishing ID (ENTL 0x0080)."""

_MAX_INPUT = 1 << 20

RECOMMENDED_CURVE = {
    "p": 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    "a": 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    "b": 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    "gx": 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    "gy": 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
}
"""GB/T 32918.5 sm2p256v1 parameters that enter Z (n is not hashed)."""


def z_value(
    x: int, y: int, sm2_id: bytes = DEFAULT_ID, curve: dict[str, int] = RECOMMENDED_CURVE
) -> bytes:
    """Z = SM3(ENTL || ID || a || b || Gx || Gy || xA || yA) (GM/T 0009).

    Devices that sign a prehashed e = SM3(Z || M) (SKF, SDF) need Z computed outside them.
    """
    if len(sm2_id) * 8 > 0xFFFF:
        raise MalformedInputError("SM2 distinguishing ID is too long")
    h = hashlib.new("sm3")
    h.update((len(sm2_id) * 8).to_bytes(2, "big") + sm2_id)
    for value in (curve["a"], curve["b"], curve["gx"], curve["gy"], x, y):
        h.update(value.to_bytes(32, "big"))
    return h.digest()  # no DER key is anywhere near this large


def der_signature(r: int, s: int) -> bytes:
    """DER ``SEQUENCE {r, s}`` from the raw integers devices return (SKF/SDF blobs, r||s)."""
    if not (0 < r < 1 << 256 and 0 < s < 1 << 256):
        raise MalformedInputError("SM2 signature values out of range")
    return der.sequence(der.integer(r), der.integer(s))


def raw_signature(r_bytes: bytes, s_bytes: bytes) -> bytes:
    """DER from big-endian r and s of any width (left-padded device fields, 32 or 64 bytes).

    Works on the bytes (no integer round trip): it runs once per device signature. Both values
    fit in 33 octets, so every length here is a single octet.
    """
    body = _der_unsigned(r_bytes) + _der_unsigned(s_bytes)
    return b"\x30" + bytes((len(body),)) + body


def _der_unsigned(value: bytes) -> bytes:
    stripped = bytes(value).lstrip(b"\x00")
    if not stripped or len(stripped) > 32:
        raise MalformedInputError("SM2/ECDSA signature values out of range")
    if stripped[0] & 0x80:
        stripped = b"\x00" + stripped
    return b"\x02" + bytes((len(stripped),)) + stripped


class _Lib:
    """Prototypes of the few libcrypto functions we call."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            return f

        pp = POINTER(c_void_p)
        self.pkey_ctx_new_from_name = fn(
            "EVP_PKEY_CTX_new_from_name", c_void_p, c_void_p, c_char_p, c_char_p
        )
        self.pkey_ctx_new = fn("EVP_PKEY_CTX_new", c_void_p, c_void_p, c_void_p)
        self.pkey_ctx_free = fn("EVP_PKEY_CTX_free", None, c_void_p)
        self.pkey_ctx_set1_id = fn("EVP_PKEY_CTX_set1_id", c_int, c_void_p, c_char_p, c_int)
        self.keygen_init = fn("EVP_PKEY_keygen_init", c_int, c_void_p)
        self.generate = fn("EVP_PKEY_generate", c_int, c_void_p, pp)
        self.pkey_free = fn("EVP_PKEY_free", None, c_void_p)
        self.pkey_is_a = fn("EVP_PKEY_is_a", c_int, c_void_p, c_char_p)
        self.d2i_auto_private = fn("d2i_AutoPrivateKey", c_void_p, c_void_p, pp, c_long)
        self.d2i_pubkey = fn("d2i_PUBKEY", c_void_p, c_void_p, pp, c_long)
        self.i2d_pubkey = fn("i2d_PUBKEY", c_int, c_void_p, pp)
        self.pkey2pkcs8 = fn("EVP_PKEY2PKCS8", c_void_p, c_void_p)
        self.i2d_pkcs8 = fn("i2d_PKCS8_PRIV_KEY_INFO", c_int, c_void_p, pp)
        self.pkcs8_free = fn("PKCS8_PRIV_KEY_INFO_free", None, c_void_p)
        self.md_ctx_new = fn("EVP_MD_CTX_new", c_void_p)
        self.md_ctx_free = fn("EVP_MD_CTX_free", None, c_void_p)
        self.md_ctx_set_pkey_ctx = fn("EVP_MD_CTX_set_pkey_ctx", None, c_void_p, c_void_p)
        self.md_ctx_copy = fn("EVP_MD_CTX_copy_ex", c_int, c_void_p, c_void_p)
        self.md_fetch = fn("EVP_MD_fetch", c_void_p, c_void_p, c_char_p, c_char_p)
        self.sm3: int | None = None  # the fetched EVP_MD*, set by _load
        self.sign_init = fn(
            "EVP_DigestSignInit", c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p
        )
        self.sign = fn(
            "EVP_DigestSign", c_int, c_void_p, c_char_p, POINTER(c_size_t), c_char_p, c_size_t
        )
        self.verify_init = fn(
            "EVP_DigestVerifyInit", c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p
        )
        self.verify = fn(
            "EVP_DigestVerify", c_int, c_void_p, c_char_p, c_size_t, c_char_p, c_size_t
        )
        self.err_clear = fn("ERR_clear_error", None)
        self.err_get = fn("ERR_get_error", c_ulong)


_lib: _Lib | None = None
_lib_lock = threading.Lock()


def _load() -> _Lib:
    """Load libcrypto once; fail closed with a clear message if SM2 or SM3 is missing."""
    global _lib
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
        try:
            lib = _Lib(ctypes.CDLL(name))
        except (OSError, AttributeError) as exc:
            raise CryptoUnavailableError(
                f"OpenSSL 3 libcrypto ({name}) could not be loaded for SM2: {exc}. "
                "Install OpenSSL 3 (Debian: libssl3)."
            ) from exc
        ctx = lib.pkey_ctx_new_from_name(None, b"SM2", None)
        # Fetched once and kept for the process: an implicit fetch per signature costs time.
        lib.sm3 = lib.md_fetch(None, b"SM3", None)
        if not ctx or not lib.sm3:
            lib.err_clear()
            raise CryptoUnavailableError(
                f"libcrypto ({name}) has no SM2/SM3; SM2 signing is disabled (fail closed)."
            )
        lib.pkey_ctx_free(ctx)
        _lib = lib
        return lib


def ensure_available() -> None:
    """Check at start-up that SM2 works, so a missing engine is an error now, not later."""
    _load()


def _i2d(func: Any, obj: int) -> bytes:
    lib = _load()
    size = func(obj, None)
    if size <= 0:
        lib.err_clear()
        raise CryptoUnavailableError("libcrypto could not encode an SM2 key")
    buf = ctypes.create_string_buffer(size)
    ptr = c_void_p(ctypes.addressof(buf))
    func(obj, byref(ptr))
    return buf.raw[:size]


def _d2i(func: Any, der: bytes, what: str) -> int:
    lib = _load()
    if not isinstance(der, bytes | bytearray) or not 0 < len(der) <= _MAX_INPUT:
        raise MalformedInputError(f"{what}: expected DER bytes")
    raw = bytes(der)
    ptr = c_void_p(ctypes.cast(c_char_p(raw), c_void_p).value)
    start = ptr.value
    pkey = func(None, byref(ptr), len(raw))
    if not pkey:
        lib.err_clear()
        raise MalformedInputError(f"{what}: not a valid DER-encoded key")
    consumed = (ptr.value or 0) - (start or 0)
    if consumed != len(raw):
        lib.pkey_free(pkey)
        raise MalformedInputError(f"{what}: trailing bytes after the key")
    if lib.pkey_is_a(pkey, b"SM2") != 1:
        lib.pkey_free(pkey)
        raise MalformedInputError(f"{what}: not an SM2 key")
    return int(pkey)


class _PKey:
    """Owns one ``EVP_PKEY*`` and frees it exactly once."""

    __slots__ = ("_ptr",)

    def __init__(self, ptr: int) -> None:
        self._ptr = ptr

    def __del__(self) -> None:
        if self._ptr and _lib is not None:
            _lib.pkey_free(self._ptr)
            self._ptr = 0


def _digest_ctx(pkey: int, sm2_id: bytes, verify: bool) -> tuple[int, int]:
    lib = _load()
    mctx = lib.md_ctx_new()
    pctx = lib.pkey_ctx_new(pkey, None)
    if not mctx or not pctx:
        lib.md_ctx_free(mctx)
        lib.pkey_ctx_free(pctx)
        raise CryptoUnavailableError("libcrypto could not allocate an SM2 context")
    ok = lib.pkey_ctx_set1_id(pctx, sm2_id, len(sm2_id)) == 1
    if ok:
        lib.md_ctx_set_pkey_ctx(mctx, pctx)
        init = lib.verify_init if verify else lib.sign_init
        ok = init(mctx, None, lib.sm3, None, pkey) == 1
    if not ok:
        lib.err_clear()
        lib.md_ctx_free(mctx)
        lib.pkey_ctx_free(pctx)
        raise CryptoUnavailableError("libcrypto refused to set up SM2 with SM3")
    return mctx, pctx


def _check_id(sm2_id: bytes) -> bytes:
    if not isinstance(sm2_id, bytes) or len(sm2_id) > 8191:
        raise MalformedInputError("SM2 distinguishing ID must be at most 8191 bytes")
    return sm2_id


class Sm2PublicKey:
    """An SM2 public key, from its SubjectPublicKeyInfo DER."""

    __slots__ = ("_key", "spki_der")

    def __init__(self, spki_der: bytes) -> None:
        self._key = _PKey(_d2i(_load().d2i_pubkey, spki_der, "SM2 public key"))
        self.spki_der = bytes(spki_der)

    @property
    def point(self) -> tuple[int, int]:
        """The affine coordinates (x, y) of the public point."""
        raw = keys.PublicKeyInfo.load(self.spki_der)["public_key"].native
        if len(raw) != 65 or raw[0] != 4:
            raise MalformedInputError("only uncompressed SM2 points (04 || x || y) are supported")
        return int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:65], "big")

    def verify(self, signature: bytes, data: bytes, sm2_id: bytes = DEFAULT_ID) -> None:
        """Raise :class:`InvalidSignatureError` unless ``signature`` is valid over ``data``."""
        lib = _load()
        _check_id(sm2_id)
        if not 8 <= len(signature) <= 80:
            raise InvalidSignatureError("SM2 signature has an impossible length")
        mctx, pctx = _digest_ctx(self._key._ptr, sm2_id, verify=True)
        try:
            ok = lib.verify(mctx, signature, len(signature), data, len(data))
        finally:
            lib.md_ctx_free(mctx)
            lib.pkey_ctx_free(pctx)
        if ok != 1:
            lib.err_clear()
            raise InvalidSignatureError("SM2 signature does not verify")


class Sm2PrivateKey:
    """An SM2 private key held inside libcrypto; the scalar leaves only as PKCS#8 on request."""

    __slots__ = ("_key", "public_key")

    def __init__(self, ptr: int) -> None:
        self._key = _PKey(ptr)
        self.public_key = Sm2PublicKey(_i2d(_load().i2d_pubkey, ptr))

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        lib = _load()
        ctx = lib.pkey_ctx_new_from_name(None, b"SM2", None)
        out = c_void_p()
        try:
            if not ctx or lib.keygen_init(ctx) != 1 or lib.generate(ctx, byref(out)) != 1:
                lib.err_clear()
                raise CryptoUnavailableError("libcrypto could not generate an SM2 key")
        finally:
            lib.pkey_ctx_free(ctx)
        return cls(int(out.value or 0))

    @classmethod
    def from_pkcs8(cls, der: bytes) -> Sm2PrivateKey:
        return cls(_d2i(_load().d2i_auto_private, der, "SM2 private key"))

    def to_pkcs8(self) -> bytes:
        """PKCS#8 DER of the private key; callers must encrypt it before it touches disk."""
        lib = _load()
        p8 = lib.pkey2pkcs8(self._key._ptr)
        if not p8:
            lib.err_clear()
            raise CryptoUnavailableError("libcrypto could not export the SM2 key")
        try:
            return _i2d(lib.i2d_pkcs8, p8)
        finally:
            lib.pkcs8_free(p8)

    def sign(self, data: bytes, sm2_id: bytes = DEFAULT_ID) -> bytes:
        """SM2 signature (DER) over SM3(Z || data); the nonce comes from OpenSSL's DRBG."""
        lib = _load()
        _check_id(sm2_id)
        mctx, pctx = _digest_ctx(self._key._ptr, sm2_id, verify=False)
        buf = ctypes.create_string_buffer(80)
        size = c_size_t(80)
        try:
            ok = lib.sign(mctx, buf, byref(size), data, len(data))
        finally:
            lib.md_ctx_free(mctx)
            lib.pkey_ctx_free(pctx)
        if ok != 1:
            lib.err_clear()
            raise CryptoUnavailableError("libcrypto failed to make an SM2 signature")
        return buf.raw[: size.value]
