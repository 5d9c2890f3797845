"""GM/T 0018 SDF key backend: SM2 keys inside a server cipher card (HSM), by ctypes.

Key URIs (RFC 7512 layout)::

    sdf:key-index=3?module-path=/opt/vendor/libsdf.so&ecc-max-len=64&pin-source=env:HSM_KEY3_PASSWORD

- ``key-index`` (path, required by :meth:`SdfBackend.find`): the card's internal signing key
  index, 1 and up.
- ``module-path`` (query): the vendor's SDF library; else the backend's, else
  ``$ETRUST_SDF_MODULE``.
- ``ecc-max-len`` (query): ``64`` (the 2012 spec) or ``32`` (some vendors): the size of the
  coordinate fields in ``ECCrefPublicKey`` / ``ECCSignature``. Else the backend's setting,
  else ``$ETRUST_SDF_ECC_MAX_LEN``, else 64. Buffers are always allocated at the larger size
  so a wrong setting gives a clear :class:`DeviceError`, never a memory overrun.
- ``pin-source`` / ``pin-value`` (query): the key access password, read by
  :func:`hsm_adapters.pins.resolve_pin`; default variable ``ETRUST_SDF_KEY<N>_PASSWORD``.

Why the host hashes: ``SDF_InternalSign_ECC`` signs a 32-byte e, so e = SM3(Z || M) with the
distinguishing ID is computed here, which keeps the ID under our control. Sessions are pooled
per card; each session gets a key's access right once, the first time it signs with it. A
password the card rejects is never sent again through the same handle (cards lock keys after a
few failures); look the key up again after fixing it. After a card failure every pooled
session is dropped and the next call reopens the device. Keys are made and destroyed by the
card's own management tools, not here.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import keys

from hsm_adapters.pins import resolve_pin
from trust.algorithms import SignatureAlgorithm
from trust.errors import (
    ConfigurationError,
    DeviceError,
    DeviceUnavailableError,
    KeyNotFoundError,
    MalformedInputError,
    MechanismUnsupportedError,
    PinIncorrectError,
    PinLockedError,
)
from trust.keys import KeyHandleBase, KeyUri, key_type_of_spec
from trust.sm2 import Sm2PublicKey, raw_signature, z_value

SCHEME = "sdf"
MODULE_ENV = "ETRUST_SDF_MODULE"
ECC_MAX_LEN_ENV = "ETRUST_SDF_ECC_MAX_LEN"
ECC_MAX_LENS = (64, 32)
MAX_KEY_INDEX = 64
"""How far :meth:`SdfBackend.list` and :meth:`SdfBackend.probe` look for keys."""
_MAX_SESSIONS = 16
_MAX_IDLE_SESSIONS = 8

SGD_SM2_1 = 0x00020200
SDR_OK = 0
SDR_BASE = 0x01000000
SDR_NAMES = {
    SDR_BASE + code: name
    for code, name in enumerate(
        (
            "SDR_BASE",
            "SDR_UNKNOWERR",
            "SDR_NOTSUPPORT",
            "SDR_COMMFAIL",
            "SDR_HARDFAIL",
            "SDR_OPENDEVICE",
            "SDR_OPENSESSION",
            "SDR_PARDENY",
            "SDR_KEYNOTEXIST",
            "SDR_ALGNOTSUPPORT",
            "SDR_ALGMODNOTSUPPORT",
            "SDR_PKOPERR",
            "SDR_SKOPERR",
            "SDR_SIGNERR",
            "SDR_VERIFYERR",
            "SDR_SYMOPERR",
            "SDR_STEPERR",
            "SDR_FILESIZEERR",
            "SDR_FILENOEXIST",
            "SDR_FILEOFSERR",
            "SDR_KEYTYPEERR",
            "SDR_KEYERR",
            "SDR_ENCDATAERR",
            "SDR_RANDERR",
            "SDR_PRKRERR",
            "SDR_MACERR",
            "SDR_FILEEXSITS",
            "SDR_FILEWERR",
            "SDR_NOBUFFER",
            "SDR_INARGERR",
            "SDR_OUTARGERR",
        )
    )
}
SDR_COMMFAIL = SDR_BASE + 0x03
SDR_HARDFAIL = SDR_BASE + 0x04
SDR_OPENDEVICE = SDR_BASE + 0x05
SDR_OPENSESSION = SDR_BASE + 0x06
SDR_PARDENY = SDR_BASE + 0x07
SDR_KEYNOTEXIST = SDR_BASE + 0x08
SDR_NOTSUPPORT = SDR_BASE + 0x02
SDR_PRKRERR = SDR_BASE + 0x18
_DEVICE_GONE = frozenset({SDR_COMMFAIL, SDR_HARDFAIL, SDR_OPENDEVICE, SDR_OPENSESSION})
"""Codes after which the device and its sessions are dropped and reopened on the next call."""
LOCKED_CODES = frozenset({SDR_PRKRERR})
"""Answers to GetPrivateKeyAccessRight meaning the key is locked. GM/T 0018 names no such code;
SDR_PRKRERR is the simulator's choice and the closest standard meaning. Vendors: check here."""


def _public(uri: KeyUri) -> KeyUri:
    """The URI without ``pin-value``: safe to show, log and store."""
    return KeyUri(
        uri.scheme, dict(uri.path), {k: v for k, v in uri.query.items() if k != "pin-value"}
    )


def sdr_name(rc: int) -> str:
    return f"{SDR_NAMES.get(rc, 'vendor code')} (0x{rc & 0xFFFFFFFF:08X})"


class DeviceInfo(ctypes.Structure):
    _fields_ = (
        ("IssuerName", ctypes.c_ubyte * 40),
        ("DeviceName", ctypes.c_ubyte * 16),
        ("DeviceSerial", ctypes.c_ubyte * 16),
        ("DeviceVersion", ctypes.c_uint),
        ("StandardVersion", ctypes.c_uint),
        ("AsymAlgAbility", ctypes.c_uint * 2),
        ("SymAlgAbility", ctypes.c_uint),
        ("HashAlgAbility", ctypes.c_uint),
        ("BufferSize", ctypes.c_uint),
    )


def public_key_size(ecc_max_len: int) -> int:
    """sizeof(ECCrefPublicKey): ``unsigned int bits; x[LEN]; y[LEN]``."""
    return 4 + 2 * ecc_max_len


def signature_size(ecc_max_len: int) -> int:
    """sizeof(ECCSignature): ``r[LEN]; s[LEN]``."""
    return 2 * ecc_max_len


_PUBLIC_BUF = public_key_size(max(ECC_MAX_LENS))
_SIGNATURE_BUF = signature_size(max(ECC_MAX_LENS))
_INFO_BUF = 512  # vendors append fields to DEVICEINFO; never let them write past our buffer


def _right_aligned(field_: bytes, what: str) -> bytes:
    """The 32-byte value at the end of a coordinate field; the rest must be zero padding."""
    head, value = field_[:-32], field_[-32:]
    if any(head):
        raise DeviceError(
            f"the card's {what} is not right-aligned in its field: is ecc-max-len "
            f"({len(field_)}) the value of this vendor's ECCref_MAX_LEN?"
        )
    return value


class _Library:
    """The SDF functions we call, with their C prototypes; one instance per loaded module."""

    def __init__(self, path: str) -> None:
        try:
            # A CDLL of our own: ctypes caches function objects per CDLL, argtypes included.
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise DeviceUnavailableError(f"SDF library {path} cannot be loaded: {exc}") from exc
        vp, pvp, u, ub = (
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_uint,
            ctypes.c_char_p,
        )

        def fn(name: str, *argtypes: Any) -> Any:
            try:
                f = getattr(lib, name)
            except AttributeError:
                raise ConfigurationError(
                    f"{path} is not a GM/T 0018 SDF library: it has no {name}"
                ) from None
            f.restype = ctypes.c_int
            f.argtypes = list(argtypes)
            return f

        self.path = path
        self.open_device = fn("SDF_OpenDevice", pvp)
        self.close_device = fn("SDF_CloseDevice", vp)
        self.open_session = fn("SDF_OpenSession", vp, pvp)
        self.close_session = fn("SDF_CloseSession", vp)
        self.get_device_info = fn("SDF_GetDeviceInfo", vp, vp)
        self.generate_random = fn("SDF_GenerateRandom", vp, u, vp)
        self.get_access_right = fn("SDF_GetPrivateKeyAccessRight", vp, u, ub, u)
        self.release_access_right = fn("SDF_ReleasePrivateKeyAccessRight", vp, u)
        self.export_sign_public_ecc = fn("SDF_ExportSignPublicKey_ECC", vp, u, vp)
        self.internal_sign_ecc = fn("SDF_InternalSign_ECC", vp, u, ub, u, vp)


@dataclass
class _Session:
    handle: int
    generation: int
    rights: set[int] = field(default_factory=set)


class _Card:
    """One SDF library + ECCref_MAX_LEN: a device handle and a pool of sessions on it."""

    def __init__(self, path: str, ecc_max_len: int) -> None:
        self.lib = _Library(path)
        self.ecc_max_len = ecc_max_len
        self._lock = threading.Lock()
        self._device: int | None = None
        self._generation = 0
        self._idle: list[_Session] = []
        self._slots = threading.BoundedSemaphore(_MAX_SESSIONS)
        # Sessions in use per generation, and devices of dropped generations waiting for their
        # last session to come back: a device is never closed under a session still using it.
        self._in_use: dict[int, int] = {}
        self._retired: dict[int, int] = {}

    def _open_device(self) -> int:
        """Under ``self._lock``: the device handle, opening it when needed."""
        if self._device is None:
            handle = ctypes.c_void_p()
            rc = self.lib.open_device(ctypes.byref(handle))
            if rc != SDR_OK or not handle.value:
                raise DeviceUnavailableError(
                    f"SDF device behind {self.lib.path} does not open: {sdr_name(rc)}"
                )
            self._device = handle.value
        return self._device

    def _open_session(self) -> _Session:
        """A session counted as in use; opened under the lock, so its device stays open."""
        with self._lock:
            while self._idle:
                session = self._idle.pop()
                if session.generation == self._generation:
                    self._in_use[session.generation] = self._in_use.get(session.generation, 0) + 1
                    return session
            device = self._open_device()
            generation = self._generation
            handle = ctypes.c_void_p()
            rc = self.lib.open_session(device, ctypes.byref(handle))
            if rc == SDR_OK and handle.value:
                self._in_use[generation] = self._in_use.get(generation, 0) + 1
                return _Session(handle.value, generation)
        self._drop(generation)
        raise DeviceUnavailableError(f"SDF session does not open: {sdr_name(rc)}")

    @contextmanager
    def session(self) -> Iterator[_Session]:
        """A pooled session for one operation; it goes back to the pool unless the card failed.

        At most ``_MAX_SESSIONS`` are in use at once; more callers wait their turn.
        """
        with self._slots:
            session = self._open_session()
            try:
                yield session
            finally:
                self._give_back(session)

    def _give_back(self, session: _Session) -> None:
        with self._lock:
            generation = session.generation
            keep = generation == self._generation and len(self._idle) < _MAX_IDLE_SESSIONS
            if keep:
                self._idle.append(session)
            self._in_use[generation] -= 1
            last = self._in_use[generation] == 0
            if last:
                del self._in_use[generation]
            device = self._retired.pop(generation, None) if last else None
        if not keep:  # best effort; the card may be gone
            for index in session.rights:
                self.lib.release_access_right(session.handle, index)
            self.lib.close_session(session.handle)
        if device is not None:
            self.lib.close_device(device)

    def close(self) -> None:
        """Close the pooled sessions and the device (sessions in use close when returned)."""
        self._drop(self._generation)

    def _drop(self, generation: int) -> None:
        """Forget the device and every session of ``generation`` (once, whoever sees it first).

        The device itself is closed now if no session of that generation is in use, else by
        the last one given back.
        """
        with self._lock:
            if generation != self._generation:
                return
            self._generation += 1
            device, self._device = self._device, None
            idle, self._idle = self._idle, []
            if device is not None and self._in_use.get(generation):
                self._retired[generation] = device
                device = None
        for session in idle:
            self.lib.close_session(session.handle)
        if device is not None:
            self.lib.close_device(device)

    def check(self, rc: int, session: _Session, what: str) -> None:
        """Raise for a non-zero SDR code; card failures also schedule a reopen."""
        if rc == SDR_OK:
            return
        if rc in _DEVICE_GONE:
            self._drop(session.generation)
            raise DeviceUnavailableError(
                f"SDF card failed during {what}: {sdr_name(rc)}; it is reopened on the next call"
            )
        if rc == SDR_NOTSUPPORT:
            raise MechanismUnsupportedError(f"the SDF card does not support {what}")
        raise DeviceError(f"SDF {what} failed: {sdr_name(rc)}")

    def export_public(self, session: _Session, index: int) -> keys.PublicKeyInfo:
        buf = ctypes.create_string_buffer(_PUBLIC_BUF)
        rc = self.lib.export_sign_public_ecc(session.handle, index, buf)
        if rc == SDR_KEYNOTEXIST:
            raise KeyNotFoundError(f"the SDF card has no signing key at index {index}")
        self.check(rc, session, f"ExportSignPublicKey_ECC({index})")
        n = self.ecc_max_len
        raw = buf.raw[: public_key_size(n)]
        bits = ctypes.c_uint.from_buffer_copy(raw[:4]).value
        if bits != 256:
            raise MechanismUnsupportedError(
                f"key index {index} is not a 256-bit SM2 key ({bits} bits reported)"
            )
        x = _right_aligned(raw[4 : 4 + n], "public key x")
        y = _right_aligned(raw[4 + n : 4 + 2 * n], "public key y")
        spki = keys.PublicKeyInfo(
            {
                "algorithm": {
                    "algorithm": "ec",
                    "parameters": ("named", "1.2.156.10197.1.301"),
                },
                "public_key": b"\x04" + x + y,
            }
        )
        try:
            Sm2PublicKey(spki.dump())  # libcrypto checks the point is on the curve
        except MalformedInputError as exc:
            raise DeviceError(
                f"key index {index}: the card returned no valid SM2 point; is ecc-max-len "
                f"({n}) the value of this vendor's ECCref_MAX_LEN?"
            ) from exc
        return spki

    def device_info(self, session: _Session) -> dict[str, Any]:
        buf = ctypes.create_string_buffer(_INFO_BUF)
        self.check(self.lib.get_device_info(session.handle, buf), session, "GetDeviceInfo")
        info = DeviceInfo.from_buffer_copy(buf.raw[: ctypes.sizeof(DeviceInfo)])

        def text(raw: Any) -> str:
            return bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace").strip()

        return {
            "issuer": text(info.IssuerName),
            "name": text(info.DeviceName),
            "serial": text(info.DeviceSerial),
            "device_version": f"0x{info.DeviceVersion:08X}",
            "standard_version": f"0x{info.StandardVersion:08X}",
            "asym_alg_ability": [f"0x{v:08X}" for v in info.AsymAlgAbility],
            "sym_alg_ability": f"0x{info.SymAlgAbility:08X}",
            "hash_alg_ability": f"0x{info.HashAlgAbility:08X}",
            "buffer_size": int(info.BufferSize),
        }

    def random_self_test(self, session: _Session) -> bool:
        """Two 32-byte draws from the card's RNG differ and are not all zero (a smoke test)."""
        draws = []
        for _ in range(2):
            buf = ctypes.create_string_buffer(32)
            self.check(self.lib.generate_random(session.handle, 32, buf), session, "GenerateRandom")
            draws.append(buf.raw)
        return draws[0] != draws[1] and any(draws[0])


class SdfKey(KeyHandleBase):
    """A handle on an SM2 signing key inside an SDF card; it never holds the password."""

    def __init__(
        self,
        card: _Card,
        index: int,
        uri: KeyUri,
        spki: keys.PublicKeyInfo,
        environ: Mapping[str, str],
    ) -> None:
        # Recorded without any pin-value: key URIs get logged and stored.
        super().__init__(str(_public(uri)), "sm2", spki)
        self._card = card
        self._env = environ
        self._index = index
        self._uri = uri
        point = spki["public_key"].native
        self._x = int.from_bytes(point[1:33], "big")
        self._y = int.from_bytes(point[33:65], "big")
        self._right_lock = threading.Lock()
        self._rejected = False

    def _sign(self, data: bytes, alg: SignatureAlgorithm, sm2_id: bytes) -> bytes:
        """SM2 over SM3(Z || data): Z and e on the host, the private-key step in the card."""
        e = hashlib.new("sm3", z_value(self._x, self._y, sm2_id) + data).digest()
        card = self._card
        with card.session() as session:
            self._ensure_right(session)
            out = ctypes.create_string_buffer(_SIGNATURE_BUF)
            rc = card.lib.internal_sign_ecc(session.handle, self._index, e, len(e), out)
            if rc == SDR_PARDENY:  # the card dropped the right (e.g. reset): get it once more
                session.rights.discard(self._index)
                self._ensure_right(session)
                rc = card.lib.internal_sign_ecc(session.handle, self._index, e, len(e), out)
            card.check(rc, session, f"InternalSign_ECC({self._index})")
        n = card.ecc_max_len
        raw = out.raw[: signature_size(n)]
        return raw_signature(
            _right_aligned(raw[:n], "signature r"), _right_aligned(raw[n:], "signature s")
        )

    def _ensure_right(self, session: _Session) -> None:
        """Get this key's access right in ``session``; a rejected password is sent once only."""
        if self._index in session.rights:
            return
        with self._right_lock:
            if self._rejected:
                raise PinIncorrectError(
                    f"the password for SDF key index {self._index} was rejected; it is not sent "
                    "again: correct it and look the key up again"
                )
            password = resolve_pin(
                self._uri,
                default_env=f"ETRUST_SDF_KEY{self._index}_PASSWORD",
                environ=self._env,
                prompt=f"Password of SDF key {self._index}: ",
            ).encode("utf-8")
            rc = self._card.lib.get_access_right(
                session.handle, self._index, password, len(password)
            )
            del password
            if rc == SDR_PARDENY:
                self._rejected = True
                raise PinIncorrectError(
                    f"the SDF card rejected the password for key index {self._index}"
                )
            if rc in LOCKED_CODES:
                raise PinLockedError(
                    f"SDF key index {self._index} is locked after too many wrong passwords; "
                    "unlock it with the card's management tool"
                )
            if rc == SDR_KEYNOTEXIST:
                raise KeyNotFoundError(f"the SDF card has no key at index {self._index}")
            self._card.check(rc, session, f"GetPrivateKeyAccessRight({self._index})")
            session.rights.add(self._index)


class SdfBackend:
    """Keys in GM/T 0018 cipher cards, found by ``sdf:key-index=N`` URIs."""

    scheme = SCHEME

    def __init__(
        self,
        module_path: str | None = None,
        *,
        ecc_max_len: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._env = os.environ if environ is None else environ
        self._module_path = module_path
        self._ecc_max_len = ecc_max_len
        self._cards: dict[tuple[str, int], _Card] = {}
        self._handles: dict[str, SdfKey] = {}
        self._lock = threading.Lock()

    def _card(self, uri: KeyUri) -> _Card:
        if uri.scheme != SCHEME:
            raise MalformedInputError(f"not an SDF key URI (sdf:key-index=N): {_public(uri)}")
        path = uri.query.get("module-path") or self._module_path or self._env.get(MODULE_ENV)
        if not path:
            raise ConfigurationError(
                f"no SDF library: add module-path=... to the key URI or set {MODULE_ENV}"
            )
        raw_len = (
            uri.query.get("ecc-max-len") or self._ecc_max_len or self._env.get(ECC_MAX_LEN_ENV)
        )
        try:
            ecc_max_len = int(raw_len or 64)
        except ValueError:
            ecc_max_len = 0
        if ecc_max_len not in ECC_MAX_LENS:
            raise ConfigurationError(f"ecc-max-len must be 64 or 32, not {raw_len!r}")
        with self._lock:
            card = self._cards.get((path, ecc_max_len))
            if card is None:
                card = _Card(path, ecc_max_len)
                self._cards[(path, ecc_max_len)] = card
            return card

    @staticmethod
    def _index(uri: KeyUri) -> int:
        text = uri.path.get("key-index")
        if text is None:
            raise MalformedInputError(
                f"SDF key URIs name a key: sdf:key-index=N, not {_public(uri)}"
            )
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 0xFFFFFFFF:
            raise MalformedInputError(f"SDF key-index must be a positive integer, not {text!r}")
        return int(text)

    def find(self, key_uri: str) -> SdfKey:
        """A handle with the key's public key as the card exports it (no password needed).

        Handles are kept per URI (in memory only), so a caller looking the key up for every
        request still sends a rejected password to the card once, not once per request. A URI
        with another ``pin-value`` is another handle; after fixing a ``pin-source``, call
        :meth:`forget` (or restart).
        """
        uri = KeyUri.parse(key_uri)
        card = self._card(uri)
        index = self._index(uri)
        with self._lock:
            cached = self._handles.get(str(uri))
        if cached is not None:
            return cached
        with card.session() as session:
            spki = card.export_public(session, index)
        with self._lock:
            return self._handles.setdefault(str(uri), SdfKey(card, index, uri, spki, self._env))

    def forget(self, key_uri: str) -> None:
        """Drop the cached handle(s) for this key URI, e.g. after its password was corrected."""
        public = str(_public(KeyUri.parse(key_uri)))
        with self._lock:
            for text in [t for t in self._handles if str(_public(KeyUri.parse(t))) == public]:
                del self._handles[text]

    def generate(self, label: str, spec: str) -> SdfKey:
        key_type_of_spec(spec)  # unknown specs are an algorithm error, as everywhere
        raise MechanismUnsupportedError(
            f"SDF keys ({spec}) are generated inside the card with its management tool; "
            "then use sdf:key-index=N"
        )

    def destroy(self, key_uri: str) -> None:
        raise MechanismUnsupportedError(
            "SDF keys are destroyed with the card's management tool, not through etrust"
        )

    def _scan(self, uri: KeyUri) -> list[dict[str, Any]]:
        card = self._card(uri)
        found: list[dict[str, Any]] = []
        with card.session() as session:
            for index in range(1, MAX_KEY_INDEX + 1):
                try:
                    spki = card.export_public(session, index)
                except (KeyNotFoundError, MechanismUnsupportedError):
                    continue
                key_uri = KeyUri(SCHEME, {"key-index": str(index)}, dict(uri.query))
                found.append(
                    {
                        "index": index,
                        "uri": str(key_uri),
                        "key_type": "sm2",
                        "spki_sha256": hashlib.sha256(spki.dump()).hexdigest(),
                    }
                )
        return found

    def probe(self, uri: str = f"{SCHEME}:") -> dict[str, Any]:
        """Device information and its SM2 signing keys, JSON-serialisable (``etrust device probe``).

        Passwords are neither needed nor read; a ``pin-*`` query attribute is left out of the
        URIs returned.
        """
        parsed = _public(KeyUri.parse(uri))
        query = {k: v for k, v in parsed.query.items() if not k.startswith("pin-")}
        parsed = KeyUri(parsed.scheme, {}, query)
        card = self._card(parsed)
        with card.session() as session:
            info = card.device_info(session)
            random_ok = card.random_self_test(session)
        return {
            "scheme": SCHEME,
            "module_path": card.lib.path,
            "ecc_max_len": card.ecc_max_len,
            "device": info,
            "random_self_test": "ok" if random_ok else "failed",
            "keys": self._scan(parsed),
        }

    def close(self) -> None:
        """Release the cards' sessions and devices, e.g. at shutdown; later calls reopen them."""
        with self._lock:
            cards = list(self._cards.values())
        for card in cards:
            card.close()

    def list(self) -> list[str]:
        """URIs of the key indexes 1..MAX_KEY_INDEX that export an SM2 signing public key."""
        return [entry["uri"] for entry in self._scan(KeyUri(SCHEME))]
