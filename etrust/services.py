"""The long-lived objects the web app serves from: CAs, OCSP responder, TSAs, CRL caches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from etrust.pki import RENEW_BEFORE, Pki
from etrust.runtime import Runtime
from etrust.store import ServiceIdentity
from signing.context import VerifyContext
from trust.certificates import load_certificate
from trust.crl import CrlCache
from trust.errors import CaNotFoundError, ConfigurationError
from trust.keys import KeyHandle
from trust.ocsp import DelegatedResponder, OcspResponder
from trust.tsa import TimeStampAuthority
from trust.validation import TrustStore

log = logging.getLogger("etrust.services")


def make_tsa(
    runtime: Runtime, pki: Pki, identity: ServiceIdentity, key: KeyHandle | None = None
) -> TimeStampAuthority:
    """The TSA of a ``tsa-*`` service identity, with the chain above its certificate."""
    ca = pki.ca(identity.ca_name)
    return TimeStampAuthority(
        load_certificate(identity.certificate_der),
        key or runtime.keys.find(identity.key_uri),
        policy=runtime.settings.tsa_policy_oid,
        chain=[ca.certificate, *pki.chain_above(ca.name)],
    )


def tsa_for(runtime: Runtime, kind: str) -> TimeStampAuthority:
    """The ``kind`` ("sm2" or "rsa") TSA of this runtime (made once: its identity changes
    only when ``etrust init`` renews it, with the server stopped)."""
    cache: dict[str, TimeStampAuthority] = runtime.__dict__.setdefault("_tsas", {})
    tsa = cache.get(kind)
    if tsa is None:
        identity = runtime.identities.get(f"tsa-{kind}")
        if identity is None:
            raise CaNotFoundError(f"no {kind} time-stamping authority (run etrust init)")
        tsa = cache[kind] = make_tsa(runtime, runtime.pki(), identity)
    return tsa


@dataclass
class Services:
    runtime: Runtime
    pki: Pki
    ocsp: OcspResponder
    tsas: dict[str, TimeStampAuthority]
    crls: dict[str, CrlCache] = field(default_factory=dict)

    @classmethod
    def build(cls, runtime: Runtime) -> Services:
        settings = runtime.settings
        pki = runtime.pki()
        if not pki.cas:
            raise ConfigurationError(f"no CAs in {settings.home}: run etrust init first")
        authorities: list[object] = []
        tsas: dict[str, TimeStampAuthority] = {}
        for identity in runtime.identities.list():
            ca = pki.ca(identity.ca_name)
            key = runtime.keys.find(identity.key_uri)
            cert = load_certificate(identity.certificate_der)
            if cert.not_valid_after - datetime.now(UTC) < RENEW_BEFORE:
                log.warning(
                    "%s certificate expires %s: run etrust init to renew it",
                    identity.name,
                    cert.not_valid_after.isoformat(),
                )
            if identity.purpose == "ocsp":
                authorities.append(DelegatedResponder(ca, cert, key))
            elif identity.purpose == "tsa":
                tsas[identity.name.removeprefix("tsa-")] = make_tsa(runtime, pki, identity, key)
        delegated = {a.ca.name for a in authorities if isinstance(a, DelegatedResponder)}
        authorities += [ca for name, ca in pki.cas.items() if name not in delegated]
        ocsp = OcspResponder(
            authorities,  # type: ignore[arg-type]
            validity=timedelta(minutes=settings.ocsp_validity_minutes),
        )
        crls = {name: CrlCache(ca) for name, ca in pki.cas.items()}
        return cls(runtime, pki, ocsp, tsas, crls)

    def crl(self, ca_name: str) -> bytes:
        cache = self.crls.get(ca_name)
        if cache is None:
            raise CaNotFoundError(f"no CA named {ca_name!r}")
        return cache.current()

    @cached_property
    def trust(self) -> TrustStore:
        """Our roots and issuing CAs, parsed once: the CAs of a home do not change while it
        serves (``etrust init`` adds CAs with the server stopped)."""
        parents = self.pki.parents
        return TrustStore(
            [ca.certificate for name, ca in self.pki.cas.items() if parents.get(name) is None],
            [ca.certificate for name, ca in self.pki.cas.items() if parents.get(name)],
        )

    def verify_context(self) -> VerifyContext:
        """What the server trusts when it verifies a document: its own roots, its issuing CAs
        and their current CRLs (revocation required: we publish them ourselves)."""
        return VerifyContext(
            trust=self.trust,
            crls=tuple(self.crl(name) for name in self.pki.cas),
            revocation="require",
        )

    def tsa(self, kind: str) -> TimeStampAuthority:
        try:
            return self.tsas[kind]
        except KeyError:
            raise CaNotFoundError(f"no {kind} time-stamping authority (run etrust init)") from None
