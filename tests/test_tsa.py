"""The RFC 3161 TSA, request builder and token verifier, with the OpenSSL CLI as the judge.

RSA tokens go through ``openssl ts -verify``. OpenSSL 3.0 cannot pass the SM2 distinguishing ID
to ``ts -verify``, so SM2 tokens are judged piecewise: ``openssl pkeyutl -verify`` over the signed
attributes (re-tagged as SET OF, i.e. what was signed) and ``openssl dgst -sm3`` over the TSTInfo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import algos, cms, core, keys, parser, tsp, x509

from tests.conftest import SM2_ID_OPT, Hierarchy, openssl
from trust import tsa as tsa_module
from trust.algorithms import KeyType, SignatureAlgorithm
from trust.ca import CertificateAuthority
from trust.certificates import make_name, random_serial, to_pem
from trust.clock import fixed_clock
from trust.der import tlv
from trust.errors import (
    ConfigurationError,
    EtrustError,
    InputTooLargeError,
    InvalidSignatureError,
    MalformedInputError,
    TimestampCertificateError,
    TimestampImprintMismatchError,
    TimestampRejectedError,
    TimestampTokenError,
    UnsupportedAlgorithmError,
)
from trust.keys import KeyHandle
from trust.profiles import finish_profile, get_profile, profile_template
from trust.sm2 import DEFAULT_ID
from trust.tsa import (
    MAX_REQUEST,
    TimeStampAuthority,
    TimestampInfo,
    TimeStampResp,
    build_request,
    check_tsa_certificate,
    parse_request,
    verify_token,
)

POLICY = "1.3.6.1.4.1.64999.3161.1"  # not named in the stock openssl.cnf
OTHER_POLICY = "1.3.6.1.4.1.64999.3161.2"
DATA = "政务服务事项办结结果 — case 2024-0001".encode()


@dataclass
class Setup:
    """A TSA under a test hierarchy, with its files laid out for the OpenSSL CLI."""

    h: Hierarchy
    key: KeyHandle
    cert: x509.Certificate
    tsa: TimeStampAuthority
    moment: datetime
    folder: Path

    @property
    def bundle(self) -> Path:
        return self.folder / "ca-bundle.pem"

    @property
    def tsa_pem(self) -> Path:
        return self.folder / "tsa.pem"

    @property
    def tsa_pub(self) -> Path:
        return self.folder / "tsa-pub.pem"


def _make_setup(h: Hierarchy, folder: Path) -> Setup:
    key = h.new_key(f"tsa-under-test-{h.kind}")
    cert = h.issuing.issue(
        key.public_key_info,
        make_name({"C": "CN", "O": "测试盟政务服务局", "CN": f"时间戳服务 {h.kind.upper()}"}),
        "tsa",
    )
    moment = datetime.now(UTC).replace(microsecond=0)
    authority = TimeStampAuthority(
        cert,
        key,
        policy=POLICY,
        accepted_policies=[OTHER_POLICY],
        chain=[h.issuing.certificate],
        clock=fixed_clock(moment),
    )
    setup = Setup(h, key, cert, authority, moment, folder)
    setup.bundle.write_bytes(to_pem(h.root.certificate) + to_pem(h.issuing.certificate))
    setup.tsa_pem.write_bytes(to_pem(cert))
    setup.tsa_pub.write_bytes(openssl("x509", "-in", setup.tsa_pem, "-pubkey", "-noout").stdout)
    return setup


@pytest.fixture(scope="module")
def rsa_tsa(rsa_hierarchy: Hierarchy, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return _make_setup(rsa_hierarchy, tmp_path_factory.mktemp("tsa-rsa"))


@pytest.fixture(scope="module")
def sm2_tsa(sm2_hierarchy: Hierarchy, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return _make_setup(sm2_hierarchy, tmp_path_factory.mktemp("tsa-sm2"))


@pytest.fixture(params=["sm2", "rsa"])
def any_tsa(request: pytest.FixtureRequest, sm2_tsa: Setup, rsa_tsa: Setup) -> Setup:
    """SM2 and RSA are peers: tests using this run once with each."""
    return sm2_tsa if request.param == "sm2" else rsa_tsa


def _status(response: bytes) -> tuple[str, set[str]]:
    parsed = TimeStampResp.load(response)
    status = parsed["status"]
    return status["status"].native, set(status["fail_info"].native or ())


def _reply_text(response: bytes, folder: Path, name: str = "reply.tsr") -> str:
    path = folder / name
    path.write_bytes(response)
    return openssl("ts", "-reply", "-in", path, "-text").stdout.decode()


def _children(der: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """(class, tag, contents, encoding) of each TLV inside the one TLV ``der``, from the wire."""
    contents = parser.parse(der, strict=True)[4]
    out = []
    while contents:
        cls, _, tag, header, body, trailer = parser.parse(contents)
        size = len(header) + len(body) + len(trailer)
        out.append((cls, tag, body, contents[:size]))
        contents = contents[size:]
    return out


def _signer_pieces(response: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(signed attributes re-tagged as SET OF, signature, TSTInfo DER, message-digest value),
    cut from the reply's bytes without our code."""
    token = _children(response)[1][3]
    signed_data = _children(_children(token)[1][3])[0][3]
    parts = _children(signed_data)
    econtent = _children(_children(parts[2][3])[1][3])[0][3]
    tst_der = parser.parse(econtent)[4]
    signer_info = _children(_children(parts[-1][3])[0][3])
    attrs_body = next(body for cls, tag, body, _ in signer_info if (cls, tag) == (2, 0))
    signed_attrs = core.SetOf(contents=attrs_body).dump()
    signature = signer_info[-1][2]
    md_oid = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()
    digest = next(
        parser.parse(_children(_children(enc)[1][3])[0][3])[4]
        for _, _, _, enc in _children(signed_attrs)
        if _children(enc)[0][3] == md_oid
    )
    return signed_attrs, signature, tst_der, digest


def _same(a: TimestampInfo, b: TimestampInfo) -> bool:
    """Equal content and the same certificate (asn1crypto values compare by identity)."""
    plain = dataclasses.replace(a, certificate=b.certificate)
    return plain == b and a.certificate.dump() == b.certificate.dump()


def _openssl_time(moment: datetime) -> str:
    """How ``openssl ts -reply -text`` prints a genTime (ASN1_GENERALIZEDTIME_print)."""
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S}{fraction} {moment.year} GMT"


def _printed_hex(text: str) -> bytes:
    """The bytes of OpenSSL's ``0000 - aa bb ..-.. ..   ascii`` hex dump lines."""
    out = b""
    for line in text.splitlines():
        head, sep, rest = line.strip().partition(" - ")
        if sep and len(head) == 4 and all(c in "0123456789abcdef" for c in head):
            out += bytes.fromhex(rest.split("   ")[0].replace("-", " "))
    return out


# --- RSA: OpenSSL asks, we answer, OpenSSL verifies ----------------------------------------


@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no-nonce"])
def test_rsa_reply_to_openssl_query_verifies_with_openssl(
    rsa_tsa: Setup, tmp_path: Path, nonce: bool
) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(DATA)
    query = tmp_path / "req.tsq"
    openssl(
        "ts", "-query", "-data", data, "-sha256", "-cert", *([] if nonce else ["-no_nonce"]),
        "-out", query,
    )  # fmt: skip
    response = rsa_tsa.tsa.respond(query.read_bytes())
    reply = tmp_path / "resp.tsr"
    reply.write_bytes(response)

    text = openssl("ts", "-reply", "-in", reply, "-text").stdout.decode()
    assert "Status: Granted." in text
    assert "Hash Algorithm: sha256" in text
    assert ("Nonce: 0x" in text) is nonce
    assert f"Policy OID: {POLICY}" in text
    assert "Accuracy: 0x01 seconds" in text

    for check in (("-queryfile", query), ("-data", data)):
        out = openssl("ts", "-verify", "-in", reply, *check, "-CAfile", rsa_tsa.bundle)
        assert b"Verification: OK" in out.stdout

    info = verify_token(response, trusted=[rsa_tsa.h.root.certificate], request=query.read_bytes())
    assert info.hash_algorithm == "sha256"
    assert info.hashed_message == hashlib.sha256(DATA).digest()
    assert info.policy == POLICY
    assert info.signature_algorithm == "rsa-pkcs1-sha256"
    assert (info.nonce is not None) is nonce


def test_rsa_token_without_cert_req_needs_untrusted_tsa_cert(
    rsa_tsa: Setup, tmp_path: Path
) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(DATA)
    query = tmp_path / "req.tsq"
    openssl("ts", "-query", "-data", data, "-sha256", "-out", query)
    reply = tmp_path / "resp.tsr"
    reply.write_bytes(rsa_tsa.tsa.respond(query.read_bytes()))

    base = ("ts", "-verify", "-in", reply, "-queryfile", query, "-CAfile", rsa_tsa.bundle)
    without = openssl(*base, check=False)
    assert b"Verification: OK" not in without.stdout  # the token really carries no certificate
    out = openssl(*base, "-untrusted", rsa_tsa.tsa_pem)
    assert b"Verification: OK" in out.stdout

    root = rsa_tsa.h.root.certificate
    with pytest.raises(TimestampCertificateError):
        verify_token(reply.read_bytes(), trusted=[root], data=DATA)
    with pytest.raises(TimestampCertificateError):  # the issuing CA is missing too
        verify_token(reply.read_bytes(), trusted=[root], data=DATA, certificates=[rsa_tsa.cert])
    info = verify_token(
        reply.read_bytes(),
        trusted=[root],
        data=DATA,
        certificates=[rsa_tsa.cert, rsa_tsa.h.issuing.certificate],
    )
    assert info.certificate.dump() == rsa_tsa.cert.dump()


def test_rsa_our_request_builder_is_read_by_openssl(rsa_tsa: Setup, tmp_path: Path) -> None:
    query = tmp_path / "ours.tsq"
    query.write_bytes(build_request(DATA, nonce=0x1234ABCD, policy=OTHER_POLICY))
    text = openssl("ts", "-query", "-in", query, "-text").stdout.decode()
    assert "Hash Algorithm: sha256" in text
    assert "Nonce: 0x1234ABCD" in text
    assert "Certificate required: yes" in text
    assert f"Policy OID: {OTHER_POLICY}" in text

    reply = tmp_path / "resp.tsr"
    reply.write_bytes(rsa_tsa.tsa.respond(query.read_bytes()))
    out = openssl("ts", "-verify", "-in", reply, "-queryfile", query, "-CAfile", rsa_tsa.bundle)
    assert b"Verification: OK" in out.stdout
    assert f"Policy OID: {OTHER_POLICY}" in _reply_text(reply.read_bytes(), tmp_path)


def test_rsa_tsa_name_is_accepted_by_openssl(rsa_tsa: Setup, tmp_path: Path) -> None:
    named = TimeStampAuthority(
        rsa_tsa.cert,
        rsa_tsa.key,
        policy=POLICY,
        chain=[rsa_tsa.h.issuing.certificate],
        include_tsa_name=True,
    )
    query = tmp_path / "req.tsq"
    query.write_bytes(build_request(DATA))
    reply = tmp_path / "resp.tsr"
    reply.write_bytes(named.respond(query.read_bytes()))
    assert "TSA: DirName:" in _reply_text(reply.read_bytes(), tmp_path, "named.tsr")
    out = openssl("ts", "-verify", "-in", reply, "-queryfile", query, "-CAfile", rsa_tsa.bundle)
    assert b"Verification: OK" in out.stdout


def test_openssl_detects_a_flipped_rsa_signature(rsa_tsa: Setup, tmp_path: Path) -> None:
    """The judge can fail: the signature is the last field of the reply."""
    query = tmp_path / "req.tsq"
    query.write_bytes(build_request(DATA))
    response = bytearray(rsa_tsa.tsa.respond(query.read_bytes()))
    response[-1] ^= 0x01
    reply = tmp_path / "bad.tsr"
    reply.write_bytes(bytes(response))
    out = openssl(
        "ts", "-verify", "-in", reply, "-queryfile", query, "-CAfile", rsa_tsa.bundle, check=False
    )
    assert b"Verification: OK" not in out.stdout
    with pytest.raises(InvalidSignatureError):
        verify_token(bytes(response), trusted=[rsa_tsa.h.root.certificate], data=DATA)


def test_we_verify_a_token_made_by_the_openssl_tsa(
    rsa_hierarchy: Hierarchy, tmp_path: Path
) -> None:
    """Interoperability on read: OpenSSL's TSA writes rsaEncryption and its own attribute set."""
    key = tmp_path / "tsa.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    csr = openssl("req", "-new", "-key", key, "-subj", "/CN=OpenSSL TSA").stdout
    cert = rsa_hierarchy.issuing.issue_from_csr(csr, "tsa")
    (tmp_path / "tsa.pem").write_bytes(to_pem(cert))
    (tmp_path / "chain.pem").write_bytes(to_pem(rsa_hierarchy.issuing.certificate))
    (tmp_path / "serial").write_text("01\n")
    config = tmp_path / "tsa.cnf"
    config.write_text(
        f"""
[ tsa ]
default_tsa = tsa1
[ tsa1 ]
dir = {tmp_path}
serial = $dir/serial
signer_cert = $dir/tsa.pem
certs = $dir/chain.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {POLICY}
digests = sha256, sm3
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
    )
    for hash_name in ("sha256", "sm3"):
        query = tmp_path / f"{hash_name}.tsq"
        query.write_bytes(build_request(DATA, hash_name=hash_name))
        reply = tmp_path / f"{hash_name}.tsr"
        openssl(
            "ts", "-reply", "-config", config, "-queryfile", query, "-out", reply
        )  # fmt: skip
        info = verify_token(
            reply.read_bytes(),
            trusted=[rsa_hierarchy.root.certificate],
            request=query.read_bytes(),
        )
        assert info.hash_algorithm == hash_name
        printed = _reply_text(reply.read_bytes(), tmp_path, f"{hash_name}-text.tsr")
        assert f"Serial number: {info.serial:#04X}".replace("0X", "0x") in printed
        with pytest.raises(TimestampImprintMismatchError):
            verify_token(
                reply.read_bytes(), trusted=[rsa_hierarchy.root.certificate], data=b"other"
            )


# --- SM2: the TSA answers an SM3 query; OpenSSL judges the pieces ---------------------------


def test_sm2_reply_to_openssl_sm3_query(sm2_tsa: Setup, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(DATA)
    query = tmp_path / "req.tsq"
    openssl("ts", "-query", "-data", data, "-sm3", "-cert", "-out", query)
    response = sm2_tsa.tsa.respond(query.read_bytes())

    text = _reply_text(response, tmp_path)
    assert "Status: Granted." in text
    assert "Hash Algorithm: sm3" in text
    assert "Nonce: 0x" in text

    signed_attrs, signature, tst_der, digest = _signer_pieces(response)
    (tmp_path / "attrs.der").write_bytes(signed_attrs)
    (tmp_path / "sig.der").write_bytes(signature)
    verify_args = (
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID_OPT,
        "-pubin", "-inkey", sm2_tsa.tsa_pub, "-sigfile", tmp_path / "sig.der",
    )  # fmt: skip
    out = openssl(*verify_args, "-in", tmp_path / "attrs.der")
    assert b"Signature Verified Successfully" in out.stdout
    # The judge can fail: one changed byte of what was signed is refused.
    tampered = bytearray(signed_attrs)
    tampered[-1] ^= 0x01
    (tmp_path / "tampered.der").write_bytes(bytes(tampered))
    assert openssl(*verify_args, "-in", tmp_path / "tampered.der", check=False).returncode != 0

    (tmp_path / "tst.der").write_bytes(tst_der)
    sm3 = openssl("dgst", "-sm3", "-binary", tmp_path / "tst.der").stdout
    assert sm3 == digest

    info = verify_token(response, trusted=[sm2_tsa.h.root.certificate], request=query.read_bytes())
    assert info.hash_algorithm == "sm3"
    assert info.hashed_message == hashlib.new("sm3", DATA).digest()
    assert info.signature_algorithm == "sm2-sm3"
    assert _same(verify_token(response, trusted=[sm2_tsa.h.root.certificate], data=DATA), info)


def test_sm2_token_names_sm2_sm3_and_sm3_digests(sm2_tsa: Setup) -> None:
    response = sm2_tsa.tsa.respond(build_request(DATA, hash_name="sm3"))
    signed = TimeStampResp.load(response)["time_stamp_token"]["content"]
    signer_info = signed["signer_infos"][0]
    assert signer_info["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    assert signer_info["digest_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.401"
    ess = next(
        a["values"][0]
        for a in signer_info["signed_attrs"]
        if a["type"].native == "signing_certificate_v2"
    )
    cert_id = ess["certs"][0]
    assert cert_id["hash_algorithm"]["algorithm"].native == "sm3"
    assert cert_id["cert_hash"].native == hashlib.new("sm3", sm2_tsa.cert.dump()).digest()


def test_sm2_our_sm3_request_is_read_by_openssl(sm2_tsa: Setup, tmp_path: Path) -> None:
    query = tmp_path / "ours.tsq"
    query.write_bytes(build_request(DATA, hash_name="sm3", nonce=7))
    text = openssl("ts", "-query", "-in", query, "-text").stdout.decode()
    assert "Hash Algorithm: sm3" in text
    assert "Nonce: 0x07" in text
    assert _printed_hex(text) == openssl("dgst", "-sm3", "-binary", input=DATA).stdout

    info = verify_token(
        sm2_tsa.tsa.respond(query.read_bytes()),
        trusted=[sm2_tsa.h.root.certificate],
        request=query.read_bytes(),
    )
    assert info.nonce == 7


def test_sm2_signer_info_with_sm2_1_oid_and_gm_content_type_are_accepted(sm2_tsa: Setup) -> None:
    """GM/T 0010 producers write SM2-1 and the GM signedData OID; we accept both on read."""
    response = sm2_tsa.tsa.respond(build_request(DATA, hash_name="sm3"))
    token = TimeStampResp.load(response)["time_stamp_token"]
    signer_info = token["content"]["signer_infos"][0]
    signer_info["signature_algorithm"] = algos.SignedDigestAlgorithm({"algorithm": "sm2"})
    sm2_1 = token.dump(force=True)
    assert core.ObjectIdentifier("1.2.156.10197.1.301.1").dump() in sm2_1
    root = sm2_tsa.h.root.certificate
    info = verify_token(sm2_1, trusted=[root], data=DATA)
    assert info.signature_algorithm == "sm2-sm3"

    oid, content = _children(sm2_1)
    assert oid[3] == core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
    gm = core.ObjectIdentifier(tsa_module.GM_SIGNED_DATA_OID).dump()
    gm_token = core.Sequence(contents=gm + content[3]).dump()
    assert _same(verify_token(gm_token, trusted=[root], data=DATA), info)
    unknown = core.ObjectIdentifier("1.2.840.113549.1.7.1").dump()  # id-data: no token
    with pytest.raises(TimestampTokenError):
        verify_token(core.Sequence(contents=unknown + content[3]).dump(), trusted=[root], data=DATA)


# --- behaviour shared by SM2 and RSA --------------------------------------------------------


def test_gen_time_serial_and_accuracy_come_from_the_injected_sources(
    any_tsa: Setup, tmp_path: Path
) -> None:
    root = any_tsa.h.root.certificate
    moment = (any_tsa.moment + timedelta(days=3, hours=5)).replace(microsecond=123456)
    whole = TimeStampAuthority(
        any_tsa.cert,
        any_tsa.key,
        policy=POLICY,
        chain=[any_tsa.h.issuing.certificate],
        clock=fixed_clock(moment),
        accuracy=timedelta(seconds=1),
        serial_source=lambda: 4242,
    )
    response = whole.respond(build_request(DATA))
    text = _reply_text(response, tmp_path)
    assert f"Time stamp: {_openssl_time(moment.replace(microsecond=0))}" in text
    assert "Serial number: 0x1092" in text
    info = verify_token(response, trusted=[root], data=DATA)
    assert (info.gen_time, info.serial) == (moment.replace(microsecond=0), 4242)
    assert info.accuracy == timedelta(seconds=1)

    fine = TimeStampAuthority(
        any_tsa.cert,
        any_tsa.key,
        policy=POLICY,
        chain=[any_tsa.h.issuing.certificate],
        clock=fixed_clock(moment),
        accuracy=timedelta(milliseconds=1),
    )
    response = fine.respond(build_request(DATA))
    text = _reply_text(response, tmp_path, "ms.tsr")
    assert f"Time stamp: {_openssl_time(moment.replace(microsecond=123000))}" in text
    assert "Accuracy: unspecified seconds, 0x01 millis" in text
    info = verify_token(response, trusted=[root], data=DATA)
    assert info.gen_time == moment.replace(microsecond=123000)
    assert info.accuracy == timedelta(milliseconds=1)


def test_gen_time_equals_the_fixed_clock(any_tsa: Setup, tmp_path: Path) -> None:
    outcome = any_tsa.tsa.process(build_request(DATA))
    assert outcome.granted and outcome.gen_time == any_tsa.moment
    info = verify_token(outcome.response, trusted=[any_tsa.h.root.certificate], data=DATA)
    assert info.gen_time == any_tsa.moment
    assert info.serial == outcome.serial
    text = _reply_text(outcome.response, tmp_path)
    assert f"Time stamp: {_openssl_time(any_tsa.moment)}" in text


def test_random_serials_are_positive_and_distinct(any_tsa: Setup) -> None:
    serials = {any_tsa.tsa.process(build_request(DATA)).serial for _ in range(5)}
    assert len(serials) == 5
    assert all(s is not None and 0 < s < 1 << 128 for s in serials)


def test_pinned_tsa_certificate_is_a_trust_anchor(any_tsa: Setup) -> None:
    response = any_tsa.tsa.respond(build_request(DATA, cert_req=False))
    info = verify_token(response, trusted=[any_tsa.cert], data=DATA)
    assert info.certificate.dump() == any_tsa.cert.dump()


# --- bad requests: a rejection with the right PKIFailureInfo, never an exception ------------


def _request_with(
    *,
    hash_oid: str = "2.16.840.1.101.3.4.2.1",  # SHA-256
    digest: bytes | None = None,
    params: bytes = b"",
    version: int = 1,
    extensions: bool = False,
) -> bytes:
    """A TimeStampReq with any imprint algorithm and raw parameters (asn1crypto's own classes
    would refuse to build the bad ones)."""
    algorithm = core.Sequence(contents=core.ObjectIdentifier(hash_oid).dump() + params).dump()
    imprint = core.Sequence(
        contents=algorithm + core.OctetString(digest or hashlib.sha256(DATA).digest()).dump()
    ).dump()
    value: dict[str, object] = {
        "version": version,
        "message_imprint": tsp.MessageImprint.load(imprint),
        "cert_req": True,
    }
    if extensions:
        value["extensions"] = [{"extn_id": "1.2.3.4.99", "extn_value": b"\x05\x00"}]
    return bytes(tsp.TimeStampReq(value).dump())


def _bad_requests(folder: Path) -> dict[str, tuple[bytes, str]]:
    good = build_request(DATA)
    data = folder / "data.bin"
    data.write_bytes(DATA)
    md5 = folder / "md5.tsq"
    openssl("ts", "-query", "-data", data, "-md5", "-out", md5)
    policy = folder / "policy.tsq"
    openssl("ts", "-query", "-data", data, "-sha256", "-tspolicy", "1.2.3.9", "-out", policy)
    return {
        "garbage": (b"this is not a time-stamp request", "bad_request"),
        "empty": (b"", "bad_request"),
        "truncated": (good[:-5], "bad_request"),
        "oversized": (b"\x30\x83\x01\x00\x00" + b"\x00" * 0x10000, "bad_request"),
        "md5": (md5.read_bytes(), "bad_alg"),
        "sha1": (
            _request_with(
                hash_oid="1.3.14.3.2.26", digest=hashlib.sha1(DATA, usedforsecurity=False).digest()
            ),
            "bad_alg",
        ),
        "unknown-hash-oid": (_request_with(hash_oid="1.2.3.4.5.6"), "bad_alg"),
        "hash-parameters": (_request_with(params=core.Integer(5).dump()), "bad_alg"),
        "short-imprint": (_request_with(digest=b"\x01" * 20), "bad_request"),
        "long-sm3-imprint": (
            _request_with(hash_oid="1.2.156.10197.1.401", digest=b"\x01" * 48),
            "bad_request",
        ),
        "version-2": (_request_with(version=2), "bad_request"),
        "unaccepted-policy": (policy.read_bytes(), "unaccepted_policy"),
        "extensions": (_request_with(extensions=True), "unaccepted_extensions"),
        "not-a-request": (core.Sequence(contents=core.Integer(5).dump()).dump(), "bad_data_format"),
    }


# OpenSSL's wording for each PKIFailureInfo bit (crypto/ts/ts_rsp_print.c).
_OPENSSL_FAILURE_TEXT = {
    "bad_alg": "unrecognized or unsupported algorithm identifier",
    "bad_request": "transaction not permitted or supported",
    "bad_data_format": "the data submitted has the wrong format",
    "time_not_available": "the TSA's time source is not available",
    "unaccepted_policy": "the requested TSA policy is not supported by the TSA",
    "unaccepted_extensions": "the requested extension is not supported by the TSA",
    "system_failure": "the request cannot be handled due to system failure",
}


def test_bad_requests_are_rejected_with_the_right_failure_info(
    any_tsa: Setup, tmp_path: Path
) -> None:
    cases = _bad_requests(tmp_path)
    assert len(cases["oversized"][0]) > MAX_REQUEST
    for name, (request, failure) in cases.items():
        outcome = any_tsa.tsa.process(request)
        assert not outcome.granted, name
        assert outcome.failure_info == failure, (name, outcome.message)
        assert _status(outcome.response) == ("rejection", {failure}), name
        text = _reply_text(outcome.response, tmp_path, f"{name}.tsr")
        assert "Status: Rejected." in text, name
        assert _OPENSSL_FAILURE_TEXT[failure] in text, (name, text)
        assert "TST info:\nNot included." in text, name


def test_the_good_request_behind_the_bad_ones_is_granted(any_tsa: Setup) -> None:
    """The bad-request cases are variations of requests that do work."""
    for request in (build_request(DATA), _request_with(), _request_with(params=b"\x05\x00")):
        assert _status(any_tsa.tsa.respond(request)) == ("granted", set())
    policy_request = build_request(DATA, policy=OTHER_POLICY)
    assert any_tsa.tsa.process(policy_request).granted


def test_every_truncation_and_byte_flip_of_a_request_gets_a_reply(any_tsa: Setup) -> None:
    good = build_request(DATA, nonce=0x0102030405060708)
    variants = [good[:n] for n in range(len(good))]
    for i in range(len(good)):
        flipped = bytearray(good)
        flipped[i] ^= 0xFF
        variants.append(bytes(flipped))
    variants.append(good + b"\x00")
    for variant in variants:
        status, failures = _status(any_tsa.tsa.respond(variant))
        assert status in ("granted", "rejection")
        assert (status == "granted") == (not failures)
    assert _status(any_tsa.tsa.respond(good + b"\x00")) == ("rejection", {"bad_request"})


class _BrokenKey:
    """A key handle whose device has gone away (an HSM unplugged mid-flight)."""

    def __init__(self, real: KeyHandle) -> None:
        self._real = real

    @property
    def key_uri(self) -> str:
        return "broken:object=tsa"

    @property
    def key_type(self) -> KeyType:
        return self._real.key_type

    @property
    def public_key_info(self) -> keys.PublicKeyInfo:
        return self._real.public_key_info

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        sm2_id: bytes = DEFAULT_ID,
    ) -> bytes:
        raise OSError("device removed")


def test_signing_failure_is_a_system_failure_reply(any_tsa: Setup) -> None:
    broken = TimeStampAuthority(
        any_tsa.cert, _BrokenKey(any_tsa.key), policy=POLICY, clock=fixed_clock(any_tsa.moment)
    )
    outcome = broken.process(build_request(DATA))
    assert outcome.failure_info == "system_failure"
    assert _status(outcome.response) == ("rejection", {"system_failure"})
    assert "device removed" in (outcome.message or "")
    assert "device removed" not in outcome.response.decode("latin-1")  # no internals to clients


def test_clock_failure_is_time_not_available(any_tsa: Setup) -> None:
    def no_time() -> datetime:
        raise OSError("NTP source lost")

    authority = TimeStampAuthority(any_tsa.cert, any_tsa.key, policy=POLICY, clock=no_time)
    assert _status(authority.respond(build_request(DATA))) == ("rejection", {"time_not_available"})


# --- verification: tampering and wrong trust are caught with specific errors ----------------


def _flip_inside(response: bytes, needle: bytes) -> bytes:
    at = response.index(needle)
    out = bytearray(response)
    out[at + len(needle) // 2] ^= 0x01
    return bytes(out)


def test_altered_tst_info_fails(any_tsa: Setup) -> None:
    response = any_tsa.tsa.respond(build_request(DATA, nonce=0x55AA55AA55AA))
    root = any_tsa.h.root.certificate
    verify_token(response, trusted=[root], data=DATA)
    imprint = hashlib.sha256(DATA).digest()
    with pytest.raises(TimestampTokenError, match="message digest"):
        verify_token(
            _flip_inside(response, imprint), trusted=[root], digest=imprint, hash_name="sha256"
        )
    nonce = (0x55AA55AA55AA).to_bytes(6, "big")
    with pytest.raises(TimestampTokenError, match="message digest"):
        verify_token(_flip_inside(response, nonce), trusted=[root], data=DATA)


def test_flipped_signature_fails(any_tsa: Setup) -> None:
    response = any_tsa.tsa.respond(build_request(DATA))
    _, signature, _, _ = _signer_pieces(response)
    assert response.endswith(signature)
    bad = bytearray(response)
    bad[-len(signature) // 2] ^= 0x01
    with pytest.raises(InvalidSignatureError):
        verify_token(bytes(bad), trusted=[any_tsa.h.root.certificate], data=DATA)


def test_altered_signed_attribute_fails(any_tsa: Setup) -> None:
    response = any_tsa.tsa.respond(build_request(DATA))
    signing_time_oid = core.ObjectIdentifier("1.2.840.113549.1.9.5").dump()
    at = response.index(signing_time_oid) + len(signing_time_oid)
    assert response[at : at + 4] == b"\x31\x0f\x17\x0d"  # SET { UTCTime YYMMDDhhmmssZ }
    bad = bytearray(response)
    bad[at + 4 + 11] ^= 0x01  # a digit of the seconds: still a valid time, not what was signed
    verify_token(response, trusted=[any_tsa.h.root.certificate], data=DATA)
    with pytest.raises(InvalidSignatureError):
        verify_token(bytes(bad), trusted=[any_tsa.h.root.certificate], data=DATA)


def test_wrong_data_nonce_and_trust_are_told_apart(
    any_tsa: Setup, sm2_tsa: Setup, rsa_tsa: Setup
) -> None:
    request = build_request(DATA)
    response = any_tsa.tsa.respond(request)
    root = any_tsa.h.root.certificate
    with pytest.raises(TimestampImprintMismatchError):
        verify_token(response, trusted=[root], data=DATA + b".")
    with pytest.raises(TimestampImprintMismatchError):
        verify_token(response, trusted=[root], request=build_request(DATA))  # another nonce
    with pytest.raises(TimestampImprintMismatchError):
        verify_token(
            response, trusted=[root], digest=hashlib.new("sm3", DATA).digest(), hash_name="sm3"
        )
    other = sm2_tsa if any_tsa is rsa_tsa else rsa_tsa
    with pytest.raises(TimestampCertificateError):
        verify_token(response, trusted=[other.h.root.certificate], data=DATA)
    with pytest.raises(TimestampCertificateError):  # an issuing CA from elsewhere
        verify_token(response, trusted=[other.h.issuing.certificate], data=DATA)


def test_rejection_reply_and_garbage_raise_specific_errors(any_tsa: Setup) -> None:
    root = any_tsa.h.root.certificate
    rejection = any_tsa.tsa.respond(b"")
    with pytest.raises(TimestampRejectedError, match="bad_request"):
        verify_token(rejection, trusted=[root], data=DATA)
    for junk in (b"", b"\x30\x03\x02\x01", b"not DER at all", b"\x30\x00"):
        with pytest.raises(MalformedInputError):
            verify_token(junk, trusted=[root], data=DATA)


def test_verifier_never_crashes_on_a_damaged_token(any_tsa: Setup) -> None:
    response = any_tsa.tsa.respond(build_request(DATA))
    root = any_tsa.h.root.certificate
    positions = list(range(0, len(response), max(1, len(response) // 150)))
    for i in positions:
        damaged = bytearray(response)
        damaged[i] ^= 0x5A
        with contextlib.suppress(EtrustError):
            verify_token(bytes(damaged), trusted=[root], data=DATA)
    for n in range(0, len(response), max(1, len(response) // 60)):
        with pytest.raises(EtrustError):
            verify_token(response[:n], trusted=[root], data=DATA)


def test_certificate_without_critical_timestamping_eku_is_refused(
    any_tsa: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = any_tsa.h
    seal_cert = h.issuing.issue(
        any_tsa.key.public_key_info, make_name({"CN": "seal"}), "seal-signer"
    )
    with pytest.raises(TimestampCertificateError):
        check_tsa_certificate(seal_cert)
    lax = dataclasses.replace(get_profile("tsa"), name="tsa-lax", eku_critical=False)
    lax_cert = h.issuing.issue(any_tsa.key.public_key_info, make_name({"CN": "lax"}), lax)
    with pytest.raises(TimestampCertificateError, match="critical"):
        check_tsa_certificate(lax_cert)
    two = dataclasses.replace(
        get_profile("tsa"), name="tsa-two", extended_key_usage=("time_stamping", "code_signing")
    )
    two_cert = h.issuing.issue(any_tsa.key.public_key_info, make_name({"CN": "two"}), two)
    with pytest.raises(TimestampCertificateError, match="sole"):
        check_tsa_certificate(two_cert)
    check_tsa_certificate(any_tsa.cert)
    with pytest.raises(ConfigurationError):
        TimeStampAuthority(lax_cert, any_tsa.key, policy=POLICY)

    # A TSA that skipped the check at start-up still yields tokens nobody accepts.
    monkeypatch.setattr(tsa_module, "check_tsa_certificate", lambda cert: None)
    sloppy = TimeStampAuthority(lax_cert, any_tsa.key, policy=POLICY)
    monkeypatch.undo()
    response = sloppy.respond(build_request(DATA))
    with pytest.raises(TimestampCertificateError, match="critical"):
        verify_token(response, trusted=[h.root.certificate], data=DATA)


def test_configuration_errors(any_tsa: Setup, sm2_tsa: Setup, rsa_tsa: Setup) -> None:
    other = sm2_tsa if any_tsa is rsa_tsa else rsa_tsa
    with pytest.raises(ConfigurationError):
        TimeStampAuthority(any_tsa.cert, other.key, policy=POLICY)
    with pytest.raises(ConfigurationError):
        TimeStampAuthority(any_tsa.cert, any_tsa.key, policy="not-an-oid")


def test_request_builder_and_parser(sm2_tsa: Setup) -> None:
    digest = hashlib.sha384(DATA).digest()
    request = parse_request(
        build_request(digest=digest, hash_name="sha384", nonce=False, cert_req=False)
    )
    assert (request.hash_name, request.nonce, request.cert_req, request.policy) == (
        "sha384",
        None,
        False,
        None,
    )
    assert request.message_imprint["hashed_message"].native == digest
    with pytest.raises(UnsupportedAlgorithmError):
        build_request(DATA, hash_name="md5")
    with pytest.raises(MalformedInputError):
        build_request(digest=b"\x00" * 31)
    with pytest.raises(EtrustError):
        build_request()
    with pytest.raises(EtrustError):
        build_request(DATA, digest=digest, hash_name="sha384")
    nonces = {parse_request(build_request(DATA)).nonce for _ in range(8)}
    assert len(nonces) == 8


def test_gen_time_outside_the_tsa_certificate_validity_fails(any_tsa: Setup) -> None:
    """The verifier's own check: tokens re-signed with a genTime outside the validity fail."""
    root = any_tsa.h.root.certificate
    response = any_tsa.tsa.respond(build_request(DATA))
    inside = _restamped(any_tsa, response, gen_time=any_tsa.cert.not_valid_after)
    assert verify_token(inside, trusted=[root], data=DATA).gen_time == any_tsa.cert.not_valid_after
    for moment in (
        any_tsa.cert.not_valid_after + timedelta(seconds=1),
        any_tsa.cert.not_valid_before - timedelta(days=1),
    ):
        with pytest.raises(TimestampCertificateError, match="not valid at"):
            verify_token(_restamped(any_tsa, response, gen_time=moment), trusted=[root], data=DATA)


def _tsa_at(setup: Setup, moment: datetime) -> TimeStampAuthority:
    return TimeStampAuthority(
        setup.cert,
        setup.key,
        policy=POLICY,
        chain=[setup.h.issuing.certificate],
        clock=fixed_clock(moment),
    )


def test_the_tsa_refuses_to_sign_outside_its_certificate_validity(
    any_tsa: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token signed then would fail every verifier: the TSA says systemFailure instead."""
    not_before, not_after = any_tsa.cert.not_valid_before, any_tsa.cert.not_valid_after
    for moment, problem in (
        (not_before - timedelta(seconds=1), "not yet valid"),
        (not_after + timedelta(seconds=1), "has expired"),
    ):
        with caplog.at_level("ERROR", logger="trust.tsa"):
            authority = _tsa_at(any_tsa, moment)  # starts (other services go on), but says so
        assert any(problem in r.getMessage() for r in caplog.records), caplog.text
        caplog.clear()
        outcome = authority.process(build_request(DATA))
        assert (outcome.status, outcome.failure_info) == ("rejection", "system_failure")
        assert problem in (outcome.message or "")
        assert _status(outcome.response) == ("rejection", {"system_failure"})
        text = _reply_text(outcome.response, tmp_path)
        assert _OPENSSL_FAILURE_TEXT["system_failure"] in text and problem in text, text
        assert "TST info:\nNot included." in text
    # The last second of each end is still inside: the TSA signs, and the token verifies.
    for moment in (not_before, not_after):
        response = _tsa_at(any_tsa, moment).respond(build_request(DATA))
        info = verify_token(response, trusted=[any_tsa.h.root.certificate], data=DATA)
        assert info.gen_time == moment


def test_a_tsa_certificate_near_its_end_is_warned_about_at_start(
    any_tsa: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    not_after = any_tsa.cert.not_valid_after

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "trust.tsa"]

    with caplog.at_level("WARNING", logger="trust.tsa"):
        _tsa_at(any_tsa, not_after - tsa_module.EXPIRY_WARNING - timedelta(days=1))
    assert not logged(), caplog.text
    with caplog.at_level("WARNING", logger="trust.tsa"):
        soon = _tsa_at(any_tsa, not_after - timedelta(days=29))
    assert [r.levelname for r in logged()] == ["WARNING"]
    assert "expires on" in logged()[0].getMessage()
    assert soon.process(build_request(DATA)).granted  # a warning, not a refusal


def test_path_length_of_the_issuing_ca_is_enforced(any_tsa: Setup, tmp_path: Path) -> None:
    """The issuing CA has pathLen 0; a TSA under a CA it certified anyway must not verify."""
    h = any_tsa.h
    sub_key = h.new_key(f"tsa-test-rogue-sub-ca-{h.kind}")
    # Our CA refuses to do this, so the rogue certificate is signed by hand with its key.
    sub_cert = (
        finish_profile(
            profile_template(
                get_profile("issuing-ca"),
                issuer_name=h.issuing.certificate.subject,
                issuer_key=h.issuing.certificate.public_key,
            ),
            subject_key=sub_key.public_key_info,
        )
        .subject_name(make_name({"CN": "rogue sub-CA"}))
        .serial_number(random_serial())
        .not_valid_before(h.issuing.certificate.not_valid_before)
        .not_valid_after(h.issuing.certificate.not_valid_after)
        .sign(h.issuing.key)
    )
    sub = CertificateAuthority(
        f"rogue-{h.kind}", sub_cert, sub_key, h.repository, clock=h.issuing.clock
    )
    tsa_cert = sub.issue(any_tsa.key.public_key_info, make_name({"CN": "rogue TSA"}), "tsa")
    rogue = TimeStampAuthority(
        tsa_cert, any_tsa.key, policy=POLICY, chain=[sub_cert, h.issuing.certificate]
    )
    query = tmp_path / "req.tsq"
    query.write_bytes(build_request(DATA))
    response = rogue.respond(query.read_bytes())
    with pytest.raises(TimestampCertificateError, match="no trusted issuer"):
        verify_token(response, trusted=[h.root.certificate], request=query.read_bytes())
    # Trusting the rogue sub-CA itself is the caller's choice, and then it verifies.
    verify_token(response, trusted=[sub_cert], request=query.read_bytes())
    if h.kind == "rsa":  # OpenSSL agrees (it cannot judge SM2 chains, see sm2-openssl.md)
        reply = tmp_path / "rogue.tsr"
        reply.write_bytes(response)
        out = openssl(
            "ts", "-verify", "-in", reply, "-queryfile", query, "-CAfile", any_tsa.bundle,
            check=False,
        )  # fmt: skip
        assert b"Verification: OK" not in out.stdout
        assert b"path length" in out.stderr + out.stdout


def test_swapped_signer_certificate_is_caught_by_the_ess_attribute(any_tsa: Setup) -> None:
    """Another certificate for the same key, put in the unsigned SignerIdentifier (RFC 5035)."""
    h = any_tsa.h
    twin = h.issuing.issue(any_tsa.key.public_key_info, make_name({"CN": "twin TSA"}), "tsa")
    response = any_tsa.tsa.respond(build_request(DATA))
    token = TimeStampResp.load(response)["time_stamp_token"]
    signed = token["content"]
    signed["signer_infos"][0]["sid"] = cms.SignerIdentifier(
        name="issuer_and_serial_number",
        value={"issuer": twin.issuer, "serial_number": twin.serial_number},
    )
    signed["certificates"] = [twin, h.issuing.certificate]
    swapped = token.dump(force=True)
    with pytest.raises(TimestampCertificateError, match="ESS certificate hash"):
        verify_token(swapped, trusted=[h.root.certificate], data=DATA)
    # The same surgery naming the real certificate again verifies: only the swap is refused.
    signed["signer_infos"][0]["sid"] = cms.SignerIdentifier(
        name="issuer_and_serial_number",
        value={"issuer": any_tsa.cert.issuer, "serial_number": any_tsa.cert.serial_number},
    )
    signed["certificates"] = [any_tsa.cert, h.issuing.certificate]
    verify_token(token.dump(force=True), trusted=[h.root.certificate], data=DATA)


def test_an_end_entity_cannot_act_as_issuer(any_tsa: Setup, tmp_path: Path) -> None:
    h = any_tsa.h
    leaf_key = h.new_key(f"tsa-test-leaf-as-ca-{h.kind}")
    # Under the root, whose path length is unlimited: only the missing cA flag stops this.
    leaf = h.root.issue(leaf_key.public_key_info, make_name({"CN": "just a signer"}), "seal-signer")
    fake_ca = CertificateAuthority(
        f"leaf-{h.kind}", leaf, leaf_key, h.repository, clock=h.root.clock
    )
    tsa_cert = fake_ca.issue(
        any_tsa.key.public_key_info, make_name({"CN": "TSA under a leaf"}), "tsa"
    )
    rogue = TimeStampAuthority(tsa_cert, any_tsa.key, policy=POLICY, chain=[leaf])
    query = tmp_path / "req.tsq"
    query.write_bytes(build_request(DATA))
    response = rogue.respond(query.read_bytes())
    with pytest.raises(TimestampCertificateError, match="no trusted issuer"):
        verify_token(response, trusted=[h.root.certificate], request=query.read_bytes())
    if h.kind == "rsa":
        reply = tmp_path / "rogue.tsr"
        reply.write_bytes(response)
        out = openssl(
            "ts", "-verify", "-in", reply, "-queryfile", query, "-CAfile", any_tsa.bundle,
            check=False,
        )  # fmt: skip
        assert b"Verification: OK" not in out.stdout


def test_reply_must_match_the_request_policy_and_cert_req(any_tsa: Setup) -> None:
    root = any_tsa.h.root.certificate
    chain = [any_tsa.cert, any_tsa.h.issuing.certificate]
    asked_other = build_request(DATA, nonce=5, policy=OTHER_POLICY)
    response = any_tsa.tsa.respond(asked_other)
    assert verify_token(response, trusted=[root], request=asked_other).policy == OTHER_POLICY
    with pytest.raises(TimestampImprintMismatchError, match="policy"):
        verify_token(response, trusted=[root], request=build_request(DATA, nonce=5, policy=POLICY))

    without = build_request(DATA, nonce=9, cert_req=False)
    response = any_tsa.tsa.respond(without)
    verify_token(response, trusted=[root], request=without, certificates=chain)
    with pytest.raises(TimestampTokenError, match="certReq"):
        verify_token(
            response,
            trusted=[root],
            request=build_request(DATA, nonce=9, cert_req=True),
            certificates=chain,
        )


def _resigned(setup: Setup, response: bytes, attrs: list[cms.CMSAttribute]) -> bytes:
    """The token of ``response`` with new signed attributes, properly signed by the TSA key."""
    token = TimeStampResp.load(response)["time_stamp_token"]
    signer_info = token["content"]["signer_infos"][0]
    new_attrs = cms.CMSAttributes(attrs)
    signer_info["signed_attrs"] = new_attrs
    signer_info["signature"] = setup.key.sign(new_attrs.dump())
    return bytes(token.dump(force=True))


def test_signed_attributes_must_say_tst_info(any_tsa: Setup) -> None:
    root = any_tsa.h.root.certificate
    response = any_tsa.tsa.respond(build_request(DATA))
    original = list(
        TimeStampResp.load(response)["time_stamp_token"]["content"]["signer_infos"][0][
            "signed_attrs"
        ]
    )
    # Re-signing the same attributes verifies: the surgery itself is sound.
    verify_token(
        _resigned(any_tsa, response, [cms.CMSAttribute.load(a.dump()) for a in original]),
        trusted=[root],
        data=DATA,
    )
    wrong = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]})
        if a["type"].native == "content_type"
        else cms.CMSAttribute.load(a.dump())
        for a in original
    ]
    with pytest.raises(TimestampTokenError, match="content-type"):
        verify_token(_resigned(any_tsa, response, wrong), trusted=[root], data=DATA)
    without_ess = [
        cms.CMSAttribute.load(a.dump())
        for a in original
        if a["type"].native != "signing_certificate_v2"
    ]
    with pytest.raises(TimestampTokenError, match="ESS signing certificate"):
        verify_token(_resigned(any_tsa, response, without_ess), trusted=[root], data=DATA)
    doubled = [
        cms.CMSAttribute({"type": "content_type", "values": ["tst_info", "tst_info"]})
        if a["type"].native == "content_type"
        else cms.CMSAttribute.load(a.dump())
        for a in original
    ]
    with pytest.raises(TimestampTokenError, match="single-valued"):
        verify_token(_resigned(any_tsa, response, doubled), trusted=[root], data=DATA)


def test_an_unsupported_cms_digest_is_refused(any_tsa: Setup) -> None:
    token = TimeStampResp.load(any_tsa.tsa.respond(build_request(DATA)))["time_stamp_token"]
    token["content"]["signer_infos"][0]["digest_algorithm"] = algos.DigestAlgorithm(
        {"algorithm": "md5"}
    )
    with pytest.raises(UnsupportedAlgorithmError, match="md5"):
        verify_token(token.dump(force=True), trusted=[any_tsa.h.root.certificate], data=DATA)


def test_a_token_has_exactly_one_signer(any_tsa: Setup) -> None:
    root = any_tsa.h.root.certificate
    token = TimeStampResp.load(any_tsa.tsa.respond(build_request(DATA)))["time_stamp_token"]
    signer_infos = token["content"]["signer_infos"]
    signer_infos.append(cms.SignerInfo.load(signer_infos[0].dump()))
    with pytest.raises(TimestampTokenError, match="exactly one signature"):
        verify_token(token.dump(force=True), trusted=[root], data=DATA)


def _restamped(setup: Setup, response: bytes, **changes: object) -> bytes:
    """The token of ``response`` with TSTInfo fields changed and everything re-signed properly,
    so only the changed content can make it fail."""
    token = TimeStampResp.load(response)["time_stamp_token"]
    signed = token["content"]
    tst = tsp.TSTInfo.load(signed["encap_content_info"]["content"].contents)
    for name, value in changes.items():
        tst[name] = value
    tst_der = tst.dump(force=True)
    signed["encap_content_info"]["content"] = cms.ParsableOctetString(tst_der)
    signer_info = signed["signer_infos"][0]
    digest = hashlib.new(signer_info["digest_algorithm"]["algorithm"].native, tst_der).digest()
    attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "message_digest", "values": [digest]})
            if a["type"].native == "message_digest"
            else cms.CMSAttribute.load(a.dump())
            for a in signer_info["signed_attrs"]
        ]
    )
    signer_info["signed_attrs"] = attrs
    signer_info["signature"] = setup.key.sign(attrs.dump())
    return bytes(token.dump(force=True))


def test_tst_info_version_and_imprint_hash_are_checked(any_tsa: Setup) -> None:
    root = any_tsa.h.root.certificate
    response = any_tsa.tsa.respond(build_request(DATA))
    assert (
        verify_token(
            _restamped(any_tsa, response, serial_number=77), trusted=[root], data=DATA
        ).serial
        == 77
    )
    with pytest.raises(TimestampTokenError, match="version"):
        verify_token(_restamped(any_tsa, response, version=2), trusted=[root], data=DATA)
    sha1 = {
        "hash_algorithm": {"algorithm": "sha1"},
        "hashed_message": hashlib.sha1(DATA, usedforsecurity=False).digest(),
    }
    with pytest.raises(UnsupportedAlgorithmError, match="sha1"):
        verify_token(_restamped(any_tsa, response, message_imprint=sha1), trusted=[root], data=DATA)


# --- hostile sizes: the verifier's work stays linear and bounded -------------------------------


class _CountingBytes(bytes):
    """Bytes that add up how many octets their slices copy."""

    copied = 0

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        item = super().__getitem__(key)
        if isinstance(key, slice):
            self.copied += len(item)
        return item


def test_the_tlv_walk_copies_each_value_once() -> None:
    """Walking N values side by side must copy about N values' bytes, not N times the rest.

    Slicing the remaining buffer per value (what the walk once did) copies ~N/2 times the input
    here; a 1 MiB token of ``05 00`` pairs then took ~11 s to refuse.
    """
    data = _CountingBytes(core.OctetString(b"\x5a" * 1000).dump() * 60)
    items = tsa_module.tlvs(data, "test")
    assert len(items) == 60
    assert all(item.contents == b"\x5a" * 1000 for item in items)
    assert data.copied <= 3 * len(data), data.copied  # encoding and contents of each, once


def _hostile_tokens() -> dict[str, bytes]:
    """1 MiB tokens of tiny values, the mass in the different places a verifier looks."""
    signed_data = cms.ContentType("signed_data").dump()
    tst_info = cms.ContentType("tst_info").dump()
    mass = b"\x05\x00" * (tsa_module.MAX_TOKEN // 2 - 64)

    def token(*signed: bytes) -> bytes:
        return core.Sequence(
            contents=signed_data + tlv(0xA0, core.Sequence(contents=b"".join(signed)).dump())
        ).dump()

    version = core.Integer(3).dump()
    encap = core.Sequence(contents=tst_info + tlv(0xA0, core.OctetString(b"0").dump())).dump()
    return {
        "side by side": mass,
        "in a reply": core.Sequence(contents=mass).dump(),
        "in SignedData": token(mass),
        "certificates": token(version, tlv(0x31), encap, tlv(0xA0, mass), tlv(0x31)),
        "signer infos": token(version, tlv(0x31), encap, tlv(0x31, mass)),
        "in the TSTInfo": token(
            version,
            tlv(0x31),
            core.Sequence(
                contents=tst_info
                + tlv(0xA0, core.OctetString(core.Sequence(contents=mass).dump()).dump())
            ).dump(),
            tlv(0x31),
        ),
    }


def test_a_hostile_megabyte_token_is_refused_before_parsing(any_tsa: Setup) -> None:
    """Refused by counting (each value visited once), not after asn1crypto parsed them all."""
    root = any_tsa.h.root.certificate
    for name, hostile in _hostile_tokens().items():
        assert len(hostile) <= tsa_module.MAX_TOKEN, name
        with pytest.raises(InputTooLargeError, match="more than 10000 DER values"):
            verify_token(hostile, trusted=[root], data=DATA)
    deep = b"\x05\x00"
    for _ in range(100):
        deep = core.Sequence(contents=deep).dump()
    with pytest.raises(MalformedInputError, match="nested more than"):
        verify_token(deep, trusted=[root], data=DATA)


def test_a_real_token_is_far_below_the_value_cap(any_tsa: Setup) -> None:
    response = any_tsa.tsa.respond(build_request(DATA))
    assert tsa_module.count_values(response, "reply") < tsa_module._MAX_TLVS // 20


def test_digests_that_look_like_der_are_opaque_to_the_value_count(any_tsa: Setup) -> None:
    """The count looks inside OCTET STRINGs that start like a SEQUENCE (the TSTInfo, extension
    values); an imprint or hash that merely starts with 0x30 is bytes, not broken DER."""
    root = any_tsa.h.root.certificate
    for digest in (
        b"\x30\xff" + b"\x01" * 30,  # a length that cannot be
        b"\x30\x1e" + b"\x05\x00" * 15,  # DER indeed: counted, and harmless
        b"\x30\x80" + b"\x02" * 30,  # indefinite length on ... nothing that ends
        b"\x30\x05\x30\x03\x30\x01" + b"\x30" * 26,  # nested, then truncated
    ):
        response = any_tsa.tsa.respond(build_request(digest=digest, nonce=False))
        info = verify_token(response, trusted=[root], digest=digest, hash_name="sha256")
        assert info.hashed_message == digest


def test_a_request_of_many_tiny_values_is_a_bad_request(any_tsa: Setup) -> None:
    """64 KiB of values asn1crypto would parse one by one (~0.1 s): refused by counting."""
    good = parser.parse(build_request(DATA), strict=True)[4]
    for extra in (
        tlv(0xA0, core.Sequence(contents=b"").dump() * 30_000),  # as extensions
        tlv(0xA0, b"\x05\x00" * 30_000),
    ):
        request = core.Sequence(contents=good + extra).dump()
        assert len(request) <= MAX_REQUEST
        outcome = any_tsa.tsa.process(request)
        assert outcome.failure_info == "bad_request", outcome.message
        assert "more than 256 DER values" in (outcome.message or "")


# --- a request read once ----------------------------------------------------------------------


def _tst_info(response: bytes) -> bytes:
    token = TimeStampResp.load(response)["time_stamp_token"]
    return bytes(token["content"]["encap_content_info"]["content"].contents)


def test_process_parsed_answers_as_process_without_reading_again(
    any_tsa: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    serials = iter((41, 41))
    authority = TimeStampAuthority(
        any_tsa.cert,
        any_tsa.key,
        policy=POLICY,
        chain=[any_tsa.h.issuing.certificate],
        clock=fixed_clock(any_tsa.moment),
        serial_source=lambda: next(serials),
    )
    request_der = build_request(DATA, nonce=7)
    request = parse_request(request_der)
    whole = authority.process(request_der)

    def no_second_read(der: bytes) -> tsa_module.TimestampRequest:
        raise AssertionError("the request was read again")

    monkeypatch.setattr(tsa_module, "parse_request", no_second_read)
    parsed = authority.process_parsed(request)
    assert parsed.granted and whole.granted
    info = verify_token(parsed.response, trusted=[any_tsa.h.root.certificate], data=DATA)
    assert (info.serial, info.nonce) == (41, 7)
    assert parsed.gen_time == whole.gen_time and parsed.hash_algorithm == whole.hash_algorithm
    assert _tst_info(parsed.response) == _tst_info(whole.response)
    # The checks after reading still apply to a parsed request.
    other = authority.process_parsed(dataclasses.replace(request, policy="1.2.3.4.5"))
    assert other.failure_info == "unaccepted_policy"


# --- certificate signatures go through the shared reader -------------------------------------


def _with_unused_bits(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate with its signature BIT STRING claiming one unused bit."""
    tbs, algorithm, signature = (
        cert["tbs_certificate"].dump(),
        cert["signature_algorithm"].dump(),
        cert["signature_value"].contents,
    )
    assert signature[:1] == b"\x00"
    return x509.Certificate.load(
        core.Sequence(contents=tbs + algorithm + tlv(0x03, b"\x01" + signature[1:])).dump()
    )


def test_a_tsa_certificate_signature_with_unused_bits_is_no_chain(any_tsa: Setup) -> None:
    odd = _with_unused_bits(any_tsa.cert)
    authority = TimeStampAuthority(
        odd, any_tsa.key, policy=POLICY, chain=[any_tsa.h.issuing.certificate]
    )
    response = authority.respond(build_request(DATA))
    with pytest.raises(TimestampCertificateError, match="no trusted issuer"):
        verify_token(response, trusted=[any_tsa.h.root.certificate], data=DATA)
    # Pinned, it is its own anchor: only the issuer link was refused.
    verify_token(response, trusted=[odd], data=DATA)
