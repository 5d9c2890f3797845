"""The license registry wired to a home: departments' seals sign licenses, the log key signs
the transparency log's checkpoints, the holder key hashes holder codes.

Shared by the CLI and the API, so both issue, read and revoke through the same code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass

from etrust.pki import LOG_IDENTITY
from etrust.qr_keys import QrKey, department_qr_key
from etrust.runtime import Runtime
from etrust.seals import SealSigner, SealStore, seal_pdf, seal_signer
from etrust.transparency import transparency_log
from license_store.consent import ConsentService
from license_store.holder_access import SignedHolderLinks, link_secret
from license_store.issuance import LicenseService
from license_store.lifecycle import LicenseLifecycle
from license_store.render import SEAL_BOX_MM, seal_box_pdf
from license_store.status_list import StatusLists
from trust.clock import Clock, system_clock
from trust.errors import ConfigurationError, NotFoundError

HOLDER_KEY_FILE = "holder-key.bin"
"""32 random bytes in the home (owner-only): the key of the holder-code hashes."""


def holder_key(rt: Runtime) -> bytes:
    """The home's holder key, made at first use (O_EXCL: workers starting together agree)."""
    path = rt.settings.home / HOLDER_KEY_FILE
    if not path.exists():
        # written whole under a temporary name, then linked into place: a worker starting at
        # the same moment sees no file or the whole key, never an empty one
        temporary = path.with_name(f".{HOLDER_KEY_FILE}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink()
    key = path.read_bytes()
    if len(key) != 32:
        raise ConfigurationError(f"{path} is damaged: it must hold 32 bytes")
    return key


def license_service(rt: Runtime) -> LicenseService:
    """The runtime's license service (one per command or server process)."""
    cached: LicenseService | None = rt.__dict__.get("_licenses")
    if cached is None:
        cached = LicenseService(
            rt.sessions,
            transparency_log(rt),
            holder_key(rt),
            verify_base_url=rt.settings.base_url,
        )
        rt.__dict__["_licenses"] = cached
    return cached


def status_lists(rt: Runtime) -> StatusLists:
    """The runtime's signed status lists (signed by the log key)."""
    cached: StatusLists | None = rt.__dict__.get("_status_lists")
    if cached is None:
        identity = rt.identities.get(LOG_IDENTITY)
        if identity is None:
            raise ConfigurationError("no log key: run etrust init")
        service = license_service(rt)
        cached = StatusLists(rt.sessions, service.log, rt.keys.find(identity.key_uri))
        rt.__dict__["_status_lists"] = cached
    return cached


def license_lifecycle(rt: Runtime) -> LicenseLifecycle:
    service = license_service(rt)
    return LicenseLifecycle(rt.sessions, service.log, service.commit)


HOLDER_PAGE = "/holder"


def holder_links(rt: Runtime, clock: Clock = system_clock) -> SignedHolderLinks:
    """The home's holder authenticator: links MACed under a key derived from the holder key."""
    cached: SignedHolderLinks | None = rt.__dict__.get("_holder_links")
    if cached is not None and clock is system_clock:
        return cached
    links = SignedHolderLinks(
        link_secret(holder_key(rt)), license_service(rt).holder_hash, clock=clock
    )
    if clock is system_clock:
        rt.__dict__["_holder_links"] = links
    return links


def consent_service(rt: Runtime) -> ConsentService:
    return ConsentService(rt.sessions)


@dataclass(frozen=True)
class SealLicenseSigner:
    """A department's seal as :class:`license_store.issuance.LicenseSigner`: OFD and PDF
    sealed in the license's seal box (PAdES B-T, timestamped), records signed by the seal key."""

    signer: SealSigner
    qr: QrKey

    @property
    def seal_id(self) -> str:
        return self.signer.seal.es_id

    @property
    def qr_algorithm(self) -> str:
        return self.qr.algorithm

    @property
    def qr_key_id(self) -> bytes:
        return self.qr.key_id

    def sign_qr(self, data: bytes) -> bytes:
        return self.qr.sign(data)

    def seal_ofd(self, ofd: bytes) -> bytes:
        from signing.ofd import sign_ofd

        return sign_ofd(
            ofd,
            self.signer.seal.seal_der,
            self.signer.key,
            self.signer.certificate,
            box_mm=SEAL_BOX_MM,
            timestamper=self.signer.timestamper,
        )

    def seal_pdf(self, pdf: bytes) -> bytes:
        return seal_pdf(self.signer, pdf, "B-T", box_mm=seal_box_pdf())

    def sign(self, data: bytes) -> bytes:
        return self.signer.key.sign(data)


def department_signer(
    rt: Runtime, department: str, seal: str | None = None, *, prefer: str | None = None
) -> SealLicenseSigner:
    """The seal a department signs with: ``seal`` if given (it must be the department's and
    active); else ``prefer`` if it is still active (the seal a license was issued with); else
    the department's active SM2 seal, else its active RSA seal. A license whose seal was
    retired (or compromised) can still be revoked with another of the department's seals."""
    seals = [s for s in SealStore(rt.sessions).list(department) if s.status == "active"]
    if seal is not None:
        chosen = next((s for s in seals if s.es_id == seal), None)
        if chosen is None:
            raise NotFoundError(f"department {department!r} has no active seal {seal!r}")
    else:
        chosen = (
            next((s for s in seals if s.es_id == prefer), None)
            or next((s for s in seals if s.alg == "sm2"), None)
            or next(iter(seals), None)
        )
        if chosen is None:
            raise NotFoundError(
                f"department {department!r} has no active seal: etrust seal create first"
            )
    return SealLicenseSigner(seal_signer(rt, chosen.es_id), department_qr_key(rt, department))


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
