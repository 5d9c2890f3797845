"""Path validation: our chains and OpenSSL-made chains, every rejection with its reason.

OpenSSL is the independent judge: each premise ("this chain is valid", "this signature is
broken", "this path is too long") is first confirmed with the OpenSSL CLI, then our verdict is
compared with it. SM2 chains are judged link by link (OpenSSL 3.0 applies ``-vfyopt distid``
to the target certificate only) and SM2 CRL / OCSP signatures over their TBS bytes with
``pkeyutl``, since OpenSSL 3.0's crl and ocsp commands cannot pass the distinguishing ID.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from asn1crypto import algos, core, crl, keys, ocsp, x509
from cryptography.exceptions import InvalidSignature
from pyhanko_certvalidator.errors import AlgorithmNotSupported
from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy
from pyhanko_certvalidator.revinfo import validate_ocsp
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

from tests.conftest import SM2_ID_OPT, Hierarchy, make_hierarchy, openssl
from trust import validation
from trust.certificates import load_certificate, make_name, to_pem
from trust.errors import MalformedInputError
from trust.ocsp import DelegatedResponder, OcspResponder, build_request, delegate
from trust.validation import (
    REASONS,
    GmAlgorithmPolicy,
    Sm2CapableSignatureValidator,
    TrustStore,
    ValidationReport,
    avalidate_chain,
    validate_chain,
    validate_crl,
)

# --------------------------------------------------------------------------------------------
# Helpers


def _write(
    folder: Path, name: str, value: x509.Certificate | bytes, kind: str = "CERTIFICATE"
) -> Path:
    path = folder / f"{name}-{secrets.token_hex(4)}.pem"
    path.write_bytes(to_pem(value, kind) if not isinstance(value, bytes) else value)
    return path


def _tbs_and_signature(folder: Path, tbs: bytes, signature: bytes) -> tuple[Path, Path]:
    tbs_path = folder / f"tbs-{secrets.token_hex(4)}.der"
    sig_path = folder / f"sig-{secrets.token_hex(4)}.der"
    tbs_path.write_bytes(tbs)
    sig_path.write_bytes(signature)
    return tbs_path, sig_path


def _public_key_pem(folder: Path, cert_pem: Path) -> Path:
    pub = folder / f"pub-{secrets.token_hex(4)}.pem"
    pub.write_bytes(openssl("x509", "-in", cert_pem, "-pubkey", "-noout").stdout)
    return pub


def sm2_signature_ok(folder: Path, issuer_pem: Path, tbs: bytes, signature: bytes) -> bool:
    """OpenSSL's word on an SM2 signature over TBS bytes, with the default ID."""
    tbs_path, sig_path = _tbs_and_signature(folder, tbs, signature)
    proc = openssl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID_OPT, "-pubin",
        "-inkey", _public_key_pem(folder, issuer_pem), "-in", tbs_path, "-sigfile", sig_path,
        check=False,
    )  # fmt: skip
    return proc.returncode == 0


def openssl_link(kind: str, issuer: Path, cert: Path, *extra: str) -> tuple[bool, str]:
    """One link, issuer taken as trusted: ``openssl verify -partial_chain`` (SM2 with its ID)."""
    opts = ["-vfyopt", SM2_ID_OPT] if kind == "sm2" else []
    proc = openssl("verify", *opts, *extra, "-partial_chain", "-CAfile", issuer, cert, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).decode(errors="replace")


def openssl_chain(
    kind: str, root: Path, intermediates: list[Path], leaf: Path, *extra: str
) -> tuple[bool, str]:
    """The whole chain for RSA; for SM2 every link (OpenSSL 3.0 cannot do an SM2 chain)."""
    if kind == "rsa":
        bundle = root.parent / f"untrusted-{secrets.token_hex(4)}.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in intermediates))
        untrusted: list[str | Path] = ["-untrusted", bundle] if intermediates else []
        proc = openssl("verify", *extra, "-CAfile", root, *untrusted, leaf, check=False)
        return proc.returncode == 0, (proc.stdout + proc.stderr).decode(errors="replace")
    chain = [root, *intermediates, leaf]
    outputs = []
    for issuer, cert in itertools.pairwise(chain):
        ok, out = openssl_link(kind, issuer, cert, *extra)
        outputs.append(out)
        if not ok:
            return False, "\n".join(outputs)
    return True, "\n".join(outputs)


# What each outcome must mean to a caller, stated here independently of the module's table.
UNDECIDED = {"NO_PATH", "REVOCATION_UNKNOWN", "ALGORITHM_UNSUPPORTED", "INTERNAL"}


def assert_report(report: ValidationReport, reason: str) -> None:
    assert report.reason == reason, report
    if reason == "OK":
        assert report.verdict == "PASSED" and report.passed
    else:
        assert report.verdict == ("INDETERMINATE" if reason in UNDECIDED else "FAILED"), report
        assert not report.passed
    assert report.message and any("\u4e00" <= ch <= "\u9fff" for ch in report.message_zh)
    assert report.message_zh == REASONS[reason].zh


def new_leaf(h: Hierarchy, profile: str = "seal-signer") -> x509.Certificate:
    key = h.new_key(f"leaf-{secrets.token_hex(6)}")
    return h.issuing.issue(
        key.public_key_info,
        make_name(
            {"C": "CN", "O": "某某市市场监督管理局", "CN": f"电子印章 {secrets.token_hex(3)}"}
        ),
        profile,
    )


@pytest.fixture(scope="module")
def stores(sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> dict[str, TrustStore]:
    return {
        "sm2": TrustStore([sm2_hierarchy.root.certificate]),
        "rsa": TrustStore([rsa_hierarchy.root.certificate]),
    }


def _ours(h: Hierarchy, stores: dict[str, TrustStore]) -> TrustStore:
    return stores[h.kind]


# --------------------------------------------------------------------------------------------
# OpenSSL-made PKIs

_OPENSSL_CONFIG = """
[req]
distinguished_name = dn
[dn]
[v3_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_ca_pathlen0]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_ca_no_certsign]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_not_ca]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_leaf_ocsp]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:http://127.0.0.1:9/ocsp
"""


class OpenSslPki:
    """Certificates made by the OpenSSL CLI only, for one algorithm."""

    def __init__(self, folder: Path, kind: str) -> None:
        self.folder = folder
        self.kind = kind
        self.config = folder / "openssl.cnf"
        self.config.write_text(_OPENSSL_CONFIG)

    def pem(self, name: str) -> Path:
        return self.folder / f"{name}.pem"

    def data(self, name: str) -> bytes:
        return self.pem(name).read_bytes()

    def key(self, name: str) -> Path:
        key = self.folder / f"{name}.key"
        if not key.exists():
            if self.kind == "sm2":
                openssl("genpkey", "-algorithm", "SM2", "-out", key)
            else:
                openssl(
                    "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key
                )
        return key

    def _sign(self, *, distid: bool = True, digest: str = "sha256") -> list[str]:
        if self.kind == "sm2":
            return ["-sm3", "-sigopt", SM2_ID_OPT] if distid else ["-sm3"]
        return [f"-{digest}"]

    def root(self, name: str) -> Path:
        openssl(
            "req", "-new", "-x509", "-config", self.config, "-extensions", "v3_root",
            "-key", self.key(name), "-utf8", "-subj", f"/C=CN/O=OpenSSL 测试/CN={name}",
            "-days", "3650", *self._sign(), "-out", self.pem(name),
        )  # fmt: skip
        return self.pem(name)

    def issue(
        self,
        name: str,
        issuer: str,
        section: str,
        *,
        key: str | None = None,
        issuer_key: str | None = None,
        subject: str | None = None,
        distid: bool = True,
        digest: str = "sha256",
    ) -> Path:
        csr = self.folder / f"{name}.csr"
        openssl(
            "req", "-new", "-config", self.config, "-key", self.key(key or name), "-utf8",
            "-subj", f"/C=CN/O=OpenSSL 测试/CN={subject or name}", *self._sign(), "-out", csr,
        )  # fmt: skip
        verify_csr = ["-vfyopt", SM2_ID_OPT] if self.kind == "sm2" else []
        openssl(
            "x509", "-req", "-in", csr, *verify_csr, "-CA", self.pem(issuer),
            "-CAkey", self.key(issuer_key or issuer), "-set_serial", str(secrets.randbits(63) | 1),
            "-days", "365", "-extfile", self.config, "-extensions", section,
            *self._sign(distid=distid, digest=digest), "-out", self.pem(name),
        )  # fmt: skip
        return self.pem(name)

    def ocsp_response(self, cert: str, issuer: str, *, revoked: bool) -> bytes:
        """An OCSP response for ``cert`` signed by its issuer (``openssl ocsp`` as responder)."""
        serial = openssl("x509", "-in", self.pem(cert), "-serial", "-noout").stdout
        serial_hex = serial.decode().strip().split("=", 1)[1]
        now = datetime.now(UTC)
        expiry = (now + timedelta(days=365)).strftime("%y%m%d%H%M%SZ")
        when = (now - timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
        status, revoked_at = ("R", f"{when},keyCompromise") if revoked else ("V", "")
        index = self.folder / f"index-{cert}-{secrets.token_hex(3)}.txt"
        index.write_text(f"{status}\t{expiry}\t{revoked_at}\t{serial_hex}\tunknown\t/CN={cert}\n")
        request = self.folder / f"{cert}-ocsp-req.der"
        response = self.folder / f"{cert}-{secrets.token_hex(3)}-ocsp-resp.der"
        openssl(
            "ocsp", "-issuer", self.pem(issuer), "-cert", self.pem(cert), "-no_nonce",
            "-reqout", request,
        )  # fmt: skip
        sign = ["-rsigopt", SM2_ID_OPT] if self.kind == "sm2" else ["-rmd", "sha256"]
        openssl(
            "ocsp", "-index", index, "-CA", self.pem(issuer), "-rsigner", self.pem(issuer),
            "-rkey", self.key(issuer), *sign, "-reqin", request, "-respout", response,
            "-ndays", "1",
        )  # fmt: skip
        return response.read_bytes()


def _build_openssl_pki(folder: Path, kind: str) -> OpenSslPki:
    pki = OpenSslPki(folder, kind)
    pki.root("root")
    pki.issue("inter", "root", "v3_ca_pathlen0")
    pki.issue("leaf", "inter", "v3_leaf")
    # inter says pathlen:0, yet certifies another CA, which certifies a leaf.
    pki.issue("sub", "inter", "v3_ca")
    pki.issue("subleaf", "sub", "v3_leaf", key="leaf")
    # An end-entity certificate (CA:FALSE) used as an issuer.
    pki.issue("notca", "inter", "v3_not_ca")
    pki.issue("notca-leaf", "notca", "v3_leaf", key="leaf")
    # A CA whose key usage lacks keyCertSign (under the root, which sets no path length).
    pki.issue("nosign", "root", "v3_ca_no_certsign")
    pki.issue("nosign-leaf", "nosign", "v3_leaf", key="leaf")
    # inter's key under another name: the leaf it signs names an issuer nobody presents.
    pki.issue("renamed", "root", "v3_ca_pathlen0", key="inter", subject="Renamed Inter")
    pki.issue("renamed-leaf", "renamed", "v3_leaf", key="leaf", issuer_key="inter")
    # Leaves whose revocation status is published by OCSP.
    pki.issue("ocsp-good", "inter", "v3_leaf_ocsp", key="leaf")
    pki.issue("ocsp-revoked", "inter", "v3_leaf_ocsp", key="leaf")
    if kind == "sm2":
        pki.issue("wrong-id", "inter", "v3_leaf", key="leaf", distid=False)
    else:
        pki.issue("sha384", "inter", "v3_leaf", key="leaf", digest="sha384")
        pki.issue("sha1", "inter", "v3_leaf", key="leaf", digest="sha1")
    return pki


@pytest.fixture(scope="module")
def openssl_sm2(tmp_path_factory: pytest.TempPathFactory) -> OpenSslPki:
    return _build_openssl_pki(tmp_path_factory.mktemp("openssl-sm2"), "sm2")


@pytest.fixture(scope="module")
def openssl_rsa(tmp_path_factory: pytest.TempPathFactory) -> OpenSslPki:
    return _build_openssl_pki(tmp_path_factory.mktemp("openssl-rsa"), "rsa")


@pytest.fixture(params=["sm2", "rsa"])
def pki(request: pytest.FixtureRequest) -> OpenSslPki:
    fixture: OpenSslPki = request.getfixturevalue(f"openssl_{request.param}")
    return fixture


def _validate_openssl(
    pki: OpenSslPki, leaf: str, *intermediates: str, **kwargs: object
) -> ValidationReport:
    kwargs.setdefault("revocation", "none")
    return validate_chain(
        pki.data(leaf),
        trust_roots=TrustStore([pki.data("root")]),
        intermediates=[pki.data(i) for i in intermediates],
        **kwargs,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------------------
# Valid chains pass


def test_our_chain_passes(
    hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path
) -> None:
    leaf = new_leaf(hierarchy)
    root_pem = _write(tmp_path, "root", hierarchy.root.certificate)
    issuing_pem = _write(tmp_path, "issuing", hierarchy.issuing.certificate)
    leaf_pem = _write(tmp_path, "leaf", leaf)
    ok, out = openssl_chain(hierarchy.kind, root_pem, [issuing_pem], leaf_pem)
    assert ok, out

    report = validate_chain(
        leaf,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        revocation="none",
    )
    assert_report(report, "OK")
    assert report.passed
    assert len(report.path) == 3 and "CN=电子印章" in report.path[0]
    assert report.path[2].endswith(f"测试根证书 {hierarchy.kind.upper()}")
    assert [c.dump() for c in report.certificates] == [
        leaf.dump(),
        hierarchy.issuing.certificate.dump(),
        hierarchy.root.certificate.dump(),
    ]
    names = {c["name"]: c["result"] for c in report.checks}
    assert names["signatures"] == "passed" and names["revocation"] == "skipped"
    algorithm = "sm2_sm3" if hierarchy.kind == "sm2" else "sha256_rsa"
    assert any(algorithm in c["detail"] for c in report.checks if c["name"] == "signatures")


def test_our_chain_passes_with_required_crls(
    hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path
) -> None:
    leaf = new_leaf(hierarchy)
    crls = [hierarchy.root.crl(), hierarchy.issuing.crl()]
    # The judge: each CRL is signed by its CA (SM2 over the TBS bytes, RSA by openssl crl).
    for ca, crl_ in zip((hierarchy.root, hierarchy.issuing), crls, strict=True):
        ca_pem = _write(tmp_path, "ca", ca.certificate)
        if hierarchy.kind == "sm2":
            assert sm2_signature_ok(
                tmp_path, ca_pem, crl_["tbs_cert_list"].dump(), crl_["signature"].native
            )
        else:
            crl_pem = _write(tmp_path, "crl", crl_, "X509 CRL")
            proc = openssl("crl", "-in", crl_pem, "-CAfile", ca_pem, "-noout", check=False)
            assert b"verify OK" in proc.stdout + proc.stderr
    report = validate_chain(
        leaf.dump(),
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate.dump()],
        crls=[c.dump() for c in crls],
        revocation="require",
    )
    assert_report(report, "OK")
    assert {c["name"]: c["result"] for c in report.checks}["revocation"] == "passed"


def test_openssl_links_use_the_sm2_id(openssl_sm2: OpenSslPki, tmp_path: Path) -> None:
    """Premise of the OpenSSL SM2 tests: ``x509 -req -sigopt distid`` really signs with the ID."""
    pki = openssl_sm2
    for issuer, cert in (("root", "inter"), ("inter", "leaf")):
        assert openssl_link("sm2", pki.pem(issuer), pki.pem(cert))[0]
        # ... and not with OpenSSL's default empty ID.
        proc = openssl(
            "verify", "-partial_chain", "-CAfile", pki.pem(issuer), pki.pem(cert), check=False
        )
        assert proc.returncode != 0
    root = load_certificate(pki.data("root"))
    assert sm2_signature_ok(
        tmp_path, pki.pem("root"), root["tbs_certificate"].dump(), root["signature_value"].native
    )


def test_openssl_chain_passes(pki: OpenSslPki) -> None:
    ok, out = openssl_chain(pki.kind, pki.pem("root"), [pki.pem("inter")], pki.pem("leaf"))
    assert ok, out
    report = _validate_openssl(pki, "leaf", "inter")
    assert_report(report, "OK")
    assert report.path[0].endswith("CN=leaf") and report.path[-1].endswith("CN=root")
    # Nothing declares a CRL or OCSP location, so hard-fail has nothing to insist on.
    assert _validate_openssl(pki, "leaf", "inter", revocation="hard-fail").passed
    # Roots may also be given as plain PEM per call (parsed each time: a TrustStore is faster).
    assert validate_chain(
        pki.data("leaf"),
        trust_roots=[pki.data("root")],
        intermediates=[pki.data("inter")],
        revocation="none",
    ).passed


def test_pem_bundle_trust_store(openssl_rsa: OpenSslPki, openssl_sm2: OpenSslPki) -> None:
    store = TrustStore.from_pem(openssl_rsa.data("root") + openssl_sm2.data("root"))
    assert len(store.roots) == 2
    for pki in (openssl_rsa, openssl_sm2):
        report = validate_chain(
            pki.data("leaf"),
            trust_roots=store,
            intermediates=[pki.data("inter")],
            revocation="none",
        )
        assert report.passed, report


def test_key_usage_asked_for_and_present(
    hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    report = validate_chain(
        new_leaf(hierarchy),
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        revocation="none",
        key_usage={"digital_signature", "non_repudiation"},
    )
    assert_report(report, "OK")
    assert {c["name"]: c["result"] for c in report.checks}["key_usage"] == "passed"


def test_extended_key_usage_present(hierarchy: Hierarchy, stores: dict[str, TrustStore]) -> None:
    tsa = new_leaf(hierarchy, "tsa")
    report = validate_chain(
        tsa,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        revocation="none",
        extended_key_usage={"time_stamping"},
    )
    assert_report(report, "OK")


# --------------------------------------------------------------------------------------------
# Rejections, each with its reason


def test_wrong_sm2_id_is_a_bad_signature(openssl_sm2: OpenSslPki) -> None:
    pki = openssl_sm2
    # Premise: the leaf verifies with OpenSSL's empty ID and not with the GM/T default one.
    assert not openssl_link("sm2", pki.pem("inter"), pki.pem("wrong-id"))[0]
    proc = openssl(
        "verify", "-partial_chain", "-CAfile", pki.pem("inter"), pki.pem("wrong-id"), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert_report(_validate_openssl(pki, "wrong-id", "inter"), "SIGNATURE_INVALID")


def test_broken_signature(
    hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path
) -> None:
    der = bytearray(new_leaf(hierarchy).dump())
    der[-1] ^= 0x01  # the last byte of the signature value (SM2: of s; RSA: of the block)
    broken = bytes(der)
    ok, out = openssl_link(
        hierarchy.kind,
        _write(tmp_path, "issuing", hierarchy.issuing.certificate),
        _write(tmp_path, "broken", to_pem(load_certificate(broken))),
    )
    assert not ok and "signature" in out
    report = validate_chain(
        broken,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        revocation="none",
    )
    assert_report(report, "SIGNATURE_INVALID")
    assert {c["name"]: c["result"] for c in report.checks}["signatures"] == "failed"


def test_expired(hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path) -> None:
    leaf = new_leaf(hierarchy)
    after = leaf.not_valid_after + timedelta(days=1)
    ok, out = openssl_link(
        hierarchy.kind,
        _write(tmp_path, "issuing", hierarchy.issuing.certificate),
        _write(tmp_path, "leaf", leaf),
        "-attime",
        str(int(after.timestamp())),
    )
    assert not ok and "expired" in out
    report = validate_chain(
        leaf,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        at=after,
        revocation="none",
    )
    assert_report(report, "EXPIRED")
    assert report.moment == after
    # The same chain a day before it expires is fine.
    assert validate_chain(
        leaf,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        at=leaf.not_valid_after - timedelta(days=1),
        revocation="none",
    ).passed


def test_not_yet_valid(hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path) -> None:
    leaf = new_leaf(hierarchy)
    before = leaf.not_valid_before - timedelta(hours=1)
    ok, out = openssl_link(
        hierarchy.kind,
        _write(tmp_path, "issuing", hierarchy.issuing.certificate),
        _write(tmp_path, "leaf", leaf),
        "-attime",
        str(int(before.timestamp())),
    )
    assert not ok and "not yet valid" in out
    report = validate_chain(
        leaf,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        at=before,
        revocation="none",
    )
    assert_report(report, "NOT_YET_VALID")


def test_revoked_leaf(hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path) -> None:
    leaf = new_leaf(hierarchy)
    serial = leaf.serial_number
    hierarchy.issuing.revoke(serial, "key_compromise")
    crls = [hierarchy.root.crl(), hierarchy.issuing.crl()]
    issuing_pem = _write(tmp_path, "issuing", hierarchy.issuing.certificate)
    crl_pem = _write(tmp_path, "crl", crls[1], "X509 CRL")
    listed = openssl("crl", "-in", crl_pem, "-noout", "-text").stdout.decode()
    assert f"{serial:X}" in listed.replace(":", "").upper()
    if hierarchy.kind == "sm2":
        assert sm2_signature_ok(
            tmp_path, issuing_pem, crls[1]["tbs_cert_list"].dump(), crls[1]["signature"].native
        )
    else:
        bundle = _write(tmp_path, "crls", b"".join(to_pem(c, "X509 CRL") for c in crls))
        ok, out = openssl_chain(
            "rsa",
            _write(tmp_path, "root", hierarchy.root.certificate),
            [issuing_pem],
            _write(tmp_path, "leaf", leaf),
            "-crl_check_all",
            "-CRLfile",
            str(bundle),
        )
        assert not ok and "revoked" in out
    report = validate_chain(
        leaf,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        crls=crls,
    )
    assert_report(report, "REVOKED")
    assert "end-entity" in report.message
    # Without revocation checking the same chain passes: the CRL is what decided.
    assert validate_chain(
        leaf,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        revocation="none",
    ).passed


@pytest.mark.parametrize("kind", ["sm2", "rsa"])
def test_revoked_intermediate(kind: str, tmp_path: Path) -> None:
    h = make_hierarchy(kind, tmp_path)
    leaf = new_leaf(h)
    h.root.revoke(h.issuing.certificate.serial_number, "ca_compromise")
    report = validate_chain(
        leaf,
        trust_roots=TrustStore([h.root.certificate]),
        intermediates=[h.issuing.certificate],
        crls=[h.root.crl(), h.issuing.crl()],
    )
    assert_report(report, "REVOKED")
    assert "intermediate" in report.message


def test_wrong_key_usage(hierarchy: Hierarchy, stores: dict[str, TrustStore]) -> None:
    leaf = new_leaf(hierarchy)
    assert "key_cert_sign" not in leaf.key_usage_value.native
    common = {
        "trust_roots": _ours(hierarchy, stores),
        "intermediates": [hierarchy.issuing.certificate],
        "revocation": "none",
    }
    report = validate_chain(leaf, key_usage={"key_cert_sign"}, **common)  # type: ignore[arg-type]
    assert_report(report, "KEY_USAGE")
    assert len(report.path) == 3  # the chain itself was fine
    assert leaf.extended_key_usage_value is None
    report = validate_chain(leaf, extended_key_usage={"time_stamping"}, **common)  # type: ignore[arg-type]
    assert_report(report, "KEY_USAGE")


def test_ca_without_cert_sign(openssl_rsa: OpenSslPki, openssl_sm2: OpenSslPki) -> None:
    ok, out = openssl_chain(
        "rsa", openssl_rsa.pem("root"), [openssl_rsa.pem("nosign")], openssl_rsa.pem("nosign-leaf")
    )
    assert not ok and "certificate signing" in out
    for pki in (openssl_rsa, openssl_sm2):
        assert_report(_validate_openssl(pki, "nosign-leaf", "nosign"), "KEY_USAGE")


def test_path_length(pki: OpenSslPki) -> None:
    if pki.kind == "rsa":
        ok, out = openssl_chain(
            "rsa", pki.pem("root"), [pki.pem("inter"), pki.pem("sub")], pki.pem("subleaf")
        )
        assert not ok and "path length" in out
    else:  # each link is sound; only the path as a whole breaks inter's pathlen:0
        assert openssl_link("sm2", pki.pem("inter"), pki.pem("sub"))[0]
        assert openssl_link("sm2", pki.pem("sub"), pki.pem("subleaf"))[0]
    report = _validate_openssl(pki, "subleaf", "inter", "sub")
    assert_report(report, "PATH_LENGTH")
    assert len(report.path) == 4


def test_end_entity_used_as_issuer(pki: OpenSslPki) -> None:
    if pki.kind == "rsa":
        ok, out = openssl_chain(
            "rsa", pki.pem("root"), [pki.pem("inter"), pki.pem("notca")], pki.pem("notca-leaf")
        )
        assert not ok and "invalid CA certificate" in out
    report = _validate_openssl(pki, "notca-leaf", "inter", "notca")
    assert_report(report, "NAME_CHAINING")
    assert "not a CA" in report.message


def test_issuer_name_does_not_chain(pki: OpenSslPki) -> None:
    """Signed with inter's key, but naming an issuer ("Renamed Inter") that nobody presents."""
    leaf = load_certificate(pki.data("renamed-leaf"))
    inter = load_certificate(pki.data("inter"))
    assert leaf.authority_key_identifier == inter.key_identifier
    assert leaf.issuer != inter.subject
    if pki.kind == "rsa":
        ok, out = openssl_chain("rsa", pki.pem("root"), [pki.pem("inter")], pki.pem("renamed-leaf"))
        assert not ok and "unable to get local issuer" in out
    report = _validate_openssl(pki, "renamed-leaf", "inter")
    assert_report(report, "NAME_CHAINING")
    assert "Renamed Inter" in report.message


def test_missing_intermediate(pki: OpenSslPki) -> None:
    report = _validate_openssl(pki, "leaf")
    assert_report(report, "NO_PATH")
    assert report.verdict == "INDETERMINATE"
    assert "CN=inter" in report.message


def test_untrusted_root(sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> None:
    leaf = new_leaf(sm2_hierarchy)
    elsewhere = TrustStore([rsa_hierarchy.root.certificate])
    # The document carries its whole chain, root included, but that root is not ours.
    report = validate_chain(
        leaf,
        trust_roots=elsewhere,
        intermediates=[sm2_hierarchy.issuing.certificate, sm2_hierarchy.root.certificate],
        revocation="none",
    )
    assert_report(report, "UNTRUSTED_ROOT")
    assert "测试根证书 SM2" in report.message
    # A self-signed certificate on its own.
    report = validate_chain(
        sm2_hierarchy.root.certificate, trust_roots=elsewhere, revocation="none"
    )
    assert_report(report, "UNTRUSTED_ROOT")
    # Without the root the chain simply stops: nothing to decide on.
    report = validate_chain(
        leaf,
        trust_roots=elsewhere,
        intermediates=[sm2_hierarchy.issuing.certificate],
        revocation="none",
    )
    assert_report(report, "NO_PATH")


def test_trusted_root_alone_passes(sm2_hierarchy: Hierarchy, stores: dict[str, TrustStore]) -> None:
    report = validate_chain(
        sm2_hierarchy.root.certificate, trust_roots=stores["sm2"], revocation="none"
    )
    assert_report(report, "OK")
    assert len(report.path) == 1


def test_required_revocation_without_data(
    hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    leaf = new_leaf(hierarchy)
    common = {
        "trust_roots": _ours(hierarchy, stores),
        "intermediates": [hierarchy.issuing.certificate],
    }
    report = validate_chain(leaf, revocation="require", **common)  # type: ignore[arg-type]
    assert_report(report, "REVOCATION_UNKNOWN")
    assert report.verdict == "INDETERMINATE"
    assert {c["name"]: c["result"] for c in report.checks}["revocation"] == "indeterminate"
    # Our certificates name a CRL location, so hard-fail insists too; soft-fail lets it pass.
    assert_report(validate_chain(leaf, revocation="hard-fail", **common), "REVOCATION_UNKNOWN")  # type: ignore[arg-type]
    assert_report(validate_chain(leaf, revocation="soft-fail", **common), "OK")  # type: ignore[arg-type]
    # Only the issuing CA's CRL: the issuing CA's own status (root's CRL) is still unknown.
    report = validate_chain(leaf, crls=[hierarchy.issuing.crl()], **common)  # type: ignore[arg-type]
    assert_report(report, "REVOCATION_UNKNOWN")


def test_crl_out_of_date_is_indeterminate(
    hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    leaf = new_leaf(hierarchy)
    crls = [hierarchy.root.crl(), hierarchy.issuing.crl()]
    next_update = crls[1]["tbs_cert_list"]["next_update"].native
    report = validate_chain(
        leaf,
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        crls=crls,
        at=next_update + timedelta(days=1),
    )
    assert_report(report, "REVOCATION_UNKNOWN")


def test_crl_with_a_bad_signature_does_not_count(
    hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    crls = [hierarchy.root.crl(), hierarchy.issuing.crl()]
    forged = bytearray(crls[1].dump())
    forged[-1] ^= 0x01
    report = validate_chain(
        new_leaf(hierarchy),
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        crls=[crls[0], bytes(forged)],
    )
    assert_report(report, "REVOCATION_UNKNOWN")


def test_sha1_signature_disallowed(openssl_rsa: OpenSslPki) -> None:
    cert = load_certificate(openssl_rsa.data("sha1"))
    assert cert["signature_algorithm"]["algorithm"].native == "sha1_rsa"
    assert_report(_validate_openssl(openssl_rsa, "sha1", "inter"), "ALGORITHM_DISALLOWED")


def test_unsupported_algorithm_is_indeterminate(openssl_rsa: OpenSslPki) -> None:
    """sha384WithRSA is valid (OpenSSL agrees) but not in our registry: we cannot decide."""
    ok, out = openssl_chain(
        "rsa", openssl_rsa.pem("root"), [openssl_rsa.pem("inter")], openssl_rsa.pem("sha384")
    )
    assert ok, out
    report = _validate_openssl(openssl_rsa, "sha384", "inter")
    assert_report(report, "ALGORITHM_UNSUPPORTED")
    assert report.verdict == "INDETERMINATE"


# --------------------------------------------------------------------------------------------
# OCSP responses made by ``openssl ocsp``


@pytest.fixture(scope="module")
def ocsp_answers(openssl_rsa: OpenSslPki, openssl_sm2: OpenSslPki) -> dict[tuple[str, str], bytes]:
    return {
        (pki.kind, name): pki.ocsp_response(name, "inter", revoked=name == "ocsp-revoked")
        for pki in (openssl_rsa, openssl_sm2)
        for name in ("ocsp-good", "ocsp-revoked")
    }


def test_ocsp_good_and_revoked(
    pki: OpenSslPki, ocsp_answers: dict[tuple[str, str], bytes], tmp_path: Path
) -> None:
    for name, expected in (("ocsp-good", "good"), ("ocsp-revoked", "revoked")):
        answer = ocsp_answers[(pki.kind, name)]
        response_file = tmp_path / f"{name}.der"
        response_file.write_bytes(answer)
        # The judge: the status OpenSSL reads, and the responder's signature.
        text = openssl(
            "ocsp", "-respin", response_file, "-noverify", "-issuer", pki.pem("inter"),
            "-cert", pki.pem(name),
        ).stdout.decode()  # fmt: skip
        assert f": {expected}" in text
        basic = ocsp.OCSPResponse.load(answer)["response_bytes"]["response"].parsed
        if pki.kind == "sm2":
            assert sm2_signature_ok(
                tmp_path,
                pki.pem("inter"),
                basic["tbs_response_data"].dump(),
                basic["signature"].native,
            )
        else:
            proc = openssl(
                "ocsp", "-respin", response_file, "-CAfile", pki.pem("root"),
                "-verify_other", pki.pem("inter"), "-issuer", pki.pem("inter"), "-cert", pki.pem(name),
                check=False,
            )  # fmt: skip
            assert b"Response verify OK" in proc.stdout + proc.stderr
        report = _validate_openssl(
            pki, name, "inter", ocsp_responses=[answer], revocation="hard-fail"
        )
        assert_report(report, "OK" if expected == "good" else "REVOKED")
    # The leaves name an OCSP responder: without an answer hard-fail cannot decide.
    report = _validate_openssl(pki, "ocsp-good", "inter", revocation="hard-fail")
    assert_report(report, "REVOCATION_UNKNOWN")


def test_ocsp_answer_for_another_certificate_does_not_count(
    pki: OpenSslPki, ocsp_answers: dict[tuple[str, str], bytes]
) -> None:
    report = _validate_openssl(
        pki,
        "ocsp-good",
        "inter",
        ocsp_responses=[ocsp_answers[(pki.kind, "ocsp-revoked")]],
        revocation="hard-fail",
    )
    assert_report(report, "REVOCATION_UNKNOWN")


# --------------------------------------------------------------------------------------------
# OCSP answers from our responder: signed by the CA itself or by a delegated responder


@pytest.fixture(scope="module")
def delegated(sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> dict[str, DelegatedResponder]:
    """A delegated responder per CA: its certificate has id-kp-OCSPSigning and ocsp-nocheck."""
    return {
        h.kind: delegate(h.issuing, h.new_key(f"ocsp-{secrets.token_hex(4)}"))
        for h in (sm2_hierarchy, rsa_hierarchy)
    }


def _basic(answer: bytes) -> ocsp.BasicOCSPResponse:
    basic: ocsp.BasicOCSPResponse = ocsp.OCSPResponse.load(answer)["response_bytes"][
        "response"
    ].parsed
    return basic


def openssl_ocsp_status(
    h: Hierarchy, answer: bytes, leaf: x509.Certificate, signer: x509.Certificate, folder: Path
) -> str:
    """OpenSSL's reading of one of our answers, after OpenSSL has checked who signed it.

    RSA: ``openssl ocsp`` verifies everything, responder authorisation included. SM2 (no
    distinguishing ID in ``openssl ocsp``): the signature over the TBS bytes with ``pkeyutl``
    and the responder certificate's link to the CA with ``openssl verify``.
    """
    issuing_pem = _write(folder, "issuing", h.issuing.certificate)
    response = folder / f"ocsp-{secrets.token_hex(4)}.der"
    response.write_bytes(answer)
    leaf_pem = _write(folder, "leaf", leaf)
    args: list[str | Path] = [
        "ocsp",
        "-respin",
        response,
        "-issuer",
        issuing_pem,
        "-cert",
        leaf_pem,
    ]
    if h.kind == "rsa":
        root_pem = _write(folder, "root", h.root.certificate)
        proc = openssl(*args, "-CAfile", root_pem, "-verify_other", issuing_pem, check=False)
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        assert "Response verify OK" in out, out
        return out
    basic = _basic(answer)
    signer_pem = _write(folder, "signer", signer)
    tbs, signature = basic["tbs_response_data"].dump(), basic["signature"].native
    assert sm2_signature_ok(folder, signer_pem, tbs, signature)
    if signer.dump() != h.issuing.certificate.dump():
        ok, out = openssl_link("sm2", issuing_pem, signer_pem)
        assert ok, out
    return openssl(*args, "-noverify").stdout.decode()


@pytest.mark.parametrize("status", ["good", "revoked"])
@pytest.mark.parametrize("signer", ["ca", "delegated"])
def test_ocsp_answers_from_our_responder(
    hierarchy: Hierarchy,
    stores: dict[str, TrustStore],
    delegated: dict[str, DelegatedResponder],
    signer: str,
    status: str,
    tmp_path: Path,
) -> None:
    """SM2 as RSA: the CA's own answers, and a delegated responder's (checked in a side path)."""
    leaf = new_leaf(hierarchy)
    if status == "revoked":
        hierarchy.issuing.revoke(leaf.serial_number, "key_compromise")
    entry = hierarchy.issuing if signer == "ca" else delegated[hierarchy.kind]
    signer_cert = (
        hierarchy.issuing.certificate if signer == "ca" else delegated[hierarchy.kind].certificate
    )
    answer = OcspResponder([entry]).respond(build_request(hierarchy.issuing.certificate, [leaf]))
    assert f": {status}" in openssl_ocsp_status(hierarchy, answer, leaf, signer_cert, tmp_path)
    # The root's CRL answers for the issuing CA; the OCSP answer alone for the leaf.
    common = {
        "trust_roots": _ours(hierarchy, stores),
        "intermediates": [hierarchy.issuing.certificate],
        "crls": [hierarchy.root.crl()],
        "revocation": "require",
    }
    report = validate_chain(leaf, ocsp_responses=[answer], **common)  # type: ignore[arg-type]
    assert_report(report, "OK" if status == "good" else "REVOKED")
    if status == "revoked":
        assert "end-entity" in report.message and "OCSP" in report.message
    else:
        assert {c["name"]: c["result"] for c in report.checks}["revocation"] == "passed"
    assert_report(validate_chain(leaf, **common), "REVOCATION_UNKNOWN")  # type: ignore[arg-type]


def test_responder_context_hook_leaves_other_users_alone(sm2_hierarchy: Hierarchy) -> None:
    """Outside our validations certvalidator's side context keeps its own default validator."""
    side_context = vars(validate_ocsp)["ValidationContext"]  # the name the hook repoints
    roots = [sm2_hierarchy.root.certificate]
    assert isinstance(side_context(trust_roots=roots).sig_validator, DefaultSignatureValidator)
    mine = Sm2CapableSignatureValidator()
    assert side_context(trust_roots=roots, signature_validator=mine).sig_validator is mine


def test_forged_delegated_responder_certificate_does_not_count(
    hierarchy: Hierarchy,
    stores: dict[str, TrustStore],
    delegated: dict[str, DelegatedResponder],
    tmp_path: Path,
) -> None:
    """The responder's certificate travels outside the signed part of an answer: it is checked.

    Its signature is broken here; the answer's own signature stays valid, so only the check of
    the responder certificate (in certvalidator's side context) can refuse it.
    """
    responder = delegated[hierarchy.kind]
    leaf = new_leaf(hierarchy)
    answer = OcspResponder([responder]).respond(
        build_request(hierarchy.issuing.certificate, [leaf])
    )
    genuine = responder.certificate.dump()
    assert answer.count(genuine) == 1
    tampered = bytearray(genuine)
    tampered[-1] ^= 0x01  # the last byte of the certificate's signature
    forged = answer.replace(genuine, bytes(tampered))
    ok, out = openssl_link(
        hierarchy.kind,
        _write(tmp_path, "issuing", hierarchy.issuing.certificate),
        _write(tmp_path, "forged", to_pem(load_certificate(bytes(tampered)))),
    )
    assert not ok and "signature" in out
    assert _basic(forged)["tbs_response_data"].dump() == _basic(answer)["tbs_response_data"].dump()
    common = {
        "trust_roots": _ours(hierarchy, stores),
        "intermediates": [hierarchy.issuing.certificate],
        "crls": [hierarchy.root.crl()],
    }
    assert_report(validate_chain(leaf, ocsp_responses=[answer], **common), "OK")  # type: ignore[arg-type]
    report = validate_chain(leaf, ocsp_responses=[forged], **common)  # type: ignore[arg-type]
    assert_report(report, "REVOCATION_UNKNOWN")


# --------------------------------------------------------------------------------------------
# Bad input: a report, never an exception


def _garbage(good: bytes) -> Iterator[object]:
    yield b""
    yield b"not a certificate"
    yield secrets.token_bytes(300)
    yield good[: len(good) // 2]
    yield good + b"\x00"
    yield b"-----BEGIN CERTIFICATE-----\nbm90IGRlcg==\n-----END CERTIFICATE-----\n"
    yield to_pem(load_certificate(good), "PRIVATE KEY")
    yield b"\x30\x82\xff\xff" + good[4:]
    yield 12345
    yield "a string"


def test_garbage_certificate_is_malformed(
    sm2_hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    good = new_leaf(sm2_hierarchy).dump()
    for junk in _garbage(good):
        report = validate_chain(junk, trust_roots=stores["sm2"], revocation="none")  # type: ignore[arg-type]
        assert_report(report, "MALFORMED")
        assert report.checks[0]["name"] == "format" and report.checks[0]["result"] == "failed"


def test_garbage_anywhere_is_malformed(
    sm2_hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    leaf = new_leaf(sm2_hierarchy)
    junk = secrets.token_bytes(200)
    common = {"trust_roots": stores["sm2"], "intermediates": [sm2_hierarchy.issuing.certificate]}
    assert_report(validate_chain(leaf, crls=[junk], **common), "MALFORMED")  # type: ignore[arg-type]
    assert_report(validate_chain(leaf, ocsp_responses=[junk], **common), "MALFORMED")  # type: ignore[arg-type]
    assert_report(
        validate_chain(leaf, trust_roots=stores["sm2"], intermediates=[junk], revocation="none"),
        "MALFORMED",
    )
    assert_report(validate_chain(leaf, trust_roots=[junk], revocation="none"), "MALFORMED")


def test_api_misuse_raises(sm2_hierarchy: Hierarchy, stores: dict[str, TrustStore]) -> None:
    leaf = new_leaf(sm2_hierarchy)
    with pytest.raises(MalformedInputError):
        validate_chain(leaf, trust_roots=stores["sm2"], revocation="sometimes")  # type: ignore[arg-type]
    with pytest.raises(MalformedInputError):
        validate_chain(leaf, trust_roots=stores["sm2"], at=datetime(2030, 1, 1))
    with pytest.raises(MalformedInputError):
        TrustStore([])
    with pytest.raises(MalformedInputError):
        TrustStore([b"junk"])


def test_unexpected_error_is_an_indeterminate_report(
    hierarchy: Hierarchy,
    stores: dict[str, TrustStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What nobody foresaw (here: a library failing oddly) is logged and left undecided."""

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated library failure")

    leaf = new_leaf(hierarchy)
    common = {"trust_roots": _ours(hierarchy, stores), "revocation": "none"}
    monkeypatch.setattr(Sm2CapableSignatureValidator, "validate_signature", fail)
    with caplog.at_level(logging.ERROR, logger="trust.validation"):
        report = validate_chain(leaf, intermediates=[hierarchy.issuing.certificate], **common)  # type: ignore[arg-type]
    assert_report(report, "INTERNAL")
    assert "RuntimeError" in report.message
    assert report.checks[-1]["name"] == "internal"
    assert report.checks[-1]["result"] == "indeterminate"
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert logged and logged[0].levelno == logging.ERROR

    caplog.clear()
    monkeypatch.setattr(validation, "verify_signed", fail)
    with caplog.at_level(logging.ERROR, logger="trust.validation"):
        report = validate_crl(hierarchy.root.crl(), **common)  # type: ignore[arg-type]
    assert_report(report, "INTERNAL")
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


_T = TypeVar("_T")


def _even_signature(make: Callable[[], _T], signature: Callable[[_T], core.Asn1Value]) -> _T:
    """An object whose signature ends in a 0 bit: asn1crypto then drops one unused bit unseen."""
    for _ in range(64):
        value = make()
        if signature(value).contents[-1] % 2 == 0:
            return value
    pytest.fail("64 signatures in a row ended in a 1 bit")


def _one_unused_bit(der: bytes, signature: core.Asn1Value) -> bytes:
    """``der`` with the signature BIT STRING claiming one unused bit (same length, same octets)."""
    contents = bytes(signature.contents)
    at = der.rfind(contents)
    assert contents[0] == 0 and at > 0 and der.count(contents) == 1
    return der[:at] + b"\x01" + der[at + 1 :]


def test_signature_bit_strings_with_unused_bits_are_refused(
    hierarchy: Hierarchy, stores: dict[str, TrustStore], delegated: dict[str, DelegatedResponder]
) -> None:
    """A second encoding of a signed object (another fingerprint) must not pass for the first."""
    store = _ours(hierarchy, stores)
    issuing = hierarchy.issuing.certificate
    leaf = _even_signature(lambda: new_leaf(hierarchy), lambda c: c["signature_value"])
    odd_leaf = _one_unused_bit(leaf.dump(), leaf["signature_value"])
    # The premise: asn1crypto reads the very same signature octets from the odd encoding.
    odd = x509.Certificate.load(odd_leaf)["signature_value"]
    assert odd.contents[0] == 1 and odd.native == leaf["signature_value"].native
    assert validate_chain(
        leaf, trust_roots=store, intermediates=[issuing], revocation="none"
    ).passed
    report = validate_chain(odd_leaf, trust_roots=store, intermediates=[issuing], revocation="none")
    assert_report(report, "MALFORMED")
    assert "unused bits" in report.message
    # Trust roots are read by the same parser.
    assert_report(validate_chain(leaf, trust_roots=[odd_leaf], revocation="none"), "MALFORMED")

    root_crl = _even_signature(hierarchy.root.crl, lambda c: c["signature"])
    odd_crl = _one_unused_bit(root_crl.dump(), root_crl["signature"])
    assert crl.CertificateList.load(odd_crl)["signature"].native == root_crl["signature"].native
    assert validate_crl(root_crl, trust_roots=store).passed
    assert_report(validate_crl(odd_crl, trust_roots=store), "MALFORMED")
    chain = {"trust_roots": store, "intermediates": [issuing], "revocation": "require"}
    issuing_crl = hierarchy.issuing.crl()
    assert validate_chain(leaf, crls=[root_crl, issuing_crl], **chain).passed  # type: ignore[arg-type]
    assert_report(validate_chain(leaf, crls=[odd_crl, issuing_crl], **chain), "MALFORMED")  # type: ignore[arg-type]

    responder = OcspResponder([delegated[hierarchy.kind]])
    answer = _even_signature(
        lambda: responder.respond(build_request(issuing, [leaf], nonce=secrets.token_bytes(16))),
        lambda a: _basic(a)["signature"],
    )
    odd_answer = _one_unused_bit(answer, _basic(answer)["signature"])
    assert validate_chain(leaf, crls=[root_crl], ocsp_responses=[answer], **chain).passed  # type: ignore[arg-type]
    report = validate_chain(leaf, crls=[root_crl], ocsp_responses=[odd_answer], **chain)  # type: ignore[arg-type]
    assert_report(report, "MALFORMED")
    # The responder certificate inside the answer is outside its signature: refused alike.
    other = _even_signature(
        lambda: delegate(hierarchy.issuing, hierarchy.new_key(f"ocsp-{secrets.token_hex(4)}")),
        lambda d: d.certificate["signature_value"],
    )
    answer = OcspResponder([other]).respond(build_request(issuing, [leaf]))
    cert = other.certificate
    odd_cert_answer = answer.replace(
        cert.dump(), _one_unused_bit(cert.dump(), cert["signature_value"])
    )
    assert validate_chain(leaf, crls=[root_crl], ocsp_responses=[answer], **chain).passed  # type: ignore[arg-type]
    report = validate_chain(leaf, crls=[root_crl], ocsp_responses=[odd_cert_answer], **chain)  # type: ignore[arg-type]
    assert_report(report, "MALFORMED")


# --------------------------------------------------------------------------------------------
# CRLs on their own: validate_crl


def _crl_judged(h: Hierarchy, ca: str, folder: Path) -> crl.CertificateList:
    """A fresh CRL of ``ca`` ("root" or "issuing"), its signature first confirmed by OpenSSL."""
    authority = h.root if ca == "root" else h.issuing
    value = authority.crl()
    ca_pem = _write(folder, ca, authority.certificate)
    if h.kind == "sm2":
        tbs, signature = value["tbs_cert_list"].dump(), value["signature"].native
        assert sm2_signature_ok(folder, ca_pem, tbs, signature)
    else:
        crl_pem = _write(folder, "crl", value, "X509 CRL")
        proc = openssl("crl", "-in", crl_pem, "-CAfile", ca_pem, "-noout", check=False)
        assert b"verify OK" in proc.stdout + proc.stderr
    return value


def test_validate_crl(hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path) -> None:
    store = _ours(hierarchy, stores)
    root_crl = _crl_judged(hierarchy, "root", tmp_path)
    issuing_crl = _crl_judged(hierarchy, "issuing", tmp_path)
    report = validate_crl(root_crl.dump(), trust_roots=store)
    assert_report(report, "OK")
    assert {c["name"]: c["result"] for c in report.checks}["crl_issuer"] == "passed"
    # The issuing CA's CRL: its issuer is validated as a chain, for cRLSign, with the root's CRL.
    common = {"trust_roots": store, "intermediates": [hierarchy.issuing.certificate]}
    report = validate_crl(issuing_crl, crls=[root_crl], revocation="require", **common)  # type: ignore[arg-type]
    assert_report(report, "OK")
    assert len(report.path) == 2
    assert_report(validate_crl(issuing_crl, trust_roots=store), "NO_PATH")
    forged = bytearray(issuing_crl.dump())
    forged[-1] ^= 0x01
    assert_report(validate_crl(bytes(forged), **common), "SIGNATURE_INVALID")  # type: ignore[arg-type]
    for junk in (b"", b"not a CRL", secrets.token_bytes(200), 12345):
        assert_report(validate_crl(junk, trust_roots=store), "MALFORMED")  # type: ignore[arg-type]


def test_validate_crl_api_misuse_raises_and_bad_roots_are_malformed(
    sm2_hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    """The same contract as validate_chain: misuse raises, a bad trust root list is reported."""
    root_crl = sm2_hierarchy.root.crl()
    with pytest.raises(MalformedInputError):
        validate_crl(root_crl, trust_roots=stores["sm2"], at=datetime(2030, 1, 1))
    with pytest.raises(MalformedInputError):
        validate_crl(root_crl, trust_roots=stores["sm2"], revocation="sometimes")  # type: ignore[arg-type]
    for roots in ([], [b"junk"], [root_crl.dump()]):
        report = validate_crl(root_crl, trust_roots=roots)
        assert_report(report, "MALFORMED")
        assert report.checks[-1]["name"] == "format"
        assert_report(
            validate_chain(sm2_hierarchy.issuing.certificate, trust_roots=roots), "MALFORMED"
        )


def test_crl_not_yet_valid(
    hierarchy: Hierarchy, stores: dict[str, TrustStore], tmp_path: Path
) -> None:
    root_crl = hierarchy.root.crl()
    this_update = root_crl["tbs_cert_list"]["this_update"].native
    before = this_update - timedelta(minutes=1)
    assert hierarchy.root.certificate.not_valid_before < before
    if hierarchy.kind == "rsa":  # OpenSSL cannot check an SM2 CRL's signature with the ID
        root_pem = _write(tmp_path, "root", hierarchy.root.certificate)
        crl_pem = _write(tmp_path, "crl", root_crl, "X509 CRL")

        def openssl_at(moment: datetime) -> tuple[bool, str]:
            when = str(int(moment.timestamp()))
            crl_args = ("-crl_check", "-CRLfile", str(crl_pem), "-attime", when)
            return openssl_chain("rsa", root_pem, [], root_pem, *crl_args)

        ok, out = openssl_at(before)
        assert not ok and "CRL is not yet valid" in out
        assert openssl_at(this_update)[0]
    report = validate_crl(root_crl, trust_roots=_ours(hierarchy, stores), at=before)
    assert_report(report, "NOT_YET_VALID")
    assert {c["name"]: c["result"] for c in report.checks}["crl_fresh"] == "failed"
    assert validate_crl(root_crl, trust_roots=_ours(hierarchy, stores), at=this_update).passed


def test_crl_signature_check_survives_library_errors(
    hierarchy: Hierarchy, stores: dict[str, TrustStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """asn1crypto may raise ValueError on hostile input: that is no valid signature, not a crash."""

    def unreadable(*args: object, **kwargs: object) -> None:
        raise ValueError("simulated asn1crypto parse error")

    monkeypatch.setattr(validation, "verify_signed", unreadable)
    report = validate_crl(hierarchy.root.crl(), trust_roots=_ours(hierarchy, stores))
    assert_report(report, "SIGNATURE_INVALID")


# --------------------------------------------------------------------------------------------
# The report, async use, and the reuse of parsed objects


def test_report_is_json_ready(hierarchy: Hierarchy, stores: dict[str, TrustStore]) -> None:
    report = validate_chain(
        new_leaf(hierarchy),
        trust_roots=_ours(hierarchy, stores),
        intermediates=[hierarchy.issuing.certificate],
        revocation="none",
        key_usage={"key_cert_sign"},
    )
    data = json.loads(json.dumps(report.to_dict(), ensure_ascii=False))
    assert data["verdict"] == "FAILED" and data["reason"] == "KEY_USAGE"
    assert data["message_zh"] == "证书用途不符"
    assert {c["name"] for c in data["checks"]} >= {"format", "path", "signatures", "key_usage"}
    assert all(
        c["result"] in {"passed", "failed", "indeterminate", "skipped"} for c in data["checks"]
    )


def test_reported_certificates_cannot_alter_later_results(
    sm2_hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    leaf = new_leaf(sm2_hierarchy).dump()
    kwargs = {
        "trust_roots": stores["sm2"],
        "intermediates": [sm2_hierarchy.issuing.certificate.dump()],
        "revocation": "none",
    }
    first = validate_chain(leaf, **kwargs)  # type: ignore[arg-type]
    assert first.passed
    first.certificates[1]["tbs_certificate"]["subject"] = make_name({"CN": "tampered"})
    first.certificates[0]["tbs_certificate"]["serial_number"] = 1
    second = validate_chain(leaf, **kwargs)  # type: ignore[arg-type]
    assert second.passed
    assert second.certificates[0].dump() == leaf


def test_async_api_and_sync_api_inside_a_running_loop(
    sm2_hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    leaf = new_leaf(sm2_hierarchy)
    kwargs = {
        "trust_roots": stores["sm2"],
        "intermediates": [sm2_hierarchy.issuing.certificate],
        "revocation": "none",
    }

    async def handler() -> tuple[ValidationReport, ValidationReport]:
        asynchronous = await avalidate_chain(leaf, **kwargs)  # type: ignore[arg-type]
        synchronous = validate_chain(leaf, **kwargs)  # type: ignore[arg-type]  # inside the loop
        return asynchronous, synchronous

    first, second = asyncio.run(handler())
    assert first.passed and second.passed
    assert first.path == second.path


def test_threads_share_parsed_certificates(
    hierarchy: Hierarchy, stores: dict[str, TrustStore]
) -> None:
    """Parsed certificates and the signature cache are shared: many threads, same answers."""
    leaves = [new_leaf(hierarchy).dump() for _ in range(3)]
    broken = bytearray(leaves[0])
    broken[-1] ^= 0x01
    inputs = [*leaves, bytes(broken)] * 6
    expected = ["OK"] * 3 + ["SIGNATURE_INVALID"]
    intermediates = [hierarchy.issuing.certificate.dump()]

    def check(data: bytes) -> str:
        return validate_chain(
            data,
            trust_roots=_ours(hierarchy, stores),
            intermediates=intermediates,
            revocation="none",
        ).reason

    with ThreadPoolExecutor(max_workers=4) as pool:
        reasons = list(pool.map(check, inputs))
    assert reasons == expected * 6


# --------------------------------------------------------------------------------------------
# The certvalidator hooks on their own


def test_signature_validator(sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> None:
    validator = Sm2CapableSignatureValidator()
    for h in (sm2_hierarchy, rsa_hierarchy):
        cert = h.issuing.certificate
        args = (
            cert["signature_value"].native,
            cert["tbs_certificate"].dump(),
            h.root.certificate.public_key,
            cert["signature_algorithm"],
        )
        validator.validate_signature(*args)
        validator.validate_signature(*args)  # a remembered success is still a success
        with pytest.raises(InvalidSignature):
            validator.validate_signature(args[0], args[1] + b"\x00", *args[2:])
        with pytest.raises(InvalidSignature):  # same signature and data, another key
            validator.validate_signature(*args[:2], h.issuing.certificate.public_key, args[3])
        bad = bytearray(args[0])
        bad[-1] ^= 1
        for _ in range(2):  # failures are never remembered as successes
            with pytest.raises(InvalidSignature):
                validator.validate_signature(bytes(bad), *args[1:])
    # SM2 is checked with the GM/T 0009 default ID: another ID does not verify.
    cert = sm2_hierarchy.issuing.certificate
    with pytest.raises(InvalidSignature):
        Sm2CapableSignatureValidator(sm2_id=b"").validate_signature(
            cert["signature_value"].native,
            cert["tbs_certificate"].dump(),
            sm2_hierarchy.root.certificate.public_key,
            cert["signature_algorithm"],
        )


def test_signature_validator_accepts_openssl_empty_id_only_when_asked(
    openssl_sm2: OpenSslPki,
) -> None:
    leaf = load_certificate(openssl_sm2.data("wrong-id"))
    inter = load_certificate(openssl_sm2.data("inter"))
    args = (
        leaf["signature_value"].native,
        leaf["tbs_certificate"].dump(),
        inter.public_key,
        leaf["signature_algorithm"],
    )
    Sm2CapableSignatureValidator(sm2_id=b"").validate_signature(*args)
    with pytest.raises(InvalidSignature):
        Sm2CapableSignatureValidator().validate_signature(*args)


def test_signature_validator_unsupported(openssl_rsa: OpenSslPki) -> None:
    leaf = load_certificate(openssl_rsa.data("sha384"))
    inter = load_certificate(openssl_rsa.data("inter"))
    with pytest.raises(AlgorithmNotSupported):
        Sm2CapableSignatureValidator().validate_signature(
            leaf["signature_value"].native,
            leaf["tbs_certificate"].dump(),
            inter.public_key,
            leaf["signature_algorithm"],
        )


def test_algorithm_policy(sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> None:
    policy = GmAlgorithmPolicy()  # type: ignore[no-untyped-call]
    default = DisallowWeakAlgorithmsPolicy()  # type: ignore[no-untyped-call]
    sm2_key: keys.PublicKeyInfo = sm2_hierarchy.root.certificate.public_key
    rsa_key: keys.PublicKeyInfo = rsa_hierarchy.root.certificate.public_key
    now = datetime.now(UTC)

    def sig(name: str) -> algos.SignedDigestAlgorithm:
        return algos.SignedDigestAlgorithm({"algorithm": name})

    assert policy.signature_algorithm_allowed(sig("sm2_sm3"), now, sm2_key)
    assert policy.signature_algorithm_allowed(sig("sm2_sm3"), now, None)
    assert not policy.signature_algorithm_allowed(sig("sm2_sm3"), now, rsa_key)
    assert policy.digest_algorithm_allowed(algos.DigestAlgorithm({"algorithm": "sm3"}), now)
    for name in ("md5", "sha1"):
        assert not policy.digest_algorithm_allowed(algos.DigestAlgorithm({"algorithm": name}), now)
    for name in ("md5_rsa", "sha1_rsa", "sha1_ecdsa"):
        assert not policy.signature_algorithm_allowed(sig(name), now, None)
    for name in ("sha256_rsa", "sha384_rsa", "sha256_ecdsa", "sha1_rsa", "md5_rsa"):
        for key in (rsa_key, None):
            assert bool(policy.signature_algorithm_allowed(sig(name), now, key)) == bool(
                default.signature_algorithm_allowed(sig(name), now, key)
            )
