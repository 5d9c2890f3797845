"""GB/T 38540 seals and SES signatures (signing/seal.py, signing/ses.py), v1, v4 and v5.

Real ofdrw samples are the regression fixtures; our own seals and signatures are judged by the
OpenSSL CLI over byte spans this file cuts out itself with asn1crypto's parser, and the dataHash
is recomputed with hashlib. Forged structures (a signer the seal does not list, a seal used
outside its validity, v1 layouts) are assembled here by hand, bypassing the checks of sign_ses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import secrets
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from asn1crypto import algos, core, keys, parser, x509

from signing import ses_asn1
from signing.context import VerifyContext
from signing.report import Report
from signing.seal import (
    MAX_SEAL_BYTES,
    ParsedSeal,
    SealPicture,
    SealSpec,
    make_seal,
    parse_seal,
    verify_seal,
)
from signing.ses import (
    MAX_SIGNATURE_BYTES,
    data_hash_name,
    parse_ses_signature,
    sign_ses,
    verify_ses,
)
from tests.conftest import SM2_ID_OPT, openssl
from tests.signing_pki import Party, SigningPki
from trust.der import sequence
from trust.errors import (
    ConfigurationError,
    ForbiddenError,
    InputTooLargeError,
    InvalidSignatureError,
    MalformedInputError,
)

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofdrw"
SM2_SM3_OID = "1.2.156.10197.1.501"
SM2_CURVE = "1.2.156.10197.1.301"
ALG_OIDS = {"sm2": SM2_SM3_OID, "rsa": "1.2.840.113549.1.1.11", "ec-p256": "1.2.840.10045.4.3.2"}
ORIGINAL = "<ofd:Signature>市场主体登记 办结结果 2026-0001</ofd:Signature>".encode()
PICTURE = SealPicture("PNG", b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(256), 40, 40)
PROPERTY = "/Doc_0/Signs/Sign_0/Signature.xml"

# GB/T 32918.5 parameters (standards.md §5.2), for an SM3(Z || M) computed here, not by trust.sm2.
_SM2_A = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC", 16)
_SM2_B = int("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93", 16)
_SM2_GX = int("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7", 16)
_SM2_GY = int("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0", 16)


# --- helpers: reading bytes our own way --------------------------------------------------------


def vector(name: str) -> bytes:
    path = VECTORS / name
    if not path.is_file():
        pytest.fail(f"the shared ofdrw vector {path} is missing")
    return path.read_bytes()


def tlvs(encoded: bytes) -> list[bytes]:
    """The elements inside a constructed value, each as its original bytes."""
    _, _, _, _, contents, _ = parser.parse(encoded, strict=True)
    out, pos = [], 0
    while pos < len(contents):
        _, _, _, header, body, trailer = parser.parse(contents[pos:])
        size = len(header) + len(body) + len(trailer)
        out.append(contents[pos : pos + size])
        pos += size
    return out


def body(encoded: bytes) -> bytes:
    return bytes(parser.parse(encoded, strict=True)[4])


def bits(encoded: bytes) -> bytes:
    """The octets of a BIT STRING TLV (first content octet: zero unused bits)."""
    contents = body(encoded)
    assert contents[0] == 0
    return contents[1:]


def seal_spans(seal: bytes) -> tuple[bytes, x509.Certificate, str, bytes]:
    """(what the maker signed, maker certificate, algorithm OID, signature) of any generation."""
    parts = tlvs(seal)
    if len(parts) == 2:  # v1: the maker signs SEQUENCE{sealInfo, cert, alg}
        cert_tlv, alg_tlv, sig_tlv = tlvs(parts[1])
        signed = sequence(parts[0], cert_tlv, alg_tlv)
    else:
        cert_tlv, alg_tlv, sig_tlv = parts[1:4]
        signed = parts[0]
    alg = core.ObjectIdentifier.load(alg_tlv).dotted
    return signed, x509.Certificate.load(body(cert_tlv)), alg, bits(sig_tlv)


def ses_spans(ses: bytes) -> tuple[bytes, x509.Certificate, bytes, bytes]:
    """(TBS_Sign bytes, signer certificate, signature, dataHash) of a v4/v5 SES_Signature."""
    tbs, cert_tlv, _, sig_tlv, *_ = tlvs(ses)
    return tbs, x509.Certificate.load(body(cert_tlv)), bits(sig_tlv), bits(tlvs(tbs)[3])


def openssl_verifies(cert: x509.Certificate, data: bytes, signature: bytes, tmp: Path) -> None:
    """The OpenSSL CLI checks ``signature`` over ``data`` with the certificate's key."""
    (tmp / "pub.der").write_bytes(cert.public_key.dump())
    (tmp / "data").write_bytes(data)
    (tmp / "sig").write_bytes(signature)
    params = cert.public_key["algorithm"]["parameters"]
    is_sm2 = isinstance(params, keys.ECDomainParameters) and params.chosen.dotted == SM2_CURVE
    digest = ["-digest", "sm3", "-pkeyopt", SM2_ID_OPT] if is_sm2 else ["-digest", "sha256"]
    out = openssl(
        "pkeyutl", "-verify", "-rawin", *digest, "-pubin", "-keyform", "DER",
        "-inkey", tmp / "pub.der", "-in", tmp / "data", "-sigfile", tmp / "sig",
    )  # fmt: skip
    assert b"Signature Verified Successfully" in out.stdout


def sm3_with_z(cert: x509.Certificate, data: bytes) -> bytes:
    point = cert.public_key["public_key"].native
    x, y = point[1:33], point[33:65]
    entl_id = (16 * 8).to_bytes(2, "big") + b"1234567812345678"
    curve = b"".join(v.to_bytes(32, "big") for v in (_SM2_A, _SM2_B, _SM2_GX, _SM2_GY))
    z = hashlib.new("sm3", entl_id + curve + x + y).digest()
    return hashlib.new("sm3", z + data).digest()


def checks(rep: Report) -> dict[str, str]:
    return {c["name"]: c["result"] for c in rep.checks}


def detail(rep: Report, name: str) -> str:
    return next(c["detail"] for c in rep.checks if c["name"] == name)


def flip(data: bytes, span: bytes, offset: int = 12) -> bytes:
    """``data`` with one bit flipped inside the (last occurrence of) ``span``."""
    at = data.rfind(span)
    assert at >= 0
    pos = at + offset
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]


def set_header_version(seal: bytes, version: int) -> bytes:
    """The seal with another SES_Header version integer (nothing re-signed)."""
    at = seal.find(b"\x16\x02ES\x02\x01")
    assert at >= 0
    pos = at + 6
    return seal[:pos] + bytes([version]) + seal[pos + 1 :]


# --- helpers: making seals and signatures ---------------------------------------------------------


def spec(pki: SigningPki, **changes: object) -> SealSpec:
    base = SealSpec(
        es_id="15010220260001",
        name="测试盟市场监督管理局行政审批专用章",
        seal_type=3,
        signer_certs=[pki.signer.cert],
        valid_from=pki.now - timedelta(hours=1),
        valid_to=pki.now + timedelta(days=365),
        picture=PICTURE,
        created=pki.now - timedelta(hours=1),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def seal_of(pki: SigningPki, version: int = 4, **changes: object) -> bytes:
    timestamper = pki.timestamper if version == 5 else None
    return make_seal(
        spec(pki, **changes),
        pki.maker.key,
        pki.maker.cert,
        version=version,
        timestamper=timestamper,
    )


def data_hash(pki: SigningPki, original: bytes = ORIGINAL) -> bytes:
    return hashlib.new(data_hash_name(pki.signer.key.key_type), original).digest()


def ses_of(pki: SigningPki, seal: bytes, **kwargs: object) -> bytes:
    return sign_ses(
        seal,
        pki.signer.key,
        pki.signer.cert,
        data_hash=data_hash(pki),
        property_info=PROPERTY,
        signing_time=pki.now,
        **kwargs,  # type: ignore[arg-type]
    )


def forge_ses(
    seal: bytes, party: Party, *, digest: bytes, when: datetime, version: int | None = None
) -> bytes:
    """A v4/v5 SES_Signature assembled by hand, bypassing every check of sign_ses."""
    tbs = sequence(
        core.Integer(version or parse_seal(seal).version).dump(),
        seal,
        core.GeneralizedTime(when.astimezone(UTC)).dump(),
        core.OctetBitString(digest).dump(),
        core.IA5String(PROPERTY).dump(),
    )
    return sequence(
        tbs,
        core.OctetString(party.cert.dump()).dump(),
        core.ObjectIdentifier(ALG_OIDS[party.key.key_type]).dump(),
        core.OctetBitString(party.key.sign(tbs)).dump(),
    )


def resign_v4(info: bytes, maker: Party, *tail: bytes) -> bytes:
    """A v4/v5 seal around ``info``, signed here by the maker; ``tail`` adds a timestamp field."""
    return sequence(
        info,
        core.OctetString(maker.cert.dump()).dump(),
        core.ObjectIdentifier(ALG_OIDS[maker.key.key_type]).dump(),
        core.OctetBitString(maker.key.sign(info)).dump(),
        *tail,
    )


def raw_rs(der_signature: bytes) -> bytes:
    value = algos.DSASignature.load(der_signature)
    r: int = value["r"].native
    s: int = value["s"].native
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def v1_seal(pki: SigningPki, signers: list[x509.Certificate]) -> bytes:
    """A GM/T 0031-2014 seal, as ofdrw's v1 code lays it out (UTCTime, SignInfo)."""
    start = pki.now - timedelta(hours=1)
    header = sequence(
        core.IA5String("ES").dump(), core.Integer(1).dump(), core.IA5String("TESTV1").dump()
    )
    prop = sequence(
        core.Integer(1).dump(),
        core.UTF8String("测试v1印章").dump(),
        sequence(*[core.OctetString(c.dump()).dump() for c in signers]),
        core.UTCTime(start).dump(),
        core.UTCTime(start).dump(),
        core.UTCTime(pki.now + timedelta(days=30)).dump(),
    )
    picture = sequence(
        core.IA5String("PNG").dump(),
        core.OctetString(PICTURE.data).dump(),
        core.Integer(40).dump(),
        core.Integer(40).dump(),
    )
    info = sequence(header, core.IA5String("V1-0001").dump(), prop, picture)
    cert = core.OctetString(pki.maker.cert.dump()).dump()
    alg = core.ObjectIdentifier(SM2_SM3_OID).dump()
    signature = raw_rs(pki.maker.key.sign(sequence(info, cert, alg)))
    return sequence(info, sequence(cert, alg, core.OctetBitString(signature).dump()))


# --- the ofdrw samples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "inside"),
    [
        ("UserV1.esl", 1, datetime(2021, 1, 1, tzinfo=UTC)),
        ("UserV4.esl", 4, datetime(2021, 1, 1, tzinfo=UTC)),
        ("UserV5.esl", 5, datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_ofdrw_seals_parse_and_their_maker_signatures_verify(
    name: str, version: int, inside: datetime, tmp_path: Path
) -> None:
    der = vector(name)
    seal = parse_seal(der)
    assert seal.version == version == seal.header_version
    assert seal.vendor_id.startswith("OFDR&WTest")
    assert seal.picture.type == "PNG" and (seal.picture.width_mm, seal.picture.height_mm) == (
        40,
        40,
    )
    assert seal.cert_list_type == 1 and len(seal.signer_certs) == 1
    assert seal.timestamp is None and seal.algorithm_oid == SM2_SM3_OID

    signed, maker, alg, signature = seal_spans(der)
    assert (seal.signed_bytes, seal.signature, alg) == (signed, signature, seal.algorithm_oid)
    assert seal.maker_cert.dump() == maker.dump()
    openssl_verifies(maker, signed, signature, tmp_path)

    # Crypto intact, trust not established: the ofdrw root is unknown here.
    rep = verify_seal(der, VerifyContext(), at=inside)
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert checks(rep)["seal.signature"] == "passed"
    assert checks(rep)["seal.validity"] == "passed"
    assert rep.details["seal_version"] == version and rep.details["es_id"] == seal.es_id


def test_an_ofdrw_seal_past_its_validity_is_undecided_and_says_it_expired() -> None:
    """Its maker is unknown here, so what the seal says of itself (its validity) cannot decide
    the verdict (ETSI EN 319 102-1: no chain is INDETERMINATE unless the crypto fails); the
    expiry is still named to the clerk."""
    rep = verify_seal(vector("UserV4.esl"), VerifyContext(), at=datetime(2026, 1, 1, tzinfo=UTC))
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert checks(rep)["seal.signature"] == "passed"
    assert checks(rep)["seal.validity"] == "failed"
    assert "2022-04-22" in detail(rep, "seal.validity") and "2022-04-22" in rep.message
    assert rep.message_zh.endswith("；另：印章不在有效期内"), rep.message_zh


def test_ofdrw_signed_value_is_intact_but_untrusted(tmp_path: Path) -> None:
    der = vector("SignedValueV4.dat")
    sig = parse_ses_signature(der)
    assert sig.version == 4 and sig.seal.der == vector("UserV4.esl")
    assert sig.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"
    assert sig.time_info == datetime(2020, 10, 12, 11, 14, 3, tzinfo=UTC)
    tbs, cert, signature, _ = ses_spans(der)
    assert (sig.tbs_bytes, sig.signature) == (tbs, signature)
    openssl_verifies(cert, tbs, signature, tmp_path)

    rep = verify_ses(der, VerifyContext())
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    for name in ("ses.signature", "ses.signer_in_seal", "seal.signature", "seal.validity"):
        assert checks(rep)[name] == "passed", name
    assert checks(rep)["ses.data_hash"] == "skipped"
    assert rep.details["signing_time"].startswith("2020-10-12T11:14:03")


def test_ofdrw_signed_value_does_not_protect_the_shared_signature_xml() -> None:
    """This sample's dataHash is 32 zero bytes (an ofdrw test mock), so the Signature.xml shipped
    beside it is, correctly, not what it protects (the README says otherwise)."""
    der = vector("SignedValueV4.dat")
    assert parse_ses_signature(der).data_hash == bytes(32)
    rep = verify_ses(der, VerifyContext(), original=vector("Signature.xml"))
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")
    assert checks(rep)["ses.signature"] == "passed"


def test_ofdrw_document_signature_protects_its_signature_xml(tmp_path: Path) -> None:
    with zipfile.ZipFile(VECTORS / "SESV4SignDoc.ofd") as package:
        signed_value = package.read("Doc_0/Signs/Sign_0/SignedValue.dat")
        signature_xml = package.read("Doc_0/Signs/Sign_0/Signature.xml")
    tbs, cert, signature, digest = ses_spans(signed_value)
    assert digest == hashlib.new("sm3", signature_xml).digest()
    openssl_verifies(cert, tbs, signature, tmp_path)

    rep = verify_ses(signed_value, VerifyContext(), original=signature_xml)
    assert checks(rep)["ses.signature"] == "passed"
    assert checks(rep)["ses.data_hash"] == "passed"
    assert rep.details["data_hash_algorithm"] == "sm3"
    # ofdrw signed it in 2026 with its test seal that ended in 2022: named, beside the verdict
    # that its unknown authority decides.
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert checks(rep)["seal.validity"] == "failed" and "印章不在有效期内" in rep.message_zh

    altered = signature_xml[:100] + bytes([signature_xml[100] ^ 0x20]) + signature_xml[101:]
    rep = verify_ses(signed_value, VerifyContext(), original=altered)
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")


# --- round trips, each algorithm -------------------------------------------------------------


def test_v4_round_trip(signing_pki: SigningPki, tmp_path: Path) -> None:
    pki = signing_pki
    seal_der = seal_of(pki)
    seal = parse_seal(seal_der)
    assert seal.version == 4 and seal.header_version == 4
    assert (seal.es_id, seal.name, seal.seal_type) == ("15010220260001", spec(pki).name, 3)
    assert seal.signer_certs == (pki.signer.cert.dump(),) and seal.digest_type is None
    assert seal.picture == PICTURE and seal.vendor_id == "ETRUST"
    assert seal.valid_from == pki.now - timedelta(hours=1) and seal.timestamp is None
    assert seal.algorithm_oid == ALG_OIDS[pki.maker.key.key_type]
    assert seal.allows(pki.signer.cert) and not seal.allows(pki.other_signer.cert)

    rep = verify_seal(seal_der, pki.context())
    assert rep.verdict == "PASSED", rep.message
    assert rep.format == "esl" and rep.details["seal_name"] == seal.name
    assert set(checks(rep).values()) <= {"passed", "skipped"}

    ses = ses_of(pki, seal_der)
    parsed = parse_ses_signature(ses)
    assert parsed.version == 4 and parsed.seal.der == seal_der
    assert parsed.time_info == pki.now and parsed.timestamp is None
    assert parsed.signer_cert.dump() == pki.signer.cert.dump()
    assert parsed.data_hash == data_hash(pki) and parsed.property_info == PROPERTY

    rep = verify_ses(ses, pki.context(), original=ORIGINAL)
    assert rep.verdict == "PASSED", rep.message
    for name in (
        "ses.parse", "ses.signature", "ses.signer_in_seal", "seal.signature", "seal.validity",
        "seal.maker.chain", "signer.chain", "ses.data_hash",
    ):  # fmt: skip
        assert checks(rep)[name] == "passed", name
    assert rep.details["signer"] == pki.signer.cert.subject.human_friendly
    assert rep.details["es_id"] == "15010220260001" and rep.details["seal_version"] == 4
    assert rep.details["data_hash_algorithm"] == data_hash_name(pki.signer.key.key_type)
    assert rep.details["signing_time_source"].startswith("timeInfo")

    # Without the original the integrity check is skipped, and says so.
    rep = verify_ses(ses, pki.context())
    assert rep.verdict == "PASSED" and checks(rep)["ses.data_hash"] == "skipped"
    assert "no original" in detail(rep, "ses.data_hash")


def test_openssl_judges_our_seal_and_signature(signing_pki: SigningPki, tmp_path: Path) -> None:
    pki = signing_pki
    seal_der = seal_of(pki)
    signed, maker, alg, signature = seal_spans(seal_der)
    assert alg == ALG_OIDS[pki.maker.key.key_type] and maker.dump() == pki.maker.cert.dump()
    openssl_verifies(maker, signed, signature, tmp_path)

    ses = ses_of(pki, seal_der)
    tbs, signer, ses_signature, digest = ses_spans(ses)
    assert tlvs(tbs)[1] == seal_der  # the seal is embedded byte for byte
    assert signer.dump() == pki.signer.cert.dump()
    openssl_verifies(signer, tbs, ses_signature, tmp_path)
    expected = {"sm2": "sm3", "rsa": "sha256", "ec": "sha256"}[pki.kind]
    assert digest == hashlib.new(expected, ORIGINAL).digest()


def test_v5_round_trip_with_timestamps(signing_pki: SigningPki) -> None:
    pki = signing_pki
    seal_der = seal_of(pki, version=5)
    seal = parse_seal(seal_der)
    assert seal.version == 5 and seal.timestamp is not None
    stamp_tlv = tlvs(seal_der)[4]
    assert stamp_tlv[0] == 0xA0 and bits(body(stamp_tlv)) == seal.timestamp  # [0] EXPLICIT

    rep = verify_seal(seal_der, pki.context())
    assert rep.verdict == "PASSED", rep.message
    assert checks(rep)["seal.timestamp"] == "passed"

    ses = ses_of(pki, seal_der, timestamper=pki.timestamper)
    parsed = parse_ses_signature(ses)
    assert parsed.version == 5 and parsed.timestamp is not None
    rep = verify_ses(ses, pki.context(), original=ORIGINAL)
    assert rep.verdict == "PASSED", rep.message
    assert checks(rep)["timestamp"] == "passed" and checks(rep)["seal.timestamp"] == "passed"
    assert rep.details["signing_time_source"] == "timestamp genTime"
    assert rep.details["seal_version"] == 5 and rep.details["ses_version"] == 5


def test_v5_needs_a_timestamper_and_v1_is_never_made(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    with pytest.raises(ConfigurationError, match="timestamp"):
        make_seal(spec(pki), pki.maker.key, pki.maker.cert, version=5)
    with pytest.raises(MalformedInputError, match="version 4"):
        make_seal(spec(pki), pki.maker.key, pki.maker.cert, version=1)
    with pytest.raises(ConfigurationError, match="not the key"):
        make_seal(spec(pki), pki.signer.key, pki.maker.cert)


def test_a_seal_timestamp_is_read_tagged_either_way_or_untagged(
    sm2_signing_pki: SigningPki,
) -> None:
    pki = sm2_signing_pki
    seal_der = seal_of(pki, version=5)
    parts = tlvs(seal_der)
    token = bits(body(parts[4]))
    bit_string = core.OctetBitString(token).dump()
    implicit = b"\x80" + bit_string[1:]  # same length and contents, context tag 0
    for tail in (implicit, bit_string):
        variant = sequence(*parts[:4], tail)
        assert parse_seal(variant).timestamp == token
        assert verify_seal(variant, pki.context()).verdict == "PASSED"


def test_a_non_der_extension_is_verified_over_its_original_bytes(
    signing_pki: SigningPki,
) -> None:
    """Real seals encode ``critical FALSE`` explicitly; DER would omit it and break the signature."""
    pki = signing_pki
    info = tlvs(seal_of(pki))[0]
    extension = sequence(
        core.ObjectIdentifier("1.2.156.10197.6.7.2.2.1").dump(),
        b"\x01\x01\x00",
        core.OctetString(b"2.1").dump(),
    )
    info_with_ext = sequence(*tlvs(info), sequence(extension))
    seal_der = resign_v4(info_with_ext, pki.maker)
    seal = parse_seal(seal_der)
    assert seal.extensions == (("1.2.156.10197.6.7.2.2.1", False, b"2.1"),)
    assert seal.signed_bytes == info_with_ext
    assert verify_seal(seal_der, pki.context()).verdict == "PASSED"


def test_extension_lists_are_read_untagged_or_tagged_either_way() -> None:
    extension = sequence(
        core.ObjectIdentifier("1.2.3.4").dump(), b"\x01\x01\xff", core.OctetString(b"v").dump()
    )
    listed = sequence(extension, extension)
    encodings = {
        "untagged": listed,
        "explicit": b"\xa0" + bytes([len(listed)]) + listed,  # short lengths throughout
        "implicit": b"\xa0" + listed[1:],
    }
    for name, encoded in encodings.items():
        parsed = ses_asn1.ext_datas(ses_asn1.Elements.load(sequence(encoded))[0], name)
        assert [(e["extn_id"].dotted, e["critical"].native) for e in parsed] == [
            ("1.2.3.4", True),
            ("1.2.3.4", True),
        ], name
    with pytest.raises(MalformedInputError):
        ses_asn1.ext_datas(ses_asn1.Elements.load(b"\x30\x05\xa0\x03\x02\x01\x01")[0], "bad")


# --- signer lists ------------------------------------------------------------------------------


def test_a_digest_list_seal(signing_pki: SigningPki) -> None:
    pki = signing_pki
    seal_der = seal_of(pki, cert_list_type=2)
    seal = parse_seal(seal_der)
    name = data_hash_name(pki.maker.key.key_type)
    assert seal.cert_list_type == 2 and seal.digest_type == {"sm3": "SM3"}.get(name, "SHA256")
    assert seal.signer_certs == (hashlib.new(name, pki.signer.cert.dump()).digest(),)
    assert seal.signer_match(pki.signer.cert) == name
    assert not seal.allows(pki.other_signer.cert)
    with pytest.raises(ForbiddenError, match="does not list"):
        sign_ses(
            seal_der, pki.other_signer.key, pki.other_signer.cert,
            data_hash=data_hash(pki), property_info=PROPERTY, signing_time=pki.now,
        )  # fmt: skip

    rep = verify_ses(ses_of(pki, seal_der), pki.context(), original=ORIGINAL)
    assert rep.verdict == "PASSED", rep.message
    assert detail(rep, "ses.signer_in_seal") == f"listed by the seal ({name})"


def test_a_digest_list_with_the_z_prefixed_sm3_variant(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    seal = parse_seal(seal_of(pki, cert_list_type=2))
    z_listed = dataclasses.replace(
        seal, signer_certs=(sm3_with_z(pki.signer.cert, pki.signer.cert.dump()),)
    )
    assert z_listed.signer_match(pki.signer.cert) == "sm3-with-z"
    assert not z_listed.allows(pki.other_signer.cert)


def test_a_z_prefixed_data_hash_is_accepted_and_named(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    digest = sm3_with_z(pki.signer.cert, ORIGINAL)
    ses = forge_ses(seal_of(pki), pki.signer, digest=digest, when=pki.now)
    rep = verify_ses(ses, pki.context(), original=ORIGINAL)
    assert rep.verdict == "PASSED", rep.message
    assert rep.details["data_hash_algorithm"] == "sm3-with-z"
    assert "Z prefix" in detail(rep, "ses.data_hash")


def test_a_signer_the_seal_does_not_list(signing_pki: SigningPki) -> None:
    pki = signing_pki
    seal_der = seal_of(pki)
    with pytest.raises(ForbiddenError, match="re-made"):
        sign_ses(
            seal_der, pki.other_signer.key, pki.other_signer.cert,
            data_hash=data_hash(pki), property_info=PROPERTY, signing_time=pki.now,
        )  # fmt: skip
    forged = forge_ses(seal_der, pki.other_signer, digest=data_hash(pki), when=pki.now)
    rep = verify_ses(forged, pki.context(), original=ORIGINAL)
    assert (rep.verdict, rep.reason) == ("FAILED", "SIGNER_NOT_ALLOWED")
    assert checks(rep)["ses.signature"] == "passed"


# --- validity and trust ----------------------------------------------------------------------------


def test_a_seal_used_outside_its_validity(signing_pki: SigningPki) -> None:
    pki = signing_pki
    # Times before pki.now: the test CRLs speak for nothing later.
    seal_der = seal_of(
        pki,
        created=pki.now - timedelta(hours=3),
        valid_from=pki.now - timedelta(hours=2),
        valid_to=pki.now - timedelta(hours=1),
    )
    late = pki.now - timedelta(minutes=30)
    for moment in (late, pki.now - timedelta(hours=2, minutes=30)):
        with pytest.raises(ForbiddenError, match="valid from"):
            sign_ses(
                seal_der, pki.signer.key, pki.signer.cert,
                data_hash=data_hash(pki), property_info=PROPERTY, signing_time=moment,
            )  # fmt: skip
    forged = forge_ses(seal_der, pki.signer, digest=data_hash(pki), when=late)
    rep = verify_ses(forged, pki.context(), original=ORIGINAL)
    assert (rep.verdict, rep.reason) == ("FAILED", "SEAL_EXPIRED")
    assert checks(rep)["ses.signature"] == "passed" and checks(rep)["signer.chain"] == "passed"
    assert verify_seal(seal_der, pki.context(), at=late).reason == "SEAL_EXPIRED"


def test_a_revoked_signer(signing_pki: SigningPki) -> None:
    pki = signing_pki
    revoked = pki.new_party("revoked-signer")
    seal_der = seal_of(pki, signer_certs=[revoked.cert])
    ses = sign_ses(
        seal_der, revoked.key, revoked.cert,
        data_hash=data_hash(pki), property_info=PROPERTY, signing_time=pki.now,
    )  # fmt: skip
    assert verify_ses(ses, pki.context(), original=ORIGINAL).verdict == "PASSED"
    pki.h.issuing.revoke(revoked.cert.serial_number, "key_compromise")
    rep = verify_ses(ses, pki.context(), original=ORIGINAL)
    assert (rep.verdict, rep.reason) == ("FAILED", "REVOKED")
    assert checks(rep)["signer.chain"] == "failed" and checks(rep)["ses.signature"] == "passed"


def test_v5_judges_its_maker_at_the_timestamped_creation(signing_pki: SigningPki) -> None:
    """GM/T 0031-2025: a maker revoked after making a v5 seal does not undo it; a v4 seal (or a
    v5 one whose creation date no timestamp backs) is judged later and fails."""
    pki = signing_pki
    maker = pki.new_party("maker-revoked-later", "seal-maker")
    made = spec(pki, created=pki.now - timedelta(hours=2))
    v4 = make_seal(made, maker.key, maker.cert)
    v5 = make_seal(made, maker.key, maker.cert, version=5, timestamper=pki.timestamper)
    pki.h.issuing.revoke(maker.cert.serial_number, "superseded", at=pki.now - timedelta(hours=1))

    rep = verify_seal(v5, pki.context())
    assert rep.verdict == "PASSED", rep.message
    assert checks(rep)["seal.timestamp"] == "passed"
    assert (verify_seal(v4, pki.context()).reason, checks(rep)["seal.maker.chain"]) == (
        "REVOKED",
        "passed",
    )
    unstamped = sequence(*tlvs(v5)[:4])
    assert parse_seal(unstamped).version == 5
    assert verify_seal(unstamped, pki.context()).reason == "REVOKED"


def test_an_unknown_root_is_indeterminate_but_a_forgery_still_fails(
    signing_pki: SigningPki,
) -> None:
    pki = signing_pki
    ses = ses_of(pki, seal_of(pki))
    rep = verify_ses(ses, pki.untrusting_context(), original=ORIGINAL)
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    signature = parse_ses_signature(ses).signature
    forged = flip(ses, signature, offset=len(signature) // 2)
    for ctx in (pki.untrusting_context(), pki.context()):
        rep = verify_ses(forged, ctx, original=ORIGINAL)
        assert (rep.verdict, rep.reason) == ("FAILED", "SIG_CRYPTO_FAILURE")
        assert checks(rep)["ses.signature"] == "failed"


# --- tampering and malformed input ---------------------------------------------------------------


def test_a_flipped_bit_in_the_seal_signature(signing_pki: SigningPki) -> None:
    pki = signing_pki
    seal_der = seal_of(pki)
    signature = parse_seal(seal_der).signature
    broken = flip(seal_der, signature, offset=len(signature) // 2)
    rep = verify_seal(broken, pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "SEAL_INVALID")
    with pytest.raises(InvalidSignatureError):
        ses_of(pki, broken)
    # A signer that signs over the broken seal anyway: its own signature holds, the seal's not.
    forged = forge_ses(broken, pki.signer, digest=data_hash(pki), when=pki.now)
    rep = verify_ses(forged, pki.context(), original=ORIGINAL)
    assert (rep.verdict, rep.reason) == ("FAILED", "SEAL_INVALID")
    assert checks(rep)["ses.signature"] == "passed" and checks(rep)["seal.signature"] == "failed"


def test_a_changed_seal_inside_a_signature_breaks_the_signature(
    signing_pki: SigningPki,
) -> None:
    pki = signing_pki
    ses = ses_of(pki, seal_of(pki))
    changed = ses.replace(b"15010220260001", b"15010220269999")
    rep = verify_ses(changed, pki.context(), original=ORIGINAL)
    assert rep.verdict == "FAILED" and rep.reason in ("SIG_CRYPTO_FAILURE", "SEAL_INVALID")
    assert checks(rep)["ses.signature"] == "failed" and checks(rep)["seal.signature"] == "failed"


def test_a_v1_seal_dressed_as_v4_and_the_reverse() -> None:
    cases = [
        (set_header_version(vector("UserV1.esl"), 4), "two-element"),
        (set_header_version(vector("UserV4.esl"), 1), "header says version 1"),
    ]
    for der, message in cases:
        with pytest.raises(MalformedInputError, match=message):
            parse_seal(der)
        rep = verify_seal(der, VerifyContext())
        assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")
        assert message in rep.message


def test_a_v5_timestamp_under_a_v4_header(sm2_signing_pki: SigningPki) -> None:
    seal_der = set_header_version(seal_of(sm2_signing_pki, version=5), 4)
    rep = verify_seal(seal_der, sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")
    assert "only GM/T 0031-2025 (v5)" in rep.message


def test_tbs_version_must_match_the_seal(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    forged = forge_ses(seal_of(pki), pki.signer, digest=data_hash(pki), when=pki.now, version=5)
    with pytest.raises(MalformedInputError, match="TBS_Sign says version 5"):
        parse_ses_signature(forged)
    assert verify_ses(forged, pki.context()).reason == "FORMAT_FAILURE"


def test_truncated_garbage_and_mutated_input_fail_cleanly(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    seal_der = seal_of(pki)
    ses = ses_of(pki, seal_der)
    bad: list[bytes] = [
        b"",
        b"\x30",
        b"garbage, not DER",
        secrets.token_bytes(300),
        seal_der[:-1],
        seal_der[: len(seal_der) // 2],
        seal_der + b"\x00",
        sequence(),
        sequence(core.Integer(1).dump(), core.Integer(2).dump(), core.Integer(3).dump()),
    ]
    for der in bad:
        with pytest.raises(MalformedInputError):
            parse_seal(der)
        rep = verify_seal(der, pki.context())
        assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")
        with pytest.raises(MalformedInputError):
            parse_ses_signature(der)
        assert verify_ses(der, pki.context()).reason == "FORMAT_FAILURE"
    for der in (ses[:-3], ses[:100]):
        with pytest.raises(MalformedInputError):
            parse_ses_signature(der)
        assert verify_ses(der, pki.context()).reason == "FORMAT_FAILURE"

    # Random damage anywhere: a clean MalformedInputError or a report, never anything else,
    # and never a pass.
    ctx = pki.context()
    for _ in range(100):
        pos = secrets.randbelow(len(ses))
        mutated = ses[:pos] + bytes([ses[pos] ^ (1 + secrets.randbelow(255))]) + ses[pos + 1 :]
        with contextlib.suppress(MalformedInputError):
            parse_ses_signature(mutated)
        rep = verify_ses(mutated, ctx, original=ORIGINAL)
        assert rep.reason != "INTERNAL" and rep.verdict != "PASSED", (pos, rep.message)


def test_oversized_input_is_refused(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    huge = b"\x30\x84" + (MAX_SIGNATURE_BYTES).to_bytes(4, "big") + bytes(MAX_SIGNATURE_BYTES)
    with pytest.raises(InputTooLargeError):
        parse_seal(huge)
    with pytest.raises(InputTooLargeError):
        parse_ses_signature(huge)
    rep = verify_ses(huge, pki.context())
    assert rep.reason == "FORMAT_FAILURE" and "more than" in rep.message
    big_picture = SealPicture("PNG", bytes(MAX_SEAL_BYTES), 40, 40)
    with pytest.raises(InputTooLargeError):
        make_seal(spec(pki, picture=big_picture), pki.maker.key, pki.maker.cert)


def test_sign_ses_checks_its_arguments(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    seal_der = seal_of(pki)
    with pytest.raises(MalformedInputError, match="sm3 digest"):
        sign_ses(
            seal_der, pki.signer.key, pki.signer.cert,
            data_hash=b"\x00" * 20, property_info=PROPERTY, signing_time=pki.now,
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match="not the key"):
        sign_ses(
            seal_der, pki.other_signer.key, pki.signer.cert,
            data_hash=data_hash(pki), property_info=PROPERTY, signing_time=pki.now,
        )  # fmt: skip
    with pytest.raises(MalformedInputError, match="verification only"):
        sign_ses(
            vector("UserV1.esl"), pki.signer.key, pki.signer.cert,
            data_hash=data_hash(pki), property_info=PROPERTY, signing_time=pki.now,
        )  # fmt: skip


# --- v1 (GM/T 0031-2014) signatures ----------------------------------------------------------------


def test_a_v1_signature_with_raw_r_s_values(sm2_signing_pki: SigningPki, tmp_path: Path) -> None:
    pki = sm2_signing_pki
    seal_der = v1_seal(pki, [pki.signer.cert])
    seal = parse_seal(seal_der)
    assert seal.version == 1 and len(seal.signature) == 64
    assert verify_seal(seal_der, pki.context()).verdict == "PASSED"

    local = pki.now.astimezone(timezone(timedelta(hours=8)))
    tbs = sequence(
        core.Integer(1).dump(),
        seal_der,
        core.OctetBitString(local.strftime("%Y-%m-%d %H:%M:%S").encode()).dump(),
        core.OctetString(hashlib.new("sm3", ORIGINAL).digest()).dump(),  # tolerated
        core.IA5String(PROPERTY).dump(),
        core.OctetString(pki.signer.cert.dump()).dump(),
        core.ObjectIdentifier(SM2_SM3_OID).dump(),
    )
    der_signature = pki.signer.key.sign(tbs)
    openssl_verifies(pki.signer.cert, tbs, der_signature, tmp_path)
    ses = sequence(tbs, core.OctetBitString(raw_rs(der_signature)).dump())

    parsed = parse_ses_signature(ses)
    assert parsed.version == 1 and parsed.time_info == pki.now
    assert parsed.tbs_bytes == tbs and parsed.seal.der == seal_der
    rep = verify_ses(ses, pki.context(), original=ORIGINAL)
    assert rep.verdict == "PASSED", rep.message
    assert rep.details["ses_version"] == 1 and rep.details["seal_standard"] == "GM/T 0031-2014"

    broken = ses[:-1] + bytes([ses[-1] ^ 0x01])
    assert verify_ses(broken, pki.context(), original=ORIGINAL).reason == "SIG_CRYPTO_FAILURE"


def test_parsed_seal_repr_leaves_out_the_bulk(sm2_signing_pki: SigningPki) -> None:
    seal: ParsedSeal = parse_seal(seal_of(sm2_signing_pki))
    text = repr(seal)
    assert "15010220260001" in text and "PNG" in text
    assert len(text) < 2000


@pytest.mark.parametrize("version", [4, 5])
def test_fast_reading_agrees_with_the_full_one(signing_pki: SigningPki, version: int) -> None:
    """The TLV walk used for the usual shape reads exactly what the asn1crypto reader reads."""
    from dataclasses import asdict

    from signing import ses as ses_module

    pki = signing_pki
    seal_der = (
        seal_of(pki, version)
        if version == 4
        else make_seal(
            spec(pki), pki.maker.key, pki.maker.cert, version=5, timestamper=pki.timestamper
        )
    )
    der = sign_ses(
        seal_der, pki.signer.key, pki.signer.cert, data_hash=data_hash(pki),
        property_info=PROPERTY, signing_time=pki.now, timestamper=pki.timestamper,
    )  # fmt: skip
    fast = ses_module._parse_v4_fast(der)
    full = ses_module._parse_v4(der)
    assert fast is not None
    assert fast.signer_cert.dump() == full.signer_cert.dump()
    drop: set[str] = set()
    assert {k: v for k, v in asdict(fast).items() if k not in drop} == {
        k: v for k, v in asdict(full).items() if k not in drop
    }
