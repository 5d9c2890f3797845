"""A certificate authority: a certificate, a key handle, a repository and a clock.

The same code runs an SM2 and an RSA hierarchy; only the key decides the algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from asn1crypto import crl, keys, x509

from trust.algorithms import SignatureAlgorithm, check_key_strength
from trust.certificates import DN_SHORT_NAMES, CertificateBuilder, check_subject, random_serial
from trust.clock import Clock, system_clock
from trust.crl import build_crl
from trust.csr import load_csr
from trust.errors import CaError, MalformedInputError
from trust.keys import KeyHandle, default_algorithm
from trust.profiles import IssuerPointers, Profile, finish_profile, get_profile, profile_template
from trust.repository import (
    REVOCATION_REASONS,
    CertificateRepository,
    IssuedCertificate,
    Revocation,
)
from trust.sm2 import DEFAULT_ID

BACKDATE = timedelta(minutes=5)
"""notBefore is set this far in the past so relying parties with a slow clock accept it."""


def describe_name(name: x509.Name) -> str:
    """A readable one-line form of a Name, in the order its RDNs are encoded (C=CN, O=..., CN=...)."""
    return ", ".join(
        f"{DN_SHORT_NAMES.get(atv['type'].native, atv['type'].native)}={atv['value'].native}"
        for rdn in name.chosen
        for atv in rdn
    )


def self_signed_root(
    key: KeyHandle,
    subject: x509.Name,
    *,
    now: datetime,
    validity: timedelta | None = None,
    policies: tuple[str, ...] = (),
    algorithm: SignatureAlgorithm | None = None,
) -> x509.Certificate:
    """A root CA certificate signed by its own key."""
    profile = get_profile("root-ca")
    template = profile_template(
        profile, issuer_name=subject, issuer_key=key.public_key_info, policies=policies
    )
    return (
        finish_profile(template, subject_key=key.public_key_info)
        .subject_name(subject)
        .serial_number(random_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + (validity or profile.validity))
        .sign(key, algorithm)
    )


@dataclass
class CertificateAuthority:
    """Issues, revokes and publishes CRLs under one CA certificate."""

    name: str
    certificate: x509.Certificate
    key: KeyHandle
    repository: CertificateRepository
    pointers: IssuerPointers = field(default_factory=IssuerPointers)
    policies: tuple[str, ...] = ()
    clock: Clock = system_clock
    crl_validity: timedelta = timedelta(days=1)
    algorithm: SignatureAlgorithm | None = None

    _templates: dict[str, CertificateBuilder] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.key.public_key_info.dump() != self.certificate.public_key.dump():
            raise CaError(f"CA {self.name}: the key does not match the certificate")

    @property
    def signature_algorithm(self) -> SignatureAlgorithm:
        return self.algorithm or default_algorithm(self.key)

    def issue(
        self,
        public_key_info: keys.PublicKeyInfo,
        subject: x509.Name,
        profile: str | Profile,
        *,
        validity: timedelta | None = None,
        identity: Mapping[str, str] | None = None,
    ) -> x509.Certificate:
        """Certify a public key under a profile, record it, and return the certificate."""
        prof = get_profile(profile) if isinstance(profile, str) else profile
        check_key_strength(public_key_info)
        check_subject(subject)
        if prof.name == "root-ca":
            raise CaError("a root certificate is self-signed; it is not issued by a CA")
        if prof.ca and self.certificate.max_path_length == 0:
            raise CaError(f"CA {self.name} may not certify other CAs (its path length is 0)")
        now = self.clock()
        not_after = min(now + (validity or prof.validity), self.certificate.not_valid_after)
        if not_after <= now:
            raise CaError(f"CA {self.name} has expired; it cannot issue")
        not_before = now - BACKDATE
        serial = random_serial()
        cert = (
            finish_profile(self._template(prof), subject_key=public_key_info, identity=identity)
            .subject_name(subject)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .sign(self.key, self.signature_algorithm)
        )
        self.repository.add_certificate(
            IssuedCertificate(
                issuer=self.name,
                serial=serial,
                subject=describe_name(subject),
                profile=prof.name,
                not_before=not_before.replace(microsecond=0),
                not_after=not_after.replace(microsecond=0),
                der=cert.dump(),
            )
        )
        return cert

    def _template(self, profile: Profile) -> CertificateBuilder:
        template = self._templates.get(profile.name)
        if template is None:
            template = profile_template(
                profile,
                issuer_name=self.certificate.subject,
                issuer_key=self.certificate.public_key,
                pointers=self.pointers,
                policies=self.policies,
            )
            self._templates[profile.name] = template
        return template

    def issue_from_csr(
        self,
        csr_data: bytes,
        profile: str | Profile,
        *,
        sm2_id: bytes = DEFAULT_ID,
        validity: timedelta | None = None,
        identity: Mapping[str, str] | None = None,
    ) -> x509.Certificate:
        """Certify the key of a PKCS#10 request after checking its proof of possession."""
        prof = get_profile(profile) if isinstance(profile, str) else profile
        request = load_csr(csr_data, sm2_id=sm2_id)
        if not request.subject.chosen:
            raise MalformedInputError("the request has an empty subject name")
        return self.issue(
            request.public_key_info, request.subject, prof, validity=validity, identity=identity
        )

    def revoke(
        self, serial: int, reason: str = "unspecified", at: datetime | None = None
    ) -> Revocation:
        if reason not in REVOCATION_REASONS or reason == "remove_from_crl":
            raise MalformedInputError(
                f"unknown revocation reason {reason!r}; use one of "
                + ", ".join(r for r in REVOCATION_REASONS if r != "remove_from_crl")
            )
        return self.repository.revoke(self.name, serial, reason, at or self.clock())

    def crl(self) -> crl.CertificateList:
        """A freshly numbered, signed CRL of everything this CA has revoked."""
        number, revocations = self.repository.next_crl(self.name)
        now = self.clock()  # read after the snapshot: thisUpdate never predates what it lists
        return build_crl(
            self.certificate,
            self.key,
            revocations,
            number=number,
            this_update=now,
            next_update=now + self.crl_validity,
            algorithm=self.signature_algorithm,
        )
