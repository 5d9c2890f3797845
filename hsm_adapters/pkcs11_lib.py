"""Loading a PKCS#11 module for threads, mapping its errors, and the vendor SM2 table.

Why the loader: python-pkcs11 calls ``C_Initialize(NULL)``, which tells a module that the
application will not call it from several threads at once; SoftHSM2 then switches its mutexes
off. We initialise the module first with ``CKF_OS_LOCKING_OK`` (through its function list, by
ctypes) and hand python-pkcs11 an already-initialised library. When that is not possible (the
module cannot lock, or someone else initialised it first) the module is marked not thread-safe
and every call into it is serialised.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import KeyType, Mechanism
from pkcs11 import exceptions as p11x
from pkcs11._pkcs11 import lib as _CyLib

from trust.errors import (
    DeviceError,
    DeviceUnavailableError,
    EtrustError,
    KeyNotFoundError,
    MalformedInputError,
    MechanismUnsupportedError,
    PinIncorrectError,
    PinLockedError,
)

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "ETRUST_PKCS11_MODULE"
PIN_ENV = "ETRUST_PKCS11_PIN"

_CKR_OK = 0
_CKR_CANT_LOCK = 0x0A
_CKR_ALREADY_INITIALIZED = 0x191
_CKF_OS_LOCKING_OK = 0x02


def default_module() -> str:
    return os.environ.get(MODULE_ENV, DEFAULT_MODULE)


class _InitArgs(ctypes.Structure):
    _fields_ = [
        ("create_mutex", ctypes.c_void_p),
        ("destroy_mutex", ctypes.c_void_p),
        ("lock_mutex", ctypes.c_void_p),
        ("unlock_mutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("reserved", ctypes.c_void_p),
    ]


_CInitialize = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)
_CLogin = ctypes.CFUNCTYPE(
    ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong
)


class _FunctionListHead(ctypes.Structure):
    """The start of CK_FUNCTION_LIST (pkcs11f.h order): a CK_VERSION, C_Initialize ... C_Login."""

    _fields_ = [
        ("major", ctypes.c_ubyte),
        ("minor", ctypes.c_ubyte),
        ("c_initialize", _CInitialize),
        *(
            (f"unused_{n}", ctypes.c_void_p) for n in range(17)
        ),  # C_Finalize ... C_SetOperationState
        ("c_login", _CLogin),
    ]


_CKU_USER = 1
CKR_USER_ALREADY_LOGGED_IN = 0x100
_LOGIN_ERRORS: dict[int, type[p11x.PKCS11Error]] = {
    0x30: p11x.DeviceError,
    0x32: p11x.DeviceRemoved,
    0xA0: p11x.PinIncorrect,
    0xA1: p11x.PinInvalid,
    0xA2: p11x.PinLenRange,
    0xA3: p11x.PinExpired,
    0xA4: p11x.PinLocked,
    0xB0: p11x.SessionClosed,
    0xB3: p11x.SessionHandleInvalid,
    0xE0: p11x.TokenNotPresent,
}


class _PreinitialisedLib(_CyLib):  # type: ignore[misc]
    """python-pkcs11's library object for a module we have already initialised."""

    def initialize(self) -> None:
        """Skip ``C_Initialize(NULL)``: the module is initialised, with OS locking."""


def _function_list(path: str) -> Any:
    """The module's CK_FUNCTION_LIST (its head, as far as we call it)."""
    try:
        dll = ctypes.CDLL(path)
        get_function_list = dll.C_GetFunctionList
    except (OSError, AttributeError) as exc:
        raise DeviceUnavailableError(f"PKCS#11 module {path} cannot be loaded: {exc}") from exc
    get_function_list.restype = ctypes.c_ulong
    get_function_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionListHead))]
    functions = ctypes.POINTER(_FunctionListHead)()
    rv = get_function_list(ctypes.byref(functions))
    if rv != _CKR_OK or not functions:
        raise DeviceUnavailableError(f"PKCS#11 module {path}: C_GetFunctionList failed ({rv:#x})")
    return functions.contents


def _initialise_with_locking(functions: Any, path: str) -> bool:
    """C_Initialize with CKF_OS_LOCKING_OK; True when the module now runs thread-safe."""
    args = _InitArgs(None, None, None, None, _CKF_OS_LOCKING_OK, None)
    rv = functions.c_initialize(ctypes.addressof(args))
    if rv == _CKR_OK:
        return True
    if rv == _CKR_ALREADY_INITIALIZED:
        return False  # initialised by someone else: we cannot know whether it locks
    if rv == _CKR_CANT_LOCK:
        rv = functions.c_initialize(None)
        if rv in (_CKR_OK, _CKR_ALREADY_INITIALIZED):
            return False
    raise DeviceUnavailableError(f"PKCS#11 module {path}: C_Initialize failed ({rv:#x})")


@dataclass
class Module:
    """One loaded PKCS#11 module, shared by every backend of the process."""

    path: str
    lib: Any  # pkcs11._pkcs11.lib
    thread_safe: bool
    call_lock: threading.RLock
    functions: Any  # CK_FUNCTION_LIST head, for the calls we make ourselves

    @property
    def manufacturer(self) -> str:
        return str(self.lib.manufacturer_id).strip()

    def serialised(self) -> contextlib.AbstractContextManager[Any]:
        """Hold this while calling a module that cannot take calls from several threads."""
        return contextlib.nullcontext() if self.thread_safe else self.call_lock

    def login(self, session_handle: int, pin: str) -> None:
        """C_Login as the user on a session python-pkcs11 opened without a PIN.

        python-pkcs11 logs in inside ``Token.open`` and leaks the session it opened when the
        login fails; and a session it logged in closes with C_Logout, which logs out every
        session of the process. Logging in ourselves avoids both. Already logged in (login is
        per application) counts as done.
        """
        encoded = pin.encode()
        rv = self.functions.c_login(session_handle, _CKU_USER, encoded, len(encoded))
        if rv not in (_CKR_OK, CKR_USER_ALREADY_LOGGED_IN):
            raise _LOGIN_ERRORS.get(rv, p11x.GeneralError)()


_modules: dict[str, Module] = {}
_modules_lock = threading.Lock()


def load_module(path: str) -> Module:
    """Load and initialise a module once per process (keyed by its real path)."""
    real = os.path.realpath(path)
    with _modules_lock:
        module = _modules.get(real)
        if module is not None:
            return module
        if not os.path.isfile(real):
            raise DeviceUnavailableError(
                f"PKCS#11 module {path} does not exist; set {MODULE_ENV} or module-path="
            )
        functions = _function_list(real)
        loaded: dict[str, Any] = pkcs11._loaded  # python-pkcs11's own per-path cache
        existing = loaded.get(path) or loaded.get(real)
        if existing is not None:
            lib, thread_safe = existing, False
        else:
            thread_safe = _initialise_with_locking(functions, real)
            try:
                lib = _PreinitialisedLib(real)
            except p11x.PKCS11Error as exc:
                raise DeviceUnavailableError(f"PKCS#11 module {path}: {exc!r}") from exc
            # Kept for the life of the process: at interpreter exit the subclass is torn down
            # before the library object, and python-pkcs11's __dealloc__ would then fail noisily
            # looking up ``unload``. The module stays loaded until the process ends anyway.
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(lib))
            # So pkcs11.lib(path) elsewhere in the process returns this object instead of
            # calling C_Initialize(NULL) a second time (which the module would refuse).
            loaded[path] = loaded[real] = lib
        module = Module(real, lib, thread_safe, threading.RLock(), functions)
        _modules[real] = module
        return module


# --- errors -----------------------------------------------------------------------------

RECONNECT_ERRORS: tuple[type[Exception], ...] = (
    p11x.DeviceRemoved,
    p11x.DeviceError,
    p11x.TokenNotPresent,
    p11x.TokenNotRecognised,
    p11x.SessionHandleInvalid,
    p11x.SessionClosed,
    p11x.UserNotLoggedIn,
    p11x.ObjectHandleInvalid,
    p11x.KeyHandleInvalid,
    p11x.SlotIDInvalid,
)
"""Errors after which a fresh session (and login) may succeed: retried once."""

DEAD_SESSION_ERRORS: tuple[type[Exception], ...] = (
    p11x.DeviceRemoved,
    p11x.TokenNotPresent,
    p11x.SessionHandleInvalid,
    p11x.SessionClosed,
)
"""Errors after which the old session handles are gone and must not be closed again."""


def map_error(exc: Exception, what: str) -> EtrustError:
    """Our error for a python-pkcs11 one; ``what`` says what we were doing (never a PIN)."""
    if isinstance(exc, EtrustError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, p11x.PinLocked):
        return PinLockedError(
            f"{what}: the user PIN is locked; the security officer must unblock it"
        )
    if isinstance(exc, p11x.PinIncorrect | p11x.PinInvalid | p11x.PinLenRange | p11x.PinExpired):
        return PinIncorrectError(f"{what}: the token refused the PIN ({name})")
    if isinstance(
        exc,
        p11x.MechanismInvalid
        | p11x.MechanismParamInvalid
        | p11x.FunctionNotSupported
        | p11x.KeyTypeInconsistent
        | p11x.KeySizeRange
        | p11x.DomainParamsInvalid,
    ):
        return MechanismUnsupportedError(f"{what}: the token does not support this ({name})")
    if isinstance(exc, p11x.NoSuchKey):
        return KeyNotFoundError(f"{what}: no such key on the token")
    if isinstance(exc, p11x.NoSuchToken):
        return DeviceUnavailableError(f"{what}: no such token")
    if isinstance(exc, p11x.DataLenRange | p11x.DataInvalid):
        return MalformedInputError(f"{what}: the token refused the input ({name})")
    if isinstance(exc, p11x.MultipleObjectsReturned):
        return MalformedInputError(f"{what}: several objects match; name the key by id=")
    if isinstance(exc, RECONNECT_ERRORS):
        return DeviceUnavailableError(f"{what}: the token is not reachable ({name})")
    return DeviceError(f"{what}: the token failed ({name})")


# --- vendor SM2 -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sm2Vendor:
    """Vendor-defined PKCS#11 codes for SM2 (docs/standards.md §6.3, after XiPKI vendor.conf)."""

    name: str
    match: tuple[str, ...]  # lower-case pieces of the library file name or manufacturer ID
    key_type: int
    keygen: int
    sign_raw: int | None  # signs a host-computed e = SM3(Z || M)
    sign_sm3: int | None  # hashes on the device; the distinguishing ID is the parameter
    # Some (TASS) return DER SEQUENCE{r, s} rather than r || s: the signer accepts both.


SM2_VENDORS: tuple[Sm2Vendor, ...] = (
    Sm2Vendor("tass", ("tass",), 0x80000004, 0x80008001, 0x80008000, 0x80008100),
    Sm2Vendor("sansec", ("upkcs11", "sansec"), 0x80000004, 0x80008001, 0x80008104, 0x80008100),
    # Luna's CKM_SM3_SM2DSA is left out: whether it adds Z is unconfirmed.
    Sm2Vendor("luna", ("luna", "safenet"), 0x80000016, 0x80000B20, 0x80000B21, None),
    # IBM-compatible codes some SANSEC builds accept; chosen only by name (x-sm2-vendor=ibm).
    Sm2Vendor("ibm", (), 0x80050002, 0x8005000A, 0x8005000B, 0x8005000C),
)


def sm2_vendor_for(module: Module, name: str | None = None) -> Sm2Vendor | None:
    """The vendor entry chosen by name, else matched by library file name or manufacturer."""
    if name is not None:
        for vendor in SM2_VENDORS:
            if vendor.name == name.lower():
                return vendor
        known = ", ".join(v.name for v in SM2_VENDORS)
        raise MechanismUnsupportedError(f"unknown SM2 vendor {name!r}; known: {known}")
    haystack = f"{os.path.basename(module.path)} {module.manufacturer}".lower()
    for vendor in SM2_VENDORS:
        if any(piece in haystack for piece in vendor.match):
            return vendor
    return None


def vendor_mechanism(code: int) -> Mechanism:
    """A Mechanism for a vendor code: python-pkcs11 only accepts members of its enum."""
    try:
        return Mechanism(code)
    except ValueError:
        member = int.__new__(Mechanism, code)
        member._name_ = f"VENDOR_{code:#x}"
        member._value_ = code
        return member


def vendor_key_type(code: int) -> KeyType:
    try:
        return KeyType(code)
    except ValueError:
        member = int.__new__(KeyType, code)
        member._name_ = f"VENDOR_{code:#x}"
        member._value_ = code
        return member
