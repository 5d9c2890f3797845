"""OFD packages: the safe reader, the writer, signing in sequence and verification.

The judges are independent of the code under test: ``zipfile`` and ``defusedxml`` read the
structure, ``hashlib`` recomputes every CheckValue and dataHash, a small DER walker below takes
the SES signature apart and the OpenSSL CLI verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as safe_et
import pytest
from asn1crypto import x509
from PIL import Image, ImageDraw

from signing.ofd import sign_ofd, verify_ofd
from signing.ofd_package import (
    ImageBlock,
    OfdPackage,
    PageSpec,
    ReadLimits,
    TextBlock,
    build_ofd,
    parse_xml,
    qr_block,
)
from signing.report import Check, Report
from tests.conftest import SM2_ID_OPT, openssl
from tests.signing_pki import Party, SigningPki
from trust.errors import ConflictError, InputTooLargeError, MalformedInputError

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofdrw"
NS = "{http://www.ofdspec.org/2016}"
WHEN = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
QR_PAYLOAD = "https://verify.etrust.test/l/1.2.156.3005.2.11100000000013338W.KJK9C6.001?v=1"
SM3_OID = "1.2.156.10197.1.401"
SHA256_OID = "2.16.840.1.101.3.4.2.1"


# --- helpers ------------------------------------------------------------------------------


def vector() -> bytes:
    path = VECTORS / "SESV4SignDoc.ofd"
    if not path.exists():
        pytest.fail(f"shared test vector missing: {path}")
    return path.read_bytes()


def png(color: str = "red", size: int = 64) -> bytes:
    picture = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    ImageDraw.Draw(picture).ellipse((2, 2, size - 3, size - 3), outline=color, width=4)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (0, 90, 160)).save(out, format="JPEG")
    return out.getvalue()


def license_pages() -> list[PageSpec]:
    return [
        PageSpec(
            (
                TextBlock("营业执照", 80, 30, 10, bold=True),
                TextBlock("统一社会信用代码 91350100M000100Y43", 20, 60),
                TextBlock("名称 测试盟示范科技有限公司", 20, 70, color=(200, 0, 0)),
                ImageBlock(jpeg(), 20, 100, 40, 30),
                qr_block(QR_PAYLOAD, 150, 230, 30),
            )
        ),
        PageSpec((TextBlock("第二页 Page two", 20, 30), ImageBlock(jpeg(), 20, 50, 40, 30))),
    ]


def license_ofd() -> bytes:
    return build_ofd(license_pages(), created=WHEN, title="营业执照", author="测试盟市场监督管理局")


def make_seal(
    pki: SigningPki, signers: list[x509.Certificate] | None = None, name: str = "测试专用章"
) -> bytes:
    """A seal made by the PKI's maker, listing ``signers`` (the PKI's signer by default)."""
    from signing.seal import SealPicture, SealSpec, make_seal

    spec = SealSpec(
        es_id=f"3501000000{len(name):04d}",
        name=name,
        seal_type=1,
        signer_certs=signers or [pki.signer.cert],
        valid_from=pki.now - timedelta(hours=1),
        valid_to=pki.now + timedelta(days=365),
        picture=SealPicture("PNG", png(), 42, 42),
    )
    return make_seal(spec, pki.maker.key, pki.maker.cert)


def seal_and_sign(
    pki: SigningPki,
    data: bytes,
    seal: bytes | None = None,
    party: Party | None = None,
    **options: Any,
) -> bytes:
    """``sign_ofd`` by ``party`` (the seal's signer by default) at the PKI's own time, when its
    CRLs are current."""
    party = party or pki.signer
    options.setdefault("signing_time", pki.now)
    return sign_ofd(data, seal or make_seal(pki), party.key, party.cert, **options)


def rezip(data: bytes, replace: Mapping[str, bytes | None] = {}) -> bytes:
    """A copy of the package with files replaced, added, or removed (``None``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in replace:
                continue
            dst.writestr(info, src.read(info))
        for name, content in replace.items():
            if content is not None:
                dst.writestr(name, content)
    return out.getvalue()


def zip_of(entries: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def files_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def xml(raw: bytes) -> Element:
    root: Element = safe_et.fromstring(raw)
    return root


def ofd_text(elem: Element, path: str) -> str:
    found = elem.find(path.replace("ofd:", NS))
    assert found is not None and found.text, path
    return found.text


def checks_named(rep: Report, prefix: str) -> list[Check]:
    """The checks of a report and of its signatures whose names start with ``prefix``."""
    return [c for s in (rep, *rep.signatures) for c in s.checks if c["name"].startswith(prefix)]


def tlvs(buf: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int, int]]:
    """(tag, start of header, start of contents, end) of each DER element in a range."""
    end = len(buf) if end is None else end
    out = []
    while start < end:
        tag, size, pos = buf[start], buf[start + 1], start + 2
        if size & 0x80:
            count = size & 0x7F
            size = int.from_bytes(buf[pos : pos + count], "big")
            pos += count
        out.append((tag, start, pos, pos + size))
        start = pos + size
    return out


def ses_parts(signed_value: bytes) -> dict[str, bytes]:
    """TBS bytes, dataHash, propertyInfo, signer certificate and signature of a v4 SES."""
    ((_, _, s, e),) = tlvs(signed_value)
    tbs, cert, _alg, sig = tlvs(signed_value, s, e)[:4]
    fields = tlvs(signed_value, tbs[2], tbs[3])
    return {
        "tbs": signed_value[tbs[1] : tbs[3]],
        "data_hash": signed_value[fields[3][2] + 1 : fields[3][3]],
        "property_info": signed_value[fields[4][2] : fields[4][3]],
        "seal": signed_value[fields[1][1] : fields[1][3]],
        "cert": signed_value[cert[2] : cert[3]],
        "signature": signed_value[sig[2] + 1 : sig[3]],
    }


# --- the ofdrw vector ---------------------------------------------------------------------


def test_vector_parses() -> None:
    pkg = OfdPackage.read(vector())
    (doc,) = pkg.documents()
    assert doc.root_path == "Doc_0/Document.xml"
    assert doc.signatures_path == "Doc_0/Signs/Signatures.xml"
    assert [(p.id, p.path) for p in doc.pages] == [("1", "Doc_0/Pages/Page_0/Content.xml")]
    assert doc.page_box == (0.0, 0.0, 210.0, 297.0)


def test_vector_crypto_intact_trust_unknown(sm2_signing_pki: SigningPki) -> None:
    """Every digest and signature holds; trust and time do not. ofdrw's test CA is unknown here
    (INDETERMINATE), and the signer's own timeInfo (2026-08-04) is after the seal's validEnd
    (2022-04-22): the seal-validity check fails and is named, never a crypto failure."""
    rep = verify_ofd(vector(), sm2_signing_pki.untrusting_context())
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert rep.assessment()["integrity"] == "intact"
    assert rep.assessment()["trust"] == "not established"
    assert rep.message_zh.endswith("；另：印章不在有效期内"), rep.message_zh
    assert [c["result"] for c in checks_named(rep, "seal.validity")] == ["failed"]
    for name in ("ses.signature", "seal.signature", "ses.data_hash"):
        assert [c["result"] for c in checks_named(rep, name)] == ["passed"], name
    assert {c["result"] for c in checks_named(rep, "signer.chain")} == {"indeterminate"}
    refs = checks_named(rep, "reference ")
    assert len(refs) == 5 and all(c["result"] == "passed" for c in refs), refs
    assert {c["result"] for c in checks_named(rep, "seal_file")} == {"passed"}
    assert {c["result"] for c in checks_named(rep, "package.coverage")} == {"passed"}


def test_vector_with_changed_content_fails(sm2_signing_pki: SigningPki) -> None:
    original = files_of(vector())["Doc_0/Pages/Page_0/Content.xml"]
    changed = rezip(vector(), {"Doc_0/Pages/Page_0/Content.xml": original.replace(b"<", b" <", 1)})
    rep = verify_ofd(changed, sm2_signing_pki.untrusting_context())
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")
    assert "/Doc_0/Pages/Page_0/Content.xml" in rep.signatures[0].message
    failed = [c for c in checks_named(rep, "reference ") if c["result"] == "failed"]
    assert [c["name"] for c in failed] == ["reference /Doc_0/Pages/Page_0/Content.xml"]


# --- our own packages ---------------------------------------------------------------------


def test_built_package_is_structurally_valid() -> None:
    data = license_ofd()
    files = files_of(data)
    ofd = xml(files["OFD.xml"])
    assert ofd.tag == f"{NS}OFD" and ofd.get("Version") == "1.0" and ofd.get("DocType") == "OFD"
    doc_id = ofd_text(ofd, "ofd:DocBody/ofd:DocInfo/ofd:DocID")
    assert len(doc_id) == 32 and int(doc_id, 16) >= 0
    assert ofd_text(ofd, "ofd:DocBody/ofd:DocInfo/ofd:Title") == "营业执照"
    assert ofd_text(ofd, "ofd:DocBody/ofd:DocInfo/ofd:CreationDate") == "2026-05-01"
    root_path = ofd_text(ofd, "ofd:DocBody/ofd:DocRoot")
    document = xml(files[root_path])
    common = document.find(f"{NS}CommonData")
    assert common is not None
    assert [c.tag.removeprefix(NS) for c in common][:2] == ["MaxUnitID", "PageArea"]
    assert ofd_text(common, "ofd:PageArea/ofd:PhysicalBox") == "0 0 210 297"
    folder = root_path.rpartition("/")[0]
    public_res = xml(files[f"{folder}/{ofd_text(common, 'ofd:PublicRes')}"])
    fonts = {f.get("ID"): f.get("FontName") for f in public_res.iter(f"{NS}Font")}
    assert list(fonts.values()) == ["宋体"]
    document_res = xml(files[f"{folder}/{ofd_text(common, 'ofd:DocumentRes')}"])
    media = {m.get("ID"): m for m in document_res.iter(f"{NS}MultiMedia")}
    assert {m.get("Format") for m in media.values()} == {"PNG", "JPEG"}  # the JPEG once only

    ids: list[str] = []
    for part in files.values():
        if part.startswith(b"<?xml"):
            ids += [e.get("ID", "") for e in xml(part).iter() if e.get("ID") is not None]
    assert len(ids) == len(set(ids)) and all(i.isdigit() for i in ids)
    assert int(ofd_text(common, "ofd:MaxUnitID")) == max(map(int, ids))

    pages = document.findall(f"{NS}Pages/{NS}Page")
    assert len(pages) == 2
    texts: list[str] = []
    qr_found = False
    for page in pages:
        content = xml(files[f"{folder}/{page.get('BaseLoc')}"])
        for text in content.iter(f"{NS}TextObject"):
            assert text.get("Font") in fonts
            texts.append(ofd_text(text, "ofd:TextCode"))
        for image in content.iter(f"{NS}ImageObject"):
            resource = media[image.get("ResourceID", "")]
            loc = f"{folder}/{document_res.get('BaseLoc')}/{ofd_text(resource, 'ofd:MediaFile')}"
            picture = Image.open(io.BytesIO(files[loc]))
            picture.load()
            if resource.get("Format") == "PNG":
                assert picture.format == "PNG" and picture.size[0] == picture.size[1]
                assert image.get("Boundary") == "150 230 30 30"
                qr_found = True
    assert qr_found
    assert "统一社会信用代码 91350100M000100Y43" in texts and "第二页 Page two" in texts


def test_built_package_is_deterministic() -> None:
    assert license_ofd() == license_ofd()
    other = build_ofd(license_pages(), created=WHEN + timedelta(seconds=2), title="营业执照")
    assert other != license_ofd()


def test_qr_image_carries_the_payload() -> None:
    qr = qr_block(QR_PAYLOAD, 0, 0, 30)
    picture = Image.open(io.BytesIO(qr.data))
    assert picture.format == "PNG"
    width, height = picture.size
    assert width == height and width >= 21 * 8  # at least a version 1 code at 8 px a module
    assert qr_block(QR_PAYLOAD, 0, 0, 30).data == qr.data


def test_builder_refuses_what_it_cannot_write() -> None:
    with pytest.raises(MalformedInputError):
        build_ofd([])
    with pytest.raises(MalformedInputError):
        build_ofd([PageSpec((ImageBlock(b"GIF89a....", 0, 0, 1, 1),))])
    with pytest.raises(MalformedInputError):
        build_ofd([PageSpec((TextBlock("two\nlines", 0, 0),))])
    with pytest.raises(MalformedInputError):
        build_ofd([PageSpec((TextBlock("bell \x07", 0, 0),))])
    with pytest.raises(MalformedInputError):
        build_ofd([PageSpec()], doc_id="not-a-uuid")


def test_relative_and_absolute_locations() -> None:
    pkg = OfdPackage.read(license_ofd())
    assert pkg.locate("/Doc_0/Document.xml", "OFD.xml") == "Doc_0/Document.xml"
    assert pkg.locate("Pages/Page_0/Content.xml", "Doc_0/Document.xml") == (
        "Doc_0/Pages/Page_0/Content.xml"
    )
    assert pkg.locate("./../Doc_0/PublicRes.xml", "Doc_0/Document.xml") == "Doc_0/PublicRes.xml"
    # a relative path naming nothing beside its referrer is tried from the root
    assert pkg.locate("Doc_0/PublicRes.xml", "Doc_0/Document.xml") == "Doc_0/PublicRes.xml"
    for bad in ("../../etc/passwd", "/..", "a\\b", ""):
        with pytest.raises(MalformedInputError):
            pkg.locate(bad, "Doc_0/Document.xml")


# --- signing ------------------------------------------------------------------------------


def independent_check(data: bytes, pki: SigningPki, tmp_path: Path) -> None:
    """Every signature's CheckValues and dataHash by hashlib, its signature by OpenSSL."""
    files = files_of(data)
    hash_name = "sm3" if pki.kind == "sm2" else "sha256"
    signatures = xml(files["Doc_0/Signs/Signatures.xml"])
    assert signatures[0].tag == f"{NS}MaxSignId"  # first, as the schema orders it
    for i, entry in enumerate(signatures.findall(f"{NS}Signature")):
        assert entry.get("Type") == "Seal"
        path = entry.get("BaseLoc", "").lstrip("/")
        assert path == f"Doc_0/Signs/Sign_{i}/Signature.xml"
        signature_xml = files[path]
        signature = xml(signature_xml)
        references = signature.find(f"{NS}SignedInfo/{NS}References")
        assert references is not None
        assert references.get("CheckMethod") == (SM3_OID if pki.kind == "sm2" else SHA256_OID)
        protected = set()
        for ref in references:
            name = ref.get("FileRef", "").lstrip("/")
            digest = hashlib.new(hash_name, files[name]).digest()
            assert base64.b64decode(ofd_text(ref, "ofd:CheckValue")) == digest, name
            protected.add(name)
        assert "Doc_0/Signs/Signatures.xml" not in protected
        assert path not in protected and path.replace("Signature.xml", "Seal.esl") in protected
        # every earlier signature's files are protected by each later one
        for j in range(i):
            for part in ("Signature.xml", "SignedValue.dat", "Seal.esl"):
                assert f"Doc_0/Signs/Sign_{j}/{part}" in protected
        stamp = signature.find(f"{NS}SignedInfo/{NS}StampAnnot")
        assert stamp is not None and stamp.get("PageRef") is not None
        signed_value = files[ofd_text(signature, "ofd:SignedValue").lstrip("/")]
        parts = ses_parts(signed_value)
        assert parts["data_hash"] == hashlib.new(hash_name, signature_xml).digest()
        assert parts["property_info"] == b"/" + path.encode()
        assert files[path.replace("Signature.xml", "Seal.esl")] == parts["seal"]

        folder = tmp_path / f"sig{i}"
        folder.mkdir()
        (folder / "tbs.der").write_bytes(parts["tbs"])
        (folder / "sig.der").write_bytes(parts["signature"])
        (folder / "cert.der").write_bytes(parts["cert"])
        openssl("x509", "-inform", "DER", "-in", folder / "cert.der", "-pubkey", "-noout",
                "-out", folder / "pub.pem")  # fmt: skip
        digest_args = ["-sm3", "-sigopt", SM2_ID_OPT] if pki.kind == "sm2" else ["-sha256"]
        out = openssl("dgst", *digest_args, "-verify", folder / "pub.pem",
                      "-signature", folder / "sig.der", folder / "tbs.der")  # fmt: skip
        assert b"Verified OK" in out.stdout


def test_sign_and_verify(signing_pki: SigningPki, tmp_path: Path) -> None:
    pki = signing_pki
    signed = seal_and_sign(pki, license_ofd())
    rep = verify_ofd(signed, pki.context())
    assert rep.verdict == "PASSED", rep.to_dict()
    assert len(rep.signatures) == 1
    independent_check(signed, pki, tmp_path)
    files = files_of(signed)
    ofd = xml(files["OFD.xml"])
    assert ofd_text(ofd, "ofd:DocBody/ofd:Signatures") == "/Doc_0/Signs/Signatures.xml"
    signature = xml(files["Doc_0/Signs/Sign_0/Signature.xml"])
    stamp = signature.find(f"{NS}SignedInfo/{NS}StampAnnot")
    assert stamp is not None
    first_page_id = xml(files["Doc_0/Document.xml"]).find(f"{NS}Pages/{NS}Page")
    assert first_page_id is not None and stamp.get("PageRef") == first_page_id.get("ID")
    x, y, w, h = map(float, stamp.get("Boundary", "").split())
    assert (w, h) == (42, 42) and x + w <= 210 and y + h <= 297 and x > 105 and y > 148


def test_sign_with_a_timestamp(signing_pki: SigningPki) -> None:
    pki = signing_pki
    signed = seal_and_sign(pki, license_ofd(), timestamper=pki.timestamper)
    rep = verify_ofd(signed, pki.context())
    assert rep.verdict == "PASSED", rep.to_dict()
    assert [c["result"] for c in checks_named(rep, "timestamp")] == ["passed"]
    assert rep.signatures[0].details["signing_time_source"] == "timestamp genTime"


def test_untrusted_signer_is_indeterminate(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    signed = seal_and_sign(pki, license_ofd())
    rep = verify_ofd(signed, pki.untrusting_context())
    assert rep.verdict == "INDETERMINATE", rep.to_dict()
    assert all(c["result"] == "passed" for c in checks_named(rep, "reference "))


def test_two_signatures_in_sequence(signing_pki: SigningPki, tmp_path: Path) -> None:
    pki = signing_pki
    once = seal_and_sign(pki, license_ofd(), signing_time=pki.now - timedelta(minutes=1))
    second_seal = make_seal(pki, [pki.other_signer.cert], name="测试第二专用章")
    twice = seal_and_sign(
        pki, once, second_seal, pki.other_signer, page=1, box_mm=(20, 200, 40, 40)
    )
    rep = verify_ofd(twice, pki.context())
    assert rep.verdict == "PASSED", rep.to_dict()
    assert [s.verdict for s in rep.signatures] == ["PASSED", "PASSED"]
    independent_check(twice, pki, tmp_path)
    signatures = xml(files_of(twice)["Doc_0/Signs/Signatures.xml"])
    assert [e.get("ID") for e in signatures.findall(f"{NS}Signature")] == ["1", "3"]
    assert ofd_text(signatures, "ofd:MaxSignId") == "4"
    second = xml(files_of(twice)["Doc_0/Signs/Sign_1/Signature.xml"])
    stamp = second.find(f"{NS}SignedInfo/{NS}StampAnnot")
    assert stamp is not None and stamp.get("Boundary") == "20 200 40 40"
    assert stamp.get("ID") == "4"


def test_signing_is_deterministic_but_for_the_signature(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    seal = make_seal(pki)
    a = files_of(seal_and_sign(pki, license_ofd(), seal))
    b = files_of(seal_and_sign(pki, license_ofd(), seal))
    assert a.keys() == b.keys()
    different = [n for n in a if a[n] != b[n]]
    assert different == ["Doc_0/Signs/Sign_0/SignedValue.dat"]  # SM2 signatures are randomised


def test_locked_document_refuses_more_signatures(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    seal = make_seal(pki)
    locked = seal_and_sign(pki, license_ofd(), seal, protect_signatures_xml=True)
    assert verify_ofd(locked, pki.context()).verdict == "PASSED"
    with pytest.raises(ConflictError, match="locked"):
        seal_and_sign(pki, locked, seal)


def test_sign_the_ofdrw_vector_too(sm2_signing_pki: SigningPki) -> None:
    """A package from another producer (relative DocRoot, MaxSignId last) takes our signature."""
    pki = sm2_signing_pki
    signed = seal_and_sign(pki, vector())
    rep = verify_ofd(signed, pki.context())
    assert [s.verdict for s in rep.signatures][1] == "PASSED", rep.to_dict()
    ofdrw = rep.signatures[0]  # its seal expired in 2022 (see above), but nothing we did broke it
    assert [c["result"] for c in checks_named(ofdrw, "ses.signature")] == ["passed"]
    refs = checks_named(ofdrw, "reference ")
    assert len(refs) == 5 and {c["result"] for c in refs} == {"passed"}
    entries = xml(files_of(signed)["Doc_0/Signs/Signatures.xml"]).findall(f"{NS}Signature")
    assert [e.get("BaseLoc") for e in entries] == [
        "/Doc_0/Signs/Sign_0/Signature.xml",
        "/Doc_0/Signs/Sign_1/Signature.xml",
    ]


def test_sign_refuses_a_missing_page(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    with pytest.raises(MalformedInputError, match="page 5"):
        seal_and_sign(pki, license_ofd(), page=5)


# --- tampering after signing --------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_twice(sm2_signing_pki: SigningPki) -> bytes:
    pki = sm2_signing_pki
    once = seal_and_sign(pki, license_ofd())
    return seal_and_sign(pki, once)


def test_content_changed_after_signing(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    page = files_of(signed_twice)["Doc_0/Pages/Page_0/Content.xml"]
    changed = rezip(
        signed_twice, {"Doc_0/Pages/Page_0/Content.xml": page.replace("营业执照".encode(), b"X")}
    )
    rep = verify_ofd(changed, sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")
    assert "/Doc_0/Pages/Page_0/Content.xml" in rep.message
    for sig in rep.signatures:
        assert sig.reason == "HASH_FAILURE" and "/Doc_0/Pages/Page_0/Content.xml" in sig.message


def test_document_xml_broken_after_signing(
    sm2_signing_pki: SigningPki, signed_twice: bytes
) -> None:
    """A damaged signed part is a modified file (named), not an unreadable package."""
    broken = rezip(signed_twice, {"Doc_0/Document.xml": b"<ofd:Document"})
    rep = verify_ofd(broken, sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")
    assert "/Doc_0/Document.xml" in rep.message


def test_file_added_after_signing(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    added = rezip(signed_twice, {"Doc_0/Res/extra.png": png("blue")})
    rep = verify_ofd(added, sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "UNPROTECTED_CONTENT")
    assert "/Doc_0/Res/extra.png" in rep.message
    assert [s.verdict for s in rep.signatures] == ["PASSED", "PASSED"]


def test_signature_files_deleted(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    ctx = sm2_signing_pki.context()
    # the last signature's value: nothing protects it, the signature itself is broken
    rep = verify_ofd(rezip(signed_twice, {"Doc_0/Signs/Sign_1/SignedValue.dat": None}), ctx)
    assert rep.verdict == "FAILED" and rep.signatures[1].reason == "FORMAT_FAILURE"
    # the first one's: the second signature protected it
    rep = verify_ofd(rezip(signed_twice, {"Doc_0/Signs/Sign_0/SignedValue.dat": None}), ctx)
    assert rep.verdict == "FAILED"
    assert rep.signatures[1].reason == "HASH_FAILURE"
    assert "/Doc_0/Signs/Sign_0/SignedValue.dat" in rep.signatures[1].message
    # the whole second signature, listed and all: the first still stands, nothing unsigned
    files = files_of(signed_twice)
    signatures_xml = files["Doc_0/Signs/Signatures.xml"]
    entry = b'<ofd:Signature ID="3" Type="Seal" BaseLoc="/Doc_0/Signs/Sign_1/Signature.xml"/>'
    assert entry in signatures_xml
    removed = {n: None for n in files if n.startswith("Doc_0/Signs/Sign_1/")}
    rolled_back = rezip(
        signed_twice, {**removed, "Doc_0/Signs/Signatures.xml": signatures_xml.replace(entry, b"")}
    )
    rep = verify_ofd(rolled_back, ctx)
    assert rep.verdict == "PASSED" and len(rep.signatures) == 1


def test_signature_xml_changed_after_signing(
    sm2_signing_pki: SigningPki, signed_twice: bytes
) -> None:
    """Moving the stamp (or any edit of Signature.xml) breaks dataHash, though every
    CheckValue it lists still holds; a dropped Reference is the same edit."""
    ctx = sm2_signing_pki.context()
    sig_path = "Doc_0/Signs/Sign_1/Signature.xml"
    original = files_of(signed_twice)[sig_path]
    moved = original.replace(b'Boundary="', b'Boundary="1', 1)
    start = original.index(b'<ofd:Reference FileRef="/Doc_0/Res/')
    end = original.index(b"</ofd:Reference>", start) + len(b"</ofd:Reference>")
    for edited in (moved, original[:start] + original[end:]):
        rep = verify_ofd(rezip(signed_twice, {sig_path: edited}), ctx)
        assert rep.verdict == "FAILED" and rep.signatures[0].verdict == "PASSED"
        assert (rep.reason, rep.signatures[1].reason) == ("HASH_FAILURE", "HASH_FAILURE")
        assert [c["result"] for c in checks_named(rep.signatures[1], "ses.data_hash")] == ["failed"]
        assert all(c["result"] == "passed" for c in checks_named(rep, "reference "))


def test_page_deleted_after_signing(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    gone = rezip(signed_twice, {"Doc_0/Pages/Page_1/Content.xml": None})
    rep = verify_ofd(gone, sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")
    assert "/Doc_0/Pages/Page_1/Content.xml" in rep.signatures[0].message


def test_swapped_seal_file(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    pki = sm2_signing_pki
    other = make_seal(pki, name="另一枚印章")
    rep = verify_ofd(rezip(signed_twice, {"Doc_0/Signs/Sign_1/Seal.esl": other}), pki.context())
    assert rep.verdict == "FAILED"
    assert rep.signatures[1].reason in ("HASH_FAILURE", "SEAL_MISMATCH")
    seal_checks = [c for c in rep.signatures[1].checks if c["name"] == "seal_file"]
    assert [c["result"] for c in seal_checks] == ["failed"]


def test_seal_mismatch_when_the_seal_file_is_not_a_reference(sm2_signing_pki: SigningPki) -> None:
    """SEAL_MISMATCH on its own: an ofdrw-style package whose Seal.esl no Reference covers."""
    pki = sm2_signing_pki
    data = vector()
    files = files_of(data)
    sig_path = "Doc_0/Signs/Sign_0/Signature.xml"
    # Drop the Seal.esl Reference; the signature then no longer matches Signature.xml, but the
    # seal comparison is made (and reported) on its own.
    start = files[sig_path].index(b'<ofd:Reference FileRef="/Doc_0/Signs/Sign_0/Seal.esl">')
    end = files[sig_path].index(b"</ofd:Reference>", start) + len(b"</ofd:Reference>")
    signature_xml = files[sig_path][:start] + files[sig_path][end:]
    tampered = rezip(data, {sig_path: signature_xml, "Doc_0/Signs/Sign_0/Seal.esl": make_seal(pki)})
    rep = verify_ofd(tampered, pki.untrusting_context())
    assert (rep.verdict, rep.reason) == ("FAILED", "SEAL_MISMATCH")


def test_another_documents_signature_is_rejected(
    sm2_signing_pki: SigningPki, signed_twice: bytes
) -> None:
    pki = sm2_signing_pki
    other = build_ofd([PageSpec((TextBlock("另一份文件", 20, 20),))], created=WHEN)
    other_signed = files_of(seal_and_sign(pki, other))
    transplanted = rezip(
        signed_twice,
        {
            n: other_signed[n]
            for n in other_signed
            if n.startswith("Doc_0/Signs/Sign_0/") and n.endswith(("Signature.xml", ".dat"))
        },
    )
    rep = verify_ofd(transplanted, pki.context())
    assert rep.verdict == "FAILED"


# --- hostile and broken input -------------------------------------------------------------


def with_header_sizes(data: bytes, name: bytes, file_size: int) -> bytes:
    """``data`` with the declared uncompressed size of ``name`` changed in both headers."""
    return patch_headers(data, name, (22, 24, "<I"), file_size)


def patch_headers(data: bytes, name: bytes, where: tuple[int, int, str], value: int) -> bytes:
    """``data`` with a field of ``name``'s local and central headers set to ``value``;
    ``where`` is (offset in the local header, offset in the central one, struct format)."""
    at_local, at_central, fmt = where
    out = bytearray(data)
    local = 0  # the first local header
    while True:
        n_len, x_len = struct.unpack_from("<HH", out, local + 26)
        if bytes(out[local + 30 : local + 30 + n_len]) == name:
            struct.pack_into(fmt, out, local + at_local, value)
            break
        comp = struct.unpack_from("<I", out, local + 18)[0]
        local += 30 + n_len + x_len + comp
    central = out.index(b"PK\x01\x02")
    while out[central : central + 4] == b"PK\x01\x02":
        n_len, x_len, c_len = struct.unpack_from("<HHH", out, central + 28)
        if bytes(out[central + 46 : central + 46 + n_len]) == name:
            struct.pack_into(fmt, out, central + at_central, value)
        central += 46 + n_len + x_len + c_len
    return bytes(out)


def assert_refused(data: bytes, error: type[Exception], match: str, pki: SigningPki) -> None:
    with pytest.raises(error, match=match):
        OfdPackage.read(data)
    rep = verify_ofd(data, pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE"), rep.to_dict()


def test_zip_bomb_by_ratio(sm2_signing_pki: SigningPki) -> None:
    bomb = zip_of({"OFD.xml": b"<x/>", "Doc_0/bomb.xml": b"\0" * (4 << 20)})
    assert len(bomb) < 10_000
    assert_refused(bomb, InputTooLargeError, "zip bomb", sm2_signing_pki)


def test_zip_bomb_by_declared_size(sm2_signing_pki: SigningPki) -> None:
    huge = with_header_sizes(zip_of({"OFD.xml": b"<x/>", "big.bin": b"a"}), b"big.bin", 1 << 31)
    assert_refused(huge, InputTooLargeError, "expands to", sm2_signing_pki)
    total = zip_of({"OFD.xml": b"<x/>", **{f"f{i}.bin": bytes(range(256)) * 40 for i in range(4)}})
    with pytest.raises(InputTooLargeError, match="expands to more than"):
        OfdPackage.read(total, ReadLimits(max_total_bytes=30_000))


def test_zip_bomb_lying_about_its_size(sm2_signing_pki: SigningPki) -> None:
    """Declared small, deflating to megabytes: reading stops at the declared size."""
    liar = with_header_sizes(
        zip_of({"OFD.xml": b"<x/>", "Doc_0/a.xml": b"A" * 60_000}), b"Doc_0/a.xml", 100
    )
    assert_refused(liar, MalformedInputError, "cannot be read|CRC|shorter", sm2_signing_pki)


def test_too_many_entries(sm2_signing_pki: SigningPki) -> None:
    many = zip_of({"OFD.xml": b"<x/>", **{f"f{i}": b"" for i in range(20)}})
    with pytest.raises(InputTooLargeError, match="entries"):
        OfdPackage.read(many, ReadLimits(max_entries=10))
    with pytest.raises(InputTooLargeError, match="bytes"):
        OfdPackage.read(many, ReadLimits(max_package_bytes=100))


@pytest.mark.parametrize(
    "name", ["../evil.xml", "Doc_0/../../evil.xml", "/etc/passwd", "Doc_0\\x.xml", "C:/x.xml"]
)
def test_path_traversal(name: str, sm2_signing_pki: SigningPki) -> None:
    bad = zip_of({"OFD.xml": b"<x/>", name: b"x"})
    assert_refused(bad, MalformedInputError, "path|name", sm2_signing_pki)


def test_duplicate_entries(sm2_signing_pki: SigningPki) -> None:
    out = io.BytesIO()
    with pytest.warns(UserWarning), zipfile.ZipFile(out, "w") as archive:
        archive.writestr("OFD.xml", b"<x/>")
        archive.writestr("Doc_0/Document.xml", b"<a/>")
        archive.writestr("Doc_0/Document.xml", b"<b/>")
    assert_refused(out.getvalue(), MalformedInputError, "twice", sm2_signing_pki)
    folded = zip_of({"OFD.xml": b"<x/>", "ofd.XML": b"<y/>"})
    assert_refused(folded, MalformedInputError, "twice", sm2_signing_pki)


def test_encrypted_entry(sm2_signing_pki: SigningPki) -> None:
    plain = zip_of({"OFD.xml": b"<x/>", "Doc_0/secret.xml": b"not really encrypted"})
    flagged = patch_headers(plain, b"Doc_0/secret.xml", (6, 8, "<H"), 0x1)
    assert_refused(flagged, MalformedInputError, "encrypted", sm2_signing_pki)


def test_other_compression_methods(sm2_signing_pki: SigningPki) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("OFD.xml", b"<x/>")
    assert_refused(out.getvalue(), MalformedInputError, "compression method", sm2_signing_pki)


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ofd:OFD [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"><ofd:DocBody><ofd:DocRoot>&xxe;</ofd:DocRoot>
</ofd:DocBody></ofd:OFD>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016">&lol3;</ofd:OFD>"""


@pytest.mark.parametrize("payload", [XXE, LAUGHS], ids=["external-entity", "billion-laughs"])
def test_hostile_xml(payload: bytes, sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    with pytest.raises(MalformedInputError, match="forbidden XML"):
        parse_xml(payload, "OFD.xml")
    rep = verify_ofd(zip_of({"OFD.xml": payload}), sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")
    assert "forbidden XML" in rep.message
    # inside a signed package, in a part only a signature points to
    hostile = rezip(signed_twice, {"Doc_0/Signs/Signatures.xml": payload})
    rep = verify_ofd(hostile, sm2_signing_pki.context())
    assert rep.verdict == "FAILED"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage, not a zip at all" * 10,
        b"PK\x03\x04" + bytes(200),
        zip_of({}),
        zip_of({"Doc_0/Document.xml": b"<a/>"}),
        zip_of({"OFD.xml": b"<not closed"}),
        zip_of({"OFD.xml": b'<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"/>'}),
        zip_of({"OFD.xml": b"<Other/>"}),
    ],
    ids=["empty", "garbage", "bad-zip", "empty-zip", "no-ofd-xml", "bad-xml", "no-body", "root"],
)
def test_malformed_packages(data: bytes, sm2_signing_pki: SigningPki) -> None:
    rep = verify_ofd(data, sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE"), rep.to_dict()


def test_truncated_signed_package(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    for cut in (len(signed_twice) // 2, len(signed_twice) - 10):
        rep = verify_ofd(signed_twice[:cut], sm2_signing_pki.context())
        assert (rep.verdict, rep.reason) == ("FAILED", "FORMAT_FAILURE")


def test_unsigned_package(sm2_signing_pki: SigningPki) -> None:
    rep = verify_ofd(license_ofd(), sm2_signing_pki.context())
    assert (rep.verdict, rep.reason) == ("FAILED", "NO_SIGNATURE")


def test_broken_signature_files(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    ctx = sm2_signing_pki.context()
    files = files_of(signed_twice)
    sig = files["Doc_0/Signs/Sign_1/Signature.xml"]
    cases: dict[str, dict[str, bytes | None]] = {
        "garbage value": {"Doc_0/Signs/Sign_1/SignedValue.dat": b"\x30\x03\x02\x01\x00"},
        "bad base64": {
            "Doc_0/Signs/Sign_1/Signature.xml": sig.replace(
                b"<ofd:CheckValue>", b"<ofd:CheckValue>!", 1
            )
        },
        "unknown type": {
            "Doc_0/Signs/Signatures.xml": files["Doc_0/Signs/Signatures.xml"].replace(
                b'Type="Seal"', b'Type="Magic"'
            )
        },
        "missing list": {"Doc_0/Signs/Signatures.xml": None},
        "escaping path": {
            "Doc_0/Signs/Signatures.xml": files["Doc_0/Signs/Signatures.xml"].replace(
                b"/Doc_0/Signs/Sign_1/Signature.xml", b"../../../../x.xml"
            )
        },
    }
    for label, change in cases.items():
        rep = verify_ofd(rezip(signed_twice, change), ctx)
        assert rep.verdict == "FAILED", (label, rep.to_dict())


def test_type_sign_cms_signature(sm2_signing_pki: SigningPki) -> None:
    """A ``Type="Sign"`` signature (detached CMS over Signature.xml) is verified, not refused."""
    from signing.cms import sign_detached

    pki = sm2_signing_pki
    signed = seal_and_sign(pki, license_ofd())
    files = files_of(signed)
    signature_xml = files["Doc_0/Signs/Sign_0/Signature.xml"]
    cms_value = sign_detached(
        signature_xml, pki.signer.key, pki.signer.cert, chain=pki.chain, signing_time=pki.now
    )
    as_sign = {
        "Doc_0/Signs/Signatures.xml": files["Doc_0/Signs/Signatures.xml"].replace(
            b'Type="Seal"', b'Type="Sign"'
        ),
        "Doc_0/Signs/Sign_0/SignedValue.dat": cms_value,
    }
    rep = verify_ofd(rezip(signed, as_sign), pki.context())
    assert rep.verdict == "PASSED", rep.to_dict()
    other = sign_detached(
        b"something else", pki.signer.key, pki.signer.cert, chain=pki.chain, signing_time=pki.now
    )
    rep = verify_ofd(
        rezip(signed, {**as_sign, "Doc_0/Signs/Sign_0/SignedValue.dat": other}), pki.context()
    )
    assert (rep.verdict, rep.reason) == ("FAILED", "HASH_FAILURE")


def der_tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(body))) + body + content


def attach(cms_der: bytes, content: bytes) -> bytes:
    """A detached ContentInfo{SignedData} made attached: ``content`` as its eContent."""
    ((_, _, start, end),) = tlvs(cms_der)
    oid, wrapper = tlvs(cms_der, start, end)
    ((_, _, start, end),) = tlvs(cms_der, wrapper[2], wrapper[3])
    fields = [cms_der[f[1] : f[3]] for f in tlvs(cms_der, start, end)]
    econtent_type = fields[2][2:]  # the OID inside the (short) encapContentInfo
    fields[2] = der_tlv(0x30, econtent_type + der_tlv(0xA0, der_tlv(0x04, content)))
    signed_data = der_tlv(0x30, b"".join(fields))
    return der_tlv(0x30, cms_der[oid[1] : oid[3]] + der_tlv(0xA0, signed_data))


def test_type_sign_ofdrw_style(sm2_signing_pki: SigningPki) -> None:
    """ofdrw's GB/T 35275 container: the SM3 digest of Signature.xml as attached content."""
    from signing.cms import sign_detached

    pki = sm2_signing_pki
    signed = seal_and_sign(pki, license_ofd())
    files = files_of(signed)
    digest = hashlib.new("sm3", files["Doc_0/Signs/Sign_0/Signature.xml"]).digest()
    as_sign = {
        "Doc_0/Signs/Signatures.xml": files["Doc_0/Signs/Signatures.xml"].replace(
            b'Type="Seal"', b'Type="Sign"'
        )
    }
    for content, reason in ((digest, "OK"), (bytes(32), "HASH_FAILURE")):
        detached = sign_detached(
            content, pki.signer.key, pki.signer.cert, chain=pki.chain, signing_time=pki.now
        )
        value = attach(detached, content)
        rep = verify_ofd(
            rezip(signed, {**as_sign, "Doc_0/Signs/Sign_0/SignedValue.dat": value}),
            pki.context(),
        )
        assert rep.reason == reason, rep.to_dict()
    assert rep.signatures[0].message.endswith("not (the digest of) this Signature.xml.")


def test_never_raises_on_mutations(sm2_signing_pki: SigningPki, signed_twice: bytes) -> None:
    """Byte flips anywhere in a signed package give a report, never an exception."""
    ctx = sm2_signing_pki.context()
    step = max(1, len(signed_twice) // 60)
    for pos in range(0, len(signed_twice), step):
        mutated = bytearray(signed_twice)
        mutated[pos] ^= 0x5A
        rep = verify_ofd(bytes(mutated), ctx)
        assert rep.verdict in ("FAILED", "INDETERMINATE", "PASSED")
        assert rep.reason != "INTERNAL", (pos, rep.to_dict())
