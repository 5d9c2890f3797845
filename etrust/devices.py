"""Key backends by URI scheme: the home's software keystore and the signing hardware.

Hardware backends are created on first use (their libraries are native code named by the
URI's ``module-path`` or by ``ETRUST_*_MODULE``) and cached per module and token, so a server
keeps one session pool per device.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from trust.errors import (
    ConfigurationError,
    KeyNotFoundError,
    MalformedInputError,
    MechanismUnsupportedError,
)
from trust.keys import KeyHandle, KeyRegistry, KeyUri, key_type_of_spec, redact_uri
from trust.softkeys import SoftwareKeyStore

HARDWARE_SCHEMES = ("pkcs11", "skf", "sdf")
DEFAULT_MODULES = ("/usr/lib/softhsm/libsofthsm2.so",)
_MODULE_ENVS = ("ETRUST_PKCS11_MODULE", "ETRUST_SKF_MODULE", "ETRUST_SDF_MODULE")


def allowed_modules(configured: tuple[str, ...] = ()) -> frozenset[str]:
    """The device libraries a key URI may name: configured ones, the ETRUST_*_MODULE ones and
    SoftHSM's. A URI is data (it is stored in the database); loading the library it names runs
    native code, so only libraries the operator chose are ever loaded."""
    chosen = [
        *configured,
        *DEFAULT_MODULES,
        *(os.environ[e] for e in _MODULE_ENVS if os.environ.get(e)),
    ]
    return frozenset(os.path.realpath(p) for p in chosen)


def check_module(uri: str, allowed: frozenset[str]) -> None:
    module = KeyUri.parse(uri).query.get("module-path")
    if module is not None and os.path.realpath(module) not in allowed:
        raise ConfigurationError(
            f"device library {module} is not allowed: add it to device_modules in etrust.toml"
        )


class _Pkcs11Tokens:
    """One Pkcs11Backend per (module, token, PIN source), chosen from each key URI."""

    scheme = "pkcs11"

    def __init__(self, allowed: frozenset[str]) -> None:
        self._backends: dict[tuple[tuple[str, str], ...], Any] = {}
        self._lock = threading.Lock()
        self._allowed = allowed

    def backend(self, uri: str) -> Any:
        from hsm_adapters.pkcs11 import Pkcs11Backend

        check_module(uri, self._allowed)
        parsed = KeyUri.parse(uri)
        key = tuple(
            sorted(
                (k, v)
                for k, v in {**parsed.path, **parsed.query}.items()
                if k not in ("object", "id")
            )
        )
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = self._backends[key] = Pkcs11Backend.from_uri(uri)
            return backend

    def find(self, key_uri: str) -> KeyHandle:
        found: KeyHandle = self.backend(key_uri).find(key_uri)
        return found

    def generate(self, label: str, spec: str) -> KeyHandle:  # pragma: no cover - needs a token URI
        raise MalformedInputError("PKCS#11 keys are generated through a token URI (generate_at)")

    def list(self) -> list[str]:
        return []

    def destroy(self, key_uri: str) -> None:
        self.backend(key_uri).destroy(key_uri)


class _Lazy:
    """A hardware backend created when a URI of its scheme is first used."""

    def __init__(self, scheme: str, allowed: frozenset[str]) -> None:
        self.scheme = scheme
        self._backend: Any = None
        self._lock = threading.Lock()
        self._allowed = allowed

    def get(self) -> Any:
        with self._lock:
            if self._backend is None:
                if self.scheme == "skf":
                    from hsm_adapters.skf import SkfBackend

                    self._backend = SkfBackend()
                else:
                    from hsm_adapters.sdf import SdfBackend

                    self._backend = SdfBackend()
            return self._backend

    def find(self, key_uri: str) -> KeyHandle:
        check_module(key_uri, self._allowed)
        found: KeyHandle = self.get().find(key_uri)
        return found

    def generate(self, label: str, spec: str) -> KeyHandle:
        found: KeyHandle = self.get().generate(label, spec)
        return found

    def list(self) -> list[str]:
        listed: list[str] = self.get().list()
        return listed

    def destroy(self, key_uri: str) -> None:
        self.get().destroy(key_uri)


def key_registry(keystore: SoftwareKeyStore, modules: tuple[str, ...] = ()) -> KeyRegistry:
    allowed = allowed_modules(modules)
    return KeyRegistry(
        keystore, _Pkcs11Tokens(allowed), _Lazy("skf", allowed), _Lazy("sdf", allowed)
    )


def key_on_device(registry: KeyRegistry, uri: str, label: str, spec: str) -> KeyHandle:
    """The key a device URI names; on a PKCS#11 token it is generated there when missing.

    USB keys and cipher cards get their keys from the vendor's own tools, so for them a
    missing key is an error that says so.
    """
    scheme = KeyUri.parse(uri).scheme
    if scheme not in HARDWARE_SCHEMES:
        raise MalformedInputError(
            f"--key-uri takes a device URI ({', '.join(HARDWARE_SCHEMES)}:...)"
        )
    try:
        found = registry.find(uri)
    except KeyNotFoundError:
        found = None
    if found is not None:
        if found.key_type != key_type_of_spec(spec):
            raise MalformedInputError(
                f"the key at {redact_uri(uri)} is {found.key_type}, not {spec}"
            )
        protected = getattr(found, "protected", None)
        if protected is not None and not protected():
            raise MalformedInputError(
                f"the key at {redact_uri(uri)} was not always sensitive and never extractable "
                "(imported in clear?): generate a fresh one in the token"
            )
        return found
    if scheme != "pkcs11":
        raise KeyNotFoundError(
            f"no key at {redact_uri(uri)}: load it onto the {scheme.upper()} device with the "
            "vendor's tools first"
        )
    tokens = registry.backend("pkcs11")
    assert isinstance(tokens, _Pkcs11Tokens)
    object_label = KeyUri.parse(uri).path.get("object", label)
    try:
        generated: KeyHandle = tokens.backend(uri).generate(object_label, spec)
    except MechanismUnsupportedError as exc:
        raise MechanismUnsupportedError(
            f"the token cannot make a {spec} key: {exc.message}"
        ) from exc
    return generated


def stored_uri(uri: str) -> str:
    """What is recorded for a device key: the URI without a pin-value (never in the database)."""
    return redact_uri(uri)


def probe(uri: str, modules: tuple[str, ...] = ()) -> dict[str, Any]:
    check_module(uri, allowed_modules(modules))
    scheme = KeyUri.parse(uri).scheme
    if scheme == "pkcs11":
        from hsm_adapters import pkcs11

        return pkcs11.probe(uri)
    if scheme == "skf":
        from hsm_adapters.skf import SkfBackend

        result: dict[str, Any] = SkfBackend().probe(uri)
        return result
    if scheme == "sdf":
        from hsm_adapters.sdf import SdfBackend

        result = SdfBackend().probe(uri)
        return result
    raise MalformedInputError(
        f"device probe takes {', '.join(HARDWARE_SCHEMES)} URIs, not {scheme}:"
    )
