"""Detached CMS signatures (signing/cms.py), with the OpenSSL CLI as the judge.

RSA and ECDSA signatures go through ``openssl cms -verify`` both ways (ours verified by OpenSSL,
OpenSSL's verified by us). OpenSSL 3.0's ``cms`` cannot pass the SM2 distinguishing ID, so SM2
signatures are judged piecewise: ``openssl dgst -sm3 -verify`` with the default ID over the
signed attributes (re-tagged as SET OF) and ``hashlib`` SM3 for the messageDigest.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, core, keys, pem

from signing.cms import MAX_SIGNATURE, sign_detached, verify_detached
from signing.context import VerifyContext
from signing.report import Report
from tests.conftest import SM2_ID_OPT, openssl
from tests.signing_pki import Party, SigningPki
from trust.algorithms import RSA_PSS_SHA256, SM2_SM3
from trust.certificates import make_name, to_pem
from trust.der import sequence, set_of, tlv
from trust.errors import ConfigurationError, MalformedInputError, UnsupportedAlgorithmError

DATA = "市场主体登记 办结结果 2024-0001\n".encode()


class _ContentInfo(core.Sequence):
    """A ContentInfo whose content is read as SignedData whatever its type OID (GM/T or not)."""

    _fields = [  # noqa: RUF012
        ("content_type", core.ObjectIdentifier),
        ("content", cms.SignedData, {"explicit": 0}),
    ]


def _signed_data(signature: bytes) -> tuple[str, cms.SignedData]:
    info = _ContentInfo.load(signature)
    return info["content_type"].dotted, info["content"]


def _rewrite(signature: bytes, change: Callable[[cms.SignedData], None]) -> bytes:
    """The signature re-encoded after ``change`` edited its SignedData (signed parts kept)."""
    info = _ContentInfo.load(signature)
    change(info["content"])
    return bytes(info.dump(force=True))


def _checks(rep: Report) -> dict[str, str]:
    return {c["name"]: c["result"] for c in rep.checks}


def _sign(pki: SigningPki, data: bytes = DATA, **kwargs: Any) -> bytes:
    kwargs.setdefault("signing_time", pki.now)
    return sign_detached(data, pki.signer.key, pki.signer.cert, chain=pki.chain, **kwargs)


def _flip_signature(signature: bytes) -> bytes:
    """The same CMS with the last octet of the signer's signature value changed."""
    _, sd = _signed_data(signature)
    value = sd["signer_infos"][0]["signature"].native
    assert signature.count(value) == 1
    return signature.replace(value, value[:-1] + bytes([value[-1] ^ 0x01]))


@pytest.fixture(scope="module")
def timestamped(signing_pki: SigningPki) -> bytes:
    return _sign(signing_pki, timestamper=signing_pki.timestamper)


# --- round trip and failures (SM2, RSA and ECDSA alike) -------------------------------------


def test_timestamped_signature_passes_with_the_timestamp_checked(
    signing_pki: SigningPki, timestamped: bytes
) -> None:
    rep = verify_detached(timestamped, DATA, signing_pki.context())
    assert (rep.verdict, rep.reason, rep.format) == ("PASSED", "OK", "cms"), rep.message
    checks = _checks(rep)
    for name in (
        "cms.parse",
        "cms.message_digest",
        "cms.signature",
        "cms.signing_certificate",
        "timestamp",
        "signer.chain",
    ):
        assert checks[name] == "passed", (name, rep.checks)
    assert rep.details["gen_time"] == signing_pki.now.isoformat()
    assert rep.details["validation_time"] == rep.details["gen_time"]
    expected = {"sm2": "sm2-sm3", "rsa": "rsa-pkcs1-sha256", "ec": "ecdsa-p256-sha256"}
    assert rep.details["signature_algorithm"] == expected[signing_pki.kind]
    assert "signer" in rep.details["signer"]


def test_untimestamped_signature_is_judged_at_its_signing_time(signing_pki: SigningPki) -> None:
    """(The claim is an attacker's to choose: timestamps are what make it trustworthy.)"""
    moment = signing_pki.now - timedelta(hours=2)
    rep = verify_detached(_sign(signing_pki, signing_time=moment), DATA, signing_pki.context())
    assert rep.passed, rep.message
    assert _checks(rep)["timestamp"] == "skipped"
    assert "gen_time" not in rep.details
    assert rep.details["validation_time"] == moment.isoformat()


def test_swapped_content_is_a_hash_failure(signing_pki: SigningPki, timestamped: bytes) -> None:
    rep = verify_detached(timestamped, DATA + b" ", signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")
    assert _checks(rep)["cms.message_digest"] == "failed"


def test_flipped_signature_is_a_crypto_failure(signing_pki: SigningPki) -> None:
    rep = verify_detached(_flip_signature(_sign(signing_pki)), DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "SIG_CRYPTO_FAILURE")
    assert _checks(rep)["cms.signature"] == "failed"


def test_crypto_failure_outranks_an_unknown_chain(signing_pki: SigningPki) -> None:
    flipped = _flip_signature(_sign(signing_pki))
    assert verify_detached(flipped, DATA, signing_pki.untrusting_context()).reason == (
        "SIG_CRYPTO_FAILURE"
    )
    assert verify_detached(
        _sign(signing_pki), b"other", signing_pki.untrusting_context()
    ).reason == ("HASH_FAILURE")


def test_untrusted_signer_is_indeterminate(signing_pki: SigningPki, timestamped: bytes) -> None:
    rep = verify_detached(timestamped, DATA, signing_pki.untrusting_context())
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    checks = _checks(rep)
    assert checks["cms.signature"] == "passed"
    assert checks["timestamp"] == "indeterminate"
    assert checks["signer.chain"] == "indeterminate"


def test_a_signer_of_another_pki_is_indeterminate(
    signing_pki: SigningPki, sm2_signing_pki: SigningPki, rsa_signing_pki: SigningPki
) -> None:
    other = rsa_signing_pki if signing_pki.kind == "sm2" else sm2_signing_pki
    rep = verify_detached(_sign(signing_pki), DATA, other.context())
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")


def test_damaged_timestamp_is_timestamp_invalid(
    signing_pki: SigningPki, timestamped: bytes
) -> None:
    # The token is the last value of the SignerInfo, itself last in the SignedData: the final
    # octet is the last octet of the TSA's signature value.
    damaged = timestamped[:-1] + bytes([timestamped[-1] ^ 0x01])
    rep = verify_detached(damaged, DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "TIMESTAMP_INVALID")
    assert _checks(rep)["timestamp"] == "failed"
    assert _checks(rep)["cms.signature"] == "passed"


def test_revoked_signer_fails(signing_pki: SigningPki) -> None:
    party = signing_pki.new_party("revoked-signer")
    signature = sign_detached(
        DATA, party.key, party.cert, chain=signing_pki.chain, signing_time=signing_pki.now
    )
    signing_pki.h.issuing.revoke(party.cert.serial_number, "key_compromise")
    rep = verify_detached(signature, DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "REVOKED"), rep.message
    assert _checks(rep)["cms.signature"] == "passed"


def test_signature_claimed_after_the_certificate_expired_fails(signing_pki: SigningPki) -> None:
    """Without a timestamp the signer's claimed time is used, so a late claim shows."""
    late = signing_pki.signer.cert.not_valid_after + timedelta(days=1)
    later = signing_pki.context(at=late + timedelta(days=30), revocation="none")
    rep = verify_detached(_sign(signing_pki, signing_time=late), DATA, later)
    assert (rep.verdict, rep.reason) == ("FAILED", "EXPIRED"), rep.message


def test_a_signing_time_in_the_future_is_judged_now(signing_pki: SigningPki) -> None:
    future = signing_pki.now + timedelta(days=3650)
    rep = verify_detached(_sign(signing_pki, signing_time=future), DATA, signing_pki.context())
    assert rep.passed, rep.message
    assert rep.details["signing_time"] == future.isoformat()
    assert rep.details["validation_time"] == signing_pki.now.isoformat()


def test_a_ca_key_may_not_sign_documents(signing_pki: SigningPki) -> None:
    issuing = signing_pki.h.issuing
    signature = sign_detached(
        DATA,
        issuing.key,
        issuing.certificate,
        chain=signing_pki.chain,
        signing_time=signing_pki.now,
    )
    rep = verify_detached(signature, DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "CHAIN_CONSTRAINTS_FAILURE")
    assert _checks(rep)["signer.key_usage"] == "failed"


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"garbage, not a signature",
        b"\x30\x03\x02\x01\x01",
        b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\x00\x00",  # BER, indefinite
        b"\x30\x84\xff\xff\xff\xff",  # a length far beyond the data
        b"-----BEGIN CMS-----\nbm90IGRlcg==\n-----END CMS-----\n",
    ],
)
def test_garbage_is_a_format_failure_report(signing_pki: SigningPki, damage: bytes) -> None:
    rep = verify_detached(damage, DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")
    assert _checks(rep)["cms.parse"] == "failed"


def test_no_truncation_or_byte_flip_raises(signing_pki: SigningPki, timestamped: bytes) -> None:
    context = signing_pki.context()
    for cut in range(0, len(timestamped), 7):
        rep = verify_detached(timestamped[:cut], DATA, context)
        assert rep.reason == "FORMAT_FAILURE", cut
    # Octets no signature covers: the digestAlgorithms list, the embedded copies of the CA
    # certificates (the trust store has the genuine ones) and the unsigned attributes (a
    # damaged attribute type is an unknown attribute, ignored; the token has unsigned fields
    # of its own). A damaged token signature is tested above.
    _, sd = _signed_data(timestamped)
    algorithms = sd["digest_algorithms"].dump()
    unsigned = sd["signer_infos"][0]["unsigned_attrs"].dump()
    uncovered = [
        (timestamped.find(algorithms), timestamped.find(algorithms) + len(algorithms)),
        (timestamped.find(unsigned), len(timestamped)),
    ]
    for cert in signing_pki.chain:
        start = timestamped.find(cert.dump())
        while start >= 0:
            uncovered.append((start, start + len(cert.dump())))
            start = timestamped.find(cert.dump(), start + 1)
    step = max(1, len(timestamped) // 150)
    passed = []
    for pos in range(0, len(timestamped), step):
        damaged = timestamped[:pos] + bytes([timestamped[pos] ^ 0x5A]) + timestamped[pos + 1 :]
        rep = verify_detached(damaged, DATA, context)
        if rep.passed and not any(start <= pos < end for start, end in uncovered):
            passed.append(pos)
    assert passed == []


def test_trailing_bytes_and_oversized_input_are_refused(
    signing_pki: SigningPki, timestamped: bytes
) -> None:
    assert verify_detached(timestamped + b"\x00", DATA, signing_pki.context()).reason == (
        "FORMAT_FAILURE"
    )
    huge = b"\x30\x84" + (MAX_SIGNATURE).to_bytes(4, "big") + bytes(MAX_SIGNATURE)
    assert verify_detached(huge, DATA, signing_pki.context()).reason == "FORMAT_FAILURE"


def test_a_signature_of_many_tiny_values_is_refused_quickly(signing_pki: SigningPki) -> None:
    # A CRL field of 100 000 NULLs inserted before the signer infos: nothing parses it.
    outer, sd = _signed_data(_sign(signing_pki))
    fields = [sd[name].dump() for name in ("version", "digest_algorithms", "encap_content_info")]
    fields += [sd["certificates"].dump(), tlv(0xA1, b"\x05\x00" * 100_000)]
    fields.append(sd["signer_infos"].dump())
    hostile = sequence(core.ObjectIdentifier(outer).dump(), tlv(0xA0, sequence(*fields)))
    started = time.perf_counter()
    rep = verify_detached(hostile, DATA, signing_pki.context())
    assert rep.reason == "FORMAT_FAILURE"
    assert "more than" in rep.message
    assert time.perf_counter() - started < 1


def test_pem_input_is_accepted(signing_pki: SigningPki, timestamped: bytes) -> None:
    armoured = pem.armor("CMS", timestamped)
    assert verify_detached(armoured, DATA, signing_pki.context()).passed


def test_detached_signature_without_content_is_a_format_failure(
    signing_pki: SigningPki, timestamped: bytes
) -> None:
    rep = verify_detached(timestamped, None, signing_pki.context())
    assert rep.reason == "FORMAT_FAILURE"
    assert "content" in rep.message


def test_structure_uses_the_gm_identifiers_for_sm2_only(
    signing_pki: SigningPki, timestamped: bytes
) -> None:
    outer, sd = _signed_data(timestamped)
    signer = sd["signer_infos"][0]
    econtent_type = sd["encap_content_info"]["content_type"].dotted
    digest = signer["digest_algorithm"]["algorithm"].dotted
    signature_alg = signer["signature_algorithm"]["algorithm"].dotted
    if signing_pki.kind == "sm2":
        assert outer == "1.2.156.10197.6.1.4.2.2"
        assert econtent_type == "1.2.156.10197.6.1.4.2.1"
        assert digest == "1.2.156.10197.1.401"
        assert signature_alg == "1.2.156.10197.1.301.1"
    else:
        assert outer == "1.2.840.113549.1.7.2"
        assert econtent_type == "1.2.840.113549.1.7.1"
        assert digest == "2.16.840.1.101.3.4.2.1"
    assert sd["version"].native == "v1"
    assert sd["encap_content_info"]["content"].native is None  # detached
    names = [a["type"].native for a in signer["signed_attrs"]]
    assert sorted(names) == sorted(
        ["content_type", "message_digest", "signing_time", "signing_certificate_v2"]
    )
    unsigned = [a["type"].native for a in signer["unsigned_attrs"]]
    assert unsigned == ["signature_time_stamp_token"]
    embedded = {c.chosen.dump() for c in sd["certificates"]}
    assert signing_pki.signer.cert.dump() in embedded
    assert {c.dump() for c in signing_pki.chain} <= embedded


def test_other_content_types_are_signed_data_version_3(signing_pki: SigningPki) -> None:
    oid = "1.2.156.3005.2.99.1"
    signature = _sign(signing_pki, content_type=oid)
    _, sd = _signed_data(signature)
    assert sd["version"].native == "v3"
    assert sd["encap_content_info"]["content_type"].dotted == oid
    rep = verify_detached(signature, DATA, signing_pki.context())
    assert rep.passed and rep.details["content_type"] == oid
    with pytest.raises(MalformedInputError):
        _sign(signing_pki, content_type="not an oid")


def test_signing_refuses_a_key_that_is_not_the_certificates(signing_pki: SigningPki) -> None:
    with pytest.raises(ConfigurationError):
        sign_detached(DATA, signing_pki.other_signer.key, signing_pki.signer.cert)
    if signing_pki.kind != "sm2":
        with pytest.raises(UnsupportedAlgorithmError):
            _sign(signing_pki, algorithm=SM2_SM3)


# --- OpenSSL as the judge (RSA, ECDSA) -----------------------------------------------------


rsa_and_ec = pytest.mark.parametrize("signing_pki", ["rsa", "ec"], indirect=True)
"""OpenSSL 3.0's cms cannot pass the SM2 distinguishing ID: these run for RSA and ECDSA only."""


def _openssl_verify(pki: SigningPki, signature: bytes, folder: Path, *options: str) -> int:
    """``openssl cms -verify`` of a detached DER signature over DATA; its exit status."""
    sig, data = folder / "sig.der", folder / "data.bin"
    sig.write_bytes(signature)
    data.write_bytes(DATA)
    args: list[str | Path] = ["cms", "-verify", "-binary", "-inform", "DER", "-in", sig]
    args += ["-content", data, "-CAfile", pki.bundle(), *options, "-out", "/dev/null"]
    return openssl(*args, check=False).returncode


@rsa_and_ec
def test_openssl_verifies_our_signature(
    signing_pki: SigningPki, timestamped: bytes, tmp_path: Path
) -> None:
    # seal-signer certificates have no extended key usage and the key usage S/MIME signing
    # needs, so the default purpose (smimesign) accepts them as "any" does. -cades also checks
    # the ESS signing-certificate-v2 attribute against the signer.
    assert _openssl_verify(signing_pki, timestamped, tmp_path, "-purpose", "any", "-cades") == 0
    assert _openssl_verify(signing_pki, timestamped, tmp_path) == 0


@rsa_and_ec
def test_openssl_rejects_our_signature_over_other_content(
    signing_pki: SigningPki, tmp_path: Path
) -> None:
    signature = _sign(signing_pki, DATA + b"!")
    assert _openssl_verify(signing_pki, signature, tmp_path, "-purpose", "any") != 0


@rsa_and_ec
def test_openssl_rejects_a_swapped_ess_certificate(signing_pki: SigningPki, tmp_path: Path) -> None:
    # Same key, a second certificate: the ESS attribute names the first one only.
    twin = signing_pki.h.issuing.issue(
        signing_pki.signer.key.public_key_info,
        make_name({"C": "CN", "O": "测试盟市场监督管理局", "CN": "twin"}),
        "seal-signer",
    )

    def swap(sd: cms.SignedData) -> None:
        sd["certificates"] = [twin, *signing_pki.chain]
        sd["signer_infos"][0]["sid"] = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": twin.issuer, "serial_number": twin.serial_number},
        )

    forged = _rewrite(_sign(signing_pki), swap)
    assert _openssl_verify(signing_pki, forged, tmp_path, "-purpose", "any") == 0  # no ESS check
    assert _openssl_verify(signing_pki, forged, tmp_path, "-purpose", "any", "-cades") != 0
    rep = verify_detached(forged, DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")
    assert _checks(rep)["cms.signature"] == "passed"
    assert _checks(rep)["cms.signing_certificate"] == "failed"


def test_openssl_verifies_our_rsa_pss_signature(
    rsa_signing_pki: SigningPki, tmp_path: Path
) -> None:
    signature = _sign(rsa_signing_pki, algorithm=RSA_PSS_SHA256)
    _, sd = _signed_data(signature)
    assert sd["signer_infos"][0]["signature_algorithm"]["algorithm"].native == "rsassa_pss"
    assert _openssl_verify(rsa_signing_pki, signature, tmp_path, "-purpose", "any", "-cades") == 0
    rep = verify_detached(signature, DATA, rsa_signing_pki.context())
    assert rep.passed and rep.details["signature_algorithm"] == "rsa-pss-sha256"


def _openssl_context(pki: SigningPki) -> VerifyContext:
    """OpenSSL signs at the wall-clock time, after the test PKI's CRLs expire: no revocation."""
    return pki.context(revocation="none")


def _openssl_party(pki: SigningPki, folder: Path, algorithm: str) -> tuple[Path, Path]:
    """A key made by OpenSSL, certified by the test PKI: (key file, certificate file)."""
    key = folder / "openssl-key.pem"
    if algorithm == "EC":
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    else:
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    spki = openssl("pkey", "-in", key, "-pubout", "-outform", "DER").stdout
    cert = pki.h.issuing.issue(
        keys.PublicKeyInfo.load(spki),
        make_name({"C": "CN", "O": "测试盟市场监督管理局", "CN": f"openssl {algorithm}"}),
        "seal-signer",
    )
    cert_file = folder / "openssl-cert.pem"
    cert_file.write_bytes(to_pem(cert))
    return key, cert_file


@pytest.mark.parametrize(
    ("algorithm", "options", "expected"),
    [
        ("RSA", [], "rsa-pkcs1-sha256"),
        ("RSA", ["-keyopt", "rsa_padding_mode:pss"], "rsa-pss-sha256"),
        ("EC", [], "ecdsa-p256-sha256"),
    ],
)
def test_we_verify_a_detached_signature_made_by_openssl(
    rsa_signing_pki: SigningPki,
    tmp_path: Path,
    algorithm: str,
    options: list[str],
    expected: str,
) -> None:
    key, cert = _openssl_party(rsa_signing_pki, tmp_path, algorithm)
    data, out = tmp_path / "data.bin", tmp_path / "sig.der"
    data.write_bytes(DATA)
    openssl(
        "cms", "-sign", "-binary", "-md", "sha256", "-in", data, "-signer", cert, "-inkey", key,
        *options, "-outform", "DER", "-out", out,
    )  # fmt: skip
    signature = out.read_bytes()
    _, sd = _signed_data(signature)
    assert sd["encap_content_info"]["content"].native is None  # detached is OpenSSL's default
    rep = verify_detached(signature, DATA, _openssl_context(rsa_signing_pki))
    assert rep.passed, rep.message
    assert rep.details["signature_algorithm"] == expected
    assert verify_detached(signature, DATA[:-1], _openssl_context(rsa_signing_pki)).reason == (
        "HASH_FAILURE"
    )
    # OpenSSL embeds only the signer's certificate: the issuing CA comes from the trust store.
    assert verify_detached(signature, DATA, rsa_signing_pki.untrusting_context()).verdict == (
        "INDETERMINATE"
    )


def test_we_verify_attached_content_made_by_openssl(
    rsa_signing_pki: SigningPki, tmp_path: Path
) -> None:
    key, cert = _openssl_party(rsa_signing_pki, tmp_path, "RSA")
    data, out = tmp_path / "data.bin", tmp_path / "sig.pem"
    data.write_bytes(DATA)
    openssl(
        "cms", "-sign", "-binary", "-nodetach", "-in", data, "-signer", cert, "-inkey", key,
        "-outform", "PEM", "-out", out,
    )  # fmt: skip
    signature = out.read_bytes()
    assert signature.startswith(b"-----BEGIN CMS-----")
    context = _openssl_context(rsa_signing_pki)
    rep = verify_detached(signature, None, context)
    assert rep.passed, rep.message
    assert rep.details["attached"] is True
    assert verify_detached(signature, DATA, context).passed
    rep = verify_detached(signature, b"other content", context)
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")


def test_we_verify_two_signers_made_by_openssl(rsa_signing_pki: SigningPki, tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    key1, cert1 = _openssl_party(rsa_signing_pki, first, "RSA")
    key2, cert2 = _openssl_party(rsa_signing_pki, second, "EC")
    data, out = tmp_path / "data.bin", tmp_path / "sig.der"
    data.write_bytes(DATA)
    openssl(
        "cms", "-sign", "-binary", "-in", data, "-signer", cert1, "-inkey", key1,
        "-signer", cert2, "-inkey", key2, "-outform", "DER", "-out", out,
    )  # fmt: skip
    rep = verify_detached(out.read_bytes(), DATA, _openssl_context(rsa_signing_pki))
    assert rep.passed, rep.message
    assert len(rep.signatures) == 2
    rep = verify_detached(out.read_bytes(), DATA + b"x", _openssl_context(rsa_signing_pki))
    assert rep.reason == "HASH_FAILURE"


# --- SM2, judged piecewise ------------------------------------------------------------------


def test_sm2_signature_verifies_with_openssl_dgst_and_hashlib(
    sm2_signing_pki: SigningPki, tmp_path: Path
) -> None:
    pki = sm2_signing_pki
    signature = _sign(pki)
    _, sd = _signed_data(signature)
    signer = sd["signer_infos"][0]
    # What was signed: the signed attributes re-tagged as SET OF, as on the wire.
    attrs = tmp_path / "attrs.der"
    attrs.write_bytes(set_of(signer["signed_attrs"].contents))
    sig = tmp_path / "sig.bin"
    sig.write_bytes(signer["signature"].native)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(_public_pem(pki.signer))
    out = openssl("dgst", "-sm3", "-verify", pub, "-sigopt", SM2_ID_OPT, "-signature", sig, attrs)
    assert b"Verified OK" in out.stdout
    digest = next(
        a["values"][0].native
        for a in signer["signed_attrs"]
        if a["type"].native == "message_digest"
    )
    assert digest == hashlib.new("sm3", DATA).digest()
    # A different ID does not verify: the default one was used.
    wrong = openssl(
        "dgst", "-sm3", "-verify", pub, "-sigopt", "distid:0000000000000000",
        "-signature", sig, attrs, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0


def test_sm2_pkcs7_and_sm2_sm3_identifiers_are_accepted_on_read(
    sm2_signing_pki: SigningPki,
) -> None:
    """Producers that write the PKCS#7 signedData OID, or sm2-with-sm3, for SM2."""
    pki = sm2_signing_pki
    signature = _sign(pki)
    outer_pkcs7 = _ContentInfo.load(signature)
    outer_pkcs7["content_type"] = "1.2.840.113549.1.7.2"
    assert verify_detached(outer_pkcs7.dump(force=True), DATA, pki.context()).passed

    def sm2_sm3(sd: cms.SignedData) -> None:
        sd["signer_infos"][0]["signature_algorithm"] = {"algorithm": "1.2.156.10197.1.501"}

    rep = verify_detached(_rewrite(signature, sm2_sm3), DATA, pki.context())
    assert rep.passed and rep.details["signature_algorithm"] == "sm2-sm3"


def test_content_type_attribute_must_match_the_encapsulated_type(signing_pki: SigningPki) -> None:
    def retype(sd: cms.SignedData) -> None:
        sd["encap_content_info"] = {"content_type": "1.2.156.3005.2.99.2"}

    rep = verify_detached(_rewrite(_sign(signing_pki), retype), DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")
    assert _checks(rep)["cms.signed_attributes"] == "failed"


def test_a_signer_whose_certificate_is_not_embedded_is_indeterminate(
    signing_pki: SigningPki,
) -> None:
    def drop(sd: cms.SignedData) -> None:
        sd["certificates"] = list(signing_pki.chain)

    rep = verify_detached(_rewrite(_sign(signing_pki), drop), DATA, signing_pki.context())
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert _checks(rep)["signer.certificate"] == "indeterminate"


def _public_pem(party: Party) -> bytes:
    return to_pem(party.cert.public_key, "PUBLIC KEY")
