"""Certificates, profiles, CSRs and CRLs, with the OpenSSL CLI as the judge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import csr, keys, x509

from tests.conftest import SM2_ID_OPT, Hierarchy, openssl, openssl_csr, openssl_key
from trust.ca import CertificateAuthority
from trust.certificates import (
    CertificateBuilder,
    key_identifier,
    load_certificate,
    make_name,
    random_serial,
    to_pem,
    unarmor,
)
from trust.crl import load_crl, verify_crl
from trust.errors import (
    AlreadyRevokedError,
    BuilderError,
    CaError,
    CertificateNotFoundError,
    CsrError,
    InvalidSignatureError,
    MalformedInputError,
    ProfileError,
    UnsupportedAlgorithmError,
    WeakKeyError,
)
from trust.profiles import PROFILES


def _write(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(to_pem(cert))
    return path


def _check_chain_with_openssl(h: Hierarchy, leaf: x509.Certificate, tmp: Path) -> None:
    root = _write(tmp / "root.pem", h.root.certificate)
    issuing = _write(tmp / "issuing.pem", h.issuing.certificate)
    leaf_path = _write(tmp / "leaf.pem", leaf)
    if h.kind == "rsa":
        out = openssl("verify", "-check_ss_sig", "-CAfile", root, "-untrusted", issuing, leaf_path)
        assert b": OK" in out.stdout
        return
    # OpenSSL 3.0 applies the SM2 ID to the target only: check each link on its own.
    for issuer, target in ((root, issuing), (issuing, leaf_path)):
        out = openssl("verify", "-vfyopt", SM2_ID_OPT, "-partial_chain", "-CAfile", issuer, target)
        assert b": OK" in out.stdout
    # The root's self-signature: its TBS bytes under its own key.
    _pkeyutl_verify(
        h.root.certificate["tbs_certificate"].dump(),
        h.root.certificate.signature,
        h.root.certificate,
        tmp,
    )


def _pkeyutl_verify(tbs: bytes, sig: bytes, signer: x509.Certificate, tmp: Path) -> None:
    (tmp / "tbs").write_bytes(tbs)
    (tmp / "sig").write_bytes(sig)
    (tmp / "pub.der").write_bytes(signer.public_key.dump())
    out = openssl(
        "pkeyutl",
        "-verify",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        SM2_ID_OPT,
        "-pubin",
        "-keyform",
        "DER",
        "-inkey",
        tmp / "pub.der",
        "-in",
        tmp / "tbs",
        "-sigfile",
        tmp / "sig",
    )
    assert b"Verified Successfully" in out.stdout


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "root-ca"])
def test_every_profile_passes_openssl(hierarchy: Hierarchy, profile: str, tmp_path: Path) -> None:
    key = hierarchy.new_key(f"p-{profile}-{random_serial():x}"[:60])
    if profile == "issuing-ca":  # pathLen 0: the issuing CA certifies no CA; the root does
        with pytest.raises(CaError, match="path length"):
            hierarchy.issuing.issue(key.public_key_info, make_name("CN=sub"), profile)
        cert = hierarchy.root.issue(key.public_key_info, make_name("CN=二级签发"), profile)
        assert cert.max_path_length == 0
        return
    cert = hierarchy.issuing.issue(
        key.public_key_info,
        make_name({"C": "CN", "O": "测试盟市场监督管理局", "CN": f"测试 {profile}"}),
        profile,
        identity={"organization_code": "91150100MA0N0000X1"} if profile == "seal-signer" else None,
    )
    _check_chain_with_openssl(hierarchy, cert, tmp_path)
    text = openssl("x509", "-in", tmp_path / "leaf.pem", "-noout", "-text").stdout.decode()
    if profile == "ocsp-signer":
        assert "OCSP Signing" in text and "OCSP No Check" in text
    if profile == "tsa":
        assert "X509v3 Extended Key Usage: critical" in text and "Time Stamping" in text
    if profile in ("seal-signer", "seal-maker", "person-signer"):
        assert "Digital Signature, Non Repudiation" in text
        assert "CA:FALSE" in text
    if profile == "seal-signer":
        assert "1.2.156.10260.4.1.4" in text
    assert "CRL Distribution Points" in text and "caIssuers" in text.replace(
        "CA Issuers", "caIssuers"
    )


def test_chain_structure(hierarchy: Hierarchy) -> None:
    root, issuing = hierarchy.root.certificate, hierarchy.issuing.certificate
    assert root.self_signed == "maybe" and root.ca
    assert issuing.ca and issuing.max_path_length == 0
    assert issuing.issuer.dump() == root.subject.dump()
    assert issuing.authority_key_identifier == root.key_identifier
    assert issuing.key_identifier == key_identifier(issuing.public_key)
    assert x509.Certificate.load(issuing.dump()).native["tbs_certificate"]["validity"][
        "not_before"
    ] < datetime.now(UTC)
    assert "测试盟政务服务局" in issuing.subject.human_friendly
    serial = issuing.serial_number
    assert 0 < serial < 2**128
    assert hierarchy.repository.get_certificate(hierarchy.root.name, serial) is not None


def test_openssl_made_csr_is_certified(hierarchy: Hierarchy, tmp_path: Path) -> None:
    req = openssl_csr(tmp_path, hierarchy.kind, "/C=CN/O=测试单位/CN=张三")
    cert = hierarchy.issuing.issue_from_csr(req.read_bytes(), "person-signer")
    assert cert.subject.native["common_name"] == "张三"
    _check_chain_with_openssl(hierarchy, cert, tmp_path)


def test_sm2_csr_without_id_is_refused_with_advice(
    sm2_hierarchy: Hierarchy, tmp_path: Path
) -> None:
    req = openssl_csr(tmp_path, "sm2", "/CN=x", sm2_id=False)
    with pytest.raises(CsrError, match="distid:1234567812345678") as info:
        sm2_hierarchy.issuing.issue_from_csr(req.read_bytes(), "person-signer")
    assert info.value.code == "CSR_SM2_ID_MISSING"


def test_bad_csrs(rsa_hierarchy: Hierarchy, tmp_path: Path) -> None:
    der = openssl_csr(tmp_path, "rsa", "/CN=x", der=True).read_bytes()
    cases = {
        "CSR_MALFORMED": [
            b"",
            b"garbage",
            der[: len(der) // 2],
            b"-----BEGIN CERTIFICATE REQUEST-----\nxx\n",
        ],
        "CSR_BAD_SIGNATURE": [der[:-1] + bytes([der[-1] ^ 1])],
    }
    for code, inputs in cases.items():
        for bad in inputs:
            with pytest.raises(CsrError) as info:
                rsa_hierarchy.issuing.issue_from_csr(bad, "person-signer")
            assert info.value.code == code
    with pytest.raises(ProfileError):
        rsa_hierarchy.issuing.issue_from_csr(der, "no-such-profile")


def test_small_rsa_keys_are_refused(rsa_hierarchy: Hierarchy, tmp_path: Path) -> None:
    huge = keys.PublicKeyInfo(
        {
            "algorithm": {"algorithm": "rsa"},
            "public_key": keys.RSAPublicKey({"modulus": 2**6143 + 1, "public_exponent": 65537}),
        }
    )
    with pytest.raises(UnsupportedAlgorithmError, match="6144 bits"):
        rsa_hierarchy.issuing.issue(huge, make_name("CN=x"), "person-signer")
    req = openssl_csr(tmp_path, "rsa-1024", "/CN=x")
    with pytest.raises((WeakKeyError, CsrError)):
        rsa_hierarchy.issuing.issue_from_csr(req.read_bytes(), "person-signer")


def test_builder_is_immutable_and_strict() -> None:
    base = CertificateBuilder()
    named = base.subject_name(make_name("CN=a"))
    assert base is not named and base._subject is None
    with pytest.raises(BuilderError):
        named.subject_name(make_name("CN=b"))
    with pytest.raises(BuilderError, match="missing"):
        named.tbs(__import__("trust.algorithms", fromlist=["SM2_SM3"]).SM2_SM3)
    with pytest.raises(BuilderError):
        base.serial_number(0)
    with pytest.raises(BuilderError):
        base.not_valid_before(datetime(2026, 1, 1))  # naive
    with pytest.raises(MalformedInputError):
        make_name("XX=1")
    with pytest.raises(MalformedInputError, match="twice"):
        make_name("CN=a,CN=b")
    with pytest.raises(MalformedInputError, match="1-64"):
        make_name({"CN": "名" * 65})
    assert make_name("/C=CN/O=甲,乙/CN=x").native["organization_name"] == "甲,乙"


def test_revocation_and_crl(hierarchy: Hierarchy, tmp_path: Path) -> None:
    key = hierarchy.new_key(f"rev-{random_serial():x}"[:40])
    cert = hierarchy.issuing.issue(
        key.public_key_info, make_name("C=CN,CN=待吊销"), "person-signer"
    )
    first = load_crl(to_pem(hierarchy.issuing.crl(), "X509 CRL"))
    hierarchy.issuing.revoke(cert.serial_number, "key_compromise")
    with pytest.raises(AlreadyRevokedError):
        hierarchy.issuing.revoke(cert.serial_number, "superseded")
    with pytest.raises(CertificateNotFoundError):
        hierarchy.issuing.revoke(random_serial(), "superseded")
    with pytest.raises(MalformedInputError):
        hierarchy.issuing.revoke(cert.serial_number, "bored")
    crl = hierarchy.issuing.crl()
    assert crl.crl_number_value.native > first.crl_number_value.native
    serials = {
        e["user_certificate"].native: e for e in crl["tbs_cert_list"]["revoked_certificates"]
    }
    assert serials[cert.serial_number].crl_reason_value.native == "key_compromise"
    verify_crl(crl, hierarchy.issuing.certificate)
    with pytest.raises(InvalidSignatureError):
        verify_crl(crl, hierarchy.root.certificate)
    path = tmp_path / "issuing.crl"
    path.write_bytes(to_pem(crl, "X509 CRL"))
    text = openssl("crl", "-in", path, "-noout", "-text").stdout.decode()
    assert format(cert.serial_number, "X") in text.replace(":", "") and "Key Compromise" in text
    if hierarchy.kind == "rsa":
        _write(tmp_path / "ca.pem", hierarchy.issuing.certificate)
        assert (
            b"verify OK"
            in openssl(
                "crl", "-verify", "-noout", "-CAfile", tmp_path / "ca.pem", "-in", path
            ).stderr
        )
        leaf = _write(tmp_path / "leaf.pem", cert)
        _write(tmp_path / "root.pem", hierarchy.root.certificate)
        (tmp_path / "chain.pem").write_bytes(
            (tmp_path / "root.pem").read_bytes() + (tmp_path / "ca.pem").read_bytes()
        )
        out = openssl(
            "verify",
            "-crl_check",
            "-CAfile",
            tmp_path / "chain.pem",
            "-CRLfile",
            path,
            leaf,
            check=False,
        )
        assert b"certificate revoked" in out.stdout + out.stderr
    else:
        _pkeyutl_verify(
            crl["tbs_cert_list"].dump(),
            crl["signature"].native,
            hierarchy.issuing.certificate,
            tmp_path,
        )


def test_expired_ca_cannot_issue(tmp_path: Path) -> None:
    from tests.conftest import make_hierarchy

    h = make_hierarchy("sm2", tmp_path, now=datetime.now(UTC) - timedelta(days=365 * 30))
    late = CertificateAuthority(
        "issuing-sm2",
        h.issuing.certificate,
        h.issuing.key,
        h.repository,
        clock=lambda: datetime.now(UTC),
    )
    with pytest.raises(Exception, match="expired"):
        late.issue(h.new_key("late").public_key_info, make_name("CN=late"), "person-signer")


def test_garbage_certificates_are_refused() -> None:
    for bad in (
        b"",
        b"\x30\x82\xff\xff",
        b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    ):
        with pytest.raises(MalformedInputError):
            load_certificate(bad)


def test_rsa_pss_requests(rsa_hierarchy: Hierarchy, tmp_path: Path) -> None:
    """OpenSSL signs PSS requests with its longest salt (222 bytes here): the stated one counts."""
    key = openssl_key(tmp_path / "k.pem", "rsa")
    req = tmp_path / "pss.pem"
    openssl(
        "req",
        "-new",
        "-key",
        key,
        "-subj",
        "/CN=pss",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sha256",
        "-out",
        req,
    )
    cert = rsa_hierarchy.issuing.issue_from_csr(req.read_bytes(), "person-signer")
    assert cert.subject.native["common_name"] == "pss"
    # The same request claiming PSS without parameters is refused cleanly, not with a crash.
    request = csr.CertificationRequest.load(
        unarmor(req.read_bytes(), "CSR", ("CERTIFICATE REQUEST",))
    )
    bare = csr.CertificationRequest(
        {
            "certification_request_info": request["certification_request_info"],
            "signature_algorithm": {"algorithm": "rsassa_pss"},
            "signature": request["signature"],
        }
    )
    with pytest.raises(CsrError) as info:
        rsa_hierarchy.issuing.issue_from_csr(bare.dump(), "person-signer")
    assert info.value.code == "CSR_UNSUPPORTED_ALGORITHM"


def test_identity_values_must_be_printable_strings(sm2_hierarchy: Hierarchy) -> None:
    key = sm2_hierarchy.new_key(f"id-{random_serial():x}"[:40])
    for bad in ("a@b_c*d!", "", "身份证", "x" * 65):
        with pytest.raises(MalformedInputError):
            sm2_hierarchy.issuing.issue(
                key.public_key_info,
                make_name("CN=x"),
                "seal-signer",
                identity={"organization_code": bad},
            )
    cert = sm2_hierarchy.issuing.issue(
        key.public_key_info,
        make_name("CN=x"),
        "person-signer",
        identity={"identify_code": "11010519491231002X"},
    )
    ext = next(
        e
        for e in cert["tbs_certificate"]["extensions"]
        if e["extn_id"].dotted == "1.2.156.10260.4.1.1"
    )
    assert ext["extn_value"].parsed.chosen.native == "11010519491231002X"


def test_subjects_from_requests_are_bounded(rsa_hierarchy: Hierarchy, tmp_path: Path) -> None:
    req = openssl_csr(tmp_path, "rsa", "/DC=example/CN=x")
    with pytest.raises(MalformedInputError, match="unsupported name attribute"):
        rsa_hierarchy.issuing.issue_from_csr(req.read_bytes(), "person-signer")
