"""Set up and open the PKI of one home: CA hierarchies, OCSP and TSA identities, from the database.

``init_pki`` is idempotent: it creates what is missing (keys, certificates, records) and leaves
what exists. A run interrupted between creating a key and saving its certificate resumes with the
same key instead of failing on the existing label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from asn1crypto import x509

from etrust.devices import key_on_device, stored_uri
from etrust.settings import Settings
from etrust.store import (
    CaRecordStore,
    ServiceIdentity,
    ServiceIdentityStore,
    SqlCertificateRepository,
)
from trust.ca import CertificateAuthority, self_signed_root
from trust.certificates import load_certificate, make_name
from trust.clock import Clock, system_clock
from trust.errors import (
    CaNotFoundError,
    CertificateNotFoundError,
    KeyNotFoundError,
    MalformedInputError,
)
from trust.keys import DeferredKey, KeyHandle, KeyRegistry
from trust.ocsp import delegate
from trust.profiles import PUBLICATION_EKU, IssuerPointers
from trust.softkeys import SoftwareKeyStore

KINDS = {"sm2": "sm2", "rsa": "rsa-2048"}
KINDS_KEY_TYPE = {"sm2": "sm2", "rsa-2048": "rsa"}
"""Hierarchy kind -> key spec of its CA keys (RSA CAs could be 3072/4096 by setting)."""
KIND_LABEL = {"sm2": "SM2", "rsa": "RSA"}
RENEW_BEFORE = timedelta(days=30)
"""Service certificates (OCSP, TSA, audit) closer than this to expiry are renewed by init."""
AUDIT_IDENTITY = "audit-sm2"
LOG_IDENTITY = "log-sm2"
"""Signs the checkpoints of the license transparency log."""
"""The service identity whose key signs the audit log's checkpoints."""


def ca_names() -> list[str]:
    return [f"{level}-{kind}" for kind in KINDS for level in ("root", "issuing")]


def pointers_for(settings: Settings, ca_name: str) -> IssuerPointers:
    """Where certificates issued by ``ca_name`` send relying parties."""
    base = settings.base_url
    return IssuerPointers(
        crl_url=f"{base}/pki/crl/{ca_name}.crl",
        ocsp_url=f"{base}/pki/ocsp",
        ca_issuers_url=f"{base}/pki/ca/{ca_name}.crt",
    )


def open_keystore(settings: Settings) -> SoftwareKeyStore:
    return SoftwareKeyStore.open(
        settings.keys_folder, passphrase=settings.key_passphrase, kek_file=settings.kek_file
    )


@dataclass
class Pki:
    """The CAs of a home, ready to issue, revoke and publish."""

    settings: Settings
    keys: KeyRegistry
    repository: SqlCertificateRepository
    cas: dict[str, CertificateAuthority] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)

    def ca(self, name: str) -> CertificateAuthority:
        try:
            return self.cas[name]
        except KeyError:
            known = ", ".join(self.cas) or "none (run etrust init)"
            raise CaNotFoundError(f"no CA named {name!r}; known: {known}") from None

    def chain_above(self, name: str) -> list[x509.Certificate]:
        """The certificates above CA ``name``, nearest first, up to its root."""
        out = []
        parent = self.parents.get(name)
        while parent is not None:
            out.append(self.ca(parent).certificate)
            parent = self.parents.get(parent)
        return out

    def find_issuer_of_serial(self, serial: int) -> CertificateAuthority:
        """The CA that issued ``serial`` (serials are random 127-bit, so one at most in practice)."""
        matches = self.repository.certificates_with_serial(serial)
        if not matches:
            raise CertificateNotFoundError(f"no certificate with serial {serial:x} was issued here")
        return self.ca(matches[0].issuer)


def _get_or_create_key(keys: KeyRegistry, label: str, spec: str) -> KeyHandle:
    store = keys.backend("soft")
    try:
        return store.find(f"soft:object={label}")
    except KeyNotFoundError:
        return store.generate(label, spec)


def _ca_key(
    keys: KeyRegistry, key_uris: Mapping[str, str], name: str, spec: str
) -> tuple[KeyHandle, str]:
    """The key for CA ``name`` and the URI to record: on a device if ``key_uris`` says so."""
    uri = key_uris.get(name)
    if uri is None:
        key = _get_or_create_key(keys, name, spec)
        return key, key.key_uri
    key = key_on_device(keys, uri, name, spec)
    if key.key_type != KINDS_KEY_TYPE[spec]:
        raise MalformedInputError(f"{name} needs a {spec} key; the device key is {key.key_type}")
    return key, stored_uri(uri)


def init_pki(
    settings: Settings,
    records: CaRecordStore,
    identities: ServiceIdentityStore,
    repository: SqlCertificateRepository,
    keys: KeyRegistry,
    *,
    key_uris: Mapping[str, str] | None = None,
    clock: Clock = system_clock,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[str]:
    """Create the SM2 and RSA hierarchies that are missing; return the names created.

    ``key_uris`` puts a CA's key on a device (``{"issuing-rsa": "pkcs11:..."}``); the others
    live in the home's software keystore.
    """
    unknown = set(key_uris or {}) - set(ca_names())
    if unknown:
        raise MalformedInputError(f"--key-uri names unknown CAs: {', '.join(sorted(unknown))}")
    device_keys = dict(key_uris or {})
    naming = settings.naming
    created: list[str] = []
    for kind, spec in KINDS.items():
        root_name, issuing_name = f"root-{kind}", f"issuing-{kind}"
        root_record = records.get(root_name)
        if root_record is None:
            key, key_uri = _ca_key(keys, device_keys, root_name, spec)
            subject = make_name(
                {
                    "C": naming.country,
                    "O": naming.organization,
                    "CN": f"{naming.root_common_name}（{KIND_LABEL[kind]}）",
                }
            )
            cert = self_signed_root(key, subject, now=clock(), policies=naming.policy_oids)
            records.save(root_name, key_uri, cert.dump(), parent=None)
            log(f"created {root_name}")
            created.append(root_name)
        if records.get(issuing_name) is None:
            root = _load_ca(settings, records, repository, keys, root_name, clock)
            key, key_uri = _ca_key(keys, device_keys, issuing_name, spec)
            subject = make_name(
                {
                    "C": naming.country,
                    "O": naming.organization,
                    "CN": f"{naming.issuing_common_name}（{KIND_LABEL[kind]}）",
                }
            )
            cert = root.issue(key.public_key_info, subject, "issuing-ca")
            records.save(issuing_name, key_uri, cert.dump(), parent=root_name)
            log(f"created {issuing_name}")
            created.append(issuing_name)
        issuing = _load_ca(settings, records, repository, keys, issuing_name, clock)
        created += _init_services(kind, spec, issuing, identities, keys, clock)
    return created


def _init_services(
    kind: str,
    spec: str,
    issuing: CertificateAuthority,
    identities: ServiceIdentityStore,
    keys: KeyRegistry,
    clock: Clock,
) -> list[str]:
    """The issuing CA's delegated OCSP responder, the hierarchy's TSA and seal maker (制章者):
    created if missing, their certificates renewed (same key) when they expire within
    ``RENEW_BEFORE``."""
    created = []
    naming = issuing.certificate.subject.native
    organization = naming.get("organization_name", "")
    services = [
        (f"ocsp-{issuing.name}", "ocsp"),
        (f"tsa-{kind}", "tsa"),
        (f"seal-maker-{kind}", "seal-maker"),
    ]
    if kind == "sm2":
        services += [(AUDIT_IDENTITY, "audit"), (LOG_IDENTITY, "log")]
    for name, purpose in services:
        existing = identities.get(name)
        if (
            existing is not None
            and not _expiring(existing, clock())
            and not _outdated(existing, purpose)
        ):
            continue
        key = _get_or_create_key(keys, name, spec)
        title = {
            "ocsp": "OCSP 响应服务",
            "tsa": "时间戳服务",
            "audit": "审计日志签名",
            "log": "电子证照透明日志签名",
            "seal-maker": "电子印章制章系统",
        }[purpose]
        subject = make_name({"C": "CN", "O": organization, "CN": f"{title}（{KIND_LABEL[kind]}）"})
        if purpose == "ocsp":
            cert = delegate(issuing, key, subject).certificate
        else:
            profile = {
                "tsa": "tsa",
                "seal-maker": "seal-maker",
                "log": "registry-publisher",
            }.get(purpose, "service-signer")
            cert = issuing.issue(key.public_key_info, subject, profile)
        identity = ServiceIdentity(name, purpose, issuing.name, key.key_uri, cert.dump())
        identities.save(identity, renew=existing is not None)
        created.append(name if existing is None else f"{name} (certificate renewed)")
    return created


def _outdated(identity: ServiceIdentity, purpose: str) -> bool:
    """A certificate made before its profile changed: the publication key's lacked its EKU
    (homes made before trust lists); init renews it, same key."""
    if purpose != "log":
        return False
    usages = load_certificate(identity.certificate_der).extended_key_usage_value
    return usages is None or PUBLICATION_EKU not in {u.dotted for u in usages}


def _expiring(identity: ServiceIdentity, now: datetime) -> bool:
    cert = load_certificate(identity.certificate_der)
    return bool(cert.not_valid_after - now < RENEW_BEFORE)


def _load_ca(
    settings: Settings,
    records: CaRecordStore,
    repository: SqlCertificateRepository,
    keys: KeyRegistry,
    name: str,
    clock: Clock,
) -> CertificateAuthority:
    record = records.get(name)
    if record is None:
        raise CaNotFoundError(f"no CA named {name!r}; run etrust init")
    cert: x509.Certificate = load_certificate(record.certificate_der)
    return CertificateAuthority(
        name,
        cert,
        DeferredKey(keys, record.key_uri, cert.public_key),
        repository,
        pointers=pointers_for(settings, name),
        policies=settings.naming.policy_oids,
        clock=clock,
        crl_validity=timedelta(hours=settings.crl_validity_hours),
    )


def open_pki(
    settings: Settings,
    records: CaRecordStore,
    repository: SqlCertificateRepository,
    keys: KeyRegistry,
    *,
    clock: Clock = system_clock,
) -> Pki:
    pki = Pki(settings, keys, repository)
    for record in records.list():
        pki.cas[record.name] = _load_ca(settings, records, repository, keys, record.name, clock)
        pki.parents[record.name] = record.parent
    return pki
