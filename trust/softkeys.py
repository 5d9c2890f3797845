"""The software keystore: private keys as PKCS#8, encrypted at rest with AES-256-GCM.

The key-encryption key (KEK) comes either from a passphrase through scrypt or from a 32-byte
KEK file that only its owner may read. Each key file binds its label, key type and public key
as GCM associated data, so a file swapped or edited on disk fails to open. Key URIs are
``soft:object=LABEL``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import keys
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trust.algorithms import (
    KeyType,
    SignatureAlgorithm,
    pss_padding,
)
from trust.errors import (
    KeyExistsError,
    KeyNotFoundError,
    KeyStoreLockedError,
    MalformedInputError,
)
from trust.keys import KeyHandleBase, KeyUri, check_label, key_type_of_spec, rsa_bits_of_spec
from trust.sm2 import Sm2PrivateKey

SCHEME = "soft"
_KEK_CHECK = b"etrust key-encryption key check v1"
_SCRYPT = {"n": 2**17, "r": 8, "p": 1}  # OWASP minimum; derived once per process

PrivateKey = Sm2PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class SoftwareKey(KeyHandleBase):
    """A key handle over a private key held in this process."""

    def __init__(self, label: str, key_type: KeyType, private: PrivateKey) -> None:
        super().__init__(
            f"{SCHEME}:object={label}", key_type, keys.PublicKeyInfo.load(_public_der(private))
        )
        self._private = private

    def _sign(self, data: bytes, algorithm: SignatureAlgorithm, sm2_id: bytes) -> bytes:
        private = self._private
        if isinstance(private, Sm2PrivateKey):
            return private.sign(data, sm2_id)
        if isinstance(private, rsa.RSAPrivateKey):
            pad: padding.AsymmetricPadding = (
                pss_padding() if algorithm.name == "rsa-pss-sha256" else padding.PKCS1v15()
            )
            return private.sign(data, pad, hashes.SHA256())
        return private.sign(data, ec.ECDSA(hashes.SHA256()))


def _public_der(private: PrivateKey) -> bytes:
    if isinstance(private, Sm2PrivateKey):
        return private.public_key.spki_der
    return private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_private(spec: str) -> tuple[KeyType, PrivateKey]:
    key_type = key_type_of_spec(spec)
    if key_type == "sm2":
        return key_type, Sm2PrivateKey.generate()
    if key_type == "rsa":
        return key_type, rsa.generate_private_key(65537, rsa_bits_of_spec(spec))
    return key_type, ec.generate_private_key(ec.SECP256R1())


def _to_pkcs8(private: PrivateKey) -> bytes:
    if isinstance(private, Sm2PrivateKey):
        return private.to_pkcs8()
    return private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private(key_type: KeyType, pkcs8: bytes) -> PrivateKey:
    """Load a PKCS#8 private key of a known type (used by the keystore and by key import)."""
    if key_type == "sm2":
        return Sm2PrivateKey.from_pkcs8(pkcs8)
    try:
        private = serialization.load_der_private_key(pkcs8, password=None)
    except (ValueError, TypeError) as exc:
        raise MalformedInputError("not a readable PKCS#8 private key") from exc
    if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise MalformedInputError("only SM2, RSA and EC P-256 keys are supported")
    return private


@dataclass(frozen=True)
class Kek:
    """A 256-bit key-encryption key; build it with :meth:`from_passphrase` or :meth:`from_file`."""

    key: bytes

    def __repr__(self) -> str:
        return "Kek(<hidden>)"

    @classmethod
    def from_passphrase(cls, passphrase: str, salt: bytes, n: int, r: int, p: int) -> Kek:
        if not passphrase:
            raise KeyStoreLockedError("an empty passphrase cannot protect keys")
        return cls(
            hashlib.scrypt(
                passphrase.encode("utf-8"),
                salt=salt,
                n=n,
                r=r,
                p=p,
                maxmem=256 * 1024 * 1024,
                dklen=32,
            )
        )

    @classmethod
    def from_file(cls, path: Path) -> Kek:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise KeyStoreLockedError(f"KEK file {path} does not exist") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or st.st_uid != os.getuid():
            raise KeyStoreLockedError(
                f"KEK file {path} must be owned by this user and readable by it alone "
                f"(chmod 600 {path})"
            )
        data = path.read_bytes()
        if len(data) != 32:
            raise KeyStoreLockedError(f"KEK file {path} must hold exactly 32 bytes")
        return cls(data)

    @staticmethod
    def create_file(path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))

    def seal(self, plaintext: bytes, aad: bytes) -> dict[str, str]:
        nonce = secrets.token_bytes(12)
        return {
            "nonce": _b64(nonce),
            "ciphertext": _b64(AESGCM(self.key).encrypt(nonce, plaintext, aad)),
        }

    def open(self, box: dict[str, Any], aad: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(_unb64(box["nonce"]), _unb64(box["ciphertext"]), aad)
        except (InvalidTag, KeyError, ValueError, TypeError) as exc:
            raise KeyStoreLockedError(
                "key file does not open with this key-encryption key (wrong passphrase or "
                "KEK file, or the file was altered)"
            ) from exc


def default_kek_file(folder: Path) -> Path:
    """Beside the keys folder, never inside it: a copy of the folder alone must not open."""
    return folder.parent / f"{folder.name}.kek"


class SoftwareKeyStore:
    """Keys under one folder: ``kek.json`` (how the KEK is made) and one ``LABEL.key`` per key."""

    scheme = SCHEME

    def __init__(self, folder: Path, kek: Kek) -> None:
        self.folder = folder
        self._kek = kek
        self._cache: dict[str, SoftwareKey] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        folder: Path,
        *,
        passphrase: str | None = None,
        kek_file: Path | None = None,
    ) -> SoftwareKeyStore:
        """Open (or create, when the folder has no ``kek.json``) a keystore.

        A new store uses the passphrase when one is given, else ``kek_file`` (created, mode
        0600, when missing). An existing store says in ``kek.json`` which it needs.
        """
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        meta_path = folder / "kek.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text("utf-8"))
                kek = cls._kek_from_meta(meta, folder, passphrase, kek_file)
                kek.open(meta["check"], _KEK_CHECK)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                raise KeyStoreLockedError(f"{meta_path} is damaged ({type(exc).__name__})") from exc
            return cls(folder, kek)
        if passphrase:
            salt = secrets.token_bytes(16)
            kek = Kek.from_passphrase(passphrase, salt, **_SCRYPT)
            meta = {"kind": "passphrase", "salt": _b64(salt), **_SCRYPT}
        else:
            path = kek_file or default_kek_file(folder)
            if not path.exists():
                Kek.create_file(path)
            kek = Kek.from_file(path)
            meta = {"kind": "file", "path": str(path)}
        meta["check"] = kek.seal(_KEK_CHECK, _KEK_CHECK)
        meta_path.write_text(json.dumps(meta, indent=2), "utf-8")
        return cls(folder, kek)

    @staticmethod
    def _kek_from_meta(
        meta: dict[str, Any], folder: Path, passphrase: str | None, kek_file: Path | None
    ) -> Kek:
        if meta.get("kind") == "passphrase":
            if not passphrase:
                raise KeyStoreLockedError(
                    "this keystore is protected by a passphrase: set ETRUST_KEY_PASSPHRASE"
                )
            return Kek.from_passphrase(
                passphrase, _unb64(meta["salt"]), int(meta["n"]), int(meta["r"]), int(meta["p"])
            )
        return Kek.from_file(kek_file or Path(meta.get("path") or default_kek_file(folder)))

    def _path(self, label: str) -> Path:
        return self.folder / f"{check_label(label)}.key"

    @staticmethod
    def _aad(label: str, key_type: str, spki: str) -> bytes:
        return f"etrust-key-v1|{label}|{key_type}|{spki}".encode()

    def _label_of(self, key_uri: str) -> str:
        uri = KeyUri.parse(key_uri)
        if uri.scheme != SCHEME or "object" not in uri.path:
            raise MalformedInputError("software key URIs look like soft:object=LABEL")
        return uri.path["object"]

    def store(self, label: str, key_type: KeyType, private: PrivateKey) -> SoftwareKey:
        """Encrypt and write a private key; refuses to overwrite an existing label."""
        path = self._path(label)
        handle = SoftwareKey(label, key_type, private)
        spki = _b64(handle.public_key_info.dump())
        record = {
            "version": 1,
            "label": label,
            "key_type": key_type,
            "spki": spki,
            "box": self._kek.seal(_to_pkcs8(private), self._aad(label, key_type, spki)),
        }
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyExistsError(f"a key labelled {label!r} already exists") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        with self._lock:
            self._cache[label] = handle
        return handle

    def generate(self, label: str, spec: str) -> SoftwareKey:
        key_type, private = generate_private(spec)
        return self.store(label, key_type, private)

    def find(self, key_uri: str) -> SoftwareKey:
        label = self._label_of(key_uri)
        with self._lock:
            cached = self._cache.get(label)
        if cached is not None:
            return cached
        path = self._path(label)
        try:
            record = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise KeyNotFoundError(f"no software key labelled {label!r}") from None
        except (ValueError, OSError) as exc:
            raise KeyStoreLockedError(f"key file for {label!r} is unreadable") from exc
        try:
            key_type = record["key_type"]
            aad = self._aad(label, key_type, record["spki"])
            box = record["box"]
        except (KeyError, TypeError) as exc:
            raise KeyStoreLockedError(f"key file for {label!r} is damaged") from exc
        if key_type not in ("sm2", "rsa", "ec-p256"):
            raise KeyStoreLockedError(f"key file for {label!r} names an unknown key type")
        pkcs8 = self._kek.open(box, aad)
        handle = SoftwareKey(label, key_type, load_private(key_type, pkcs8))
        with self._lock:
            self._cache[label] = handle
        return handle

    def list(self) -> list[str]:
        return sorted(f"{SCHEME}:object={p.stem}" for p in self.folder.glob("*.key"))

    def destroy(self, key_uri: str) -> None:
        label = self._label_of(key_uri)
        path = self._path(label)
        if not path.exists():
            raise KeyNotFoundError(f"no software key labelled {label!r}")
        # Overwrite before unlinking so the ciphertext does not linger in the file's blocks.
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(secrets.token_bytes(size))
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
        with self._lock:
            self._cache.pop(label, None)
