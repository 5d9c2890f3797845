"""SM2 and RSA 3-certificate chain validations per second (root -> issuing -> leaf).

The reference is the raw signature work of one validation (two verifications) from
`openssl speed` in the same run, i.e. the ceiling if validation cost nothing but crypto.
"""

from __future__ import annotations

import itertools
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import openssl_speed, rate, row
from trust.ca import CertificateAuthority, self_signed_root
from trust.certificates import make_name
from trust.repository import MemoryRepository
from trust.softkeys import SoftwareKeyStore
from trust.validation import RevocationMode, TrustStore, validate_chain

LEAVES = 2000  # more than validation caches (256) and than one measurement uses


def run(seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        store = SoftwareKeyStore.open(Path(folder) / "keys")
        return _measure(store, "sm2", "sm2", seconds) + _measure(
            store, "rsa-2048", "rsa2048", seconds
        )


def _measure(store: SoftwareKeyStore, spec: str, speed_name: str, seconds: float) -> list[str]:
    repo = MemoryRepository()
    now = datetime.now(UTC)
    root_key = store.generate(f"root-{spec}", spec)
    root_cert = self_signed_root(root_key, make_name({"CN": f"根 {spec}"}), now=now)
    root = CertificateAuthority("root", root_cert, root_key, repo)
    issuing_key = store.generate(f"issuing-{spec}", spec)
    issuing_cert = root.issue(
        issuing_key.public_key_info, make_name({"O": "示范盟", "CN": f"签发 {spec}"}), "issuing-ca"
    )
    issuing = CertificateAuthority("issuing", issuing_cert, issuing_key, repo)
    leaf_key = store.generate(f"leaf-{spec}", spec).public_key_info
    leaves = [
        issuing.issue(
            leaf_key, make_name({"O": "示范盟市场监督管理局", "CN": f"印章 {i}"}), "seal-signer"
        ).dump()
        for i in range(LEAVES)
    ]
    trust = TrustStore([root.certificate])
    crls = [root.crl(), issuing.crl()]
    fresh = itertools.cycle(leaves)
    reference = openssl_speed(speed_name, int(max(seconds, 1)))[1] / 2

    def check(revocation: RevocationMode, leaf: bytes | None = None) -> None:
        report = validate_chain(
            leaf or next(fresh),
            trust_roots=trust,
            intermediates=[issuing_cert],
            crls=crls if revocation != "none" else (),
            revocation=revocation,
        )
        assert report.passed, report.message

    target = "target >= 300/s" if spec == "sm2" else ""
    return [
        row(
            f"{spec} chain, new leaf each time",
            rate(lambda: check("none"), seconds, 10),
            reference,
            target,
        ),
        row(
            f"{spec} chain, same leaf again",
            rate(lambda: check("none", leaves[0]), seconds, 10),
            reference,
        ),
        row(
            f"{spec} chain + CRLs required, new leaf",
            rate(lambda: check("require"), seconds, 10),
            reference,
        ),
    ]
