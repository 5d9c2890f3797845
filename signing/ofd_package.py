"""OFD packages (GB/T 33190-2016): reading untrusted ZIPs safely, and writing simple documents.

An OFD file is a ZIP of XML parts and resources. Signatures protect the *raw* bytes of each part
(``CheckValue``) and of ``Signature.xml`` (``dataHash``), so the reader keeps every file exactly as
stored and never re-serialises what it parsed. Packages come from outside: the reader refuses zip
bombs, path tricks and XML entity tricks before anything else looks at them.

The writer makes the documents this service issues (licenses, case outcomes): A4 pages with
Chinese text, PNG/JPEG images and QR codes, with deterministic bytes for the same inputs and time.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import uuid
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree as safe_et

from signing.font_subset import FontSubsetter, default_subsetter
from trust.errors import InputTooLargeError, MalformedInputError

__all__ = [
    "A4_MM",
    "OFD_NS",
    "ImageBlock",
    "OfdDocument",
    "OfdPackage",
    "PageRef",
    "PageSpec",
    "ReadLimits",
    "TextBlock",
    "build_ofd",
    "child",
    "child_text",
    "children",
    "el",
    "folder_of",
    "num",
    "parse_xml",
    "qr_block",
    "xml_document",
]

OFD_NS = "http://www.ofdspec.org/2016"
A4_MM = (210.0, 297.0)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Stored, not deflated: images are compressed already, and seals and signatures (DER around a
# seal picture) shrink little while deflating them took half the ZIP time of every signature.
_STORED_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".ofd", ".esl", ".dat")
_DRIVE = re.compile(r"^[A-Za-z]:")
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what an untrusted package may make us allocate.

    ``max_ratio`` applies to entries over ``ratio_floor`` bytes: small XML parts legitimately
    compress very well, a large entry that deflates by more than this is a bomb.
    """

    max_package_bytes: int = 64 * 1024 * 1024
    max_entries: int = 4096
    max_file_bytes: int = 32 * 1024 * 1024
    max_total_bytes: int = 128 * 1024 * 1024
    max_ratio: int = 100
    ratio_floor: int = 64 * 1024


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True)
class PageRef:
    """A page of a document: its object ID (what ``StampAnnot@PageRef`` names) and its file."""

    id: str
    path: str


@dataclass(frozen=True)
class OfdDocument:
    """One ``DocBody`` of ``OFD.xml`` with what signing and verifying need from it."""

    root_path: str  # package path of Document.xml, e.g. "Doc_0/Document.xml"
    signatures_path: str | None  # package path of Signatures.xml, when the document has one
    pages: tuple[PageRef, ...]
    page_box: tuple[float, float, float, float]  # PageArea/PhysicalBox in mm


class OfdPackage:
    """The files of an OFD package by path (no leading slash), each kept as its raw bytes."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        dates: Mapping[str, tuple[int, int, int, int, int, int]] | None = None,
    ) -> None:
        self._files: dict[str, bytes] = dict(files or {})
        self._dates: dict[str, tuple[int, int, int, int, int, int]] = dict(dates or {})

    @classmethod
    def read(cls, data: bytes, limits: ReadLimits = DEFAULT_LIMITS) -> OfdPackage:
        """Open an untrusted package; raise :class:`MalformedInputError` (or its subclass
        :class:`InputTooLargeError`) for anything that is not a plain, bounded ZIP."""
        if len(data) > limits.max_package_bytes:
            raise InputTooLargeError(
                f"the package is {len(data)} bytes; at most {limits.max_package_bytes} are accepted"
            )
        if data[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise MalformedInputError("not an OFD package: the data is not a ZIP file")
        _check_entry_count(data, limits)
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            NotImplementedError,
            ValueError,
            EOFError,
            OSError,
            RuntimeError,
        ) as exc:
            raise MalformedInputError(f"not an OFD package: unreadable ZIP ({exc})") from exc
        with archive:
            infos = archive.infolist()
            if len(infos) > limits.max_entries:
                raise InputTooLargeError(
                    f"the package has {len(infos)} entries; at most {limits.max_entries} are accepted"
                )
            files: dict[str, bytes] = {}
            dates: dict[str, tuple[int, int, int, int, int, int]] = {}
            seen: set[str] = set()
            declared = 0
            for info in infos:
                name = _check_entry_name(info.filename)
                folded = name.rstrip("/").casefold()
                if folded in seen:
                    raise MalformedInputError(f"the package holds {name!r} twice")
                seen.add(folded)
                _check_entry_header(info, limits)
                if info.is_dir():
                    continue
                declared += info.file_size
                if declared > limits.max_total_bytes:
                    raise InputTooLargeError(
                        f"the package expands to more than {limits.max_total_bytes} bytes"
                    )
            total = 0
            for info in infos:
                if info.is_dir():
                    continue
                raw = _read_entry(archive, info, limits)
                total += len(raw)
                if total > limits.max_total_bytes:  # pragma: no cover - declared sizes bound it
                    raise InputTooLargeError(
                        f"the package expands to more than {limits.max_total_bytes} bytes"
                    )
                files[info.filename] = raw
                dates[info.filename] = info.date_time
        if "OFD.xml" not in files:
            raise MalformedInputError("not an OFD package: there is no OFD.xml at its root")
        return cls(files, dates)

    # -- access --

    @property
    def files(self) -> Mapping[str, bytes]:
        return self._files

    def __contains__(self, path: object) -> bool:
        return path in self._files

    def raw(self, path: str) -> bytes:
        """The stored bytes of ``path``; a missing part is a malformed package."""
        try:
            return self._files[path]
        except KeyError:
            raise MalformedInputError(f"the package has no file /{path}") from None

    def xml(self, path: str) -> Element:
        return parse_xml(self.raw(path), "/" + path)

    def locate(self, loc: str, referrer: str) -> str:
        """The package path an ST_Loc names: absolute from the root (``/Doc_0/…``) or relative
        to the folder of ``referrer``. Producers disagree on which base relative paths use, so
        a relative path that names nothing beside the referrer is tried from the root."""
        loc = loc.strip()
        if not loc:
            raise MalformedInputError(f"an empty path in /{referrer}")
        if loc.startswith("/"):
            return _normalise(loc[1:], loc)
        beside = _normalise(_join(folder_of(referrer), loc), loc)
        if beside in self._files:
            return beside
        from_root = _normalise(loc, loc)
        return from_root if from_root in self._files else beside

    def doc_bodies(self) -> list[tuple[str, str | None]]:
        """(Document.xml, Signatures.xml or None) of each DocBody of ``OFD.xml``, in order.

        Only OFD.xml is parsed: a verifier then reports a damaged Document.xml as a modified
        (signed) file rather than as an unreadable package."""
        root = self.xml("OFD.xml")
        if _local(root.tag) != "OFD":
            raise MalformedInputError("OFD.xml: the root element is not OFD")
        bodies = children(root, "DocBody")
        if not bodies:
            raise MalformedInputError("OFD.xml has no DocBody")
        out: list[tuple[str, str | None]] = []
        for body in bodies:
            doc_root = child_text(body, "DocRoot")
            if not doc_root:
                raise MalformedInputError("OFD.xml: a DocBody has no DocRoot")
            sigs = child_text(body, "Signatures")
            out.append(
                (
                    self.locate(doc_root, "OFD.xml"),
                    self.locate(sigs, "OFD.xml") if sigs else None,
                )
            )
        return out

    def documents(self) -> list[OfdDocument]:
        """The documents ``OFD.xml`` lists, in order (nearly always exactly one)."""
        return [self._document(root, sigs) for root, sigs in self.doc_bodies()]

    def first_document(self) -> OfdDocument:
        """The document a signature goes into (only its Document.xml is parsed)."""
        return self._document(*self.doc_bodies()[0])

    def _document(self, root_path: str, signatures_path: str | None) -> OfdDocument:
        doc = self.xml(root_path)
        pages: list[PageRef] = []
        for page in children(child(doc, "Pages"), "Page"):
            page_id, loc = page.get("ID"), page.get("BaseLoc")
            if not page_id or not loc:
                raise MalformedInputError(f"/{root_path}: a Page lacks its ID or BaseLoc")
            pages.append(PageRef(page_id, self.locate(loc, root_path)))
        area = child(child(doc, "CommonData"), "PageArea")
        box_text = child_text(area, "PhysicalBox") or "0 0 210 297"
        try:
            box = tuple(float(v) for v in box_text.split())
        except ValueError:
            box = ()
        if len(box) != 4:
            raise MalformedInputError(f"/{root_path}: PhysicalBox {box_text!r} is not 4 numbers")
        return OfdDocument(root_path, signatures_path, tuple(pages), box)  # type: ignore[arg-type]

    # -- writing --

    def put(self, path: str, data: bytes, when: datetime) -> None:
        """Add or replace ``path`` (no leading slash), dated ``when`` in the ZIP."""
        self._files[path] = data
        self._dates[path] = _zip_date(when)

    def to_bytes(self) -> bytes:
        """The package as a ZIP: same files, order and dates give the same bytes."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for name, data in self._files.items():
                info = zipfile.ZipInfo(name, date_time=self._dates.get(name, (1980, 1, 1, 0, 0, 0)))
                info.create_system = 3  # the same bytes whichever OS writes them
                info.external_attr = 0o644 << 16
                stored = name.lower().endswith(_STORED_SUFFIXES)
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return buf.getvalue()


def _check_entry_count(data: bytes, limits: ReadLimits) -> None:
    """Refuse too many entries before zipfile builds an object for each one of them."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 0xFFFF - 22))
    if eocd < 0 or len(data) - eocd < 22:
        return  # zipfile reports the broken archive
    (count,) = struct.unpack_from("<H", data, eocd + 10)
    if count > limits.max_entries:  # 0xFFFF (a Zip64 count) is over any sane limit too
        raise InputTooLargeError(
            f"the package has {count} entries; at most {limits.max_entries} are accepted"
        )


def _check_entry_name(name: str) -> str:
    """Refuse names that escape the package or mean different files on different systems."""
    if not name or "\x00" in name or "\\" in name:
        raise MalformedInputError(f"the package holds an entry with a bad name: {name!r}")
    if name.startswith("/") or _DRIVE.match(name):
        raise MalformedInputError(f"the package holds an absolute path: {name!r}")
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise MalformedInputError(f"the package holds a path that leaves its folder: {name!r}")
    return name


def _check_entry_header(info: zipfile.ZipInfo, limits: ReadLimits) -> None:
    if info.flag_bits & 0x1:
        raise MalformedInputError(f"{info.filename!r} is encrypted; OFD parts never are")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise MalformedInputError(
            f"{info.filename!r} uses ZIP compression method {info.compress_type}; "
            "only stored and deflated are accepted"
        )
    if info.file_size > limits.max_file_bytes:
        raise InputTooLargeError(
            f"{info.filename!r} expands to {info.file_size} bytes; "
            f"at most {limits.max_file_bytes} are accepted"
        )
    if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(
        info.compress_size, 1
    ):
        raise InputTooLargeError(
            f"{info.filename!r} expands {info.file_size // max(info.compress_size, 1)}-fold: "
            "a zip bomb"
        )


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ReadLimits) -> bytes:
    """The entry's bytes, never more than its declared size (the CRC is checked on the way)."""
    try:
        with archive.open(info) as stream:
            raw = stream.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise MalformedInputError(f"{info.filename!r} cannot be read: {exc}") from exc
    except (RuntimeError, NotImplementedError) as exc:  # encryption or methods zipfile lacks
        raise MalformedInputError(f"{info.filename!r} cannot be read: {exc}") from exc
    if len(raw) > min(info.file_size, limits.max_file_bytes):  # pragma: no cover - zipfile trims
        raise InputTooLargeError(f"{info.filename!r} is larger than its header declares")
    if len(raw) != info.file_size:
        raise MalformedInputError(f"{info.filename!r} is shorter than its header declares")
    return raw


def _normalise(path: str, original: str) -> str:
    """A package path with ``.`` and ``..`` resolved; leaving the package is an error."""
    if "\\" in path or "\x00" in path:
        raise MalformedInputError(f"bad package path {original!r}")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise MalformedInputError(f"the path {original!r} leaves the package")
            out.pop()
        else:
            out.append(part)
    if not out:
        raise MalformedInputError(f"the path {original!r} names no file")
    return "/".join(out)


def _join(folder: str, loc: str) -> str:
    return f"{folder}/{loc}" if folder else loc


def folder_of(path: str) -> str:
    """The folder of a package path ("" at the root)."""
    return path.rpartition("/")[0]


def _zip_date(when: datetime) -> tuple[int, int, int, int, int, int]:
    t = when.astimezone(UTC) if when.tzinfo else when
    if t.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


# --- XML ----------------------------------------------------------------------------------


def parse_xml(raw: bytes, name: str) -> Element:
    """Parse untrusted XML: no DTD, no entities, no external references."""
    try:
        root: Element = safe_et.fromstring(
            raw, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException as exc:
        raise MalformedInputError(
            f"{name}: forbidden XML construct ({type(exc).__name__})"
        ) from exc
    except (ParseError, ValueError) as exc:
        raise MalformedInputError(f"{name} is not well-formed XML: {exc}") from exc
    return root


def _local(tag: object) -> str:
    """The local name of an OFD-namespace (or un-namespaced) tag; "" for anything else."""
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return local if ns == OFD_NS else ""
    return tag


def children(elem: Element | None, name: str) -> list[Element]:
    """Child elements named ``name``, in any order among their siblings."""
    if elem is None:
        return []
    return [c for c in elem if _local(c.tag) == name]


def child(elem: Element | None, name: str) -> Element | None:
    found = children(elem, name)
    return found[0] if found else None


def child_text(elem: Element | None, name: str) -> str | None:
    found = child(elem, name)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def num(value: float) -> str:
    """A number as OFD writes it: up to 3 decimals, no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _text(value: str) -> str:
    if _XML_FORBIDDEN.search(value):
        raise MalformedInputError("text contains characters XML cannot carry")
    return escape(value)


def _start(name: str, attrs: Mapping[str, str | float | None]) -> str:
    """``<ofd:name a="v" …``: attributes in the order given, ``None`` ones left out."""
    return f"<ofd:{name}" + "".join(
        f' {k}="{_attr(v if isinstance(v, str) else num(v))}"'
        for k, v in attrs.items()
        if v is not None
    )


def el(name: str, *body: str, text: str | None = None, **attrs: str | float | None) -> str:
    """One ``ofd:`` element as text: either escaped ``text`` or already-serialised children."""
    content = _text(text) if text is not None else "".join(body)
    if not content:
        return _start(name, attrs) + "/>"
    return f"{_start(name, attrs)}>{content}</ofd:{name}>"


def xml_document(name: str, *body: str, **attrs: str | float | None) -> bytes:
    """A whole XML part: declaration, root ``ofd:name`` with the OFD namespace, UTF-8 bytes."""
    start = _start(name, {"xmlns:ofd": OFD_NS, **attrs})
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{start}>{"".join(body)}</ofd:{name}>'.encode()


# --- writing documents --------------------------------------------------------------------


@dataclass(frozen=True)
class TextBlock:
    """One line of text; ``x``/``y`` are the top-left corner and ``size`` the font size, in mm."""

    text: str
    x: float
    y: float
    size: float = 4.2
    font: str = "宋体"
    bold: bool = False
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class ImageBlock:
    """A PNG or JPEG drawn into the box ``x y width height`` (mm)."""

    data: bytes
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class PageSpec:
    """What one page shows, drawn in order."""

    items: Sequence[TextBlock | ImageBlock] = field(default_factory=tuple)


def qr_block(payload: str, x: float, y: float, size: float, *, level: str = "M") -> ImageBlock:
    """A QR code of ``payload`` as a square PNG image of ``size`` mm (quiet zone included)."""
    from signing.qr import qr_symbol

    return ImageBlock(qr_symbol(payload, level=level).png, x, y, size, size)


def _image_format(data: bytes) -> tuple[str, str]:
    if data.startswith(_PNG_MAGIC):
        return "PNG", "png"
    if data.startswith(_JPEG_MAGIC):
        return "JPEG", "jpg"
    raise MalformedInputError("images in OFD documents must be PNG or JPEG")


TEXT_BASELINE = 0.88
"""Where a TextBlock's baseline lies below its top, in font sizes: just above the descenders."""


def _advance(font: FontSubsetter, gid: int, size: float) -> float:
    """Horizontal advance of a glyph at ``size`` mm: the embedded font's own width, the one
    PDF renderings of the same page use (signing.page_render). DeltaX carries every advance,
    so readers place each glyph where we meant it even if they draw with another font."""
    return font.advance(gid) * size / 1000


class _Ids:
    """Object IDs: unique integers across the document, in the order objects are written."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last += 1
        return self.last


def build_ofd(
    pages: Sequence[PageSpec],
    *,
    created: datetime | None = None,
    title: str | None = None,
    author: str | None = None,
    creator: str = "etrust",
    creator_version: str | None = None,
    custom_data: Mapping[str, str] | None = None,
    doc_id: str | None = None,
    page_size: tuple[float, float] = A4_MM,
) -> bytes:
    """A one-document OFD package; the same arguments give the same bytes.

    Without ``doc_id`` the DocID is derived from the content and time, so it is unique per
    document and still reproducible. Text is laid out with, and embeds (GB/T 33190 §11.1
    FontFile), a subset of the CJK font of :mod:`signing.font_subset` per font name, so every
    reader shows the same glyphs; ConfigurationError when there is text and no font.
    """
    if not pages:
        raise MalformedInputError("an OFD document needs at least one page")
    when = created or datetime.now(UTC)
    ids = _Ids()
    fonts: dict[str, int] = {}
    texts: dict[str, list[str]] = {}  # font name -> text drawn with it
    media: dict[bytes, tuple[int, str, str]] = {}  # sha256 -> (id, format, file name)
    media_files: dict[str, bytes] = {}
    for spec in pages:
        for item in spec.items:
            if isinstance(item, TextBlock):
                if "\n" in item.text or "\r" in item.text:
                    raise MalformedInputError("a TextBlock is one line; use one block per line")
                if item.font not in fonts:
                    fonts[item.font] = ids()
                texts.setdefault(item.font, []).append(item.text)
            else:
                digest = hashlib.sha256(item.data).digest()
                if digest not in media:
                    fmt, suffix = _image_format(item.data)
                    media_id = ids()
                    file_name = f"Image_{media_id}.{suffix}"
                    media[digest] = (media_id, fmt, file_name)
                    media_files[f"Doc_0/Res/{file_name}"] = item.data
    all_text = "".join(t for drawn in texts.values() for t in drawn)
    font = default_subsetter().for_text(all_text) if fonts else None
    page_ids: list[int] = []
    contents: list[bytes] = []
    for spec in pages:
        page_ids.append(ids())
        layer_id = ids()
        objects = [_object(item, ids, fonts, media, font) for item in spec.items]
        contents.append(
            xml_document("Page", el("Content", el("Layer", *objects, ID=layer_id, Type="Body")))
        )

    files: dict[str, bytes] = {}
    files["Doc_0/Document.xml"] = xml_document(
        "Document",
        el(
            "CommonData",
            el("MaxUnitID", text=str(ids.last)),
            el("PageArea", el("PhysicalBox", text=f"0 0 {num(page_size[0])} {num(page_size[1])}")),
            el("PublicRes", text="PublicRes.xml") if fonts else "",
            el("DocumentRes", text="DocumentRes.xml") if media else "",
        ),
        el(
            "Pages",
            *(
                el("Page", ID=pid, BaseLoc=f"Pages/Page_{i}/Content.xml")
                for i, pid in enumerate(page_ids)
            ),
        ),
    )
    if fonts:
        files["Doc_0/PublicRes.xml"] = xml_document(
            "Res",
            el(
                "Fonts",
                *(
                    el(
                        "Font",
                        el("FontFile", text=f"Font_{fid}.ttf"),
                        ID=fid,
                        FontName=n,
                        FamilyName=n,
                    )
                    for n, fid in fonts.items()
                ),
            ),
            BaseLoc="Res",
        )
        assert font is not None
        for name, fid in fonts.items():
            files[f"Doc_0/Res/Font_{fid}.ttf"] = font.subset("".join(texts[name]))
    if media:
        files["Doc_0/DocumentRes.xml"] = xml_document(
            "Res",
            el(
                "MultiMedias",
                *(
                    el("MultiMedia", el("MediaFile", text=f), ID=mid, Type="Image", Format=fmt)
                    for mid, fmt, f in media.values()
                ),
            ),
            BaseLoc="Res",
        )
    files.update(media_files)
    for i, content in enumerate(contents):
        files[f"Doc_0/Pages/Page_{i}/Content.xml"] = content
    if doc_id is None:
        seed = hashlib.sha256(when.isoformat().encode())
        for name, data in files.items():
            seed.update(name.encode() + b"\x00" + hashlib.sha256(data).digest())
        doc_id = uuid.UUID(bytes=seed.digest()[:16], version=4).hex
    elif not re.fullmatch(r"[0-9a-fA-F]{32}", doc_id):
        raise MalformedInputError("DocID must be 32 hexadecimal characters (a UUID)")
    ofd_xml = xml_document(
        "OFD",
        el(
            "DocBody",
            _doc_info(doc_id, when, title, author, creator, creator_version, custom_data or {}),
            el("DocRoot", text="Doc_0/Document.xml"),
        ),
        Version="1.0",
        DocType="OFD",
    )
    package = OfdPackage()
    for name, data in {"OFD.xml": ofd_xml, **files}.items():
        package.put(name, data, when)
    return package.to_bytes()


def _doc_info(
    doc_id: str,
    when: datetime,
    title: str | None,
    author: str | None,
    creator: str,
    creator_version: str | None,
    custom_data: Mapping[str, str],
) -> str:
    def optional(name: str, value: str | None) -> str:
        return el(name, text=value) if value else ""

    customs = [el("CustomData", text=v, Name=k) for k, v in custom_data.items()]
    return el(
        "DocInfo",
        el("DocID", text=doc_id.lower()),
        optional("Title", title),
        optional("Author", author),
        el("CreationDate", text=when.date().isoformat()),
        optional("Creator", creator),
        optional("CreatorVersion", creator_version),
        el("CustomDatas", *customs) if customs else "",
    )


def _object(
    item: TextBlock | ImageBlock,
    ids: _Ids,
    fonts: Mapping[str, int],
    media: Mapping[bytes, tuple[int, str, str]],
    font: FontSubsetter | None,
) -> str:
    if isinstance(item, ImageBlock):
        media_id = media[hashlib.sha256(item.data).digest()][0]
        return el(
            "ImageObject",
            ID=ids(),
            Boundary=_box(item.x, item.y, item.width, item.height),
            CTM=f"{num(item.width)} 0 0 {num(item.height)} 0 0",
            ResourceID=media_id,
        )
    assert font is not None  # build_ofd has one whenever there is text
    advances = [_advance(font, gid, item.size) for gid in font.glyph_ids(item.text)]
    color = el("FillColor", Value=" ".join(map(str, item.color))) if item.color else ""
    return el(
        "TextObject",
        color,
        el(
            "TextCode",
            text=item.text,
            X="0",
            Y=num(item.size * TEXT_BASELINE),
            DeltaX=" ".join(num(a) for a in advances[:-1]) or None,
        ),
        ID=ids(),
        Boundary=_box(item.x, item.y, sum(advances) or item.size, item.size * 1.2),
        Font=fonts[item.font],
        Size=num(item.size),
        Weight=700 if item.bold else None,
    )


def _box(x: float, y: float, w: float, h: float) -> str:
    return " ".join(num(v) for v in (x, y, w, h))
