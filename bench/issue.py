"""Certificates issued per second by one process (SM2 and RSA issuing CAs, in-memory records)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import openssl_speed, rate, row
from trust.ca import CertificateAuthority, self_signed_root
from trust.certificates import make_name
from trust.repository import MemoryRepository
from trust.softkeys import SoftwareKeyStore


def _ca(store: SoftwareKeyStore, spec: str) -> CertificateAuthority:
    key = store.generate(f"ca-{spec}", spec)
    cert = self_signed_root(
        key, make_name({"C": "CN", "O": "基准测试", "CN": f"根 {spec}"}), now=datetime.now(UTC)
    )
    return CertificateAuthority(f"ca-{spec}", cert, key, MemoryRepository())


def run(seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        store = SoftwareKeyStore.open(Path(folder) / "keys")
        lines = []
        reference = {
            "sm2": openssl_speed("sm2", int(max(seconds, 1)))[0],
            "rsa-2048": openssl_speed("rsa2048", int(max(seconds, 1)))[0],
        }
        for spec in ("sm2", "rsa-2048"):
            ca = _ca(store, spec)
            subject_key = store.generate(f"leaf-{spec}", spec).public_key_info
            name = make_name({"C": "CN", "O": "示范盟市场监督管理局", "CN": "电子印章"})
            issued = rate(
                lambda ca=ca, k=subject_key, n=name: ca.issue(k, n, "seal-signer"),
                seconds,
                batch=20,
            )
            target = "target >= 1,000/s" if spec == "sm2" else ""
            lines.append(
                row(
                    f"certificates issued, {spec} (vs raw openssl sign)",
                    issued,
                    reference[spec],
                    target,
                )
            )
        return lines
