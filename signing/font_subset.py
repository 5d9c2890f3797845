"""Per-document subsets of the CJK font, cut with ``struct`` in well under a millisecond.

Every OFD and PDF we issue embeds the glyphs it shows. fontTools needs 40-300 ms a subset (it
parses the font and its cmap each time), far too slow for 50 documents a second. So fontTools
runs once: it cuts WenQuanYi Micro Hei down to a *base* (GB2312, ASCII and a few symbols
licenses use; 1000 units per em, no hinting or layout tables), cached on disk. Each document's
subset then keeps the base's glyph ids ("retain-gids") and is pure slicing and joining: ``glyf``
holds only the glyphs used (with .notdef and composite components), ``loca`` keeps every slot.

Beyond the retain-gids layout, metrics of unused glyphs are zeroed and the cmap lists only
the characters used: the subset then compresses to its outlines (ZIP and PDF streams deflate it
in every document), and a reader never takes an empty glyph for a character the font has.

Characters missing from the base (rare 生僻字) render as .notdef in its subsets;
:meth:`FontSubsetter.for_text` returns a subsetter whose base also holds them, built (slowly,
once, then cached) from the original face.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import logging
import os
import struct
import sys
import tempfile
import threading
import unicodedata
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path

from signing import fonts
from trust.errors import ConfigurationError, MalformedInputError

__all__ = [
    "FORMAT_VERSION",
    "FontMetrics",
    "FontSubsetter",
    "base_charset",
    "default_subsetter",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bumped whenever the base a given font and char set give changes (part of cache names)."""
_UPEM = 1000
_CHECKSUM_MAGIC = 0xB1B0AFBA
_MAX_LOADED = 8
_LICENSE_EXTRAS = "〇·ー№℃\u3000—―…•￥"
_REWRITTEN = frozenset({b"head", b"loca", b"glyf", b"hmtx", b"vmtx", b"cmap"})
_DROPPED = frozenset({b"DSIG", b"hdmx", b"LTSH", b"VDMX"})  # signatures, per-glyph device data
_NOT_DRAWN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
assert array("I").itemsize == 4


@dataclass(frozen=True)
class FontMetrics:
    """What a PDF FontDescriptor needs, in 1/1000 em."""

    bbox: tuple[int, int, int, int]
    ascent: int
    descent: int
    cap_height: int
    italic_angle: float


@dataclass(frozen=True)
class _Origin:
    """Where a base comes from: a face of a font file (as it is now) and the extra characters
    beyond :func:`base_charset`."""

    path: str
    index: int
    size: int
    mtime_ns: int
    extra: frozenset[str] = frozenset()

    def charset(self) -> frozenset[str]:
        return base_charset() | self.extra

    def cache_key(self) -> str:
        digest = hashlib.sha256(
            f"{FORMAT_VERSION}\0{self.path}\0{self.index}\0{self.size}\0{self.mtime_ns}\0".encode()
        )
        digest.update("".join(sorted(self.charset())).encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:32]


class FontSubsetter:
    """Retain-gids subsets of one TrueType font (the *base*), parsed once.

    ``base`` is a plain TrueType font (not a collection) with a format 4 or 12 Unicode cmap.
    Characters it lacks map to glyph 0 and render as .notdef; see :meth:`for_text`.
    """

    def __init__(self, base: bytes, *, origin: _Origin | None = None) -> None:
        self.base = bytes(base)
        """The base font, as given."""
        try:
            self._parse(self.base)
        except (struct.error, IndexError, ValueError) as exc:
            raise MalformedInputError(f"not a usable TrueType font: {exc}") from exc
        self._origin = origin
        self._components: dict[int, tuple[int, ...]] = {}

    def _parse(self, data: bytes) -> None:
        tables = _table_directory(data, 0)
        for tag in (b"head", b"hhea", b"maxp", b"loca", b"glyf", b"hmtx", b"cmap"):
            if tag not in tables:
                raise ValueError(f"the {tag.decode()} table is missing")
        head = tables[b"head"]
        if len(head) < 54:
            raise ValueError("the head table is truncated")
        self._head = head
        self.units_per_em: int = struct.unpack_from(">H", head, 18)[0]
        if not 16 <= self.units_per_em <= 16384:
            raise ValueError(f"{self.units_per_em} units per em")
        self.num_glyphs: int = struct.unpack_from(">H", tables[b"maxp"], 4)[0]
        long_loca = struct.unpack_from(">h", head, 50)[0] == 1
        count = self.num_glyphs + 1
        loca = struct.unpack_from(f">{count}{'I' if long_loca else 'H'}", tables[b"loca"])
        self._loca = list(loca) if long_loca else [2 * v for v in loca]
        self._glyf = tables[b"glyf"]
        in_order = all(a <= b for a, b in itertools.pairwise(self._loca))
        if not in_order or self._loca[-1] > len(self._glyf):
            raise ValueError("loca offsets are out of order or beyond glyf")
        self._hmtx = _Metrics(tables[b"hmtx"], tables[b"hhea"], self.num_glyphs)
        self._vmtx = (
            _Metrics(tables[b"vmtx"], tables[b"vhea"], self.num_glyphs)
            if b"vmtx" in tables and b"vhea" in tables
            else None
        )
        self._advances = self._hmtx.advances()
        self._cmap = _parse_cmap(tables[b"cmap"], 0)
        self._static = [
            (tag, body, _checksum(body))
            for tag, body in tables.items()
            if tag not in _REWRITTEN and tag not in _DROPPED
        ]
        self.postscript_name = _postscript_name(tables.get(b"name", b""))
        scale = _UPEM / self.units_per_em
        hhea, os2, post = tables[b"hhea"], tables.get(b"OS/2", b""), tables.get(b"post", b"")
        ascent, descent = struct.unpack_from(">hh", hhea, 4)
        cap = struct.unpack_from(">h", os2, 88)[0] if len(os2) >= 90 else ascent
        x_min, y_min, x_max, y_max = (round(v * scale) for v in struct.unpack_from(">4h", head, 36))
        self.metrics = FontMetrics(
            bbox=(x_min, y_min, x_max, y_max),
            ascent=round(ascent * scale),
            descent=round(descent * scale),
            cap_height=round(cap * scale),
            italic_angle=struct.unpack_from(">i", post, 4)[0] / 65536 if len(post) >= 8 else 0.0,
        )

    # -- characters and glyphs --

    def glyph_ids(self, text: str) -> list[int]:
        """The glyph of each character of ``text``; 0 (.notdef) where the font has none."""
        cmap = self._cmap
        return [cmap.get(ord(c), 0) for c in text]

    def advance(self, gid: int) -> int:
        """Advance width of glyph ``gid`` in 1/1000 em (PDF /W units)."""
        width = self._advances[min(gid, len(self._advances) - 1)]
        return width if self.units_per_em == _UPEM else round(width * _UPEM / self.units_per_em)

    def width(self, text: str, size: float) -> float:
        """Width of ``text`` set at ``size``, in the unit of ``size`` (for wrapping and
        centring with the widths the documents use)."""
        return sum(self.advance(g) for g in self.glyph_ids(text)) * size / _UPEM

    def covers(self, text: str) -> bool:
        """Whether every character of ``text`` that is ever drawn has a glyph."""
        cmap = self._cmap
        return all(ord(c) in cmap or unicodedata.category(c) in _NOT_DRAWN for c in text)

    def for_text(self, text: str) -> FontSubsetter:
        """A subsetter covering ``text`` as far as the original face can.

        This one when it covers the text; otherwise one whose base is the original face cut to
        the base's characters plus the missing ones (seconds to build once, then cached in
        memory and on disk). A subsetter not made by :func:`default_subsetter` returns itself.
        """
        if self._origin is None or self.covers(text):
            return self
        cmap = self._cmap
        missing = {
            c for c in text if ord(c) not in cmap and unicodedata.category(c) not in _NOT_DRAWN
        }
        available = frozenset(c for c in missing if ord(c) in _face_cmap(self._origin))
        if not available:
            return self
        return _subsetter(replace(self._origin, extra=self._origin.extra | available))

    # -- subsets --

    def subset(self, text: str) -> bytes:
        """A TrueType font with the glyphs of ``text`` at their base glyph ids.

        glyf holds those glyphs, .notdef and the components of composite ones; loca (long
        offsets) keeps every slot; hmtx and vmtx keep those glyphs' records and zeros elsewhere;
        cmap maps exactly the characters of ``text`` the base has. Other tables are the base's,
        byte for byte (head with a new checkSumAdjustment and indexToLocFormat).
        """
        cmap = self._cmap
        mapping = sorted({(ord(c), cmap[ord(c)]) for c in set(text) if ord(c) in cmap})
        return self._build(mapping, self.closure(g for _, g in mapping))

    def closure(self, gids: Iterable[int]) -> list[int]:
        """``gids`` with .notdef and the components of composite glyphs, recursively; sorted."""
        seen = {0}
        todo = [g for g in gids if 0 <= g < self.num_glyphs]
        while todo:
            gid = todo.pop()
            if gid in seen:
                continue
            seen.add(gid)
            todo.extend(self._components_of(gid))
        return sorted(seen)

    def _glyph(self, gid: int) -> bytes:
        start, end = self._loca[gid], self._loca[gid + 1]
        data = self._glyf[start:end]
        return data + b"\0" * (-len(data) % 4)

    def _components_of(self, gid: int) -> tuple[int, ...]:
        found = self._components.get(gid)
        if found is None:
            found = self._components[gid] = tuple(
                g for g in _composite_components(self._glyph(gid)) if g < self.num_glyphs
            )
        return found

    def _build(self, mapping: list[tuple[int, int]], gids: list[int]) -> bytes:
        glyphs = [self._glyph(g) for g in gids]
        loca: list[bytes] = []
        position = next_gid = 0
        for gid, glyph in zip(gids, glyphs, strict=True):
            loca.append(struct.pack(">I", position) * (gid - next_gid + 1))
            position += len(glyph)
            next_gid = gid + 1
        loca.append(struct.pack(">I", position) * (self.num_glyphs + 1 - next_gid))
        head = bytearray(self._head)
        head[8:12] = b"\0\0\0\0"  # checkSumAdjustment: summed as zero, then set
        head[50:52] = b"\0\1"  # long loca offsets
        tables = [
            (tag, body, _checksum(body))
            for tag, body in (
                (b"head", bytes(head)),
                (b"loca", b"".join(loca)),
                (b"glyf", b"".join(glyphs)),
                (b"hmtx", self._hmtx.keep(gids)),
                (b"cmap", _cmap_table(mapping)),
                *([(b"vmtx", self._vmtx.keep(gids))] if self._vmtx else []),
            )
        ]
        return _sfnt(tables + self._static)


class _Metrics:
    """An hmtx or vmtx table: long records (advance, side bearing) for the first glyphs, then
    bare side bearings."""

    def __init__(self, table: bytes, header: bytes, num_glyphs: int) -> None:
        self.long: int = struct.unpack_from(">H", header, 34)[0]
        if not 1 <= self.long <= num_glyphs:
            raise ValueError(f"{self.long} long metrics for {num_glyphs} glyphs")
        self.num_glyphs = num_glyphs
        self.table = table
        if len(table) < self._offset(num_glyphs):
            raise ValueError("a metrics table is truncated")

    def _offset(self, gid: int) -> int:
        return 4 * min(gid, self.long) + 2 * max(0, gid - self.long)

    def advances(self) -> list[int]:
        return list(struct.unpack_from(f">{2 * self.long}H", self.table)[0::2])

    def keep(self, gids: list[int]) -> bytes:
        """The table with the records of ``gids`` (sorted) and zeros for every other glyph."""
        table, long = self.table, self.long
        parts: list[bytes] = []
        done = 0
        for gid in gids:
            start, size = (4 * gid, 4) if gid < long else (2 * (long + gid), 2)
            parts += (bytes(start - done), table[start : start + size])
            done = start + size
        parts.append(bytes(self._offset(self.num_glyphs) - done))
        return b"".join(parts)


# --- sfnt bytes -------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    """The sfnt checksum: the sum of big-endian 32-bit words, zero-padded, modulo 2**32."""
    words = array("I", data + b"\0" * (-len(data) % 4))
    if sys.byteorder == "little":
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


def _table_directory(data: bytes, start: int) -> dict[bytes, bytes]:
    """The tables of the font whose offset table is at ``start`` (offsets are from the start
    of ``data``, as in collections)."""
    version, count = struct.unpack_from(">IH", data, start)
    if version not in (0x00010000, 0x74727565):  # 1.0 or 'true': TrueType outlines
        raise ValueError("not a TrueType font (no glyf outlines)")
    tables: dict[bytes, bytes] = {}
    for i in range(count):
        tag, _, offset, length = struct.unpack_from(">4sIII", data, start + 12 + 16 * i)
        if offset + length > len(data):
            raise ValueError(f"the {tag!r} table lies beyond the end of the font")
        tables[tag] = data[offset : offset + length]
    return tables


def _sfnt(tables: list[tuple[bytes, bytes, int]]) -> bytes:
    """A font file from (tag, data, checksum) tables, head's checkSumAdjustment set."""
    tables = sorted(tables, key=lambda table: table[0])
    count = len(tables)
    power = 1 << (count.bit_length() - 1)
    header = [struct.pack(">IHHHH", 0x00010000, count, 16 * power, power.bit_length() - 1,
                          16 * (count - power))]  # fmt: skip
    offset = 12 + 16 * count
    body: list[bytes] = []
    total = 0
    head_at = 0
    for tag, data, checksum in tables:
        header.append(struct.pack(">4sIII", tag, checksum, offset, len(data)))
        if tag == b"head":
            head_at = offset
        body += (data, b"\0" * (-len(data) % 4))
        offset += len(data) + (-len(data) % 4)
        total += checksum
    directory = b"".join(header)
    font = bytearray(directory + b"".join(body))
    adjustment = (_CHECKSUM_MAGIC - total - _checksum(directory)) & 0xFFFFFFFF
    font[head_at + 8 : head_at + 12] = struct.pack(">I", adjustment)
    return bytes(font)


def _composite_components(glyph: bytes) -> list[int]:
    """Glyph ids a composite glyph refers to (none for a simple or empty glyph)."""
    if len(glyph) < 10 or struct.unpack_from(">h", glyph)[0] >= 0:
        return []
    found: list[int] = []
    pos = 10
    more = True
    while more:
        flags, gid = struct.unpack_from(">HH", glyph, pos)
        found.append(gid)
        pos += 4 + (4 if flags & 0x0001 else 2)  # ARG_1_AND_2_ARE_WORDS
        pos += 2 if flags & 0x0008 else 4 if flags & 0x0040 else 8 if flags & 0x0080 else 0
        more = bool(flags & 0x0020)  # MORE_COMPONENTS
    return found


def _parse_cmap(table: bytes, start: int) -> dict[int, int]:
    """Code point -> glyph id from the best Unicode subtable (format 12, else format 4)."""
    count = struct.unpack_from(">H", table, start + 2)[0]
    subtables: dict[tuple[int, int], int] = {}
    for i in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", table, start + 4 + 8 * i)
        subtables[(platform, encoding)] = start + offset
    for key in ((3, 10), (0, 6), (0, 4), (3, 1), (0, 3), (0, 2), (0, 1), (0, 0)):
        if key not in subtables:
            continue
        at = subtables[key]
        fmt = struct.unpack_from(">H", table, at)[0]
        if fmt == 12:
            return _cmap_format12(table, at)
        if fmt == 4:
            return _cmap_format4(table, at)
    raise ValueError("no Unicode cmap of format 4 or 12")


def _cmap_format4(table: bytes, at: int) -> dict[int, int]:
    segments = struct.unpack_from(">H", table, at + 6)[0] // 2
    ends = struct.unpack_from(f">{segments}H", table, at + 14)
    starts = struct.unpack_from(f">{segments}H", table, at + 16 + 2 * segments)
    deltas = struct.unpack_from(f">{segments}H", table, at + 16 + 4 * segments)
    ranges_at = at + 16 + 6 * segments
    ranges = struct.unpack_from(f">{segments}H", table, ranges_at)
    out: dict[int, int] = {}
    for i, (first, last, delta, range_offset) in enumerate(
        zip(starts, ends, deltas, ranges, strict=True)
    ):
        last = min(last, 0xFFFE)
        if range_offset == 0:
            for code in range(first, last + 1):
                if gid := (code + delta) & 0xFFFF:
                    out[code] = gid
            continue
        base = ranges_at + 2 * i + range_offset
        for code in range(first, last + 1):
            if (raw := struct.unpack_from(">H", table, base + 2 * (code - first))[0]) and (
                gid := (raw + delta) & 0xFFFF
            ):
                out[code] = gid
    return out


def _cmap_format12(table: bytes, at: int) -> dict[int, int]:
    groups = struct.unpack_from(">I", table, at + 12)[0]
    out: dict[int, int] = {}
    for i in range(groups):
        first, last, gid = struct.unpack_from(">III", table, at + 16 + 12 * i)
        if last - first > 0x10FFFF:
            raise ValueError("a cmap group is larger than Unicode")
        out.update(zip(range(first, last + 1), range(gid, gid + last - first + 1), strict=True))
    return out


def _cmap_table(mapping: list[tuple[int, int]]) -> bytes:
    """A cmap of the (code point, glyph) pairs, sorted: format 4 for the BMP, and format 12
    when some character lies beyond it."""
    runs: list[list[int]] = []  # [first code, last code, first glyph]
    for code, gid in mapping:
        if runs and code == runs[-1][1] + 1 and gid == runs[-1][2] + code - runs[-1][0]:
            runs[-1][1] = code
        else:
            runs.append([code, code, gid])
    subtables: list[tuple[int, int, bytes]] = []
    bmp = [(first, min(last, 0xFFFE), gid) for first, last, gid in runs if first < 0xFFFF]
    if len(bmp) < 8000:  # a format 4 subtable is at most 64 KiB
        segments = [*bmp, (0xFFFF, 0xFFFF, 1)]
        count = len(segments)
        power = 1 << (count.bit_length() - 1)
        subtables.append(
            (3, 1, b"".join((
                struct.pack(">7H", 4, 16 + 8 * count, 0, 2 * count, 2 * power,
                            power.bit_length() - 1, 2 * (count - power)),
                struct.pack(f">{count}H", *(last for _, last, _ in segments)),
                b"\0\0",
                struct.pack(f">{count}H", *(first for first, _, _ in segments)),
                struct.pack(f">{count}H", *((g - f) & 0xFFFF for f, _, g in segments)),
                b"\0\0" * count,
            )))
        )  # fmt: skip
    if runs and (runs[-1][1] > 0xFFFF or len(bmp) >= 8000):
        groups = b"".join(struct.pack(">III", *run) for run in runs)
        head = struct.pack(">HHIII", 12, 0, 16 + len(groups), 0, len(runs))
        subtables.append((3, 10, head + groups))
    offset = 4 + 8 * len(subtables)
    header = [struct.pack(">HH", 0, len(subtables))]
    for platform, encoding, body in subtables:
        header.append(struct.pack(">HHI", platform, encoding, offset))
        offset += len(body)
    return b"".join(header + [body for _, _, body in subtables])


def _postscript_name(table: bytes) -> str:
    """Name ID 6 (PostScript name) of a name table, with only the characters PDF names allow
    unescaped; "Embedded" when there is none."""
    try:
        count, strings = struct.unpack_from(">2xHH", table)
        for i in range(count):
            platform, _, _, name_id, length, offset = struct.unpack_from(">6H", table, 6 + 12 * i)
            if name_id != 6:
                continue
            raw = table[strings + offset : strings + offset + length]
            text = raw.decode("utf-16-be" if platform in (0, 3) else "latin-1", "replace")
            name = "".join(c for c in text if c.isascii() and (c.isalnum() or c in "-_"))
            if name:
                return name
    except struct.error:
        pass
    return "Embedded"


# --- the base and its caches -----------------------------------------------------------------


@cache
def base_charset() -> frozenset[str]:
    """What the default base holds: all of GB2312 (symbol rows A1-A9, hanzi B0-F7), printable
    ASCII, full-width forms FF01-FF5E and a few symbols licenses use."""
    chars = {chr(c) for c in range(0x20, 0x7F)} | {chr(c) for c in range(0xFF01, 0xFF5F)}
    chars |= set(_LICENSE_EXTRAS)
    for row in range(0xA1, 0xF8):
        for cell in range(0xA1, 0xFF):
            try:
                chars.add(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return frozenset(chars)


def default_subsetter() -> FontSubsetter:
    """The subsetter over the WenQuanYi base (built with fontTools on first use, then read
    from the disk cache). Raises the ConfigurationError of :func:`signing.fonts.font_path`
    when the font is missing."""
    path = fonts.font_path()
    stat = path.stat()
    return _subsetter(_Origin(str(path), fonts.FONT_INDEX, stat.st_size, stat.st_mtime_ns))


_LOADED: dict[_Origin, FontSubsetter] = {}
_LOCK = threading.Lock()


def _subsetter(origin: _Origin) -> FontSubsetter:
    """The subsetter of ``origin``, kept in memory; built once even when threads race."""
    found = _LOADED.get(origin)
    if found is not None:
        return found
    with _LOCK:
        found = _LOADED.get(origin)
        if found is None:
            found = _load_or_build(origin)
            while len(_LOADED) >= _MAX_LOADED:
                del _LOADED[next(iter(_LOADED))]
            _LOADED[origin] = found
        return found


def _cache_dir() -> Path:
    configured = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(configured) if os.path.isabs(configured) else Path.home() / ".cache"
    return root / "etrust"


def _load_or_build(origin: _Origin) -> FontSubsetter:
    """The base from the disk cache when a valid one is there, else built and stored (a cache
    that cannot be written only costs the next process a rebuild)."""
    cached = _cache_dir() / f"font-base-{origin.cache_key()}.ttf"
    try:
        data = cached.read_bytes()
        if _checksum(data) == _CHECKSUM_MAGIC:
            return FontSubsetter(data, origin=origin)
        log.warning("ignoring the damaged font cache %s", cached)
    except FileNotFoundError:
        pass
    except (OSError, MalformedInputError) as exc:
        log.warning("ignoring the font cache %s: %s", cached, exc)
    data = _build_base(origin)
    subsetter = FontSubsetter(data, origin=origin)
    temporary = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(dir=cached.parent, prefix=".font-base-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, cached)  # readers see the old file or the whole new one
    except OSError as exc:
        log.info("font cache %s not written (%s); keeping the base in memory", cached, exc)
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    return subsetter


def _build_base(origin: _Origin) -> bytes:
    """The face of ``origin`` cut to its char set with fontTools, scaled to 1000 units per em:
    no hinting, no layout tables (we place glyphs ourselves), post format 3, no glyph names."""
    from fontTools import subset, ttLib  # type: ignore[import-untyped]
    from fontTools.ttLib.scaleUpem import scale_upem  # type: ignore[import-untyped]

    try:
        font = ttLib.TTFont(origin.path, fontNumber=origin.index, recalcTimestamp=False)
        options = subset.Options()
        options.layout_features = []
        options.hinting = False
        options.notdef_outline = True
        options.glyph_names = False
        options.drop_tables += ["GSUB", "GPOS", "GDEF", "gasp", "FFTM", "DSIG"]
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(ord(c) for c in origin.charset()))
        subsetter.subset(font)
        scale_upem(font, _UPEM)
        font["glyf"].padding = 4  # every glyph starts on a 4-byte boundary
        out = io.BytesIO()
        font.save(out)
    except (OSError, ValueError, KeyError, AssertionError, struct.error) as exc:
        raise ConfigurationError(f"the font {origin.path} cannot be read: {exc}") from exc
    return out.getvalue()


def _face_cmap(origin: _Origin) -> frozenset[int]:
    """Code points the original face maps (read with our own parser: no fontTools)."""
    return _face_code_points(replace(origin, extra=frozenset()))


@lru_cache(maxsize=2)
def _face_code_points(origin: _Origin) -> frozenset[int]:
    try:
        data = Path(origin.path).read_bytes()
        start = 0
        if data[:4] == b"ttcf":
            start = struct.unpack_from(">I", data, 12 + 4 * origin.index)[0]
        return frozenset(_parse_cmap(_table_directory(data, start)[b"cmap"], 0))
    except (OSError, KeyError, ValueError, struct.error) as exc:
        raise ConfigurationError(f"the font {origin.path} cannot be read: {exc}") from exc
