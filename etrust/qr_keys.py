"""Departments' QR keys: they sign the license codes that windows verify offline.

A QR key is apart from the seal key: it signs every license's code (many a day) and must sit
where a signature costs nothing, while a seal key may live on a USB key behind a PIN; and each
can be replaced without the other. Made on first use, certified by the hierarchy's issuing CA
(``service-signer``), kept as a service identity ``qr-<alg>-<department>``; the trust list
carries its certificate, found by key id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from etrust.runtime import Runtime
from etrust.store import ServiceIdentity
from trust.algorithms import DEFAULT_FOR_KEY
from trust.certificates import make_name
from trust.errors import ConflictError, KeyNotFoundError
from trust.keys import KeyHandle

QR_PURPOSE = "qr"
KEY_SPECS = {"sm2": "sm2", "rsa": "rsa-2048"}


@dataclass(frozen=True)
class QrKey:
    department: str
    key: KeyHandle
    certificate_der: bytes

    @property
    def algorithm(self) -> str:
        return DEFAULT_FOR_KEY[self.key.key_type].name

    @property
    def key_id(self) -> bytes:
        """The first 8 bytes of the SHA-256 of the key's SubjectPublicKeyInfo."""
        return key_id_of(self.key.public_key_info.dump())

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


def key_id_of(public_key_info_der: bytes) -> bytes:
    return hashlib.sha256(public_key_info_der).digest()[:8]


def identity_name(department: str, alg: str) -> str:
    name = f"qr-{alg}-{department}"
    if len(name) <= 64:
        return name
    return f"qr-{alg}-{hashlib.sha256(department.encode()).hexdigest()[:32]}"


def department_qr_key(rt: Runtime, department: str, alg: str = "sm2") -> QrKey:
    """The department's QR key for ``alg``, made and certified the first time it is needed."""
    cache: dict[tuple[str, str], QrKey] = rt.__dict__.setdefault("_qr_keys", {})
    found = cache.get((department, alg))
    if found is not None:
        return found
    name = identity_name(department, alg)
    identity = rt.identities.get(name)
    if identity is None:
        identity = _make(rt, department, alg, name)
    found = cache[(department, alg)] = QrKey(
        department, rt.keys.find(identity.key_uri), identity.certificate_der
    )
    return found


def _make(rt: Runtime, department: str, alg: str, name: str) -> ServiceIdentity:
    from license_store.registry import Registry

    dept = Registry(rt.sessions).department(department)
    try:
        key = rt.keystore.find(f"soft:object={name}")
    except KeyNotFoundError:
        key = rt.keystore.generate(name, KEY_SPECS[alg])
    ca = rt.pki().ca(f"issuing-{alg}")
    cert = ca.issue(
        key.public_key_info,
        make_name(
            {"C": "CN", "O": dept.name, "CN": f"{dept.name}电子证照二维码签名（{alg.upper()}）"}
        ),
        "service-signer",
        identity={"organization_code": dept.uscc},
    )
    identity = ServiceIdentity(name, QR_PURPOSE, ca.name, key.key_uri, cert.dump())
    try:
        return rt.identities.save(identity)
    except ConflictError:  # another worker made it meanwhile: use theirs
        made = rt.identities.get(name)
        assert made is not None
        return made


def published_qr_keys(rt: Runtime) -> list[ServiceIdentity]:
    """Every department's QR certificates (for the trust list)."""
    return [i for i in rt.identities.list() if i.purpose == QR_PURPOSE]
