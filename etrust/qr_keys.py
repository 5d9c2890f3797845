"""Departments' QR keys: they sign the license codes that windows verify offline.

A QR key is apart from the seal key: it signs every license's code (many a day) and must sit
where a signature costs nothing, while a seal key may live on a USB key behind a PIN; and each
can be replaced without the other. Made on first use, certified by the hierarchy's issuing CA
(``service-signer``), kept as a service identity (see :func:`identity_name`); the trust list
carries its certificate, found by key id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from etrust.runtime import Runtime
from etrust.store import ServiceIdentity
from trust.algorithms import DEFAULT_FOR_KEY
from trust.certificates import load_certificate, make_name
from trust.errors import ConflictError, KeyNotFoundError
from trust.keys import KeyHandle
from trust.repository import Revocation

QR_PURPOSE = "qr"
KEY_SPECS = {"sm2": "sm2", "rsa": "rsa-2048"}


@dataclass(frozen=True)
class QrKey:
    department: str
    key: KeyHandle
    certificate_der: bytes
    identity: ServiceIdentity | None = None

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


def identity_name(department: str, alg: str, generation: int = 1) -> str:
    """``qr-<alg>-<12 hex of SHA-256(department)>-<generation>``: department codes may hold
    dashes and digits themselves, so only a fixed-width digest keeps one department's keys
    apart from another's (the certificate names the department in words)."""
    digest = hashlib.sha256(department.encode()).hexdigest()[:12]
    return f"qr-{alg}-{digest}-{generation}"


def department_qr_key(rt: Runtime, department: str, alg: str = "sm2") -> QrKey:
    """The department's current QR key for ``alg``: made and certified the first time it is
    needed, and replaced by a new one (generation 2, 3, ...) once its certificate is revoked, so a
    compromised key stops signing at the next license without anybody restarting anything."""
    cache: dict[tuple[str, str], QrKey] = rt.__dict__.setdefault("_qr_keys", {})
    found = cache.get((department, alg))
    if found is not None and not _revoked(rt, found.identity):
        return found
    current = None
    known = department_identities(rt, department, alg)
    for identity in sorted(known, key=_generation):
        if not _revoked(rt, identity):
            current = identity
    if current is None:
        generations = [_generation(i) for i in known]
        name = identity_name(department, alg, max(generations, default=0) + 1)
        current = _make(rt, department, alg, name)
    found = cache[(department, alg)] = QrKey(
        department, rt.keys.find(current.key_uri), current.certificate_der, current
    )
    return found


def department_identities(
    rt: Runtime,
    department: str,
    alg: str,
    identities: Sequence[ServiceIdentity] | None = None,
) -> list[ServiceIdentity]:
    """Every QR key the department ever had for ``alg`` (the trust list keeps withdrawn ones,
    so their codes are refused with that reason rather than as unknown); ``identities`` when
    the caller has listed them already (one query for a whole trust list)."""
    prefix = identity_name(department, alg, 0)[:-1]
    legacy = _legacy_name(department, alg)
    return [
        i
        for i in (rt.identities.list() if identities is None else identities)
        if i.purpose == QR_PURPOSE
        and (i.name == legacy or (i.name.startswith(prefix) and i.name[len(prefix) :].isdigit()))
    ]


def _legacy_name(department: str, alg: str) -> str:
    """The name the first QR keys had (homes of 2026-11-27): still theirs, generation 0."""
    return f"qr-{alg}-{department}"


def revocation_of(rt: Runtime, identity: ServiceIdentity) -> Revocation | None:
    serial = load_certificate(identity.certificate_der).serial_number
    return rt.repository.get_revocation(identity.ca_name, int(serial))


def _revoked(rt: Runtime, identity: ServiceIdentity | None) -> bool:
    return identity is not None and revocation_of(rt, identity) is not None


def _generation(identity: ServiceIdentity) -> int:
    tail = identity.name.rsplit("-", 1)[-1]
    digest_part = identity.name.rsplit("-", 2)[-2] if identity.name.count("-") >= 3 else ""
    if tail.isdigit() and len(digest_part) == 12:
        return int(tail)
    return 0  # a legacy name


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
