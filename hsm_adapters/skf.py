"""SKF (GM/T 0016) USB keys as a key backend, through the vendor's C library by ctypes.

A key URI names a container on a USB key::

    skf:device=UKEY01;application=ETRUST;container=seal
        ?module-path=/opt/vendor/libskf.so&pin-source=file:/etc/etrust/ukey.pin

(one line in practice; broken here for width).

Path attributes (``;``-separated):

- ``device``: the name ``SKF_EnumDev`` reports; may be left out when exactly one key is present.
- ``application``: the SKF application; may be left out when the device has exactly one.
- ``container``: the key container; required by :meth:`SkfBackend.find`.

Query attributes (``&``-separated):

- ``module-path``: the vendor SKF library; else the backend's setting, else ``ETRUST_SKF_MODULE``.
  Key URIs are configuration: a module path loads native code, so never take one from a user.
- ``ulong``: ``32`` (the standard's ``ULONG``) or ``64`` (vendor Linux libraries built with native
  ``unsigned long``); else the backend's setting, else ``ETRUST_SKF_ULONG``, else 32. The width
  the library really writes is measured once when it is loaded, so a wrong setting is a clear
  :class:`ConfigurationError` rather than garbled sizes.
- ``pin-source`` / ``pin-value``: the user PIN, as in :mod:`hsm_adapters.pins`; the default
  variable is ``ETRUST_SKF_PIN``. The PIN is verified once per :meth:`SkfBackend.find` and again
  only after the key was pulled out and put back; a wrong PIN is never retried.

Signing follows the standard's sequence: SM2 computes ``e = SM3(Z || M)`` on the host (the ID goes
into Z) and passes the 32 bytes to ``SKF_ECCSignData``; RSA passes the DER SHA-256 DigestInfo
to ``SKF_RSASignData``, which adds PKCS#1 v1.5 padding. Every signature is verified against
the exported public key before it is returned, so a faulty device cannot hand out a bad one.
USB keys are serial devices: one lock per device serialises all calls on it. Key generation and
destruction are left to the vendor's tools (:class:`MechanismUnsupportedError`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asn1crypto import keys

from hsm_adapters.pins import resolve_pin
from trust import asn1_gm
from trust.algorithms import (
    RSA_PKCS1_SHA256,
    SHA256_DIGEST_INFO_PREFIX,
    SM2_SM3,
    KeyType,
    SignatureAlgorithm,
)
from trust.certificates import load_certificate
from trust.errors import (
    ConfigurationError,
    DeviceError,
    DeviceUnavailableError,
    EtrustError,
    InvalidSignatureError,
    KeyNotFoundError,
    MalformedInputError,
    MechanismUnsupportedError,
    PinIncorrectError,
    PinLockedError,
)
from trust.keys import KeyHandleBase, KeyUri
from trust.sm2 import Sm2PublicKey, raw_signature, z_value

SCHEME = "skf"
PIN_ENV = "ETRUST_SKF_PIN"
MODULE_ENV = "ETRUST_SKF_MODULE"
ULONG_ENV = "ETRUST_SKF_ULONG"

USER_TYPE = 1
CONTAINER_TYPES = {0: "empty", 1: "rsa", 2: "sm2"}

SAR_OK = 0
SAR_NAMES = {
    0x0A000001: "SAR_FAIL",
    0x0A000002: "SAR_UNKNOWNERR",
    0x0A000003: "SAR_NOTSUPPORTYETERR",
    0x0A000004: "SAR_FILEERR",
    0x0A000005: "SAR_INVALIDHANDLEERR",
    0x0A000006: "SAR_INVALIDPARAMERR",
    0x0A000009: "SAR_NAMELENERR",
    0x0A00000A: "SAR_KEYUSAGEERR",
    0x0A00000E: "SAR_MEMORYERR",
    0x0A00000F: "SAR_TIMEOUTERR",
    0x0A000010: "SAR_INDATALENERR",
    0x0A000011: "SAR_INDATAERR",
    0x0A00001B: "SAR_KEYNOTFOUNTERR",
    0x0A00001C: "SAR_CERTNOTFOUNTERR",
    0x0A000020: "SAR_BUFFER_TOO_SMALL",
    0x0A000021: "SAR_KEYINFOTYPEERR",
    0x0A000023: "SAR_DEVICE_REMOVED",
    0x0A000024: "SAR_PIN_INCORRECT",
    0x0A000025: "SAR_PIN_LOCKED",
    0x0A000026: "SAR_PIN_INVALID",
    0x0A000027: "SAR_PIN_LEN_RANGE",
    0x0A00002A: "SAR_USER_TYPE_INVALID",
    0x0A00002D: "SAR_USER_NOT_LOGGED_IN",
    0x0A00002E: "SAR_APPLICATION_NOT_EXISTS",
    0x0A000031: "SAR_FILE_NOT_EXIST",
}
SAR_BUFFER_TOO_SMALL = 0x0A000020
SAR_DEVICE_REMOVED = 0x0A000023
SAR_PIN_INCORRECT = 0x0A000024
SAR_PIN_LOCKED = 0x0A000025
SAR_USER_NOT_LOGGED_IN = 0x0A00002D
_NOT_FOUND = {0x0A00001B, 0x0A00001C, 0x0A00002E, 0x0A000031}
_PIN_MALFORMED = {0x0A000026, 0x0A000027}

_MAX_LIST = 64 * 1024
_MAX_BLOB = 64 * 1024
_SENTINEL = 0xA5A5A5A5_A5A5A5A5

T = TypeVar("T")


def _sar_name(rv: int) -> str:
    return SAR_NAMES.get(rv, f"0x{rv:08X}")


class _NotLoggedInError(DeviceError):
    """The device forgot the login (another process logged out); re-verify once, then retry."""


def _sar_error(func: str, rv: int, what: str = "") -> EtrustError:
    """The project error for a non-zero SAR code (never with a PIN in the text)."""
    where = f"{func}{f' ({what})' if what else ''}"
    text = f"SKF {where} failed: {_sar_name(rv)}"
    if rv == SAR_DEVICE_REMOVED:
        return DeviceUnavailableError(f"{text}: the USB key was removed; insert it and retry")
    if rv == SAR_PIN_LOCKED:
        return PinLockedError(f"{text}: the user PIN is locked; unblock it with the vendor tool")
    if rv == SAR_PIN_INCORRECT:
        return PinIncorrectError(f"{text}: wrong PIN")
    if rv in _PIN_MALFORMED:
        return PinIncorrectError(f"{text}: the device refused the PIN's length or characters")
    if rv == SAR_USER_NOT_LOGGED_IN:
        return _NotLoggedInError(text)
    if rv == 0x0A000003:
        return MechanismUnsupportedError(text)
    if rv in _NOT_FOUND:
        return KeyNotFoundError(text)
    return DeviceError(text)


def _ulong_bits(value: str | int | None, source: str) -> int | None:
    if value is None:
        return None
    if str(value) not in ("32", "64"):
        raise ConfigurationError(f"{source}: the SKF ULONG width is 32 or 64, not {value!r}")
    return int(value)


class _Cell:
    """An 8-byte cell for a ULONG/BOOL out-parameter, so a library of the other width cannot
    overrun it."""

    def __init__(self, ctype: Any, value: int = 0) -> None:
        self._raw = c_uint64(value)
        self._ctype = ctype
        self.ptr = ctypes.cast(ctypes.pointer(self._raw), POINTER(ctype))

    @property
    def value(self) -> int:
        return int(self.ptr[0])

    @property
    def raw(self) -> int:
        return int(self._raw.value)

    def set(self, value: int) -> None:
        self._raw.value = value


class _Api:
    """ctypes prototypes of the SKF subset we use, for one library and one ULONG width."""

    def __init__(self, path: str, bits: int) -> None:
        self.path = path
        self.bits = bits
        self.ulong: Any = c_uint32 if bits == 32 else c_uint64
        self.bool_: Any = c_int32 if bits == 32 else c_int64
        try:
            lib = ctypes.CDLL(path)  # DEVAPI is cdecl on Linux
        except OSError as exc:
            raise DeviceUnavailableError(f"the SKF library {path} cannot be loaded: {exc}") from exc
        ul, pul, h, ph = self.ulong, POINTER(self.ulong), c_void_p, POINTER(c_void_p)
        u8 = c_char_p

        def fn(name: str, *argtypes: Any, optional: bool = False) -> Any:
            try:
                f = getattr(lib, name)
            except AttributeError:
                if optional:
                    return None
                raise DeviceUnavailableError(
                    f"{path} has no {name}: it is not a GM/T 0016 SKF library"
                ) from None
            f.restype = ul
            f.argtypes = list(argtypes)
            return f

        self.EnumDev = fn("SKF_EnumDev", self.bool_, c_char_p, pul)
        self.ConnectDev = fn("SKF_ConnectDev", c_char_p, ph)
        self.DisConnectDev = fn("SKF_DisConnectDev", h)
        self.GetDevInfo = fn("SKF_GetDevInfo", h, c_void_p, optional=True)
        self.EnumApplication = fn("SKF_EnumApplication", h, c_char_p, pul)
        self.OpenApplication = fn("SKF_OpenApplication", h, c_char_p, ph)
        self.CloseApplication = fn("SKF_CloseApplication", h)
        self.VerifyPIN = fn("SKF_VerifyPIN", h, ul, c_char_p, pul)
        self.GetPINInfo = fn("SKF_GetPINInfo", h, ul, pul, pul, POINTER(self.bool_))
        self.ClearSecureState = fn("SKF_ClearSecureState", h)
        self.EnumContainer = fn("SKF_EnumContainer", h, c_char_p, pul)
        self.OpenContainer = fn("SKF_OpenContainer", h, c_char_p, ph)
        self.CloseContainer = fn("SKF_CloseContainer", h)
        self.GetContainerType = fn("SKF_GetContainerType", h, pul)
        self.ExportCertificate = fn("SKF_ExportCertificate", h, self.bool_, u8, pul)
        self.ExportPublicKey = fn("SKF_ExportPublicKey", h, self.bool_, u8, pul)
        self.ECCSignData = fn("SKF_ECCSignData", h, u8, ul, c_void_p)
        self.RSASignData = fn("SKF_RSASignData", h, u8, ul, u8, pul)
        self.measured_bits = self._measure_width()
        if self.measured_bits is not None and self.measured_bits != bits:
            raise ConfigurationError(
                f"the SKF library {path} writes {self.measured_bits}-bit ULONGs but ulong={bits} "
                f"is configured; set ulong={self.measured_bits} (URI query or {ULONG_ENV})"
            )

    def _measure_width(self) -> int | None:
        """How many bytes the library writes into a size: 4 leaves our sentinel's top half."""
        cell = self.cell(_SENTINEL)
        if self.EnumDev(1, None, cell.ptr) & 0xFFFFFFFF != SAR_OK:
            return None
        return 32 if cell.raw >> 32 == _SENTINEL >> 32 else 64

    def cell(self, value: int = 0) -> _Cell:
        return _Cell(self.ulong, value)

    def check(self, func: str, rv: int, what: str = "") -> None:
        rv &= 0xFFFFFFFF
        if rv != SAR_OK:
            raise _sar_error(func, rv, what)

    def multi_string(self, func: str, *args: Any) -> list[str]:
        """A NUL-separated, double-NUL-terminated name list (size query first)."""
        call = getattr(self, func.removeprefix("SKF_"))
        size = self.cell()
        self.check(func, call(*args, None, size.ptr))
        if not 0 < size.value <= _MAX_LIST:
            raise DeviceError(f"SKF {func} reported an implausible list size {size.value}")
        buf = ctypes.create_string_buffer(size.value)
        size.set(len(buf))
        self.check(func, call(*args, buf, size.ptr))
        raw = buf.raw[: min(size.value, len(buf))]
        names: list[str] = []
        for item in raw.split(b"\0"):
            if not item:
                break
            names.append(item.decode("utf-8", "surrogateescape"))
        return names

    def read_bytes(self, func: str, *args: Any, initial: int = 8192) -> bytes:
        """An output buffer, retried once at the size the device asks for."""
        call = getattr(self, func.removeprefix("SKF_"))
        want = initial
        for _ in range(2):
            buf = ctypes.create_string_buffer(want)
            size = self.cell(len(buf))
            rv = call(*args, buf, size.ptr) & 0xFFFFFFFF
            if rv == SAR_BUFFER_TOO_SMALL and 0 < size.value <= _MAX_BLOB and size.value > want:
                want = size.value
                continue
            self.check(func, rv)
            if size.value > len(buf):
                raise DeviceError(f"SKF {func} claims {size.value} bytes in a {len(buf)} buffer")
            return buf.raw[: size.value]
        raise DeviceError(f"SKF {func} keeps asking for a larger buffer")


def _encode(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or b"\0" in raw or len(raw) > 255:
        raise MalformedInputError(f"not a usable SKF name: {name!r}")
    return raw


# ------------------------------------------------------------------ public-key blobs


def parse_public_key_blob(blob: bytes, bits: int) -> tuple[KeyType, keys.PublicKeyInfo]:
    """SubjectPublicKeyInfo from an ECCPUBLICKEYBLOB (SM2) or RSAPUBLICKEYBLOB of this width."""
    w = bits // 8
    if len(blob) == w + 128:
        bit_len = int.from_bytes(blob[:w], "little")
        x, y = blob[w : w + 64], blob[w + 64 : w + 128]
        if bit_len != 256 or any(x[:32]) or any(y[:32]):
            raise DeviceError("ECCPUBLICKEYBLOB is not a right-aligned 256-bit SM2 key")
        point = b"\x04" + x[32:] + y[32:]
        spki = keys.PublicKeyInfo(
            {
                "algorithm": {
                    "algorithm": "ec",
                    "parameters": keys.ECDomainParameters(
                        name="named", value=asn1_gm.SM2_CURVE_OID
                    ),
                },
                "public_key": point,
            }
        )
        try:
            Sm2PublicKey(spki.dump())  # libcrypto checks that the point is on the curve
        except MalformedInputError as exc:
            raise DeviceError(f"the device's SM2 public key is invalid: {exc.message}") from exc
        return "sm2", spki
    if len(blob) == 2 * w + 260:
        bit_len = int.from_bytes(blob[w : 2 * w], "little")
        modulus = int.from_bytes(blob[2 * w : 2 * w + 256], "big")
        exponent = int.from_bytes(blob[2 * w + 256 :], "big")
        if modulus.bit_length() != bit_len or bit_len < 1024 or exponent < 3:
            raise DeviceError("RSAPUBLICKEYBLOB has an inconsistent modulus or exponent")
        rsa = keys.RSAPublicKey({"modulus": modulus, "public_exponent": exponent})
        return "rsa", keys.PublicKeyInfo.wrap(rsa, "rsa")
    raise DeviceError(
        f"public-key blob of {len(blob)} bytes fits neither ECCPUBLICKEYBLOB ({w + 128}) nor "
        f"RSAPUBLICKEYBLOB ({2 * w + 260}) with {bits}-bit ULONG: check the ulong setting"
    )


# ------------------------------------------------------------------ sessions


_libs: dict[tuple[str, int], _Api] = {}
_device_locks: dict[tuple[str, str], threading.RLock] = {}
_registry_lock = threading.Lock()


def _api(path: str, bits: int) -> _Api:
    real = os.path.realpath(path)
    with _registry_lock:
        api = _libs.get((real, bits))
        if api is None:
            api = _libs[(real, bits)] = _Api(real, bits)
        return api


def _device_lock(api: _Api, device: str) -> threading.RLock:
    with _registry_lock:
        return _device_locks.setdefault((api.path, device), threading.RLock())


@dataclass
class _Session:
    """One SKF application opened on one device; all calls on it hold the device's lock."""

    api: _Api
    device: str
    application: str
    lock: threading.RLock
    hdev: int | None = None
    happ: int | None = None
    logged_in: bool = False
    pin_refused: bool = False  # the PIN source was wrong: no automatic VerifyPIN until find()
    containers: dict[str, int] = field(default_factory=dict)

    def run(self, op: Callable[[], T], *, after_replug: bool = False) -> T:
        """Run ``op`` under the lock; a pulled key drops every handle so the next call reconnects.

        With ``after_replug``, a key pulled and put back since the last call (stale handles,
        device present again) is reconnected and ``op`` runs once more, PIN verified afresh.
        """
        with self.lock:
            try:
                return op()
            except DeviceUnavailableError:
                self.invalidate()
                if not after_replug or self.device not in self.api.multi_string("SKF_EnumDev", 1):
                    raise
            try:
                return op()
            except DeviceUnavailableError:
                self.invalidate()
                raise

    def open(self) -> None:
        if self.happ is not None:
            return
        present = self.api.multi_string("SKF_EnumDev", 1)
        if self.device not in present:
            raise DeviceUnavailableError(f"USB key {self.device!r} is not plugged in")
        hdev, happ = c_void_p(), c_void_p()
        self.api.check("SKF_ConnectDev", self.api.ConnectDev(_encode(self.device), _ref(hdev)))
        try:
            self.api.check(
                "SKF_OpenApplication",
                self.api.OpenApplication(hdev.value, _encode(self.application), _ref(happ)),
                self.application,
            )
        except EtrustError:
            self.api.DisConnectDev(hdev.value)
            raise
        self.hdev, self.happ = hdev.value, happ.value

    def login(self, pin: str) -> None:
        """VerifyPIN exactly once; the retry count comes back in the error."""
        self.logged_in = False
        secret = pin.encode("utf-8")
        if not secret or b"\0" in secret:
            raise ConfigurationError("the PIN from its source is empty or contains a NUL character")
        retries = self.api.cell(0xFFFFFFFF)  # stays out of range if the library writes nothing
        rv = self.api.VerifyPIN(self.happ, USER_TYPE, secret, retries.ptr)
        rv &= 0xFFFFFFFF
        if rv == SAR_PIN_INCORRECT:
            left = retries.value if 0 <= retries.value <= 255 else None
            if left == 0:
                raise PinLockedError(f"wrong PIN for USB key {self.device!r}; it is now locked")
            raise PinIncorrectError(
                f"wrong PIN for USB key {self.device!r}"
                + (f"; {left} attempts left" if left is not None else ""),
                attempts_left=left,
            )
        self.api.check("SKF_VerifyPIN", rv)
        self.logged_in = True

    def container_names(self) -> list[str]:
        return self.api.multi_string("SKF_EnumContainer", self.happ)

    def container(self, name: str) -> int:
        hcon = self.containers.get(name)
        if hcon is None:
            if name not in self.container_names():
                raise KeyNotFoundError(f"no container {name!r} in {self.device}/{self.application}")
            out = c_void_p()
            self.api.check(
                "SKF_OpenContainer",
                self.api.OpenContainer(self.happ, _encode(name), _ref(out)),
                name,
            )
            hcon = self.containers[name] = int(out.value or 0)
        return hcon

    def invalidate(self) -> None:
        """Forget (and best-effort close) every handle: after removal they are all stale."""
        for hcon in self.containers.values():
            self.api.CloseContainer(hcon)
        if self.happ is not None:
            self.api.CloseApplication(self.happ)
        if self.hdev is not None:
            self.api.DisConnectDev(self.hdev)
        self.containers.clear()
        self.hdev = self.happ = None
        self.logged_in = False

    def close(self) -> None:
        with self.lock:
            if self.happ is not None and self.logged_in:
                self.api.ClearSecureState(self.happ)
            self.invalidate()


def _ref(handle: c_void_p) -> Any:
    return ctypes.byref(handle)


def _container_info(api: _Api, hcon: int) -> tuple[int, bytes | None]:
    kind = api.cell()
    api.check("SKF_GetContainerType", api.GetContainerType(hcon, kind.ptr))
    try:
        cert: bytes | None = api.read_bytes("SKF_ExportCertificate", hcon, 1)
    except KeyNotFoundError:
        cert = None
    return kind.value, cert


def _public_key(api: _Api, hcon: int) -> tuple[KeyType, keys.PublicKeyInfo]:
    return parse_public_key_blob(
        api.read_bytes("SKF_ExportPublicKey", hcon, 1, initial=1024), api.bits
    )


# ------------------------------------------------------------------ key handle


class SkfKey(KeyHandleBase):
    """A signing key in an SKF container; the private key never leaves the USB key."""

    def __init__(
        self,
        session: _Session,
        uri: KeyUri,
        container: str,
        key_type: KeyType,
        spki: keys.PublicKeyInfo,
        certificate: bytes | None,
        pin: Callable[[], str],
    ) -> None:
        super().__init__(str(uri), key_type, spki)
        self._session = session
        self._uri = uri
        self._container = container
        self._spki_der = spki.dump()
        self._point = Sm2PublicKey(self._spki_der).point if key_type == "sm2" else (0, 0)
        self.certificate = certificate
        """DER of the signing certificate stored with the key, if any."""
        self._pin = pin

    def _sign(self, data: bytes, alg: SignatureAlgorithm, sm2_id: bytes) -> bytes:
        if alg not in (SM2_SM3, RSA_PKCS1_SHA256):
            raise MechanismUnsupportedError(f"SKF USB keys cannot sign {alg.name}")
        if alg is SM2_SM3:
            x, y = self._point
            tbs = hashlib.new("sm3", z_value(x, y, sm2_id) + data).digest()
        else:
            tbs = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest()
        signature = self._session.run(lambda: self._sign_on_device(tbs), after_replug=True)
        try:
            alg.verify(self._spki, signature, data, sm2_id=sm2_id)
        except InvalidSignatureError as exc:
            raise DeviceError("the USB key returned a signature that does not verify") from exc
        return signature

    def _sign_on_device(self, tbs: bytes) -> bytes:
        session = self._session
        api = session.api
        if session.happ is None:  # reconnect after the key was put back
            session.open()
        if not session.logged_in:
            self._relogin()
        hcon = session.containers.get(self._container)
        if hcon is None:
            hcon = session.container(self._container)
            if _public_key(api, hcon)[1].dump() != self._spki_der:
                raise DeviceError(
                    f"container {self._container!r} now holds another key than when it was found"
                )
        try:
            return self._device_sign(api, hcon, tbs)
        except _NotLoggedInError:
            self._relogin()
            return self._device_sign(api, hcon, tbs)

    def _relogin(self) -> None:
        """Verify the PIN from its source again, but never a PIN the device has refused."""
        session = self._session
        if session.pin_refused:
            raise PinIncorrectError(
                f"the PIN for USB key {session.device!r} was refused; fix its source and find "
                "the key again (it is not retried automatically)"
            )
        try:
            session.login(self._pin())
        except (PinIncorrectError, PinLockedError):
            session.pin_refused = True
            raise

    def _device_sign(self, api: _Api, hcon: int, tbs: bytes) -> bytes:
        if self._key_type == "sm2":
            blob = ctypes.create_string_buffer(128)
            api.check("SKF_ECCSignData", api.ECCSignData(hcon, tbs, len(tbs), blob))
            return raw_signature(blob.raw[:64], blob.raw[64:128])
        size = len(self._spki["public_key"].parsed["modulus"].contents)
        return api.read_bytes("SKF_RSASignData", hcon, tbs, len(tbs), initial=max(size, 256))

    def close(self) -> None:
        """Log out and release the device handles (shared with the application's other keys)."""
        self._session.close()


# ------------------------------------------------------------------ backend


class SkfBackend:
    """Key backend for SKF USB keys (scheme ``skf``); see the module docstring for URIs."""

    scheme = SCHEME

    def __init__(
        self,
        module_path: str | None = None,
        *,
        ulong_bits: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._module = module_path
        self._bits = _ulong_bits(ulong_bits, "SkfBackend(ulong_bits=...)")
        self._sessions: dict[tuple[str, int, str, str], _Session] = {}
        self._lock = threading.Lock()

    # -- settings

    def _api_for(self, uri: KeyUri | None) -> _Api:
        query = uri.query if uri is not None else {}
        path = query.get("module-path") or self._module or self._environ.get(MODULE_ENV)
        if not path:
            raise ConfigurationError(
                f"no SKF library: add module-path=... to the key URI or set {MODULE_ENV}"
            )
        bits = (
            _ulong_bits(query.get("ulong"), "key URI")
            or self._bits
            or _ulong_bits(self._environ.get(ULONG_ENV), ULONG_ENV)
            or 32
        )
        return _api(path, bits)

    def _parse(self, key_uri: str) -> KeyUri:
        uri = KeyUri.parse(key_uri)
        if uri.scheme != SCHEME:
            raise MalformedInputError(f"not an skf: key URI: {key_uri!r}")
        return uri

    def _session(self, api: _Api, device: str, application: str) -> _Session:
        key = (api.path, api.bits, device, application)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = _Session(api, device, application, _device_lock(api, device))
                self._sessions[key] = session
            return session

    @staticmethod
    def _only(names: list[str], what: str, where: str) -> str:
        if len(names) != 1:
            found = ", ".join(names) or "none"
            raise ConfigurationError(f"name the {what} in the key URI ({where} has: {found})")
        return names[0]

    def _resolve(self, api: _Api, uri: KeyUri) -> tuple[str, str]:
        """Device and application names, filled in when exactly one exists."""
        present = api.multi_string("SKF_EnumDev", 1)
        device = uri.path.get("device")
        if device is None:
            device = self._only(present, "device", "the host")
        elif device not in present:
            raise DeviceUnavailableError(f"USB key {device!r} is not plugged in")
        application = uri.path.get("application")
        if application is None:
            hdev = c_void_p()
            with _device_lock(api, device):
                api.check("SKF_ConnectDev", api.ConnectDev(_encode(device), _ref(hdev)))
                try:
                    apps = api.multi_string("SKF_EnumApplication", hdev.value)
                finally:
                    api.DisConnectDev(hdev.value)
            application = self._only(apps, "application", f"USB key {device!r}")
        return device, application

    # -- KeyBackend

    def find(self, key_uri: str) -> SkfKey:
        uri = self._parse(key_uri)
        container = uri.path.get("container")
        if not container:
            raise MalformedInputError("an skf: key URI needs container=NAME")
        api = self._api_for(uri)
        device, application = self._resolve(api, uri)
        session = self._session(api, device, application)
        environ = self._environ

        def pin() -> str:
            return resolve_pin(
                uri, default_env=PIN_ENV, environ=environ, prompt=f"PIN of USB key {device}: "
            )

        def open_key() -> SkfKey:
            session.open()
            if container not in session.container_names():
                raise KeyNotFoundError(f"no container {container!r} in {device}/{application}")
            # No PIN yet: the public key and certificate are readable without it, and a
            # desk's USB key is asked for its PIN when it first signs, not when a service
            # starts or a command merely names the key.
            session.pin_refused = False  # an explicit find may try the PIN source again
            hcon = session.container(container)
            kind, cert = _container_info(api, hcon)
            key_type, spki = _public_key(api, hcon)
            if CONTAINER_TYPES.get(kind) != key_type:
                raise DeviceError(
                    f"container {container!r} says type {kind} but holds a {key_type} key"
                )
            query = {k: v for k, v in uri.query.items() if k != "pin-value"}
            path = {"device": device, "application": application, "container": container}
            return SkfKey(
                session, KeyUri(SCHEME, path, query), container, key_type, spki, cert, pin
            )

        return session.run(open_key)

    def generate(self, label: str, spec: str) -> SkfKey:
        raise MechanismUnsupportedError(
            "keys are not generated on SKF USB keys here: the vendor's tools issue them; "
            "then name the container in an skf: key URI"
        )

    def destroy(self, key_uri: str) -> None:
        raise MechanismUnsupportedError(
            "keys on SKF USB keys are not destroyed by etrust; use the vendor's tools"
        )

    def list(self) -> list[str]:
        """URIs of every container on every USB key present (no PIN needed)."""
        api = self._api_for(None)
        out: list[str] = []
        for dev in _walk(api):
            for app in dev["applications"]:
                for con in app["containers"]:
                    path = {
                        "device": dev["name"],
                        "application": app["name"],
                        "container": con["name"],
                    }
                    out.append(str(KeyUri(SCHEME, path)))
        return out

    def probe(self, key_uri: str | None = None) -> dict[str, Any]:
        """What the library sees, JSON-serialisable, for ``etrust device probe`` (no PIN needed)."""
        uri = self._parse(key_uri) if key_uri else None
        api = self._api_for(uri)
        only = uri.path.get("device") if uri else None
        return {
            "module": api.path,
            "ulong": api.bits,
            "ulong_measured": api.measured_bits,
            "devices": [d for d in _walk(api, details=True) if only in (None, d["name"])],
        }

    def close(self) -> None:
        """Log out of every USB key this backend opened and release the handles."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()


def _devinfo_type(api: _Api) -> Any:
    class Version(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]

    class DevInfo(ctypes.Structure):
        _pack_ = 1
        _fields_ = [
            ("Version", Version),
            ("Manufacturer", ctypes.c_char * 64),
            ("Issuer", ctypes.c_char * 64),
            ("Label", ctypes.c_char * 32),
            ("SerialNumber", ctypes.c_char * 32),
            ("HWVersion", Version),
            ("FirmwareVersion", Version),
            *[
                (name, api.ulong)
                for name in (
                    "AlgSymCap",
                    "AlgAsymCap",
                    "AlgHashCap",
                    "DevAuthAlgId",
                    "TotalSpace",
                    "FreeSpace",
                    "MaxECCBufferSize",
                    "MaxBufferSize",
                )
            ],
            ("Reserved", ctypes.c_ubyte * 64),
        ]

    return DevInfo


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _device_info(api: _Api, hdev: int) -> dict[str, Any] | None:
    if api.GetDevInfo is None:
        return None
    buf = ctypes.create_string_buffer(1024)  # room for any width's DEVINFO
    api.check("SKF_GetDevInfo", api.GetDevInfo(hdev, buf))
    info = _devinfo_type(api).from_buffer_copy(buf)
    return {
        "manufacturer": _text(info.Manufacturer),
        "issuer": _text(info.Issuer),
        "label": _text(info.Label),
        "serial": _text(info.SerialNumber),
        "version": f"{info.Version.major}.{info.Version.minor}",
        "firmware": f"{info.FirmwareVersion.major}.{info.FirmwareVersion.minor}",
    }


def _walk(api: _Api, details: bool = False) -> list[dict[str, Any]]:
    """Devices → applications → containers, each opened and closed again under its lock."""
    devices: list[dict[str, Any]] = []
    for name in api.multi_string("SKF_EnumDev", 1):
        with _device_lock(api, name):
            devices.append(_walk_device(api, name, details))
    return devices


def _walk_device(api: _Api, name: str, details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "applications": []}
    hdev = c_void_p()
    api.check("SKF_ConnectDev", api.ConnectDev(_encode(name), _ref(hdev)))
    try:
        if details:
            entry["info"] = _guard(lambda: _device_info(api, int(hdev.value or 0)))
        for app_name in api.multi_string("SKF_EnumApplication", hdev.value):
            happ = c_void_p()
            api.check(
                "SKF_OpenApplication",
                api.OpenApplication(hdev.value, _encode(app_name), _ref(happ)),
            )
            try:
                entry["applications"].append(
                    _walk_app(api, app_name, int(happ.value or 0), details)
                )
            finally:
                api.CloseApplication(happ.value)
    finally:
        api.DisConnectDev(hdev.value)
    return entry


def _walk_app(api: _Api, name: str, happ: int, details: bool) -> dict[str, Any]:
    app: dict[str, Any] = {"name": name, "containers": []}
    if details:
        app["user_pin"] = _guard(lambda: _pin_info(api, happ))
    for con_name in api.multi_string("SKF_EnumContainer", happ):
        con: dict[str, Any] = {"name": con_name}
        if details:
            con.update(_guard(functools.partial(_describe_container, api, happ, con_name)))
        app["containers"].append(con)
    return app


def _pin_info(api: _Api, happ: int) -> dict[str, Any]:
    most, left, default = api.cell(), api.cell(), _Cell(api.bool_)
    api.check("SKF_GetPINInfo", api.GetPINInfo(happ, USER_TYPE, most.ptr, left.ptr, default.ptr))
    return {
        "max_retries": most.value,
        "retries_left": left.value,
        "default_pin": bool(default.value),
    }


def _describe_container(api: _Api, happ: int, name: str) -> dict[str, Any]:
    out = c_void_p()
    api.check("SKF_OpenContainer", api.OpenContainer(happ, _encode(name), _ref(out)), name)
    try:
        kind, cert = _container_info(api, int(out.value or 0))
    finally:
        api.CloseContainer(out.value)
    result: dict[str, Any] = {
        "type": CONTAINER_TYPES.get(kind, f"unknown ({kind})"),
        "certificate": None,
    }
    if cert is not None:
        parsed = load_certificate(cert)
        result["certificate"] = {
            "subject": parsed.subject.human_friendly,
            "issuer": parsed.issuer.human_friendly,
            "serial": f"{parsed.serial_number:X}",
            "not_after": parsed.not_valid_after.isoformat(),
        }
    return result


def _guard(op: Callable[[], T]) -> T | dict[str, str]:
    """A probe reports what failed and goes on, except when the key is pulled out."""
    try:
        return op()
    except DeviceUnavailableError:
        raise
    except EtrustError as exc:
        return {"error": f"{exc.code}: {exc.message}"}


__all__ = ["SCHEME", "SkfBackend", "SkfKey", "parse_public_key_blob"]
