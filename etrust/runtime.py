"""Everything a command or the web app needs, built from settings in one place."""

from __future__ import annotations

import functools
import hashlib
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
from trust.clock import Clock, system_clock
from trust.errors import ConfigurationError
from trust.keys import KeyHandle, KeyRegistry
from trust.softkeys import SoftwareKeyStore

AUDIT_KEY_PIN = "audit-key.sha256"
"""File in the home pinning the audit key's SPKI fingerprint, outside the database."""


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
    def audit_signer(self) -> KeyHandle | None:
        """The audit key, from its backend (never from certificates in the database), checked
        against the fingerprint pinned in the home when init made it."""
        identity = self.identities.get(AUDIT_IDENTITY)
        if identity is None:
            return None
        key = self.keys.find(identity.key_uri)
        pin = self.settings.home / AUDIT_KEY_PIN
        fingerprint = hashlib.sha256(key.public_key_info.dump()).hexdigest()
        if pin.exists():
            if pin.read_text("ascii").strip() != fingerprint:
                raise ConfigurationError(
                    f"the audit key is not the one pinned in {pin}: the database was altered"
                )
        else:
            pin.write_text(fingerprint + "\n", "ascii")
        return key

    @functools.cached_property
    def audit(self) -> AuditLog:
        """The audit log, checkpoints signed by the audit key once init made one."""
        return AuditLog(self.sessions, signer=self.audit_signer)

    def audit_keys(self) -> list[PublicKeyInfo]:
        """Public keys whose checkpoints and transcripts count: the audit key's."""
        signer = self.audit_signer
        return [signer.public_key_info] if signer else []

    @functools.cached_property
    def dual_control(self) -> DualControl:
        return DualControl(self.sessions, self.settings.dual_control)

    @functools.cached_property
    def lifecycle(self) -> KeyLifecycle:
        return KeyLifecycle(self.sessions)

    def record(self, event: AuditEvent) -> None:
        self.audit.append(event)

    def pki(self, clock: Clock = system_clock) -> Pki:
        """The home's CAs, opened once per runtime (a command or a server process)."""
        if clock is not system_clock:
            return open_pki(self.settings, self.records, self.repository, self.keys, clock=clock)
        cached: Pki | None = self.__dict__.get("_pki")
        if cached is None:
            cached = open_pki(self.settings, self.records, self.repository, self.keys)
            self.__dict__["_pki"] = cached
        return cached

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
        keys=key_registry(keystore, settings.device_modules),
        sessions=sessions,
    )
