"""The key protocol: a key is a handle that signs; a backend creates, finds, lists, destroys.

Backends are chosen by the scheme of the key URI (RFC 7512 style: ``scheme:attr=v;attr=v?q=v``),
so nothing above ``trust``/``hsm_adapters`` knows where a key lives.
"""

from __future__ import annotations

import abc
import re
import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote

from asn1crypto import keys

from trust.algorithms import DEFAULT_FOR_KEY, RSA_SIZES, KeyType, SignatureAlgorithm, key_type_of
from trust.errors import (
    ConfigurationError,
    KeyNotFoundError,
    MalformedInputError,
    UnsupportedAlgorithmError,
)
from trust.sm2 import DEFAULT_ID

KEY_SPECS = ("sm2", "rsa-2048", "rsa-3072", "rsa-4096", "ec-p256")
"""What a backend may be asked to generate."""

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def key_type_of_spec(spec: str) -> KeyType:
    if spec not in KEY_SPECS:
        raise UnsupportedAlgorithmError(
            f"unknown key spec {spec!r}; choose one of {', '.join(KEY_SPECS)}"
        )
    if spec.startswith("rsa-"):
        return "rsa"
    return "sm2" if spec == "sm2" else "ec-p256"


def rsa_bits_of_spec(spec: str) -> int:
    bits = int(spec.split("-")[1])
    if bits not in RSA_SIZES:  # pragma: no cover - KEY_SPECS only lists these
        raise UnsupportedAlgorithmError(f"RSA keys are {RSA_SIZES} bits")
    return bits


def check_label(label: str) -> str:
    if not _LABEL.fullmatch(label):
        raise MalformedInputError(
            "key labels are 1-64 characters of letters, digits, '.', '_' and '-'"
        )
    return label


@dataclass(frozen=True)
class KeyUri:
    """A parsed key URI: ``scheme:path-attrs?query-attrs`` (RFC 7512 layout)."""

    scheme: str
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a pin-value

    @classmethod
    def parse(cls, uri: str) -> KeyUri:
        scheme, sep, rest = uri.partition(":")
        if not sep or not re.match(r"^[a-z][a-z0-9+.-]*$", scheme):
            # Never echo the URI: its query may carry a pin-value.
            raise MalformedInputError("not a key URI (scheme:attributes)")
        path_part, _, query_part = rest.partition("?")
        return cls(scheme, _attrs(path_part, ";"), _attrs(query_part, "&"))

    def __str__(self) -> str:
        def join(attrs: dict[str, str], sep: str) -> str:
            return sep.join(f"{k}={quote(v, safe='')}" for k, v in attrs.items())

        text = f"{self.scheme}:{join(self.path, ';')}"
        return f"{text}?{join(self.query, '&')}" if self.query else text


def redact_uri(uri: str) -> str:
    """A key URI fit for messages and logs: any ``pin-value`` removed, never an exception."""
    try:
        parsed = KeyUri.parse(uri)
    except MalformedInputError:
        return "<malformed key URI>"
    query = {k: v for k, v in parsed.query.items() if k != "pin-value"}
    return str(KeyUri(parsed.scheme, parsed.path, query))


def _attrs(text: str, sep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, text.split(sep)):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise MalformedInputError("a key URI attribute has no value (write name=value)")
        out[unquote(name)] = unquote(value)
    return out


@runtime_checkable
class KeyHandle(Protocol):
    """A private key somewhere; it signs and never hands out its secret."""

    @property
    def key_uri(self) -> str: ...

    @property
    def key_type(self) -> KeyType: ...

    @property
    def public_key_info(self) -> keys.PublicKeyInfo: ...

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        sm2_id: bytes = DEFAULT_ID,
    ) -> bytes:
        """Sign ``data`` (the hash is applied inside) with ``algorithm`` or the key's default."""
        ...


class KeyHandleBase(abc.ABC):
    """What every key handle shares: its identity, and the checks made before a backend signs.

    Backends implement :meth:`_sign` only; the algorithm already matches the key type and the
    data is ``bytes``. ``key_uri`` must never carry a PIN (backends pass a redacted one).
    """

    def __init__(
        self, key_uri: str, key_type: KeyType, public_key_info: keys.PublicKeyInfo
    ) -> None:
        self._key_uri = key_uri
        self._key_type: KeyType = key_type
        self._spki = public_key_info

    def __repr__(self) -> str:  # never the key itself
        return f"{type(self).__name__}({self._key_uri!r}, {self._key_type})"

    @property
    def key_uri(self) -> str:
        return self._key_uri

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    @property
    def public_key_info(self) -> keys.PublicKeyInfo:
        return self._spki

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        sm2_id: bytes = DEFAULT_ID,
    ) -> bytes:
        alg = algorithm or DEFAULT_FOR_KEY[self._key_type]
        if alg.key_type != self._key_type:  # cheaper than re-reading the SPKI per signature
            raise UnsupportedAlgorithmError(
                f"{alg.name} cannot be used with a {self._key_type} key"
            )
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MalformedInputError("only bytes can be signed")
        if not isinstance(sm2_id, bytes):
            raise MalformedInputError("the SM2 distinguishing ID must be bytes")
        return self._sign(bytes(data), alg, sm2_id)

    @abc.abstractmethod
    def _sign(self, data: bytes, algorithm: SignatureAlgorithm, sm2_id: bytes) -> bytes:
        """Sign ``data`` (hashing inside) with ``algorithm``, already checked against the key."""


class DeferredKey(KeyHandleBase):
    """A key looked up only when it first signs, and then checked against the key it must be.

    Opening a home names every CA key; a USB key or token behind one would be asked for its
    PIN by every command, even one that only lists CAs, and a wrong PIN file would spend a
    try each time. The public key comes from the certificate, so nothing is asked until a
    signature is needed.
    """

    def __init__(
        self, registry: KeyRegistry, key_uri: str, public_key_info: keys.PublicKeyInfo
    ) -> None:
        super().__init__(key_uri, key_type_of(public_key_info), public_key_info)
        self._registry = registry
        self._key: KeyHandle | None = None
        self._lock = threading.Lock()

    def resolve(self) -> KeyHandle:
        with self._lock:
            if self._key is None:
                key = self._registry.find(self._key_uri)
                if key.public_key_info.dump() != self._spki.dump():
                    raise ConfigurationError(
                        f"the key at {redact_uri(self._key_uri)} is not the key of its certificate"
                    )
                self._key = key
            return self._key

    def _sign(self, data: bytes, algorithm: SignatureAlgorithm, sm2_id: bytes) -> bytes:
        return self.resolve().sign(data, algorithm, sm2_id=sm2_id)


def default_algorithm(key: KeyHandle) -> SignatureAlgorithm:
    return DEFAULT_FOR_KEY[key.key_type]


class KeyBackend(Protocol):
    """Where keys live: software, PKCS#11, SKF, SDF."""

    scheme: str

    def generate(self, label: str, spec: str) -> KeyHandle: ...

    def find(self, key_uri: str) -> KeyHandle: ...

    def list(self) -> list[str]: ...

    def destroy(self, key_uri: str) -> None: ...


class KeyRegistry:
    """Dispatches key URIs to the backend registered for their scheme."""

    def __init__(self, *backends: KeyBackend) -> None:
        self._backends: dict[str, KeyBackend] = {b.scheme: b for b in backends}

    def register(self, backend: KeyBackend) -> None:
        self._backends[backend.scheme] = backend

    def backend(self, scheme: str) -> KeyBackend:
        try:
            return self._backends[scheme]
        except KeyError:
            known = ", ".join(sorted(self._backends)) or "none"
            raise KeyNotFoundError(
                f"no key backend for scheme {scheme!r} (configured: {known})"
            ) from None

    def find(self, key_uri: str) -> KeyHandle:
        return self.backend(KeyUri.parse(key_uri).scheme).find(key_uri)
