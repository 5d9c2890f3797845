"""One page description, two documents: the pages :func:`signing.ofd_package.build_ofd` writes as
OFD, written here as PDF with the same text layout.

The PDF is written directly (objects, xref table, trailer) in a few milliseconds a page; pyhanko
needs ~300 ms for the same text. Text uses the embedded CJK font as a Type0/CIDFontType2 font
whose CIDs are the glyph ids of :mod:`signing.font_subset` (so glyph widths, and hence text
positions, are those the OFD layout uses), with a ToUnicode CMap so the text can be searched,
copied and read aloud. The output is a plain PDF 1.7 that pyhanko signs incrementally.

``TextBlock.font`` names the OFD font resource only: both documents draw all text with the
embedded face (a font the reader may lack would move glyphs away from their DeltaX places).
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from PIL import Image, UnidentifiedImageError

from signing.font_subset import FontSubsetter, default_subsetter
from signing.ofd_package import (
    _XML_FORBIDDEN,
    A4_MM,
    TEXT_BASELINE,
    ImageBlock,
    PageSpec,
    TextBlock,
    num,
)
from trust.errors import MalformedInputError

__all__ = ["render_pdf"]

_PT_PER_MM = 72 / 25.4
_PAGE_MM = (10.0, 5000.0)  # PDF 1.7 pages are at most 14400 pt (5080 mm) a side
_MAX_TEXT_MM = 1000.0
_MAX_PIXELS = 40_000_000
_BOLD_STROKE = 0.03  # of the font size: text drawn bold is also stroked this wide
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def render_pdf(
    pages: Sequence[PageSpec],
    *,
    page_size: tuple[float, float] = A4_MM,
    title: str | None = None,
    author: str | None = None,
    created: datetime | None = None,
    subject: str | None = None,
) -> bytes:
    """A PDF with one page of ``page_size`` mm per :class:`PageSpec`; the same arguments give
    the same bytes (without ``created`` the PDF has no creation date).

    Raises :class:`MalformedInputError` for text that is not one drawable line, images that
    are not PNG or JPEG, and sizes or positions that are not sane numbers;
    :class:`ConfigurationError` when there is text and the CJK font is missing.
    """
    width, height = _page_size(page_size)
    if not pages:
        raise MalformedInputError("a PDF document needs at least one page")
    items = [item for spec in pages for item in spec.items]
    for item in items:
        _check(item)
    text = "".join(item.text for item in items if isinstance(item, TextBlock))
    pdf = _Writer()
    catalog, tree, resources = pdf.reserve(), pdf.reserve(), pdf.reserve()
    font = _Font(pdf, default_subsetter().for_text(text), text) if text else None
    images: dict[bytes, tuple[str, int]] = {}  # sha256 -> (resource name, object)
    page_refs: list[int] = []
    media_box = b"[0 0 %s %s]" % _ascii(_pt(width), _pt(height))
    for spec in pages:
        ops: list[bytes] = []
        for item in spec.items:
            if isinstance(item, TextBlock):
                if item.text:
                    assert font is not None
                    ops.append(font.show(item, height))
                continue
            digest = hashlib.sha256(item.data).digest()
            if digest not in images:
                images[digest] = (f"Im{len(images) + 1}", _image_object(pdf, item.data))
            ops.append(
                b"q %s 0 0 %s %s %s cm /%s Do Q"
                % _ascii(
                    _pt(item.width),
                    _pt(item.height),
                    _pt(item.x),
                    _pt(height - item.y - item.height),
                    images[digest][0],
                )
            )
        contents = pdf.stream(b"", b"\n".join(ops))
        page_refs.append(
            pdf.add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox %s /Resources %d 0 R /Contents %d 0 R >>"
                % (tree, media_box, resources, contents)
            )
        )
    shared = [b"/Font << /F1 %d 0 R >>" % font.ref] if font else []
    if images:
        named = b" ".join(b"/%s %d 0 R" % (n.encode(), ref) for n, ref in images.values())
        shared.append(b"/XObject << %s >>" % named)
    pdf.put(resources, b"<< %s >>" % b" ".join(shared))
    kids = b" ".join(b"%d 0 R" % ref for ref in page_refs)
    pdf.put(tree, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_refs)))
    pdf.put(
        catalog,
        b"<< /Type /Catalog /Pages %d 0 R /Lang (zh-CN)%s >>"
        % (tree, b" /ViewerPreferences << /DisplayDocTitle true >>" if title else b""),
    )
    info = [b"/Producer (etrust)"]
    if title:
        info.append(b"/Title " + _text_string(title))
    if author:
        info.append(b"/Author " + _text_string(author))
    if subject:
        info.append(b"/Subject " + _text_string(subject))
    if created is not None:
        info.append(b"/CreationDate (%s)" % _pdf_date(created).encode("ascii"))
    return pdf.finish(catalog, pdf.add(b"<< %s >>" % b" ".join(info)))


# --- checks -----------------------------------------------------------------------------------


def _page_size(size: tuple[float, float]) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise MalformedInputError("a page size is two numbers (mm)") from exc
    low, high = _PAGE_MM
    if not (low <= width <= high and low <= height <= high):  # NaN fails too
        raise MalformedInputError(f"page sizes are {low:g} to {high:g} mm")
    return width, height


def _finite(*values: object) -> bool:
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def _check(item: object) -> None:
    """Refuse what a page cannot show: the same rules for PDF as for OFD."""
    if isinstance(item, TextBlock):
        if not isinstance(item.text, str):
            raise MalformedInputError("a TextBlock's text is a string")
        if "\n" in item.text or "\r" in item.text:
            raise MalformedInputError("a TextBlock is one line; use one block per line")
        if _XML_FORBIDDEN.search(item.text) or any(0xD800 <= ord(c) <= 0xDFFF for c in item.text):
            raise MalformedInputError("text contains characters a document cannot carry")
        if not _finite(item.x, item.y, item.size) or not 0 < item.size <= _MAX_TEXT_MM:
            raise MalformedInputError("a TextBlock needs a finite position and a sane size")
        if item.color is not None and (
            not isinstance(item.color, tuple)
            or len(item.color) != 3
            or not all(isinstance(c, int) and 0 <= c <= 255 for c in item.color)
        ):
            raise MalformedInputError("a text colour is three integers 0-255")
    elif isinstance(item, ImageBlock):
        if not isinstance(item.data, bytes) or not item.data.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
            raise MalformedInputError("images in documents must be PNG or JPEG")
        if (
            not _finite(item.x, item.y, item.width, item.height)
            or min(item.width, item.height) <= 0
        ):
            raise MalformedInputError("an ImageBlock needs a finite position and a positive size")
    else:
        raise MalformedInputError(f"a page holds TextBlock and ImageBlock, not {type(item)}")


# --- text ---------------------------------------------------------------------------------------


class _Font:
    """The document's one font: a subset of ``font`` for ``text``, written into ``pdf``."""

    def __init__(self, pdf: _Writer, font: FontSubsetter, text: str) -> None:
        self.font = font
        chars = sorted(set(text))
        gids = font.glyph_ids("".join(chars))
        # ToUnicode maps each glyph back to one character; other characters drawn with it
        # (and characters drawn as .notdef) carry their text as ActualText.
        self.unicode: dict[int, str] = {}
        for char, gid in zip(chars, gids, strict=True):
            if gid:
                self.unicode.setdefault(gid, char)
        program = font.subset(text)
        tag = "".join(chr(65 + b % 26) for b in hashlib.sha256(program).digest()[:6])
        name = f"{tag}+{font.postscript_name}".encode()
        m = font.metrics
        file_ref = pdf.stream(b"/Length1 %d" % len(program), program)
        descriptor = pdf.add(
            b"<< /Type /FontDescriptor /FontName /%s /Flags 4 /FontBBox [%d %d %d %d] "
            b"/ItalicAngle %s /Ascent %d /Descent %d /CapHeight %d /StemV 80 "
            b"/FontFile2 %d 0 R >>"
            % (name, *m.bbox, _ascii(num(m.italic_angle))[0], m.ascent, m.descent,
               m.cap_height, file_ref)
        )  # fmt: skip
        cid_font = pdf.add(
            b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /%s "
            b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
            b"/FontDescriptor %d 0 R /CIDToGIDMap /Identity /DW 1000 /W [%s] >>"
            % (name, descriptor, self._widths(sorted(set(gids))))
        )
        to_unicode = pdf.stream(b"", _to_unicode(self.unicode))
        self.ref = pdf.add(
            b"<< /Type /Font /Subtype /Type0 /BaseFont /%s /Encoding /Identity-H "
            b"/DescendantFonts [%d 0 R] /ToUnicode %d 0 R >>" % (name, cid_font, to_unicode)
        )

    def _widths(self, gids: list[int]) -> bytes:
        """``/W``: runs of consecutive glyph ids, each with its glyphs' widths."""
        runs: list[list[int]] = []
        for gid in gids:
            if runs and gid == runs[-1][0] + len(runs[-1]) - 1:
                runs[-1].append(self.font.advance(gid))
            else:
                runs.append([gid, self.font.advance(gid)])
        return b" ".join(
            b"%d [%s]" % (run[0], b" ".join(b"%d" % w for w in run[1:])) for run in runs
        )

    def show(self, item: TextBlock, page_height: float) -> bytes:
        """Operators drawing ``item``: baseline and advances as in the OFD layout."""
        ops = [b"q"]
        if item.color:
            colour = b" ".join(_ascii(*(num(c / 255) for c in item.color)))
            ops.append(colour + b" rg")
        if item.bold:
            ops.append(b"2 Tr %s w" % _ascii(_pt(item.size * _BOLD_STROKE)))
            if item.color:
                ops.append(colour + b" RG")
        ops.append(
            b"BT /F1 %s Tf %s %s Td"
            % _ascii(_pt(item.size), _pt(item.x), _pt(page_height - item.y - item.size * TEXT_BASELINE))
        )  # fmt: skip
        for text, gids, plain in self._runs(item.text):
            shown = b"<%s> Tj" % struct.pack(f">{len(gids)}H", *gids).hex().upper().encode()
            if plain:
                ops.append(shown)
            else:
                ops.append(b"/Span << /ActualText %s >> BDC %s EMC" % (_text_string(text), shown))
        ops.append(b"ET Q")
        return b" ".join(ops)

    def _runs(self, text: str) -> Iterable[tuple[str, list[int], bool]]:
        """(text, glyphs, whether ToUnicode gives the text back) for stretches of ``text``."""
        run_text: list[str] = []
        run_gids: list[int] = []
        run_plain = True
        for char, gid in zip(text, self.font.glyph_ids(text), strict=True):
            plain = self.unicode.get(gid) == char
            if run_gids and plain != run_plain:
                yield "".join(run_text), run_gids, run_plain
                run_text, run_gids = [], []
            run_plain = plain
            run_text.append(char)
            run_gids.append(gid)
        if run_gids:
            yield "".join(run_text), run_gids, run_plain


def _to_unicode(mapping: dict[int, str]) -> bytes:
    """A ToUnicode CMap from glyph ids (2-byte codes, Identity-H) to text."""
    entries = [
        b"<%04X> <%s>" % (gid, char.encode("utf-16-be").hex().upper().encode())
        for gid, char in sorted(mapping.items())
    ]
    blocks = [
        b"%d beginbfchar\n%s\nendbfchar" % (len(chunk), b"\n".join(chunk))
        for chunk in (entries[i : i + 100] for i in range(0, len(entries), 100))
    ]
    return b"\n".join(
        [
            b"/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap",
            b"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
            b"/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def",
            b"1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange",
            *blocks,
            b"endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend",
        ]
    )


# --- images -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    """An image XObject: its dictionary entries (without /Length) and its encoded data."""

    entries: bytes
    data: bytes
    mask: _Image | None = None


def _image_object(pdf: _Writer, data: bytes) -> int:
    image = _encode_image(data)
    mask = b""
    if image.mask is not None:
        mask = b" /SMask %d 0 R" % pdf.raw_stream(image.mask.entries, image.mask.data)
    return pdf.raw_stream(image.entries + mask, image.data)


@lru_cache(maxsize=16)
def _encode_image(data: bytes) -> _Image:
    """JPEG as it is (DCTDecode); PNG decoded and deflated, alpha as a soft mask. Cached: the
    seal picture of an issuer is the same in every document it issues."""
    try:
        picture = Image.open(io.BytesIO(data))
        if picture.width * picture.height > _MAX_PIXELS:
            raise MalformedInputError(f"images have at most {_MAX_PIXELS} pixels")
        if picture.format == "JPEG":
            return _jpeg(picture, data)
        if picture.format != "PNG":
            raise MalformedInputError("images in documents must be PNG or JPEG")
        picture.load()
        return _png(picture)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MalformedInputError(f"an image cannot be read: {exc}") from exc


def _jpeg(picture: Image.Image, data: bytes) -> _Image:
    spaces = {"L": b"/DeviceGray", "RGB": b"/DeviceRGB", "CMYK": b"/DeviceCMYK"}
    if picture.mode not in spaces:
        picture.load()
        return _png(picture.convert("RGB"))
    decode = (
        b" /Decode [1 0 1 0 1 0 1 0]" if picture.mode == "CMYK" and "adobe" in picture.info else b""
    )
    return _Image(_image_entries(picture.size, spaces[picture.mode], 8) + b" /Filter /DCTDecode" + decode, data)  # fmt: skip


def _png(picture: Image.Image) -> _Image:
    if picture.mode == "1":
        return _flate_image(picture.size, b"/DeviceGray", 1, picture.tobytes())
    if picture.mode == "P" or picture.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = "transparency" in picture.info or "A" in picture.getbands()
        picture = picture.convert("RGBA" if has_alpha else "RGB")
    mask = None
    if picture.mode in ("LA", "RGBA"):
        alpha = picture.getchannel("A")
        if alpha.getextrema() != (255, 255):
            mask = _flate_image(picture.size, b"/DeviceGray", 8, alpha.tobytes())
        picture = picture.convert(picture.mode[:-1])
    space = b"/DeviceGray" if picture.mode == "L" else b"/DeviceRGB"
    image = _flate_image(picture.size, space, 8, picture.tobytes())
    return _Image(image.entries, image.data, mask)


def _flate_image(size: tuple[int, int], space: bytes, bits: int, raw: bytes) -> _Image:
    return _Image(_image_entries(size, space, bits) + b" /Filter /FlateDecode", zlib.compress(raw))


def _image_entries(size: tuple[int, int], space: bytes, bits: int) -> bytes:
    return b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s /BitsPerComponent %d" % (
        *size, space, bits,
    )  # fmt: skip


# --- PDF syntax ---------------------------------------------------------------------------------


class _Writer:
    """Numbered objects, then header, body, cross-reference table and trailer."""

    def __init__(self) -> None:
        self._objects: list[bytes | None] = []

    def reserve(self) -> int:
        """A number for an object written later (forward references)."""
        self._objects.append(None)
        return len(self._objects)

    def put(self, ref: int, body: bytes) -> None:
        self._objects[ref - 1] = body

    def add(self, body: bytes) -> int:
        ref = self.reserve()
        self.put(ref, body)
        return ref

    def stream(self, entries: bytes, data: bytes) -> int:
        """A Flate-compressed stream."""
        return self.raw_stream(entries + b" /Filter /FlateDecode", zlib.compress(data))

    def raw_stream(self, entries: bytes, data: bytes) -> int:
        return self.add(
            b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries.strip(), len(data), data)
        )

    def finish(self, root: int, info: int) -> bytes:
        out = [b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"]
        offsets: list[int] = []
        at = len(out[0])
        for ref, body in enumerate(self._objects, 1):
            if body is None:
                raise AssertionError(f"object {ref} was reserved but never written")
            chunk = b"%d 0 obj\n%s\nendobj\n" % (ref, body)
            offsets.append(at)
            out.append(chunk)
            at += len(chunk)
        file_id = hashlib.sha256(b"".join(out)).hexdigest()[:32].upper().encode()
        out.append(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
        out += [b"%010d 00000 n \n" % offset for offset in offsets]
        out.append(
            b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /ID [<%s> <%s>] >>\n"
            b"startxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, root, info, file_id, file_id, at)
        )
        return b"".join(out)


def _pt(mm: float) -> str:
    return num(mm * _PT_PER_MM)


def _ascii(*values: str) -> tuple[bytes, ...]:
    return tuple(v.encode("ascii") for v in values)


def _text_string(text: str) -> bytes:
    """A PDF text string: UTF-16BE with a byte order mark, in hex (safe for any text)."""
    return b"<FEFF%s>" % text.encode("utf-16-be").hex().upper().encode()


def _pdf_date(when: datetime) -> str:
    moment = when.astimezone(UTC) if when.tzinfo else when
    return moment.strftime("D:%Y%m%d%H%M%S") + ("Z" if when.tzinfo else "")
