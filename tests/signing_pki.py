"""A PKI for the signature-format tests: per algorithm a root and an issuing CA, a seal maker,
two seal signers, a TSA, and a verification context that trusts the root.

Used as ``from tests.signing_pki import SigningPki, signing_pki`` (the fixture is session-wide;
``sm2``, ``rsa`` and ``ec`` are peers: every format test should run with each it supports).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509

from signing.context import LocalTimestamper, VerifyContext
from tests.conftest import Hierarchy, make_hierarchy
from trust.certificates import make_name, to_pem
from trust.crl import load_crl
from trust.keys import KeyHandle
from trust.tsa import TimeStampAuthority
from trust.validation import TrustStore

TSA_POLICY = "1.3.6.1.4.1.64999.3161.1"
SPECS = {"sm2": "sm2", "rsa": "rsa-2048", "ec": "ec-p256"}


@dataclass
class Party:
    """A key and its certificate."""

    key: KeyHandle
    cert: x509.Certificate

    def cert_pem(self) -> bytes:
        return to_pem(self.cert, "CERTIFICATE")


@dataclass
class SigningPki:
    kind: str  # "sm2", "rsa" or "ec" (ECDSA P-256 end entities under the RSA hierarchy)
    h: Hierarchy
    maker: Party  # 制章者: signs seals
    signer: Party  # 签章者: signs documents with a seal that lists it
    other_signer: Party  # a valid certificate the seals do not list
    tsa_party: Party
    tsa: TimeStampAuthority
    folder: Path
    now: datetime
    _issue: Callable[[str, str], Party] = field(repr=False)

    @property
    def timestamper(self) -> LocalTimestamper:
        return LocalTimestamper(self.tsa)

    @property
    def chain(self) -> list[x509.Certificate]:
        """The issuing CA and the root, as signatures embed them."""
        return [self.h.issuing.certificate, self.h.root.certificate]

    def context(
        self, *, at: datetime | None = None, revocation: str = "soft-fail"
    ) -> VerifyContext:
        """A context trusting this PKI's root, with fresh CRLs of both CAs."""
        moment = at or self.now
        crls = (self.h.root.crl().dump(), self.h.issuing.crl().dump())
        return VerifyContext(
            trust=TrustStore([self.h.root.certificate], [self.h.issuing.certificate]),
            crls=crls,
            revocation=revocation,  # type: ignore[arg-type]
            clock=lambda: moment,
        )

    def untrusting_context(self) -> VerifyContext:
        """A context that knows none of this PKI's roots."""
        return VerifyContext(clock=lambda: self.now)

    def new_party(self, label: str, profile: str = "seal-signer") -> Party:
        """A fresh key and certificate; the key label is made unique (tests share this PKI)."""
        return self._issue(f"{label}-{secrets.token_hex(4)}", profile)

    def bundle(self) -> Path:
        """Root and issuing CA in one PEM file, for the OpenSSL CLI's -CAfile."""
        path = self.folder / "ca-bundle.pem"
        if not path.exists():
            path.write_bytes(
                to_pem(self.h.root.certificate, "CERTIFICATE")
                + to_pem(self.h.issuing.certificate, "CERTIFICATE")
            )
        return path

    def crl_file(self) -> Path:
        path = self.folder / "issuing.crl.pem"
        path.write_bytes(to_pem(load_crl(self.h.issuing.crl().dump()), "X509 CRL"))
        return path


def make_signing_pki(kind: str, folder: Path) -> SigningPki:
    now = datetime.now(UTC).replace(microsecond=0)
    h = make_hierarchy("sm2" if kind == "sm2" else "rsa", folder, now - timedelta(days=1))
    for ca in (h.root, h.issuing):  # the CAs' clock is a day back: keep their CRLs current
        ca.crl_validity = timedelta(days=7)
    spec = SPECS[kind]

    def issue(label: str, profile: str) -> Party:
        key = h.keystore.generate(label, spec)
        cert = h.issuing.issue(
            key.public_key_info,
            make_name({"C": "CN", "O": "测试盟市场监督管理局", "CN": f"{label} {kind}"}),
            profile,
        )
        return Party(key, cert)

    tsa_party = issue("tsa", "tsa")
    # The TSA stamps at ``now``, the moment every context of this PKI judges at.
    tsa = TimeStampAuthority(
        tsa_party.cert,
        tsa_party.key,
        policy=TSA_POLICY,
        chain=[h.issuing.certificate],
        clock=lambda: now,
    )
    return SigningPki(
        kind,
        h,
        issue("maker", "seal-maker"),
        issue("signer", "seal-signer"),
        issue("other-signer", "seal-signer"),
        tsa_party,
        tsa,
        folder,
        now,
        issue,
    )


@pytest.fixture(scope="session", params=["sm2", "rsa", "ec"])
def signing_pki(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SigningPki:
    """One PKI per algorithm family, made once per test session."""
    return make_signing_pki(request.param, tmp_path_factory.mktemp(f"signing-{request.param}"))


@pytest.fixture(scope="session")
def sm2_signing_pki(tmp_path_factory: pytest.TempPathFactory) -> SigningPki:
    return make_signing_pki("sm2", tmp_path_factory.mktemp("signing-sm2-only"))


@pytest.fixture(scope="session")
def rsa_signing_pki(tmp_path_factory: pytest.TempPathFactory) -> SigningPki:
    return make_signing_pki("rsa", tmp_path_factory.mktemp("signing-rsa-only"))
