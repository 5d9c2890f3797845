"""The OCSP responder and client helpers, judged by the OpenSSL CLI.

RSA responses are checked end to end by ``openssl ocsp``; OpenSSL 3.0 cannot pass the SM2
distinguishing ID there, so SM2 responses are checked over the tbsResponseData bytes with
``openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:...`` and parsed by
``openssl ocsp -resp_text -noverify``. Every test issues its own leaf certificates before
revoking, so the session hierarchies stay usable for other test modules.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import algos, core, x509
from asn1crypto import ocsp as asn1_ocsp

from tests.conftest import SM2_ID_OPT, Hierarchy, openssl
from trust.algorithms import SignatureAlgorithm
from trust.ca import CertificateAuthority
from trust.certificates import make_name, to_pem
from trust.errors import (
    ConfigurationError,
    EtrustError,
    InvalidSignatureError,
    MalformedInputError,
    OcspResponderUnauthorizedError,
    OcspResponseError,
    OcspResponseRefusedError,
    UnsupportedAlgorithmError,
)
from trust.keys import KeyHandle, default_algorithm
from trust.ocsp import (
    MAX_REQUEST_SIZE,
    DelegatedResponder,
    OcspResponder,
    build_request,
    delegate,
    issuer_hashes,
    parse_response,
    verify_response,
)
from trust.sm2 import DEFAULT_ID

# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def leaf_keys(sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> dict[str, KeyHandle]:
    """One subscriber key per algorithm; each test certifies it afresh (cheap: one signature)."""
    tag = secrets.token_hex(4)
    return {h.kind: h.new_key(f"ocsp-leaf-{h.kind}-{tag}") for h in (sm2_hierarchy, rsa_hierarchy)}


@pytest.fixture(scope="module")
def delegates(sm2_hierarchy: Hierarchy, rsa_hierarchy: Hierarchy) -> dict[str, DelegatedResponder]:
    """An ocsp-signer certificate and key under each issuing CA."""
    tag = secrets.token_hex(4)
    return {
        h.kind: delegate(h.issuing, h.new_key(f"ocsp-responder-{h.kind}-{tag}"))
        for h in (sm2_hierarchy, rsa_hierarchy)
    }


def issue_leaf(h: Hierarchy, key: KeyHandle) -> x509.Certificate:
    name = make_name({"C": "CN", "O": "测试单位", "CN": f"ocsp test {secrets.token_hex(4)}"})
    return h.issuing.issue(key.public_key_info, name, "person-signer")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def pem(folder: Path, name: str, cert: x509.Certificate) -> Path:
    return write(folder / f"{name}.pem", to_pem(cert))


def openssl_request(
    folder: Path,
    issuer_pem: Path,
    certs: list[Path],
    *,
    serials: tuple[int, ...] = (),
    hash_algo: str = "sha1",
    nonce: bool = True,
) -> tuple[Path, bytes]:
    """A request made by ``openssl ocsp -reqout`` (digest and issuer before -cert, as it wants)."""
    out = folder / f"req-{secrets.token_hex(4)}.der"
    args: list[str | Path] = ["ocsp", "-issuer", issuer_pem, f"-{hash_algo}"]
    for cert in certs:
        args += ["-cert", cert]
    for serial in serials:
        args += ["-serial", hex(serial)]
    args += ["-nonce" if nonce else "-no_nonce", "-reqout", out]
    openssl(*args)
    return out, out.read_bytes()


def openssl_statuses(
    resp: Path,
    issuer_pem: Path,
    cert_pems: list[Path],
    trust: list[str | Path],
    hash_algo: str = "sha1",
) -> str:
    """``openssl ocsp -respin``: verifies the response (exit 0) and prints each status.

    OpenSSL looks each certificate up by a CertID it computes, so it needs the request's hash.
    """
    args: list[str | Path] = ["ocsp", "-respin", resp, "-issuer", issuer_pem, f"-{hash_algo}"]
    for cert in cert_pems:
        args += ["-cert", cert]
    proc = openssl(*args, *trust, "-no_nonce")
    assert b"Response verify OK" in proc.stderr
    return proc.stdout.decode()


def status_line(text: str, cert: Path) -> str:
    match = re.search(rf"^{re.escape(str(cert))}: (\w+)$", text, re.MULTILINE)
    assert match, text
    return match.group(1)


class MutableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- RSA: OpenSSL makes the request and judges the answer -----------------------------------


@pytest.mark.parametrize("signer", ["ca", "delegated"])
@pytest.mark.parametrize(
    ("hash_algo", "nonce"), [("sha1", True), ("sha1", False), ("sha256", True)]
)
def test_rsa_openssl_good_then_revoked(
    tmp_path: Path,
    rsa_hierarchy: Hierarchy,
    leaf_keys: dict[str, KeyHandle],
    delegates: dict[str, DelegatedResponder],
    signer: str,
    hash_algo: str,
    nonce: bool,
) -> None:
    h = rsa_hierarchy
    leaf = issue_leaf(h, leaf_keys["rsa"])
    root_pem, issuer_pem = (
        pem(tmp_path, "root", h.root.certificate),
        pem(tmp_path, "issuing", h.issuing.certificate),
    )
    leaf_pem = pem(tmp_path, "leaf", leaf)
    entry: CertificateAuthority | DelegatedResponder = (
        h.issuing if signer == "ca" else delegates["rsa"]
    )
    responder = OcspResponder([entry])
    trust: list[str | Path] = ["-CAfile", root_pem, "-verify_other", issuer_pem]

    req_path, req = openssl_request(
        tmp_path, issuer_pem, [leaf_pem], hash_algo=hash_algo, nonce=nonce
    )
    answer = responder.answer(req)
    assert answer.response_status == "successful", answer.detail
    resp = write(tmp_path / "good.der", answer.der)
    text = openssl_statuses(resp, issuer_pem, [leaf_pem], trust, hash_algo)
    assert status_line(text, leaf_pem) == "good"
    if nonce:  # OpenSSL compares the nonce of the request it made with the echoed one
        proc = openssl("ocsp", "-reqin", req_path, "-respin", resp, *trust)
        assert b"Response verify OK" in proc.stderr
        other_path, _ = openssl_request(tmp_path, issuer_pem, [leaf_pem], hash_algo=hash_algo)
        mismatch = openssl("ocsp", "-reqin", other_path, "-respin", resp, *trust, check=False)
        assert mismatch.returncode != 0 and b"Nonce Verify error" in mismatch.stderr
    parsed = asn1_ocsp.OCSPResponse.load(answer.der)
    certs = parsed.basic_ocsp_response["certs"]
    if signer == "delegated":
        assert [c.dump() for c in certs] == [delegates["rsa"].certificate.dump()]
    else:
        assert not certs

    h.issuing.revoke(leaf.serial_number, "key_compromise")
    _, req = openssl_request(tmp_path, issuer_pem, [leaf_pem], hash_algo=hash_algo, nonce=nonce)
    resp = write(tmp_path / "revoked.der", responder.respond(req))
    text = openssl_statuses(resp, issuer_pem, [leaf_pem], trust, hash_algo)
    assert status_line(text, leaf_pem) == "revoked"
    assert "Reason: keyCompromise" in text


def test_rsa_delegated_with_vafile(
    tmp_path: Path,
    rsa_hierarchy: Hierarchy,
    leaf_keys: dict[str, KeyHandle],
    delegates: dict[str, DelegatedResponder],
) -> None:
    """A relying party that pins the responder certificate (-VAfile) accepts the answer."""
    h = rsa_hierarchy
    leaf_pem = pem(tmp_path, "leaf", issue_leaf(h, leaf_keys["rsa"]))
    issuer_pem = pem(tmp_path, "issuing", h.issuing.certificate)
    va = pem(tmp_path, "responder", delegates["rsa"].certificate)
    _, req = openssl_request(tmp_path, issuer_pem, [leaf_pem])
    resp = write(tmp_path / "resp.der", OcspResponder([delegates["rsa"]]).respond(req))
    text = openssl_statuses(resp, issuer_pem, [leaf_pem], ["-VAfile", va])
    assert status_line(text, leaf_pem) == "good"


def test_rsa_openssl_several_certificates_and_unknown_serial(
    tmp_path: Path, rsa_hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle]
) -> None:
    h = rsa_hierarchy
    good, revoked = issue_leaf(h, leaf_keys["rsa"]), issue_leaf(h, leaf_keys["rsa"])
    h.issuing.revoke(revoked.serial_number, "superseded")
    root_pem, issuer_pem = (
        pem(tmp_path, "root", h.root.certificate),
        pem(tmp_path, "issuing", h.issuing.certificate),
    )
    good_pem, revoked_pem = pem(tmp_path, "good", good), pem(tmp_path, "revoked", revoked)
    never_issued = int.from_bytes(secrets.token_bytes(15), "big") | 1
    _, req = openssl_request(tmp_path, issuer_pem, [good_pem, revoked_pem], serials=(never_issued,))
    answer = OcspResponder([h.issuing]).answer(req)
    assert [s.status for s in answer.statuses] == ["good", "revoked", "unknown"]
    resp = write(tmp_path / "resp.der", answer.der)
    proc = openssl(
        "ocsp", "-respin", resp, "-issuer", issuer_pem, "-cert", good_pem, "-cert", revoked_pem,
        "-serial", hex(never_issued), "-CAfile", root_pem, "-verify_other", issuer_pem,
        "-no_nonce",
    )  # fmt: skip
    text = proc.stdout.decode()
    assert status_line(text, good_pem) == "good"
    assert status_line(text, revoked_pem) == "revoked"
    assert "Reason: superseded" in text
    assert re.search(rf"^0x{never_issued:X}: unknown$", text, re.MULTILINE | re.IGNORECASE), text


# --- SM2: OpenSSL makes the request; pkeyutl judges the signature ---------------------------


def sm2_check_signature(folder: Path, der: bytes, signer: x509.Certificate) -> None:
    """The signature over tbsResponseData, checked by OpenSSL with the GM/T 0009 ID."""
    basic = asn1_ocsp.OCSPResponse.load(der).basic_ocsp_response
    assert basic["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    tbs = write(folder / "tbs.der", basic["tbs_response_data"].dump())
    sig = write(folder / "sig.der", basic["signature"].native)
    pub = write(
        folder / "pub.pem",
        openssl("x509", "-in", pem(folder, "signer", signer), "-pubkey", "-noout").stdout,
    )
    verify_args = ["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID_OPT]
    proc = openssl(*verify_args, "-pubin", "-inkey", pub, "-in", tbs, "-sigfile", sig)
    assert b"Signature Verified Successfully" in proc.stdout
    # The judge is not vacuous: one flipped bit in the TBS bytes and it refuses.
    tampered = bytearray(tbs.read_bytes())
    tampered[-1] ^= 0x01
    bad = write(folder / "tbs-bad.der", bytes(tampered))
    refused = openssl(
        *verify_args, "-pubin", "-inkey", pub, "-in", bad, "-sigfile", sig, check=False
    )
    assert refused.returncode != 0


@pytest.mark.parametrize("signer", ["ca", "delegated"])
@pytest.mark.parametrize("hash_algo", ["sha1", "sm3"])
def test_sm2_openssl_request_judged_by_pkeyutl(
    tmp_path: Path,
    sm2_hierarchy: Hierarchy,
    leaf_keys: dict[str, KeyHandle],
    delegates: dict[str, DelegatedResponder],
    signer: str,
    hash_algo: str,
) -> None:
    h = sm2_hierarchy
    leaf = issue_leaf(h, leaf_keys["sm2"])
    issuer_pem, leaf_pem = (
        pem(tmp_path, "issuing", h.issuing.certificate),
        pem(tmp_path, "leaf", leaf),
    )
    entry: CertificateAuthority | DelegatedResponder = (
        h.issuing if signer == "ca" else delegates["sm2"]
    )
    signing_cert = h.issuing.certificate if signer == "ca" else delegates["sm2"].certificate
    responder = OcspResponder([entry])

    _, req = openssl_request(tmp_path, issuer_pem, [leaf_pem], hash_algo=hash_algo)
    nonce = asn1_ocsp.OCSPRequest.load(req).nonce_value.native
    der = responder.respond(req)
    sm2_check_signature(tmp_path, der, signing_cert)
    info = verify_response(der, h.issuing.certificate, nonce=nonce)
    assert info.status_of(leaf.serial_number).status == "good"
    assert info.status_of(leaf.serial_number).hash_algorithm == hash_algo
    text = openssl(
        "ocsp", "-respin", write(tmp_path / "good.der", der), "-resp_text", "-noverify"
    ).stdout.decode()
    assert "Cert Status: good" in text
    assert f"Hash Algorithm: {hash_algo}" in text
    assert "OCSP Nonce" in text
    if signer == "delegated":
        assert info.responder_certificate is not None
        responder_pem = pem(tmp_path, "responder", delegates["sm2"].certificate)
        openssl(
            "verify", "-vfyopt", SM2_ID_OPT, "-partial_chain", "-CAfile", issuer_pem, responder_pem
        )
        eku = openssl("x509", "-in", responder_pem, "-noout", "-ext", "extendedKeyUsage")
        assert b"OCSP Signing" in eku.stdout

    h.issuing.revoke(leaf.serial_number, "key_compromise")
    _, req = openssl_request(tmp_path, issuer_pem, [leaf_pem], hash_algo=hash_algo)
    der = responder.respond(req)
    sm2_check_signature(tmp_path, der, signing_cert)
    single = verify_response(der, h.issuing.certificate).status_of(leaf.serial_number)
    assert (single.status, single.reason) == ("revoked", "key_compromise")
    assert single.revoked_at is not None
    text = openssl(
        "ocsp", "-respin", write(tmp_path / "revoked.der", der), "-resp_text", "-noverify"
    ).stdout.decode()
    assert "Cert Status: revoked" in text
    assert "keyCompromise" in text


# --- Both algorithms: our own client helpers ------------------------------------------------


@pytest.mark.parametrize("hash_algo", ["sha1", "sha256", "sm3"])
def test_build_request_round_trip(
    hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle], hash_algo: str
) -> None:
    h = hierarchy
    good, revoked = issue_leaf(h, leaf_keys[h.kind]), issue_leaf(h, leaf_keys[h.kind])
    h.issuing.revoke(revoked.serial_number, "cessation_of_operation")
    never_issued = int.from_bytes(secrets.token_bytes(15), "big") | 1
    nonce = secrets.token_bytes(32)
    req = build_request(
        h.issuing.certificate, [good, revoked, never_issued], hash_algo=hash_algo, nonce=nonce
    )
    answer = OcspResponder([h.issuing]).answer(req)
    assert answer.response_status == "successful" and answer.nonce
    info = verify_response(answer.der, h.issuing.certificate, nonce=nonce)
    assert info.nonce == nonce
    assert info.status_of(good.serial_number).status == "good"
    rev = info.status_of(revoked.serial_number)
    assert (rev.status, rev.reason) == ("revoked", "cessation_of_operation")
    assert info.status_of(never_issued).status == "unknown"
    assert {s.hash_algorithm for s in info.statuses} == {hash_algo}
    # The request is what OpenSSL reads, too.
    text = openssl("ocsp", "-reqin", "/dev/stdin", "-req_text", input=req).stdout.decode()
    assert text.count("Certificate ID:") == 3
    assert f"Hash Algorithm: {hash_algo}" in text


def test_issuer_hashes_match_openssl(tmp_path: Path, hierarchy: Hierarchy) -> None:
    issuer_pem = pem(tmp_path, "issuing", hierarchy.issuing.certificate)
    for hash_algo in ("sha1", "sha256", "sm3"):
        _, req = openssl_request(tmp_path, issuer_pem, [], serials=(5,), hash_algo=hash_algo)
        cert_id = asn1_ocsp.OCSPRequest.load(req)["tbs_request"]["request_list"][0]["req_cert"]
        expected = (cert_id["issuer_name_hash"].native, cert_id["issuer_key_hash"].native)
        assert issuer_hashes(hierarchy.issuing.certificate, hash_algo) == expected


def test_mixed_issuers_unknown_for_the_one_not_served(
    hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle]
) -> None:
    h = hierarchy
    leaf = issue_leaf(h, leaf_keys[h.kind])
    ours = asn1_ocsp.OCSPRequest.load(build_request(h.issuing.certificate, [leaf]))
    foreign = asn1_ocsp.OCSPRequest.load(build_request(h.root.certificate, [h.issuing.certificate]))
    both = asn1_ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    foreign["tbs_request"]["request_list"][0],
                    ours["tbs_request"]["request_list"][0],
                ]
            }
        }
    )
    answer = OcspResponder([h.issuing]).answer(both.dump())
    assert [s.status for s in answer.statuses] == ["unknown", "good"]
    info = verify_response(answer.der, h.issuing.certificate)
    assert [s.serial for s in info.statuses] == [leaf.serial_number]  # only what it may vouch for


def test_request_about_ca_not_served_is_unauthorized(tmp_path: Path, hierarchy: Hierarchy) -> None:
    h = hierarchy
    req = build_request(h.root.certificate, [h.issuing.certificate])
    answer = OcspResponder([h.issuing]).answer(req)
    assert answer.response_status == "unauthorized"
    assert asn1_ocsp.OCSPResponse.load(answer.der)["response_status"].native == "unauthorized"
    proc = openssl(
        "ocsp", "-respin", write(tmp_path / "r.der", answer.der), "-resp_text", "-noverify",
        check=False,
    )  # fmt: skip
    assert b"unauthorized" in proc.stdout + proc.stderr
    with pytest.raises(OcspResponseRefusedError):
        verify_response(answer.der, h.root.certificate)
    # A responder serving both CAs answers it.
    both = OcspResponder([h.root, h.issuing])
    info = verify_response(both.respond(req), h.root.certificate)
    assert info.status_of(h.issuing.certificate.serial_number).status == "good"


# --- Bad input: always a parseable OCSPResponse with the right status -----------------------


def _request_with(
    h: Hierarchy,
    *,
    hash_oid: str | None = None,
    nonce_value: bytes | None = None,
    extension: tuple[str, bool] | None = None,
) -> bytes:
    """A request assembled with asn1crypto, independent of build_request's own checks."""
    name_hash, key_hash = issuer_hashes(h.issuing.certificate, "sha1")
    tbs: dict[str, object] = {
        "request_list": [
            {
                "req_cert": {
                    "hash_algorithm": {"algorithm": hash_oid or "sha1", "parameters": core.Null()},
                    "issuer_name_hash": name_hash,
                    "issuer_key_hash": key_hash,
                    "serial_number": 7,
                }
            }
        ]
    }
    extensions = []
    if nonce_value is not None:
        extensions.append({"extn_id": "nonce", "extn_value": core.OctetString(nonce_value)})
    if extension is not None:
        oid, critical = extension
        extensions.append({"extn_id": oid, "critical": critical, "extn_value": b"\x04\x01x"})
    if extensions:
        tbs["request_extensions"] = extensions
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump())


BAD_INPUTS = {  # case -> what the refusal must say (so each case fails for its own reason)
    "garbage": "DER",
    "all-bytes": "not an OCSPRequest",
    "empty": "empty",
    "truncated-half": "truncated",
    "truncated-tail": "truncated",
    "trailing-bytes": "after",
    "oversized": "larger",
    "too-many-certificates": "more than",
    "nonce-200": "nonce",
    "nonce-empty": "nonce",
    "md5-certid": "hash algorithm",
    "critical-unknown-extension": "critical",
    "indefinite-length": "indefinite",
    "not-bytes": "bytes",
}


def der_sequence(content: bytes) -> bytes:
    n = len(content)
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    length = bytes([n]) if n < 0x80 else bytes([0x80 | len(size)]) + size
    return b"\x30" + length + content


def _bad_request(case: str, h: Hierarchy) -> object:
    valid = build_request(h.issuing.certificate, [1, 2], nonce=secrets.token_bytes(16))
    match case:
        case "garbage":
            return b"this is not an OCSP request at all"
        case "all-bytes":
            return bytes(range(256))
        case "empty":
            return b""
        case "truncated-half":
            return valid[: len(valid) // 2]
        case "truncated-tail":
            return valid[:-1]
        case "trailing-bytes":
            return valid + b"\x00\x00"
        case "oversized":  # well-formed, just too big: 1,200 copies of one Request
            one = asn1_ocsp.OCSPRequest.load(build_request(h.issuing.certificate, [1]))
            request_list = der_sequence(one["tbs_request"]["request_list"][0].dump() * 1200)
            big = der_sequence(der_sequence(request_list))
            assert len(asn1_ocsp.OCSPRequest.load(big)["tbs_request"]["request_list"]) == 1200
            return big
        case "too-many-certificates":
            return build_request(h.issuing.certificate, range(1, 200))
        case "nonce-200":
            return _request_with(h, nonce_value=secrets.token_bytes(200))
        case "nonce-empty":
            return _request_with(h, nonce_value=b"")
        case "md5-certid":
            return _request_with(h, hash_oid="md5")
        case "critical-unknown-extension":
            return _request_with(h, extension=("1.2.3.4.5", True))
        case "indefinite-length":
            return b"\x30\x80" + valid[2:] + b"\x00\x00"
        case "not-bytes":
            return "MEIwQDA+MDwwOjAJBgUrDgMCGgUABBQ="
    raise AssertionError(case)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_requests_get_malformed_request(
    tmp_path: Path, rsa_hierarchy: Hierarchy, case: str
) -> None:
    h = rsa_hierarchy
    bad = _bad_request(case, h)
    if case == "oversized":
        assert isinstance(bad, bytes) and len(bad) > MAX_REQUEST_SIZE
    answer = OcspResponder([h.issuing]).answer(bad)  # type: ignore[arg-type]
    assert answer.response_status == "malformed_request", answer.detail
    assert answer.detail and BAD_INPUTS[case] in answer.detail
    parsed = asn1_ocsp.OCSPResponse.load(answer.der, strict=True)
    assert parsed["response_status"].native == "malformed_request"
    assert isinstance(parsed["response_bytes"], core.Void)
    assert parse_response(answer.der).response_status == "malformed_request"
    proc = openssl(
        "ocsp", "-respin", write(tmp_path / "r.der", answer.der), "-resp_text", "-noverify",
        check=False,
    )  # fmt: skip
    assert b"malformedrequest" in (proc.stdout + proc.stderr).lower()


def test_every_corrupted_byte_is_answered_or_refused_cleanly(
    hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle], delegates: dict[str, DelegatedResponder]
) -> None:
    """Flip bits everywhere: the responder never fails inside, the verifier never lets a change
    of meaning through and never raises anything but the project's errors."""
    h = hierarchy
    leaf = issue_leaf(h, leaf_keys[h.kind])
    responder = OcspResponder([delegates[h.kind]])
    req = build_request(h.issuing.certificate, [leaf, 5], nonce=bytes(range(16)))
    for pos in range(len(req)):
        for mask in (0x01, 0x80):
            corrupted = bytearray(req)
            corrupted[pos] ^= mask
            answer = responder.answer(bytes(corrupted))
            assert answer.response_status != "internal_error", (pos, answer.detail)
            asn1_ocsp.OCSPResponse.load(answer.der, strict=True)
    der = responder.respond(req)
    original = verify_response(der, h.issuing.certificate).statuses
    tbs = asn1_ocsp.OCSPResponse.load(der).response_data.dump()
    cert_tbs = delegates[h.kind].certificate["tbs_certificate"].dump()
    signed = [range(der.index(t), der.index(t) + len(t)) for t in (tbs, cert_tbs)]
    for pos in range(len(der)):
        corrupted = bytearray(der)
        corrupted[pos] ^= 0x01
        try:
            info = verify_response(bytes(corrupted), h.issuing.certificate)
        except EtrustError:
            continue
        # Only a byte nobody signed may change unnoticed (an AlgorithmIdentifier's NULL
        # parameters, which the registry ignores), and then the statuses are the same.
        assert not any(pos in span for span in signed), pos
        assert info.statuses == original, pos


def test_largest_nonce_is_echoed(rsa_hierarchy: Hierarchy) -> None:
    h = rsa_hierarchy
    nonce = secrets.token_bytes(128)
    answer = OcspResponder([h.issuing]).answer(_request_with(h, nonce_value=nonce))
    assert answer.response_status == "successful", answer.detail
    assert verify_response(answer.der, h.issuing.certificate, nonce=nonce).nonce == nonce


def test_non_critical_unknown_extension_is_ignored(rsa_hierarchy: Hierarchy) -> None:
    h = rsa_hierarchy
    answer = OcspResponder([h.issuing]).answer(_request_with(h, extension=("1.2.3.4.5", False)))
    assert answer.response_status == "successful", answer.detail


def test_signed_request_is_answered(hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle]) -> None:
    """optionalSignature is not checked (RFC 6960 does not require it) but must not break parsing."""
    h = hierarchy
    key = leaf_keys[h.kind]
    leaf = issue_leaf(h, key)
    unsigned = asn1_ocsp.OCSPRequest.load(build_request(h.issuing.certificate, [leaf]))
    tbs = unsigned["tbs_request"]
    alg = default_algorithm(key)
    signed = asn1_ocsp.OCSPRequest(
        {
            "tbs_request": tbs,
            "optional_signature": {
                "signature_algorithm": algos.SignedDigestAlgorithm(
                    alg.algorithm_identifier().native
                ),
                "signature": key.sign(tbs.dump(), alg),
                "certs": [leaf],
            },
        }
    )
    answer = OcspResponder([h.issuing]).answer(signed.dump())
    assert answer.response_status == "successful", answer.detail
    assert verify_response(answer.der, h.issuing.certificate).statuses[0].status == "good"


class FailingKey:
    """A key handle whose device has gone away: it knows its public key but cannot sign."""

    def __init__(self, real: KeyHandle) -> None:
        self._real = real

    @property
    def key_uri(self) -> str:
        return self._real.key_uri

    @property
    def key_type(self) -> str:
        return self._real.key_type

    @property
    def public_key_info(self) -> object:
        return self._real.public_key_info

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        sm2_id: bytes = DEFAULT_ID,
    ) -> bytes:
        raise OSError("the HSM stopped answering")


def test_signing_failure_is_internal_error(hierarchy: Hierarchy) -> None:
    h = hierarchy
    broken = CertificateAuthority(
        h.issuing.name,
        h.issuing.certificate,
        FailingKey(h.issuing.key),  # type: ignore[arg-type]
        h.repository,
    )
    answer = OcspResponder([broken]).answer(build_request(h.issuing.certificate, [1]))
    assert answer.response_status == "internal_error"
    assert asn1_ocsp.OCSPResponse.load(answer.der)["response_status"].native == "internal_error"


def test_expired_delegate_is_internal_error(
    hierarchy: Hierarchy, delegates: dict[str, DelegatedResponder]
) -> None:
    """A responder certificate past notAfter must not sign (the CA is still valid then)."""
    h = hierarchy
    later = datetime.now(UTC) + timedelta(days=2 * 365)
    assert h.issuing.certificate.not_valid_after > later
    responder = OcspResponder([delegates[h.kind]], clock=lambda: later)
    answer = responder.answer(build_request(h.issuing.certificate, [1]))
    assert answer.response_status == "internal_error"


# --- Verification refuses what it must ------------------------------------------------------


def _flip(der: bytes, at: int) -> bytes:
    out = bytearray(der)
    out[at] ^= 0x01
    return bytes(out)


def test_tampered_response_fails(
    tmp_path: Path, hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle]
) -> None:
    h = hierarchy
    leaf = issue_leaf(h, leaf_keys[h.kind])
    der = OcspResponder([h.issuing]).respond(build_request(h.issuing.certificate, [leaf]))
    verify_response(der, h.issuing.certificate)  # the untampered one passes
    basic = asn1_ocsp.OCSPResponse.load(der).basic_ocsp_response
    signature = basic["signature"].native
    sig_at = der.rindex(signature) + len(signature) // 2
    with pytest.raises(InvalidSignatureError) as err:
        verify_response(_flip(der, sig_at), h.issuing.certificate)
    assert err.value.code == "SIGNATURE_INVALID"
    # good (0x80 0x00) -> unknown (0x82 0x00) inside tbsResponseData
    status_at = der.index(b"\x80\x00\x18\x0f")
    forged = bytearray(der)
    forged[status_at] = 0x82
    assert parse_response(bytes(forged)).statuses[0].status == "unknown"
    with pytest.raises(InvalidSignatureError):
        verify_response(bytes(forged), h.issuing.certificate)
    if h.kind == "rsa":  # and OpenSSL agrees
        root_pem = pem(tmp_path, "root", h.root.certificate)
        issuer_pem = pem(tmp_path, "issuing", h.issuing.certificate)
        bad = write(tmp_path / "bad.der", _flip(der, sig_at))
        proc = openssl(
            "ocsp", "-respin", bad, "-CAfile", root_pem, "-verify_other", issuer_pem, check=False
        )
        assert proc.returncode != 0 and b"Response Verify Failure" in proc.stderr


def _one_unused_bit(der: bytes, bit_string_contents: bytes) -> bytes:
    """``der`` with that BIT STRING claiming one unused bit (same bytes, same length)."""
    at = der.rindex(bit_string_contents)
    assert der[at] == 0
    return der[:at] + b"\x01" + der[at + 1 :]


def test_signature_with_unused_bits_is_malformed_not_merely_wrong(
    tmp_path: Path, hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle]
) -> None:
    """asn1crypto would read past the unused-bits octet; the response is refused as malformed."""
    h = hierarchy
    leaf = issue_leaf(h, leaf_keys[h.kind])
    der = OcspResponder([h.issuing]).respond(build_request(h.issuing.certificate, [leaf]))
    basic = asn1_ocsp.OCSPResponse.load(der).basic_ocsp_response
    odd = _one_unused_bit(der, basic["signature"].contents)
    assert parse_response(odd).statuses[0].status == "good"  # it reads...
    with pytest.raises(OcspResponseError, match="unused bits") as err:
        verify_response(odd, h.issuing.certificate)  # ...but is not relied on
    assert err.value.code == "OCSP_RESPONSE_INVALID"
    if h.kind == "rsa":  # OpenSSL refuses it too
        root_pem = pem(tmp_path, "root", h.root.certificate)
        issuer_pem = pem(tmp_path, "issuing", h.issuing.certificate)
        bad = write(tmp_path / "odd.der", odd)
        proc = openssl(
            "ocsp", "-respin", bad, "-CAfile", root_pem, "-verify_other", issuer_pem, check=False
        )
        assert proc.returncode != 0 and b"Response Verify Failure" in proc.stderr


def test_responder_certificate_signature_with_unused_bits_is_unauthorised(
    hierarchy: Hierarchy,
    leaf_keys: dict[str, KeyHandle],
    delegates: dict[str, DelegatedResponder],
) -> None:
    h = hierarchy
    real = delegates[h.kind]
    odd_cert = x509.Certificate.load(
        _one_unused_bit(real.certificate.dump(), real.certificate["signature_value"].contents)
    )
    with pytest.raises(ConfigurationError, match="signature is malformed"):
        OcspResponder([DelegatedResponder(h.issuing, odd_cert, real.key)])
    leaf = issue_leaf(h, leaf_keys[h.kind])
    der = OcspResponder([real]).respond(build_request(h.issuing.certificate, [leaf]))
    verify_response(der, h.issuing.certificate)
    # The certificates sit outside tbsResponseData: the response signature still holds.
    odd = der.replace(real.certificate.dump(), odd_cert.dump())
    assert odd != der and len(odd) == len(der)
    with pytest.raises(OcspResponderUnauthorizedError, match="signature is malformed") as err:
        verify_response(odd, h.issuing.certificate)
    assert err.value.code == "OCSP_RESPONDER_UNAUTHORIZED"


def test_verify_refuses_wrong_issuer_nonce_and_time(
    hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle]
) -> None:
    h = hierarchy
    leaf = issue_leaf(h, leaf_keys[h.kind])
    nonce = secrets.token_bytes(16)
    der = OcspResponder([h.issuing]).respond(
        build_request(h.issuing.certificate, [leaf], nonce=nonce)
    )
    with pytest.raises(OcspResponderUnauthorizedError):
        verify_response(der, h.root.certificate)
    with pytest.raises(OcspResponseError, match="nonce"):
        verify_response(der, h.issuing.certificate, nonce=secrets.token_bytes(16))
    with pytest.raises(OcspResponseError, match="stale"):
        verify_response(der, h.issuing.certificate, at=datetime.now(UTC) + timedelta(hours=3))
    with pytest.raises(OcspResponseError, match="not valid yet"):
        verify_response(der, h.issuing.certificate, at=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(OcspResponseError):
        parse_response(b"\x30\x03\x0a\x01")
    with pytest.raises(OcspResponseError):
        info = verify_response(der, h.issuing.certificate)
        info.status_of(leaf.serial_number + 1)


def test_delegate_of_another_ca_is_not_authorised(
    hierarchy: Hierarchy, delegates: dict[str, DelegatedResponder]
) -> None:
    """A responder certified by the root may not vouch for what the issuing CA issued."""
    h = hierarchy
    root_delegate = delegate(h.root, delegates[h.kind].key, make_name({"CN": "root OCSP"}))
    with pytest.raises(ConfigurationError, match="another issuer"):
        OcspResponder([DelegatedResponder(h.issuing, root_delegate.certificate, root_delegate.key)])
    # Its genuine answers about root-issued certificates do not verify against the issuing CA.
    der = OcspResponder([root_delegate]).respond(
        build_request(h.root.certificate, [h.issuing.certificate])
    )
    assert verify_response(der, h.root.certificate).responder_certificate is not None
    with pytest.raises(OcspResponderUnauthorizedError):
        verify_response(der, h.issuing.certificate)


def test_responder_configuration_errors(
    hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle]
) -> None:
    h = hierarchy
    person = issue_leaf(h, leaf_keys[h.kind])
    with pytest.raises(ConfigurationError, match="OCSPSigning"):
        OcspResponder([DelegatedResponder(h.issuing, person, leaf_keys[h.kind])])
    with pytest.raises(ConfigurationError):
        OcspResponder([])
    with pytest.raises(ConfigurationError, match="twice"):
        OcspResponder([h.issuing, h.issuing])
    with pytest.raises(UnsupportedAlgorithmError):
        build_request(h.issuing.certificate, [1], hash_algo="md5")
    with pytest.raises(MalformedInputError):
        build_request(h.issuing.certificate, [h.issuing.certificate])  # issued by the root
    with pytest.raises(MalformedInputError):
        build_request(h.issuing.certificate, [1], nonce=bytes(129))


# --- The cache: saves signatures, never hides a revocation ----------------------------------


@pytest.fixture
def clock() -> Iterator[MutableClock]:
    yield MutableClock(datetime.now(UTC).replace(microsecond=0))


def test_cache_serves_until_stale_and_sees_revocation(
    hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle], clock: MutableClock
) -> None:
    h = hierarchy
    leaf = issue_leaf(h, leaf_keys[h.kind])
    responder = OcspResponder(
        [h.issuing], clock=clock, validity=timedelta(hours=1), cache_for=timedelta(minutes=5)
    )
    req = build_request(h.issuing.certificate, [leaf])
    first = responder.answer(req)
    second = responder.answer(req)
    assert not first.cached and second.cached
    assert second.der == first.der

    clock.now += timedelta(minutes=4)
    assert responder.answer(req).der == first.der
    clock.now += timedelta(minutes=2)  # past cache_for: a fresh answer, produced now
    fresh = responder.answer(req)
    assert not fresh.cached
    assert parse_response(fresh.der).produced_at == clock.now

    h.issuing.revoke(leaf.serial_number, "affiliation_changed")
    after = responder.answer(req)  # the revocation is seen at once, cache or not
    assert not after.cached
    info = verify_response(after.der, h.issuing.certificate, at=clock.now)
    assert info.status_of(leaf.serial_number).status == "revoked"
    assert responder.answer(req).cached  # and the revoked answer is cached in its turn


def test_nonce_requests_and_disabled_cache_are_never_cached(
    hierarchy: Hierarchy, leaf_keys: dict[str, KeyHandle], clock: MutableClock
) -> None:
    h = hierarchy
    leaf = issue_leaf(h, leaf_keys[h.kind])
    responder = OcspResponder([h.issuing], clock=clock)
    req = build_request(h.issuing.certificate, [leaf], nonce=secrets.token_bytes(16))
    assert not responder.answer(req).cached
    assert not responder.answer(req).cached
    several = build_request(h.issuing.certificate, [leaf, 12345])
    assert not responder.answer(several).cached
    assert not responder.answer(several).cached
    off = OcspResponder([h.issuing], clock=clock, cache_for=timedelta(0))
    single = build_request(h.issuing.certificate, [leaf])
    assert not off.answer(single).cached
    assert not off.answer(single).cached
