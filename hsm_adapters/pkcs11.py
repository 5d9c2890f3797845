"""The PKCS#11 key backend: keys generated and used inside a token (HSM, SoftHSM2, USB token).

URIs follow RFC 7512: ``pkcs11:token=hall1;object=seal-key?module-path=/usr/lib/x.so&
pin-source=file:/etc/etrust/pin``. Path attributes select the token (``token``, ``serial``,
``slot-id``, ``manufacturer``, ``model``) and the key (``object`` = label, ``id`` = CKA_ID,
percent-encoded bytes or plain hex). Key URIs we hand out carry no query, so no PIN or path
ends up in a database; the backend that finds them knows its module.

Concurrency: python-pkcs11 sessions are not thread-safe, so signers borrow a session from a
bounded pool (one per concurrent signer). PKCS#11 login is per application and token, so the
first session logs in and the others inherit it. When the token goes away (removed, sessions
closed, logged out, re-initialised) an operation is retried once on a fresh session and login,
then fails with :class:`DeviceUnavailableError`. A PIN the token refused is never tried again
by this process: the next call fails at once instead of walking the token to a lock.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

from asn1crypto import algos, core, keys
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11x

from hsm_adapters.pins import resolve_pin
from hsm_adapters.pkcs11_lib import (
    DEAD_SESSION_ERRORS,
    PIN_ENV,
    RECONNECT_ERRORS,
    Module,
    Sm2Vendor,
    default_module,
    load_module,
    map_error,
    sm2_vendor_for,
    vendor_key_type,
    vendor_mechanism,
)
from trust import asn1_gm
from trust.algorithms import SHA256_DIGEST_INFO_PREFIX, SignatureAlgorithm
from trust.algorithms import KeyType as OurKeyType
from trust.errors import (
    ConfigurationError,
    DeviceUnavailableError,
    EtrustError,
    KeyExistsError,
    KeyNotFoundError,
    MalformedInputError,
    MechanismUnsupportedError,
    PinIncorrectError,
)
from trust.keys import (
    KeyHandleBase,
    KeyUri,
    check_label,
    key_type_of_spec,
    redact_uri,
    rsa_bits_of_spec,
)
from trust.sm2 import raw_signature, z_value

SCHEME = "pkcs11"
P256_OID = "1.2.840.10045.3.1.7"
_TOKEN_ATTRS = ("token", "serial", "slot-id", "manufacturer", "model")

T = TypeVar("T")


# --- URIs -------------------------------------------------------------------------------


def _raw_path_attr(uri: str, name: str) -> str | None:
    """A path attribute as written (KeyUri decodes to text, which would mangle binary ids)."""
    path = uri.partition(":")[2].partition("?")[0]
    for item in path.split(";"):
        key, eq, value = item.partition("=")
        if eq and key == name:
            return value
    return None


def parse_id(text: str) -> bytes:
    """CKA_ID from a URI: percent-encoded bytes (RFC 7512), or plain hex as tools print it."""
    if "%" not in text and re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
        return bytes.fromhex(text)
    try:
        return unquote_to_bytes(text)
    except ValueError as exc:  # pragma: no cover - unquote_to_bytes is lenient
        raise MalformedInputError("unreadable id= in a pkcs11 URI") from exc


def _key_uri(token_label: str, label: str | None, key_id: bytes) -> str:
    parts = [f"token={quote_from_bytes(token_label.encode(), safe='')}"]
    if label:
        parts.append(f"object={quote_from_bytes(label.encode(), safe='')}")
    parts.append("id=" + "".join(f"%{b:02x}" for b in key_id))
    return f"{SCHEME}:{';'.join(parts)}"


# --- the session pool ---------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    """A python-pkcs11 session with the private-key objects it has looked up."""

    session: Any
    generation: int
    keys: dict[bytes, Any] = field(default_factory=dict)
    closable: bool = True


class _TokenPool:
    """Sessions on one token: bounded, logged in once, rebuilt after the token goes away."""

    def __init__(
        self,
        module: Module,
        selector: dict[str, str],
        pin: Callable[[], str],
        size: int,
    ) -> None:
        if size < 1:
            raise ConfigurationError("the PKCS#11 session pool needs at least one session")
        self.module = module
        self.selector = selector
        self._pin_source = pin
        self._pin: str | None = None  # kept in memory only, to log in again after a reconnect
        self._pin_rejected = False
        self.size = size if module.thread_safe else 1
        self._lock = threading.Lock()
        # Idle sessions, last in first out: the few sessions the CPUs keep busy stay warm in
        # the token's caches (FIFO rotation through all of them cost SoftHSM ~20% at 8
        # callers). deque.append/pop are atomic; the condition is only for borrowers that wait.
        self._idle: collections.deque[_Session] = collections.deque()
        self._room = threading.Condition(threading.Lock())
        self._waiting = 0
        self._open_count = 0
        self._all: list[_Session] = []
        self._generation = 0
        self._logged_in = False
        self._token: Any = None
        self.login_attempts = 0  # C_Login calls made, for tests and monitoring

    def __repr__(self) -> str:
        return f"_TokenPool({self.module.path!r}, {self.selector!r})"

    # token and login

    def token(self) -> Any:
        with self.module.serialised(), self._lock:  # always in this order: see _borrow
            if self._token is None:
                self._token = self._find_token()
            return self._token

    def _find_token(self) -> Any:
        try:
            slots = self.module.lib.get_slots(token_present=True)
            found = []
            for slot in slots:
                token = slot.get_token()
                if _token_matches(slot, token, self.selector):
                    found.append(token)
        except p11x.PKCS11Error as exc:
            raise map_error(exc, "listing PKCS#11 tokens") from exc
        wanted = ", ".join(f"{k}={v}" for k, v in self.selector.items()) or "any token"
        if not found:
            raise DeviceUnavailableError(f"no PKCS#11 token matches {wanted} in {self.module.path}")
        if len(found) > 1:
            raise ConfigurationError(
                f"{len(found)} PKCS#11 tokens match {wanted}; add token=, serial= or slot-id="
            )
        return found[0]

    def _open(self) -> _Session:
        """Open a read-write session; the first one of a generation logs in."""
        token = self.token()
        with self._lock:
            generation = self._generation
            if not self._logged_in and self._pin_rejected:
                raise PinIncorrectError(
                    "the token refused this PIN before; it is not tried again (fix the PIN "
                    "source and restart)"
                )
            try:
                session = token.open(rw=True)
            except p11x.PKCS11Error as exc:
                raise map_error(exc, "opening a PKCS#11 session") from exc
            if not self._logged_in:
                try:
                    self._login(session)
                except BaseException:
                    _close_quietly(session)
                    raise
                self._logged_in = True
            pooled = _Session(session, generation)
            self._all.append(pooled)
            return pooled

    def _login(self, session: Any) -> None:
        if self._pin is None:
            self._pin = self._pin_source()
        self.login_attempts += 1
        try:
            self.module.login(session.handle, self._pin)
        except p11x.PinIncorrect as exc:
            self._pin_rejected = True
            raise PinIncorrectError(
                "the token refused the PIN", attempts_left=_attempts_left(session.token)
            ) from exc
        except p11x.PKCS11Error as exc:
            raise map_error(exc, "logging in to the PKCS#11 token") from exc

    @contextmanager
    def session(self) -> Iterator[_Session]:
        """Borrow a session; blocks while all ``size`` sessions are in use."""
        pooled = self._borrow()
        try:
            yield pooled
        finally:
            self._give_back(pooled)

    def _borrow(self) -> _Session:
        # A module that cannot take concurrent calls is held for the whole borrowing (one
        # session then); its lock is always taken before the pool's own.
        if not self.module.thread_safe:
            self.module.call_lock.acquire()
        try:
            while True:
                pooled: _Session | None
                try:
                    pooled = self._idle.pop()
                except IndexError:
                    pooled = self._open_or_wait()
                if pooled is None:  # room was made: try again like anyone else
                    continue
                if pooled.generation == self._generation:
                    return pooled
                self._drop(pooled)
        except BaseException:
            if not self.module.thread_safe:
                self.module.call_lock.release()
            raise

    def _open_or_wait(self) -> _Session | None:
        """A new session when the pool has room, else the next one given back (or None)."""
        with self._room:
            if self._open_count >= self.size:
                self._waiting += 1
                try:
                    while not self._idle and self._open_count >= self.size:
                        self._room.wait()
                finally:
                    self._waiting -= 1
                return None
            self._open_count += 1
        try:
            return self._open()
        except BaseException:
            self._free_slot()
            raise

    def _free_slot(self) -> None:
        with self._room:
            self._open_count -= 1
            self._room.notify()

    def _drop(self, pooled: _Session) -> None:
        """A session of an old generation: close it if it may be, and free its slot."""
        if pooled.closable:
            _close_quietly(pooled.session)
        self._free_slot()

    def _give_back(self, pooled: _Session) -> None:
        if pooled.generation == self._generation:
            self._idle.append(pooled)
            if self._waiting:  # read unlocked: a waiter counts itself before it looks
                with self._room:
                    self._room.notify()
        else:
            self._drop(pooled)
        if not self.module.thread_safe:
            self.module.call_lock.release()

    def run(self, what: str, op: Callable[[_Session], T]) -> T:
        """Run ``op`` on a pooled session; once more on a fresh one if the token went away."""
        for attempt in (1, 2):
            try:
                pooled = self._borrow()
                try:
                    return op(pooled)
                finally:
                    self._give_back(pooled)
            except RECONNECT_ERRORS as exc:
                self.reset(dead=isinstance(exc, DEAD_SESSION_ERRORS))
                if attempt == 2:
                    raise DeviceUnavailableError(
                        f"{what}: the token is not reachable ({type(exc).__name__}), "
                        "even after reconnecting"
                    ) from exc
            except p11x.PKCS11Error as exc:
                raise map_error(exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def reset(self, *, dead: bool = False) -> None:
        """Forget every session and the login: the next borrower reconnects.

        Dead handles (device removed, sessions closed) are dropped, not closed: a module may
        hand the same handle number to a new session, which closing the old one would kill.
        Live ones are closed as they come out of the pool or are given back.
        """
        with self._lock:
            self._generation += 1
            stale, self._all = self._all, []
            self._logged_in = False
            self._token = None
            for pooled in stale:
                pooled.closable = not dead

    def forget_key(self, key_id: bytes) -> None:
        with self._lock:
            for pooled in self._all:
                pooled.keys.pop(key_id, None)

    def close(self) -> None:
        self.reset(dead=False)


def _close_quietly(session: Any) -> None:
    """Close a session whose handle may be gone already (nothing left to release then)."""
    with contextlib.suppress(p11x.PKCS11Error):
        session.close()


def _token_matches(slot: Any, token: Any, selector: dict[str, str]) -> bool:
    checks = {
        "token": lambda: str(token.label).strip(),
        "serial": lambda: _text(token.serial),
        "slot-id": lambda: str(slot.slot_id),
        "manufacturer": lambda: str(token.manufacturer_id).strip(),
        "model": lambda: str(token.model).strip(),
    }
    return all(checks[name]() == value for name, value in selector.items())


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value).strip()


def _attempts_left(token: Any) -> int | None:
    """What the token says about PIN tries left (flags only say 'one left'), if anything."""
    try:
        flags = token.slot.get_token().flags
    except p11x.PKCS11Error:
        return None
    return 1 if flags & TokenFlag.USER_PIN_FINAL_TRY else None


_pools: dict[tuple[str, tuple[tuple[str, str], ...], str], _TokenPool] = {}
_pools_lock = threading.Lock()


def _pool_for(module: Module, selector: dict[str, str], pin_uri: KeyUri, size: int) -> _TokenPool:
    """One pool per module, token selector and PIN source in the process.

    Backends on the same token share sessions and login (login is per application anyway); a
    different PIN source gets its own pool so a PIN refused for one is not held against another.
    The key holds a digest of the PIN source, never the PIN.
    """
    pin_key = hashlib.sha256(repr(sorted(pin_uri.query.items())).encode()).hexdigest()
    key = (module.path, tuple(sorted(selector.items())), pin_key)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _TokenPool(
                module,
                selector,
                lambda: resolve_pin(pin_uri, default_env=PIN_ENV, prompt="PKCS#11 user PIN: "),
                size,
            )
        return pool


# --- public keys ------------------------------------------------------------------------


def _ec_point(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING by the spec; some tokens give the bare point."""
    if len(value) in (65, 33) and value[0] in (2, 3, 4):
        return value
    try:
        return bytes(core.OctetString.load(value).native)
    except ValueError as exc:
        raise MalformedInputError("the token returned an unreadable EC point") from exc


def _curve_oid(ec_params: bytes) -> str:
    try:
        params = keys.ECDomainParameters.load(ec_params)
        if params.name != "named":
            raise ValueError("explicit curve parameters")
        return str(params.chosen.dotted)
    except ValueError as exc:
        raise MalformedInputError("the token returned unreadable EC parameters") from exc


def _spki(key_type: OurKeyType, attrs: dict[Attribute, Any]) -> keys.PublicKeyInfo:
    if key_type == "rsa":
        return keys.PublicKeyInfo(
            {
                "algorithm": {"algorithm": "rsa", "parameters": core.Null()},
                "public_key": keys.RSAPublicKey(
                    {
                        "modulus": int.from_bytes(attrs[Attribute.MODULUS], "big"),
                        "public_exponent": int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big"),
                    }
                ),
            }
        )
    curve = P256_OID if key_type == "ec-p256" else asn1_gm.SM2_CURVE_OID
    return keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="named", value=curve),
            },
            "public_key": _ec_point(attrs[Attribute.EC_POINT]),
        }
    )


# --- key handles --------------------------------------------------------------------------


class Pkcs11Key(KeyHandleBase):
    """A private key inside a token; signing borrows a pooled session."""

    def __init__(
        self,
        backend: Pkcs11Backend,
        label: str | None,
        key_id: bytes,
        key_type: OurKeyType,
        spki: keys.PublicKeyInfo,
    ) -> None:
        super().__init__(_key_uri(backend.token_label, label, key_id), key_type, spki)
        self._backend = backend
        self.label = label
        self.key_id = key_id
        self._plans: dict[str, _SignPlan] = {}

    def protected(self) -> bool:
        """True when the token says the private key was always sensitive and never extractable:
        the guarantee a CA or seal key needs (a key imported in clear does not have it)."""

        def op(pooled: _Session) -> bool:
            key = pooled.session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=self.key_id)
            return bool(key[Attribute.ALWAYS_SENSITIVE]) and bool(key[Attribute.NEVER_EXTRACTABLE])

        return self._backend._pool.run("reading key attributes", op)

    def _sign(self, data: bytes, alg: SignatureAlgorithm, sm2_id: bytes) -> bytes:
        plan = self._plans.get(alg.name)
        if plan is None:
            plan = self._plans[alg.name] = self._backend._sign_plan(self, alg)
        mechanism = plan.mechanism
        param = sm2_id if plan.id_param else plan.param
        payload = plan.prepare(data, sm2_id)

        def op(pooled: _Session) -> bytes:
            key = pooled.keys.get(self.key_id)
            if key is None:
                key = pooled.keys[self.key_id] = pooled.session.get_key(
                    object_class=ObjectClass.PRIVATE_KEY, id=self.key_id
                )
            return key.sign(payload, mechanism=mechanism, mechanism_param=param)  # type: ignore[no-any-return]

        return plan.post(self._backend._pool.run("signing", op))


@dataclass(frozen=True)
class _SignPlan:
    """A mechanism, what to pass it, and how to turn its output into our signature format."""

    mechanism: Mechanism
    prepare: Callable[[bytes, bytes], bytes]  # (data, sm2_id) -> the bytes the token signs
    post: Callable[[bytes], bytes]
    param: Any = None
    id_param: bool = False  # the SM2 distinguishing ID is the mechanism parameter


def _as_is(data: bytes, sm2_id: bytes) -> bytes:
    return data


def _sha256(data: bytes, sm2_id: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _digest_info(data: bytes, sm2_id: bytes) -> bytes:
    return SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest()


def _der_from_raw_ec(raw: bytes) -> bytes:
    """ECDSA/SM2 tokens return r || s (PKCS#11 §2.3.1); X.509 wants DER SEQUENCE {r, s}."""
    if len(raw) % 2 or not raw:
        raise MalformedInputError("the token returned an EC signature of odd length")
    half = len(raw) // 2
    return raw_signature(raw[:half], raw[half:])


def _der_from_any_ec(raw: bytes) -> bytes:
    """Tolerate tokens that already return DER (TASS), normalising it through our encoder."""
    if len(raw) != 64 and raw[:1] == b"\x30":
        try:
            parsed = algos.DSASignature.load(raw)
            r, s = int(parsed["r"].native), int(parsed["s"].native)
        except (ValueError, TypeError) as exc:
            raise MalformedInputError("the token returned an unreadable SM2 signature") from exc
        return raw_signature(r.to_bytes(32, "big"), s.to_bytes(32, "big"))
    return _der_from_raw_ec(raw)


# --- the backend --------------------------------------------------------------------------


class Pkcs11Backend:
    """Keys on one PKCS#11 token; build with :meth:`from_uri` or the constructor."""

    scheme = SCHEME

    def __init__(
        self,
        module_path: str | None = None,
        token_label: str | None = None,
        *,
        pin_source: str | None = None,
        pin: str | None = None,
        selector: dict[str, str] | None = None,
        pool_size: int = 8,
        sm2_vendor: str | None = None,
    ) -> None:
        """``pin_source`` is ``env:NAME`` or ``file:PATH``; without it (and without ``pin``)
        the PIN comes from ``ETRUST_PKCS11_PIN`` or a terminal prompt, when first needed."""
        self.module = load_module(module_path or default_module())
        sel = dict(selector or {})
        if token_label is not None:
            sel["token"] = token_label
        query: dict[str, str] = {}
        if pin is not None:
            query["pin-value"] = pin
        elif pin_source is not None:
            query["pin-source"] = pin_source
        pin_uri = KeyUri(SCHEME, dict(sel), query)
        self._pool = _pool_for(self.module, sel, pin_uri, pool_size)
        self._sm2_vendor_name = sm2_vendor
        self._handles: dict[bytes, Pkcs11Key] = {}
        self._lock = threading.Lock()
        self._mechanisms: set[int] | None = None

    def __repr__(self) -> str:
        return f"Pkcs11Backend({self.module.path!r}, {self._pool.selector!r})"

    @classmethod
    def from_uri(cls, uri: str, *, pool_size: int = 8) -> Pkcs11Backend:
        """A backend for the token a URI names (its ``object``/``id`` are ignored here)."""
        parsed = KeyUri.parse(uri)
        if parsed.scheme != SCHEME:
            raise MalformedInputError(f"not a pkcs11: URI: {redact_uri(uri)!r}")
        selector = {k: v for k, v in parsed.path.items() if k in _TOKEN_ATTRS}
        query = parsed.query
        return cls(
            query.get("module-path"),
            pin_source=query.get("pin-source"),
            pin=query.get("pin-value"),
            selector=selector,
            pool_size=pool_size,
            sm2_vendor=query.get("x-sm2-vendor"),
        )

    @property
    def token_label(self) -> str:
        return str(self._pool.token().label).strip()

    @property
    def pool_size(self) -> int:
        return self._pool.size

    def close(self) -> None:
        """Close this token's sessions (for every backend of the process on this token)."""
        self._pool.close()

    # mechanisms

    def mechanisms(self) -> set[int]:
        if self._mechanisms is None:
            token = self._pool.token()
            try:
                with self.module.serialised():
                    self._mechanisms = {int(m) for m in token.slot.get_mechanisms()}
            except p11x.PKCS11Error as exc:
                raise map_error(exc, "listing PKCS#11 mechanisms") from exc
        return self._mechanisms

    def sm2_vendor(self) -> Sm2Vendor:
        vendor = sm2_vendor_for(self.module, self._sm2_vendor_name)
        if vendor is None:
            raise MechanismUnsupportedError(
                f"SM2 needs a vendor-defined PKCS#11 mechanism, and {self.module.path} "
                f"(manufacturer {self.module.manufacturer!r}) is not in our SM2 vendor table "
                "(TASS, SANSEC, SafeNet Luna); use an SKF/SDF device or a software SM2 key"
            )
        return vendor

    def _sign_plan(self, key: Pkcs11Key, alg: SignatureAlgorithm) -> _SignPlan:
        """How ``key`` makes ``alg`` signatures on this token; worked out once per key."""
        have = self.mechanisms()
        if alg.name == "rsa-pkcs1-sha256":
            if Mechanism.SHA256_RSA_PKCS in have:
                return _SignPlan(Mechanism.SHA256_RSA_PKCS, _as_is, bytes)
            return _SignPlan(Mechanism.RSA_PKCS, _digest_info, bytes)
        if alg.name == "rsa-pss-sha256":
            param = (Mechanism.SHA256, MGF.SHA256, 32)
            if Mechanism.SHA256_RSA_PKCS_PSS in have:
                return _SignPlan(Mechanism.SHA256_RSA_PKCS_PSS, _as_is, bytes, param)
            return _SignPlan(Mechanism.RSA_PKCS_PSS, _sha256, bytes, param)
        if alg.name == "ecdsa-p256-sha256":
            if Mechanism.ECDSA_SHA256 in have:
                return _SignPlan(Mechanism.ECDSA_SHA256, _as_is, _der_from_raw_ec)
            return _SignPlan(Mechanism.ECDSA, _sha256, _der_from_raw_ec)
        if alg.name == "sm2-sm3":
            vendor = self.sm2_vendor()
            if vendor.sign_raw is not None:
                x, y = _point(key.public_key_info)

                def e_value(data: bytes, sm2_id: bytes) -> bytes:
                    return hashlib.new("sm3", z_value(x, y, sm2_id) + data).digest()

                return _SignPlan(vendor_mechanism(vendor.sign_raw), e_value, _der_from_any_ec)
            if vendor.sign_sm3 is not None:  # the device hashes; the ID is the parameter
                return _SignPlan(
                    vendor_mechanism(vendor.sign_sm3), _as_is, _der_from_any_ec, id_param=True
                )
        raise MechanismUnsupportedError(f"{alg.name} is not available on this token")

    # the key protocol

    def generate(self, label: str, spec: str) -> Pkcs11Key:
        """Generate a key pair inside the token: private part sensitive and non-extractable."""
        check_label(label)
        key_type = key_type_of_spec(spec)
        key_id = secrets.token_bytes(16)
        common_private = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        common_public: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.VERIFY: True,
            Attribute.ENCRYPT: False,
            Attribute.WRAP: False,
        }
        bits: int | None = None
        mechanism: Mechanism | None = None
        if key_type == "rsa":
            p11_type, bits = KeyType.RSA, rsa_bits_of_spec(spec)
        elif key_type == "ec-p256":
            p11_type = KeyType.EC
            common_public[Attribute.EC_PARAMS] = _named_curve(P256_OID)
        else:
            vendor = self.sm2_vendor()
            p11_type = vendor_key_type(vendor.key_type)
            mechanism = vendor_mechanism(vendor.keygen)
            common_public[Attribute.EC_PARAMS] = _named_curve(asn1_gm.SM2_CURVE_OID)

        def op(pooled: _Session) -> tuple[Any, Any]:
            if _find_objects(pooled.session, ObjectClass.PRIVATE_KEY, label, None):
                raise KeyExistsError(f"a key labelled {label!r} already exists on the token")
            pub, priv = pooled.session.generate_keypair(
                p11_type,
                bits,
                id=key_id,
                label=label,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                mechanism=mechanism,
                public_template=common_public,
                private_template=common_private,
            )
            return pub, priv

        with self._lock:  # the label check and the generation must not interleave
            self._pool.run(f"generating {spec} key {label!r}", op)
        return self.find(_key_uri(self.token_label, label, key_id))

    def find(self, key_uri: str) -> Pkcs11Key:
        label, key_id = self._selector_of(key_uri)
        if key_id is not None:
            with self._lock:
                cached = self._handles.get(key_id)
            if cached is not None and (label is None or cached.label == label):
                return cached

        def op(pooled: _Session) -> Pkcs11Key:
            found = _find_objects(pooled.session, ObjectClass.PRIVATE_KEY, label, key_id)
            if not found:
                raise KeyNotFoundError(
                    f"no private key matches {redact_uri(key_uri)!r} on the token"
                )
            if len(found) > 1:
                raise MalformedInputError(
                    f"{len(found)} private keys match {redact_uri(key_uri)!r}; add id="
                )
            return self._handle(pooled.session, found[0])

        handle = self._pool.run(f"finding {redact_uri(key_uri)}", op)
        with self._lock:
            self._handles[handle.key_id] = handle
        return handle

    def list(self) -> list[str]:
        def op(pooled: _Session) -> list[str]:
            uris = []
            token_label = self.token_label
            for obj in _find_objects(pooled.session, ObjectClass.PRIVATE_KEY, None, None):
                attrs = obj.get_attributes([Attribute.LABEL, Attribute.ID])
                uris.append(
                    _key_uri(
                        token_label, attrs.get(Attribute.LABEL), attrs.get(Attribute.ID) or b""
                    )
                )
            return sorted(uris)

        return self._pool.run("listing keys", op)

    def destroy(self, key_uri: str) -> None:
        handle = self.find(key_uri)
        if not handle.key_id:  # an empty CKA_ID would match every ID-less key on the token
            raise MalformedInputError(
                "this key has no CKA_ID; destroy it with the token's own tools so that no "
                "other key goes with it"
            )

        def op(pooled: _Session) -> None:
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in _find_objects(pooled.session, cls, None, handle.key_id):
                    obj.destroy()

        self._pool.run(f"destroying {redact_uri(key_uri)}", op)
        with self._lock:
            self._handles.pop(handle.key_id, None)
        self._pool.forget_key(handle.key_id)

    # helpers

    def _selector_of(self, key_uri: str) -> tuple[str | None, bytes | None]:
        uri = KeyUri.parse(key_uri)
        if uri.scheme != SCHEME:
            raise MalformedInputError(f"not a pkcs11: key URI: {redact_uri(key_uri)!r}")
        token = uri.path.get("token")
        if token is not None and token != self.token_label:
            raise KeyNotFoundError(
                f"{redact_uri(key_uri)!r} names token {token!r}; this backend holds {self.token_label!r}"
            )
        raw_id = _raw_path_attr(key_uri, "id")
        key_id = parse_id(raw_id) if raw_id is not None else None
        label = uri.path.get("object")
        if label is None and key_id is None:
            raise MalformedInputError(f"a key URI needs object= or id=: {redact_uri(key_uri)!r}")
        return label, key_id

    def _handle(self, session: Any, private: Any) -> Pkcs11Key:
        attrs = private.get_attributes([Attribute.LABEL, Attribute.ID, Attribute.KEY_TYPE])
        key_id = bytes(attrs.get(Attribute.ID) or b"")
        label = attrs.get(Attribute.LABEL) or None
        ck_type = int(attrs[Attribute.KEY_TYPE])
        public = _find_objects(session, ObjectClass.PUBLIC_KEY, None, key_id) if key_id else []
        source = public[0] if public else private  # some tokens keep the public parts there
        if ck_type == KeyType.RSA:
            our_type: OurKeyType = "rsa"
            wanted = [Attribute.MODULUS, Attribute.PUBLIC_EXPONENT]
        else:
            wanted = [Attribute.EC_PARAMS, Attribute.EC_POINT]
        try:
            values = source.get_attributes(wanted)
        except p11x.PKCS11Error as exc:
            raise map_error(exc, f"reading the public key of {label or key_id.hex()}") from exc
        if ck_type != KeyType.RSA:
            curve = _curve_oid(values[Attribute.EC_PARAMS])
            if curve == P256_OID and ck_type == KeyType.EC:
                our_type = "ec-p256"
            elif curve == asn1_gm.SM2_CURVE_OID:
                our_type = "sm2"
            else:
                raise MechanismUnsupportedError(f"key {label!r}: curve {curve} is not supported")
        return Pkcs11Key(self, label, key_id, our_type, _spki(our_type, values))


def _find_objects(
    session: Any, cls: ObjectClass, label: str | None, key_id: bytes | None
) -> list[Any]:
    attrs: dict[Attribute, Any] = {Attribute.CLASS: cls}
    if label is not None:
        attrs[Attribute.LABEL] = label
    if key_id is not None:
        attrs[Attribute.ID] = key_id
    return list(session.get_objects(attrs))


def _named_curve(oid: str) -> bytes:
    return bytes(keys.ECDomainParameters(name="named", value=oid).dump())


def _point(spki: keys.PublicKeyInfo) -> tuple[int, int]:
    raw = bytes(spki["public_key"].native)
    if len(raw) != 65 or raw[0] != 4:
        raise MalformedInputError("only uncompressed SM2 points are supported")
    return int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")


# --- probe --------------------------------------------------------------------------------


def probe(uri: str) -> dict[str, Any]:
    """What a module offers, as JSON-ready data (``etrust device probe URI --json``).

    Objects are listed after login when a PIN is at hand (pin-value, pin-source or
    ETRUST_PKCS11_PIN; never a prompt); otherwise only what the token shows without login.
    ``login`` says ``done``, ``not attempted`` or the error code of a refused login.
    """
    parsed = KeyUri.parse(uri)
    if parsed.scheme != SCHEME:
        raise MalformedInputError(f"not a pkcs11: URI: {redact_uri(uri)!r}")
    module = load_module(parsed.query.get("module-path") or default_module())
    selector = {k: v for k, v in parsed.path.items() if k in _TOKEN_ATTRS}
    lib = module.lib
    out: dict[str, Any] = {
        "module": {
            "path": module.path,
            "manufacturer": module.manufacturer,
            "description": str(lib.library_description).strip(),
            "library_version": ".".join(map(str, lib.library_version)),
            "cryptoki_version": ".".join(map(str, lib.cryptoki_version)),
            "thread_safe": module.thread_safe,
            "sm2_vendor": (v.name if (v := sm2_vendor_for(module)) else None),
        },
        "slots": [],
    }
    try:
        with module.serialised():
            for slot in lib.get_slots(token_present=True):
                token = slot.get_token()
                if _token_matches(slot, token, selector):
                    out["slots"].append(_probe_slot(module, slot, token, parsed))
    except p11x.PKCS11Error as exc:
        raise map_error(exc, "probing the PKCS#11 module") from exc
    return out


def _probe_slot(module: Module, slot: Any, token: Any, uri: KeyUri) -> dict[str, Any]:
    flags = TokenFlag(int(token.flags))
    info: dict[str, Any] = {
        "slot_id": int(slot.slot_id),
        "slot_description": str(slot.slot_description).strip(),
        "token": {
            "label": str(token.label).strip(),
            "manufacturer": str(token.manufacturer_id).strip(),
            "model": str(token.model).strip(),
            "serial": _text(token.serial),
            "flags": sorted(f.name for f in TokenFlag if f.name and f in flags),
        },
        "mechanisms": sorted(_mechanism_name(int(m)) for m in slot.get_mechanisms()),
    }
    has_pin = "pin-value" in uri.query or "pin-source" in uri.query
    if has_pin or PIN_ENV in os.environ:
        selector = {"slot-id": str(slot.slot_id)}
        pool = _pool_for(module, selector, KeyUri(SCHEME, selector, uri.query), 1)
        try:
            info["objects"] = pool.run("listing objects", lambda s: _objects(s.session))
            info["login"] = "done"
        except EtrustError as exc:
            info["login"] = exc.code
    if "objects" not in info:
        session = token.open()
        try:
            info["objects"] = _objects(session)
        finally:
            _close_quietly(session)
        # Private objects still show when this process logged in before (login is per
        # application in PKCS#11, not per session).
        info.setdefault("login", "not attempted")
    return info


def _objects(session: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {
        "private_keys": [],
        "public_keys": [],
        "certificates": [],
    }
    kinds = {
        ObjectClass.PRIVATE_KEY: "private_keys",
        ObjectClass.PUBLIC_KEY: "public_keys",
        ObjectClass.CERTIFICATE: "certificates",
    }
    for cls, name in kinds.items():
        for obj in session.get_objects({Attribute.CLASS: cls}):
            wanted = [Attribute.LABEL, Attribute.ID]
            if cls != ObjectClass.CERTIFICATE:
                wanted.append(Attribute.KEY_TYPE)
            try:
                attrs = obj.get_attributes(wanted)
            except p11x.PKCS11Error:
                continue
            entry: dict[str, Any] = {
                "label": attrs.get(Attribute.LABEL) or None,
                "id": bytes(attrs.get(Attribute.ID) or b"").hex(),
            }
            if Attribute.KEY_TYPE in attrs and attrs[Attribute.KEY_TYPE] is not None:
                entry["key_type"] = _key_type_name(int(attrs[Attribute.KEY_TYPE]))
            out[name].append(entry)
    return out


def _mechanism_name(code: int) -> str:
    try:
        return f"CKM_{Mechanism(code).name}"
    except ValueError:
        return f"{code:#x}"


def _key_type_name(code: int) -> str:
    try:
        return KeyType(code).name
    except ValueError:
        return f"{code:#x}"
