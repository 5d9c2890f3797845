"""Shared fixtures: a software keystore, SM2 and RSA hierarchies, and the OpenSSL CLI as judge."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trust.ca import CertificateAuthority, self_signed_root
from trust.certificates import make_name
from trust.keys import KeyHandle
from trust.profiles import IssuerPointers
from trust.repository import MemoryRepository
from trust.softkeys import SoftwareKeyStore

pytest_plugins = ["tests.db_fixtures", "tests.softhsm", "tests.signing_pki"]

IN_CI = os.environ.get("CI") == "true"
SM2_ID_OPT = "distid:1234567812345678"


def require_tool(name: str) -> str:
    """Path of a command the tests need; under CI a missing one fails instead of skipping."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def openssl(
    *args: str | Path, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the OpenSSL CLI; with ``check`` a non-zero exit fails the test with its stderr."""
    exe = require_tool("openssl")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, input=input, timeout=60)
    if check and proc.returncode != 0:
        pytest.fail(
            f"openssl {' '.join(map(str, args))} failed:\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


def openssl_key(path: Path, kind: str) -> Path:
    """A private key made by OpenSSL: ``sm2``, ``rsa`` (2048 bits) or ``rsa-BITS``."""
    if kind == "sm2":
        openssl("genpkey", "-algorithm", "SM2", "-out", path)
    else:
        bits = kind.partition("-")[2] or "2048"
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", path)
    return path


def openssl_csr(
    folder: Path, kind: str, subject: str = "/CN=test", *, sm2_id: bool = True, der: bool = False
) -> Path:
    """A PKCS#10 request made by OpenSSL; SM2 ones signed with the standard ID unless told not."""
    key = openssl_key(folder / "csr-key.pem", kind)
    out = folder / ("req.der" if der else "req.pem")
    args: list[str | Path] = ["req", "-new", "-key", key, "-subj", subject, "-utf8", "-out", out]
    if kind == "sm2":
        args += ["-sm3", *(["-sigopt", SM2_ID_OPT] if sm2_id else [])]
    if der:
        args += ["-outform", "DER"]
    openssl(*args)
    return out


@dataclass
class Hierarchy:
    """A root CA and an issuing CA below it, sharing one repository."""

    kind: str  # "sm2" or "rsa"
    root: CertificateAuthority
    issuing: CertificateAuthority
    keystore: SoftwareKeyStore
    repository: MemoryRepository

    def new_key(self, label: str) -> KeyHandle:
        return self.keystore.generate(label, "sm2" if self.kind == "sm2" else "rsa-2048")


def make_hierarchy(kind: str, folder: Path, now: datetime | None = None) -> Hierarchy:
    now = now or datetime.now(UTC)
    spec = "sm2" if kind == "sm2" else "rsa-2048"
    store = SoftwareKeyStore.open(folder / "keys")
    repo = MemoryRepository()
    root_key = store.generate(f"root-{kind}", spec)
    root_cert = self_signed_root(
        root_key,
        make_name({"C": "CN", "O": "测试盟政务服务局", "CN": f"测试根证书 {kind.upper()}"}),
        now=now,
    )
    base = "http://127.0.0.1:8000/pki"
    root = CertificateAuthority(
        f"root-{kind}",
        root_cert,
        root_key,
        repo,
        pointers=IssuerPointers(
            f"{base}/crl/root-{kind}.crl", f"{base}/ocsp", f"{base}/ca/root-{kind}.crt"
        ),
        clock=lambda: now,
    )
    issuing_key = store.generate(f"issuing-{kind}", spec)
    issuing_cert = root.issue(
        issuing_key.public_key_info,
        make_name({"C": "CN", "O": "测试盟政务服务局", "CN": f"测试签发证书 {kind.upper()}"}),
        "issuing-ca",
    )
    issuing = CertificateAuthority(
        f"issuing-{kind}",
        issuing_cert,
        issuing_key,
        repo,
        pointers=IssuerPointers(
            f"{base}/crl/issuing-{kind}.crl", f"{base}/ocsp", f"{base}/ca/issuing-{kind}.crt"
        ),
        clock=lambda: now,
    )
    return Hierarchy(kind, root, issuing, store, repo)


@pytest.fixture(scope="session")
def sm2_hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Hierarchy:
    return make_hierarchy("sm2", tmp_path_factory.mktemp("sm2-pki"))


@pytest.fixture(scope="session")
def rsa_hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Hierarchy:
    return make_hierarchy("rsa", tmp_path_factory.mktemp("rsa-pki"))


@pytest.fixture(params=["sm2", "rsa"])
def hierarchy(
    request: pytest.FixtureRequest, sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy
) -> Hierarchy:
    """Each test using this runs once with SM2 and once with RSA: the two are peers."""
    return sm2_hierarchy if request.param == "sm2" else rsa_hierarchy
