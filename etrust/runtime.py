"""Everything a command or the web app needs, built from settings in one place."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from asn1crypto.keys import PublicKeyInfo
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from etrust.approvals import DualControl
from etrust.audit import AuditEvent, AuditLog
from etrust.db import make_engine, migrate, session_factory
from etrust.devices import key_registry
from etrust.lifecycle import KeyLifecycle
from etrust.pki import AUDIT_IDENTITY, Pki, open_keystore, open_pki
from etrust.settings import Settings
from etrust.store import (
    ApiClientStore,
    CaRecordStore,
    ServiceIdentityStore,
    SqlCertificateRepository,
)
from trust import sm2
from trust.certificates import load_certificate
from trust.clock import Clock, system_clock
from trust.errors import ConfigurationError
from trust.keys import KeyRegistry
from trust.softkeys import SoftwareKeyStore


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    records: CaRecordStore
    identities: ServiceIdentityStore
    repository: SqlCertificateRepository
    clients: ApiClientStore
    keystore: SoftwareKeyStore
    keys: KeyRegistry
    sessions: sessionmaker[Session]

    @functools.cached_property
    def audit(self) -> AuditLog:
        """The audit log, checkpoints signed by the audit identity's key once init made one."""
        identity = self.identities.get(AUDIT_IDENTITY)
        signer = self.keys.find(identity.key_uri) if identity else None
        return AuditLog(self.sessions, signer=signer)

    def audit_keys(self) -> list[PublicKeyInfo]:
        """Public keys whose checkpoints count: the audit identity's (renewals keep the key)."""
        identity = self.identities.get(AUDIT_IDENTITY)
        return [load_certificate(identity.certificate_der).public_key] if identity else []

    @functools.cached_property
    def dual_control(self) -> DualControl:
        return DualControl(self.sessions, self.settings.dual_control)

    @functools.cached_property
    def lifecycle(self) -> KeyLifecycle:
        return KeyLifecycle(self.sessions)

    def record(self, event: AuditEvent) -> None:
        self.audit.append(event)

    def pki(self, clock: Clock = system_clock) -> Pki:
        return open_pki(self.settings, self.records, self.repository, self.keys, clock=clock)

    def close(self) -> None:
        self.engine.dispose()


def open_runtime(settings: Settings, *, create: bool = False) -> Runtime:
    """Check SM2 is available (fail closed), open the database (migrated) and the keystore.

    Only ``etrust init`` creates a home (``create``); every other command refuses a missing
    one instead of leaving an empty database and a fresh key-encryption key behind.
    """
    sm2.ensure_available()
    if not create and not settings.keys_folder.is_dir():
        raise ConfigurationError(f"no etrust home at {settings.home}: run etrust init first")
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    keystore = open_keystore(settings)
    return Runtime(
        settings=settings,
        engine=engine,
        records=CaRecordStore(sessions),
        identities=ServiceIdentityStore(sessions),
        repository=SqlCertificateRepository(sessions),
        clients=ApiClientStore(sessions),
        keystore=keystore,
        keys=key_registry(keystore),
        sessions=sessions,
    )
