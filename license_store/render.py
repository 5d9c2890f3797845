"""A license's face: one page description rendered as OFD and as PDF.

The layout is the same for every type: the type's name as title, the holder, the type's fields
in the order of its labels, validity, issuer and date, the identifier, the QR code at the lower
left and room for the seal at the lower right. The OFD carries the GB/T 36903 metadata in
``DocInfo/CustomDatas`` (keys as used by the national platform's implementations).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from license_store.errors import LicenseDataError
from license_store.holder_codes import HOLDER_CODE_TYPES
from license_store.types import LicenseType
from signing.font_subset import default_subsetter
from signing.ofd_package import A4_MM, PageSpec, TextBlock, build_ofd, qr_block
from signing.page_render import render_pdf

PAGE = A4_MM
SEAL_BOX_MM = (128.0, 212.0, 42.0, 42.0)
"""Where the seal goes: x, y, width, height in mm from the page's top-left (OFD style)."""
QR_BOX_MM = (25.0, 212.0, 42.0)
"""x, y and size of the QR code, from the top-left."""

_LEFT = 25.0
_WIDTH = 160.0
_LABEL_WIDTH = 38.0
_BODY_TOP = 62.0
_BODY_END = 192.0
"""Where the identifier line goes; the fields end above it."""
_BODY_SIZES = (4.6, 4.0, 3.5, 3.0, 2.6)
_LEADING = 1.7
_RED = (176, 24, 24)


@dataclass(frozen=True)
class LicenseFace:
    """What is printed on a license."""

    license_type: LicenseType
    identifier: str
    issuer_name: str
    issuer_code: str
    holder_name: str
    holder_code: str
    holder_code_type: str
    issue_date: date
    valid_from: date
    valid_to: date | None
    data: Mapping[str, Any]
    qr_text: str
    license_number: str | None = None


def seal_box_pdf() -> tuple[float, float, float, float]:
    """The seal box in PDF terms (from the lower-left corner)."""
    x, y, w, h = SEAL_BOX_MM
    return (x, PAGE[1] - y - h, w, h)


def pages(face: LicenseFace) -> list[PageSpec]:
    """The page description both renderers draw. Long fields (a business scope, say) are set
    smaller until they fit above the identifier line; what fits at no size is refused, so a
    sealed license never hides a field under its QR code or off the page."""
    items: list[TextBlock | Any] = [
        _centred(face.license_type.name, 30.0, 9.0, bold=True, color=_RED),
        _centred("电子证照", 43.0, 4.6),
        *_body(face),
        TextBlock(f"证照标识：{face.identifier}", _LEFT, _BODY_END, 3.0),
    ]
    qx, qy, qsize = QR_BOX_MM
    items.append(qr_block(face.qr_text, qx, qy, qsize))
    items.append(TextBlock("扫码核验", qx + 12.0, qy + qsize + 2.0, 3.2))
    items.append(TextBlock(face.issuer_name, SEAL_BOX_MM[0] - 6.0, qy + qsize + 2.0, 4.2))
    return [PageSpec(tuple(items))]


def _body(face: LicenseFace) -> list[TextBlock]:
    lines = _lines(face)
    for size in _BODY_SIZES:
        items: list[TextBlock] = []
        y = _BODY_TOP
        for label, value in lines:
            for i, part in enumerate(_wrap(value, _WIDTH - _LABEL_WIDTH, size)):
                if i == 0:
                    items.append(TextBlock(f"{label}：", _LEFT, y, size, bold=True))
                items.append(TextBlock(part, _LEFT + _LABEL_WIDTH, y, size))
                y += size * _LEADING
        if y <= _BODY_END:
            return items
    raise LicenseDataError(
        "the license's fields do not fit on its page even in small print: shorten the longest"
    )


def metadata(face: LicenseFace) -> dict[str, str]:
    """GB/T 36903 metadata (standards.md §3.3) for the OFD's CustomDatas."""
    values = {
        "ZZMC": face.license_type.name,
        "ZZLXDM": face.license_type.code,
        "ZZBH": face.license_number or "",
        "ZZBS": face.identifier,
        "ZZBFJG": face.issuer_name,
        "ZZBFJGDM": face.issuer_code,
        "ZZBFRQ": face.issue_date.strftime("%Y%m%d"),
        "CZZT": face.holder_name,
        "CZZTDM": face.holder_code,
        "CZZTDMLX": HOLDER_CODE_TYPES[face.holder_code_type],
        "CZZTDMLXDM": face.holder_code_type,
        "ZZYXQQSRQ": face.valid_from.strftime("%Y%m%d"),
        "ZZYXQJZRQ": face.valid_to.strftime("%Y%m%d") if face.valid_to else "长期",
    }
    return {k: v for k, v in values.items() if v}


def render(face: LicenseFace, created: datetime) -> tuple[bytes, bytes]:
    """The license as OFD and as PDF, from one page description (laid out once)."""
    laid_out = pages(face)
    title = f"{face.license_type.name}（{face.holder_name}）"
    ofd = build_ofd(
        laid_out,
        created=created,
        title=title,
        author=face.issuer_name,
        custom_data=metadata(face),
        page_size=PAGE,
    )
    pdf = render_pdf(
        laid_out,
        page_size=PAGE,
        title=title,
        author=face.issuer_name,
        created=created,
        subject=face.identifier,  # how a checker finds the license behind the document
    )
    return ofd, pdf


def _lines(face: LicenseFace) -> list[tuple[str, str]]:
    holder_label = "持证人" if face.license_type.holder_kind == "person" else "持证单位"
    lines = [
        (holder_label, face.holder_name),
        (HOLDER_CODE_TYPES[face.holder_code_type], face.holder_code),
    ]
    if face.license_number:
        lines.append(("证照编号", face.license_number))
    for name, label in face.license_type.labels.items():
        if name in face.data:
            lines.append((label, _text(face.data[name])))
    end = face.valid_to.isoformat() if face.valid_to else "长期"
    lines += [
        ("有效期", f"{face.valid_from.isoformat()} 至 {end}"),
        ("发证机关", face.issuer_name),
        ("发证日期", face.issue_date.isoformat()),
    ]
    return lines


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "；".join(f"{k}：{_text(v)}" for k, v in value.items())
    return " ".join(str(value).split())


def _width(text: str, size: float) -> float:
    return default_subsetter().width(text, size)


def _wrap(text: str, width: float, size: float) -> list[str]:
    """Lines of at most ``width`` mm, measured with the embedded font's advances."""
    lines, current = [], ""
    for char in text:
        if current and _width(current + char, size) > width:
            lines.append(current)
            current = ""
        current += char
    return [*lines, current] if current or not lines else lines


def _centred(
    text: str,
    y: float,
    size: float,
    *,
    bold: bool = False,
    color: tuple[int, int, int] | None = None,
) -> TextBlock:
    x = (PAGE[0] - _width(text, size)) / 2
    return TextBlock(text, max(x, 10.0), y, size, bold=bold, color=color)
