"""Fast font subsets (signing/font_subset.py) and PDF pages (signing/page_render.py).

The judges are independent of the code under test: fontTools reads the fonts (checksums
included), pyhanko's strict reader the PDFs, the ToUnicode CMap is read back with a regular
expression, and signing goes through sign_pdf/verify_pdf and sign_ofd/verify_ofd.
"""

from __future__ import annotations

import io
import itertools
import re
import struct
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from PIL import Image, ImageDraw
from pyhanko.pdf_utils.reader import PdfFileReader

import signing.font_subset as font_subset
from signing import fonts
from signing.font_subset import FontSubsetter, default_subsetter
from signing.ofd import verify_ofd
from signing.ofd_package import ImageBlock, PageSpec, TextBlock, build_ofd, qr_block
from signing.page_render import render_pdf
from signing.pdf import sign_pdf, verify_pdf
from signing.seal_picture import red_seal_png
from tests.signing_pki import SigningPki
from tests.test_ofd import seal_and_sign
from trust.errors import ConfigurationError, MalformedInputError

WHEN = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
NS = "{http://www.ofdspec.org/2016}"
LINES = [
    ("统一社会信用代码", "91350100M000100Y43"),
    ("名称", "测试盟示范科技有限公司"),
    ("类型", "有限责任公司（自然人投资或控股）"),
    ("法定代表人", "张三"),
    ("经营范围", "软件开发；信息技术咨询服务；数据处理"),
    ("注册资本", "壹佰万元整"),
    ("成立日期", "2020年01月15日"),
    ("营业期限", "2020年01月15日至长期"),
    ("住所", "福建省福州市鼓楼区软件大道89号"),
    ("登记机关", "福州市市场监督管理局"),
    ("核准日期", "2026年05月01日"),
    ("发照日期", "2026年05月01日"),
]
RARE = "堃"  # in GBK and in the WenQuanYi face, not in GB2312


def license_pages() -> list[PageSpec]:
    """A license page: a bold red title, 12 lines of label and value, a QR code, a seal."""
    items: list[TextBlock | ImageBlock] = [
        TextBlock("营业执照", 80, 30, 10, bold=True, color=(200, 0, 0))
    ]
    items += [TextBlock(f"{k}：{v}", 20, 60 + 10 * i) for i, (k, v) in enumerate(LINES)]
    items.append(qr_block("https://verify.etrust.test/l/91350100M000100Y43?v=1", 20, 220, 30))
    items.append(ImageBlock(red_seal_png("福州市市场监督管理局", diameter_mm=40), 140, 210, 40, 40))
    return [PageSpec(tuple(items))]


def page_text(pages: list[PageSpec]) -> list[str]:
    return [i.text for spec in pages for i in spec.items if isinstance(i, TextBlock)]


def png(mode: str = "RGBA", size: int = 24) -> bytes:
    picture = Image.new(mode, (size, size))
    ImageDraw.Draw(picture).ellipse((2, 2, size - 3, size - 3), fill="red")
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (0, 90, 160)).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def subsetter() -> FontSubsetter:
    return default_subsetter()


# --- font subsets -------------------------------------------------------------------------------


def raw_glyphs(font: TTFont) -> list[bytes]:
    """Each glyph's stored bytes, through the font's own loca."""
    glyf = font.reader["glyf"]
    offsets = font["loca"].locations
    return [glyf[a:b] for a, b in itertools.pairwise(offsets)]


def metrics(font: TTFont, table: str, gid: int) -> tuple[int, int]:
    """Glyph names differ between fonts (post format 3: fontTools makes them up): go by id."""
    return tuple(font[table][font.getGlyphName(gid)])


def gid_cmap(font: TTFont) -> dict[int, int]:
    return {code: font.getGlyphID(name) for code, name in font.getBestCmap().items()}


def components(font: TTFont, gid: int) -> list[int]:
    glyph = font["glyf"][font.getGlyphName(gid)]
    if not glyph.isComposite():
        return []
    return [font.getGlyphID(c.glyphName) for c in glyph.components]


def test_subset_keeps_glyph_ids_and_outlines(subsetter: FontSubsetter) -> None:
    text = "".join(page_text(license_pages()))
    base = TTFont(io.BytesIO(subsetter.base))
    sub = TTFont(io.BytesIO(subsetter.subset(text)), checkChecksums=2)  # asserts checksums
    assert sub["maxp"].numGlyphs == base["maxp"].numGlyphs == subsetter.num_glyphs
    assert sub["head"].unitsPerEm == subsetter.units_per_em == 1000
    assert sub["head"].indexToLocFormat == 1
    assert sub["post"].formatType == 3.0

    used = {0, *subsetter.glyph_ids(text)}
    todo = list(used)
    while todo:  # composite components, recursively, found by fontTools
        for gid in components(base, todo.pop()):
            if gid not in used:
                used.add(gid)
                todo.append(gid)
    assert any(components(base, gid) for gid in used), "no composite glyph was exercised"
    assert used == set(subsetter.closure(subsetter.glyph_ids(text)))

    base_glyphs, sub_glyphs = raw_glyphs(base), raw_glyphs(sub)
    for gid, data in enumerate(sub_glyphs):
        if gid in used:
            assert data == base_glyphs[gid], gid
            assert metrics(sub, "hmtx", gid) == metrics(base, "hmtx", gid)
            assert metrics(sub, "vmtx", gid) == metrics(base, "vmtx", gid)
        else:
            assert data == b"", gid
    assert gid_cmap(sub) == dict(zip(map(ord, text), subsetter.glyph_ids(text), strict=True))
    for tag in ("hhea", "maxp", "OS/2", "post", "name", "vhea"):
        assert sub.reader[tag] == base.reader[tag], tag
    # whole-file checksum: head.checkSumAdjustment makes every font sum to 0xB1B0AFBA
    data = subsetter.subset(text)
    assert sum(struct.unpack(f">{len(data) // 4}I", data)) & 0xFFFFFFFF == 0xB1B0AFBA


def test_glyph_ids_advances_and_coverage(subsetter: FontSubsetter) -> None:
    base = TTFont(io.BytesIO(subsetter.base))
    cmap = gid_cmap(base)
    text = "营业执照 A1：（）№℃〇·ー１"
    assert subsetter.covers(text)
    gids = subsetter.glyph_ids(text)
    assert gids == [cmap[ord(c)] for c in text]
    assert all(gids)
    for gid in gids:
        assert subsetter.advance(gid) == metrics(base, "hmtx", gid)[0]
    assert subsetter.advance(gids[0]) == 1000  # a hanzi is one em wide
    assert subsetter.width("营业A", 10) == pytest.approx((2000 + subsetter.advance(gids[5])) / 100)
    assert subsetter.glyph_ids(RARE + "😀") == [0, 0]
    assert not subsetter.covers(RARE)
    assert subsetter.covers("a\tb\x07")  # control characters are never drawn


def test_base_character_set() -> None:
    charset = font_subset.base_charset()

    def gb2312(char: str) -> bool:
        try:
            return len(char.encode("gb2312")) == 2
        except UnicodeEncodeError:
            return False

    assert sum(map(gb2312, charset)) == 7445  # 682 symbols, 6763 hanzi: all of GB2312
    assert {chr(c) for c in range(0x20, 0x7F)} <= charset
    assert {chr(c) for c in range(0xFF01, 0xFF5F)} <= charset
    assert set("〇·ー№℃") <= charset


def test_subset_of_nothing_is_a_font(subsetter: FontSubsetter) -> None:
    sub = TTFont(io.BytesIO(subsetter.subset("")), checkChecksums=2)
    assert sub["cmap"].getBestCmap() == {}
    assert raw_glyphs(sub)[0] == raw_glyphs(TTFont(io.BytesIO(subsetter.base)))[0]


def test_rare_characters_fall_back_to_the_original_face(
    subsetter: FontSubsetter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert subsetter.for_text("营业执照") is subsetter
    assert subsetter.for_text("😀") is subsetter  # not in the face: nothing better exists
    wider = subsetter.for_text(f"名称：{RARE}鑫科技")
    assert wider is not subsetter and wider.covers(f"名称：{RARE}鑫科技")
    assert subsetter.for_text(RARE) is wider  # cached
    assert list(tmp_path.glob("etrust/font-base-*.ttf"))  # and on disk
    sub = TTFont(io.BytesIO(wider.subset(RARE)), checkChecksums=2)
    glyph = sub["glyf"][sub.getBestCmap()[ord(RARE)]]
    assert glyph.numberOfContours != 0


def test_disk_cache(
    subsetter: FontSubsetter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[object] = []

    def build(origin: object) -> bytes:
        builds.append(origin)
        return subsetter.base

    monkeypatch.setattr(font_subset, "_build_base", build)
    monkeypatch.setattr(font_subset, "_LOADED", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = default_subsetter()
    assert len(builds) == 1 and default_subsetter() is first  # in memory
    (cached,) = (tmp_path / "etrust").glob("font-base-*.ttf")
    assert cached.read_bytes() == subsetter.base
    assert [p.name for p in (tmp_path / "etrust").iterdir()] == [cached.name]  # no temp left

    monkeypatch.setattr(font_subset, "_LOADED", {})
    assert default_subsetter().base == subsetter.base and len(builds) == 1  # read back

    cached.write_bytes(subsetter.base[:-8] + b"damaged!")
    monkeypatch.setattr(font_subset, "_LOADED", {})
    assert default_subsetter().base == subsetter.base and len(builds) == 2  # rebuilt
    assert cached.read_bytes() == subsetter.base

    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # etrust/ cannot be made below a file
    monkeypatch.setattr(font_subset, "_LOADED", {})
    assert default_subsetter().base == subsetter.base and len(builds) == 3


def test_missing_font(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "FONT_PATH", Path("/nonexistent/font.ttc"))
    with pytest.raises(ConfigurationError, match="fonts-wqy-microhei"):
        default_subsetter()
    with pytest.raises(ConfigurationError):
        render_pdf([PageSpec((TextBlock("名称", 0, 0),))])
    render_pdf([PageSpec((ImageBlock(png(), 10, 10, 5, 5),))])  # no text, no font needed


def test_not_a_font() -> None:
    for junk in (b"", b"\0\1\0\0" + bytes(50), b"OTTO" + bytes(100)):
        with pytest.raises(MalformedInputError):
            FontSubsetter(junk)


# --- PDF ----------------------------------------------------------------------------------------


def read(pdf: bytes) -> PdfFileReader:
    return PdfFileReader(io.BytesIO(pdf), strict=True)


def pages_of(reader: PdfFileReader) -> list[Any]:
    return [kid.get_object() for kid in reader.root["/Pages"]["/Kids"]]


def to_unicode(font: Any) -> dict[int, str]:
    cmap = font["/ToUnicode"].data.decode("ascii")
    return {
        int(code, 16): bytes.fromhex(text).decode("utf-16-be")
        for code, text in re.findall(r"<([0-9A-F]{4})> <([0-9A-F]+)>", cmap)
    }


def shown_text(page: Any) -> Iterator[str]:
    """Each text object's text as a reader extracts it: glyphs through ToUnicode, except
    where marked content carries the ActualText."""
    font = page["/Resources"]["/Font"]["/F1"]
    unicode = to_unicode(font)
    content = page["/Contents"].data.decode("latin-1")
    for block in re.findall(r"BT (.*?) ET", content):
        out = []
        for actual, hexed in re.findall(
            r"(?:/ActualText <FEFF([0-9A-F]*)> >> BDC )?<([0-9A-F]*)> Tj", block
        ):
            if actual:
                out.append(bytes.fromhex(actual).decode("utf-16-be"))
            else:
                out += [unicode[int(hexed[i : i + 4], 16)] for i in range(0, len(hexed), 4)]
        yield "".join(out)


def test_pdf_structure_and_text(subsetter: FontSubsetter) -> None:
    pages = license_pages()
    pdf = render_pdf(pages, title="营业执照", author="测试盟市场监督管理局", created=WHEN)
    assert pdf.startswith(b"%PDF-1.7\n")
    reader = read(pdf)
    info = reader.trailer["/Info"]
    assert (info["/Title"], info["/Author"], info["/Producer"]) == (
        "营业执照",
        "测试盟市场监督管理局",
        "etrust",
    )
    assert str(info["/CreationDate"]) == "D:20260501083000Z"
    (page,) = pages_of(reader)
    assert [float(v) for v in page["/MediaBox"]] == pytest.approx([0, 0, 595.276, 841.89])
    assert list(shown_text(page)) == page_text(pages)

    font = page["/Resources"]["/Font"]["/F1"]
    assert (font["/Subtype"], font["/Encoding"]) == ("/Type0", "/Identity-H")
    (cid_font,) = [f.get_object() for f in font["/DescendantFonts"]]
    assert (cid_font["/Subtype"], cid_font["/CIDToGIDMap"]) == ("/CIDFontType2", "/Identity")
    info_dict = cid_font["/CIDSystemInfo"]
    assert (info_dict["/Registry"], info_dict["/Ordering"], info_dict["/Supplement"]) == (
        "Adobe",
        "Identity",
        0,
    )
    widths: dict[int, int] = {}
    entries = list(cid_font["/W"])
    for first, run in zip(entries[0::2], entries[1::2], strict=True):
        widths.update({first + i: w for i, w in enumerate(run)})
    gids = set(subsetter.glyph_ids("".join(page_text(pages))))
    assert widths == {g: subsetter.advance(g) for g in gids}

    descriptor = cid_font["/FontDescriptor"]
    assert re.fullmatch(r"/[A-Z]{6}\+WenQuanYiMicroHei", descriptor["/FontName"])
    program = descriptor["/FontFile2"]
    embedded = TTFont(io.BytesIO(program.data), checkChecksums=2)
    assert program["/Length1"] == len(program.data)
    assert set(embedded.getBestCmap()) == {ord(c) for c in "".join(page_text(pages))}

    content = page["/Contents"].data
    assert b"0.784 0 0 rg" in content and b"2 Tr" in content  # red, bold title
    images = page["/Resources"]["/XObject"]
    assert len(images) == 2
    assert any("/SMask" in images[name] for name in images)  # the seal's transparency


def test_pdf_text_sits_where_the_ofd_puts_it(subsetter: FontSubsetter) -> None:
    """Baseline and advances of the PDF equal the OFD TextCode's (Y and DeltaX)."""
    block = TextBlock("名称：ABC 测试123", 20, 70, 4.2)
    pdf_page = pages_of(read(render_pdf([PageSpec((block,))])))[0]
    content = pdf_page["/Contents"].data.decode("latin-1")
    size, x, y = re.search(r"/F1 (\S+) Tf (\S+) (\S+) Td", content).groups()  # type: ignore[union-attr]
    pt = 72 / 25.4
    files = zipfile.ZipFile(io.BytesIO(build_ofd([PageSpec((block,))], created=WHEN)))
    page = files.read("Doc_0/Pages/Page_0/Content.xml").decode()
    code = re.search(r'<ofd:TextCode X="0" Y="([^"]+)" DeltaX="([^"]+)"', page)
    assert code is not None
    assert float(size) == pytest.approx(4.2 * pt, abs=1e-3)
    assert float(x) == pytest.approx(20 * pt, abs=1e-3)
    assert float(y) == pytest.approx((297 - 70 - float(code.group(1))) * pt, abs=1e-3)
    deltas = [float(d) for d in code.group(2).split()]
    pdf_advances = [subsetter.advance(g) / 1000 * 4.2 for g in subsetter.glyph_ids(block.text)]
    assert deltas == pytest.approx(pdf_advances[:-1], abs=1e-3)


def test_characters_without_glyphs_keep_their_text() -> None:
    pages = [PageSpec((TextBlock("表情😀符号", 20, 20),))]
    (page,) = pages_of(read(render_pdf(pages)))
    assert list(shown_text(page)) == ["表情😀符号"]
    assert b"/ActualText <FEFFD83DDE00>" in page["/Contents"].data


def test_images_keep_their_data() -> None:
    picture = jpeg()
    pages = [
        PageSpec(
            (
                ImageBlock(picture, 10, 10, 30, 20),
                ImageBlock(png("L"), 50, 10, 10, 10),
                ImageBlock(png("RGB"), 70, 10, 10, 10),
                ImageBlock(picture, 10, 40, 30, 20),  # the same JPEG once in the file
            )
        ),
        PageSpec((ImageBlock(png("P"), 10, 10, 10, 10),)),
    ]
    reader = read(render_pdf(pages))
    first, second = pages_of(reader)
    assert first["/Resources"] == second["/Resources"]
    images = {n: first["/Resources"]["/XObject"][n] for n in first["/Resources"]["/XObject"]}
    assert len(images) == 4
    spaces = sorted(str(i["/ColorSpace"]) for i in images.values())
    assert spaces == ["/DeviceGray", "/DeviceRGB", "/DeviceRGB", "/DeviceRGB"]
    (dct,) = [i for i in images.values() if i["/Filter"] == "/DCTDecode"]
    assert dct.encoded_data == picture and (dct["/Width"], dct["/Height"]) == (32, 24)
    assert not any("/SMask" in i for i in images.values())  # all opaque
    content = first["/Contents"].data
    assert content.count(b" Do Q") == 4
    assert b"85.039 0 0 56.693 28.346 756.85 cm" in content  # 30 x 20 mm at (10, 10) mm


def test_rendering_is_deterministic() -> None:
    once = render_pdf(license_pages(), title="营业执照", created=WHEN)
    assert render_pdf(license_pages(), title="营业执照", created=WHEN) == once
    assert render_pdf(license_pages()) == render_pdf(license_pages())  # no date: no clock
    assert b"/CreationDate" not in render_pdf(license_pages())
    assert render_pdf(license_pages(), title="其他", created=WHEN) != once


@pytest.mark.parametrize(
    ("pages", "options"),
    [
        ([], {}),
        ([PageSpec((TextBlock("两\n行", 0, 0),))], {}),
        ([PageSpec((TextBlock("回车\r", 0, 0),))], {}),
        ([PageSpec((TextBlock("bell \x07", 0, 0),))], {}),
        ([PageSpec((TextBlock("\ud800", 0, 0),))], {}),
        ([PageSpec((TextBlock("x", float("nan"), 0),))], {}),
        ([PageSpec((TextBlock("x", 0, 0, size=0),))], {}),
        ([PageSpec((TextBlock("x", 0, 0, color=(0, 0, 256)),))], {}),
        ([PageSpec((ImageBlock(b"GIF89a....", 0, 0, 1, 1),))], {}),
        ([PageSpec((ImageBlock(b"\x89PNG\r\n\x1a\nbroken", 0, 0, 1, 1),))], {}),
        ([PageSpec((ImageBlock(png(), 0, 0, 0, 1),))], {}),
        ([PageSpec((ImageBlock(png(), float("inf"), 0, 1, 1),))], {}),
        ([PageSpec(("text",))], {}),  # type: ignore[arg-type]
        ([PageSpec()], {"page_size": (0, 297)}),
        ([PageSpec()], {"page_size": (210, 1e9)}),
        ([PageSpec()], {"page_size": (float("nan"), 297)}),
        ([PageSpec()], {"page_size": (210,)}),
    ],
)
def test_bad_input(pages: list[PageSpec], options: dict[str, Any]) -> None:
    with pytest.raises(MalformedInputError):
        render_pdf(pages, **options)


# --- signing --------------------------------------------------------------------------------------


def test_pdf_signs_and_verifies(sm2_signing_pki: SigningPki) -> None:
    pki = sm2_signing_pki
    pdf = render_pdf(license_pages(), title="营业执照", created=WHEN)
    signed = sign_pdf(pdf, pki.signer.key, pki.signer.cert, chain=pki.chain)
    assert signed.startswith(pdf)  # an incremental update
    report = verify_pdf(signed, pki.context())
    assert report.verdict == "PASSED", report.to_dict()
    (sig,) = report.signatures
    assert {c["name"]: c["result"] for c in sig.checks}["pdf.coverage"] == "passed"


def test_ofd_embeds_the_font_and_verifies_when_signed(
    sm2_signing_pki: SigningPki, subsetter: FontSubsetter
) -> None:
    pages = license_pages()
    data = build_ofd(pages, created=WHEN, title="营业执照")
    assert build_ofd(pages, created=WHEN, title="营业执照") == data
    files = zipfile.ZipFile(io.BytesIO(data))
    res = files.read("Doc_0/PublicRes.xml").decode()
    (font_id, font_file) = re.findall(r'<ofd:Font ID="(\d+)"[^>]*><ofd:FontFile>([^<]+)<', res)[0]
    assert font_file == f"Font_{font_id}.ttf"
    embedded = files.read(f"Doc_0/Res/{font_file}")
    assert embedded == subsetter.subset("".join(page_text(pages)))
    assert set(TTFont(io.BytesIO(embedded)).getBestCmap()) == {
        ord(c) for c in "".join(page_text(pages))
    }
    signed = seal_and_sign(sm2_signing_pki, data)
    report = verify_ofd(signed, sm2_signing_pki.context())
    assert report.verdict == "PASSED", report.to_dict()
