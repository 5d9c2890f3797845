"""Seal pictures: drawn red official round seals, and checks of uploaded seal images.

A GB/T 38540 seal carries a picture (SES_ESPictureInfo: type, bytes, size in mm) that viewers
stamp onto the page. Departments without a scanned seal get one drawn here in the customary
layout of a Chinese official seal: a thick red rim, the organisation's name along the upper arc
with each character turned to follow it, a five-pointed star in the centre and an optional
title (e.g. 合同专用章) below the star, on a transparent background. Uploaded pictures are
untrusted input: they are decoded here once, within size and pixel limits, before being stored.
"""

from __future__ import annotations

import functools
import io
import math

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from signing import fonts
from trust.errors import InputTooLargeError, MalformedInputError

__all__ = [
    "FONT_PATH",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "SEAL_RED",
    "check_uploaded_picture",
    "red_seal_png",
]

FONT_PATH = fonts.FONT_PATH
"""The CJK font (signing.fonts); tests point it elsewhere."""

SEAL_RED = (230, 0, 18)
"""Seal-ink red."""

MAX_UPLOAD_BYTES = 512 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096

_SUPERSAMPLE = 3  # drawn larger and scaled down: smooth circles and star edges
_MAX_CANVAS_PX = 4096  # supersampling stops there (the largest seal is 3780 pixels)
_ARC_DEGREES = 240.0  # the most of the circle the name may cover
_MAX_NAME = 40
_MAX_TITLE = 12

# Proportions of the seal radius (a 42 mm seal: rim ~1.3 mm, star ~13 mm across).
_OUTER = 0.98
_RIM = 0.065
_TEXT_GAP = 0.05
_STAR = 0.31
_TITLE_Y = 0.56
_TITLE_SIZE = 0.17
_TITLE_WIDTH = 1.15


def _font(size: int) -> ImageFont.FreeTypeFont:
    return _load_font(str(fonts.font_path(FONT_PATH)), size)


@functools.lru_cache(maxsize=64)
def _load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=fonts.FONT_INDEX)


def red_seal_png(
    organisation: str, *, title: str = "", diameter_mm: int = 42, dpi: int = 300
) -> bytes:
    """A round red seal as a PNG (palette with transparency), ``diameter_mm`` across at ``dpi`` (stored in the PNG).

    Raises :class:`MalformedInputError` for an empty or overlong name or title and for sizes
    outside 20-80 mm or 72-1200 dpi; :class:`ConfigurationError` without the font.
    """
    name = "".join(organisation.split()) if isinstance(organisation, str) else ""
    if not name or len(name) > _MAX_NAME:
        raise MalformedInputError(f"the organisation name must have 1 to {_MAX_NAME} characters")
    if not isinstance(title, str) or len(title.strip()) > _MAX_TITLE:
        raise MalformedInputError(f"the seal title has at most {_MAX_TITLE} characters")
    if not 20 <= diameter_mm <= 80 or not 72 <= dpi <= 1200:
        raise MalformedInputError("seal pictures are 20-80 mm across at 72-1200 dpi")
    side = round(diameter_mm / 25.4 * dpi)  # at most 3780 pixels
    scale = max(1, min(_SUPERSAMPLE, _MAX_CANVAS_PX // side))
    mask = Image.new("L", (side * scale, side * scale), 0)
    radius = side * scale / 2
    draw = ImageDraw.Draw(mask)
    outer = radius * _OUTER
    draw.ellipse(
        (radius - outer, radius - outer, radius + outer, radius + outer),
        outline=255,
        width=max(1, round(radius * _RIM)),
    )
    draw.polygon(_star(radius, radius, radius * _STAR), fill=255)
    _draw_arc_text(mask, name, radius, outer - radius * (_RIM + _TEXT_GAP))
    if title.strip():
        _draw_title(draw, title.strip(), radius)

    alpha = mask.resize((side, side), Image.Resampling.LANCZOS) if scale > 1 else mask
    picture = Image.new("RGBA", (side, side), (*SEAL_RED, 0))
    picture.putalpha(alpha)
    out = io.BytesIO()
    # One colour at 16 opacities is all a red seal has: a palette PNG is a quarter of the RGBA
    # one, and the picture travels inside every seal and every signature made with it.
    picture = picture.quantize(16, method=Image.Quantize.FASTOCTREE)
    picture.save(out, "PNG", dpi=(dpi, dpi), optimize=True)
    return out.getvalue()


def _star(cx: float, cy: float, outer: float) -> list[tuple[float, float]]:
    """The ten corners of a five-pointed star with a point straight up."""
    inner = outer * math.sin(math.radians(18)) / math.sin(math.radians(126))
    corners = []
    for i in range(10):
        r = outer if i % 2 == 0 else inner
        angle = math.radians(-90 + 36 * i)
        corners.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return corners


def _draw_arc_text(mask: Image.Image, name: str, centre: float, top: float) -> None:
    """The name along the upper arc, top of each character outward, symmetric about the top.

    ``top`` is the radius the glyph tops reach. The size is the largest that fits the name in
    the arc; short names are spread a little wider, as seal makers do.
    """
    count = len(name)
    size = centre * 0.30
    while True:
        baseline = top - size / 2  # radius of the glyph centres
        step = 1.1 * size / baseline  # radians between neighbouring characters
        if (count - 1) * step <= math.radians(_ARC_DEGREES) or size <= centre * 0.08:
            break
        size *= 0.95
    if count > 1:
        step = min(max(step, math.radians(150) / (count - 1)), 1.6 * step)
        step = min(step, math.radians(_ARC_DEGREES) / (count - 1))
    font = _font(max(1, round(size)))
    box = round(size * 1.5)
    for index, char in enumerate(name):
        angle = (index - (count - 1) / 2) * step  # 0 at the top, clockwise positive
        glyph = Image.new("L", (box, box), 0)
        ImageDraw.Draw(glyph).text((box / 2, box / 2), char, fill=255, font=font, anchor="mm")
        turned = glyph.rotate(-math.degrees(angle), resample=Image.Resampling.BICUBIC, expand=True)
        x = centre + baseline * math.sin(angle) - turned.width / 2
        y = centre - baseline * math.cos(angle) - turned.height / 2
        mask.paste(255, (round(x), round(y)), turned)


def _draw_title(draw: ImageDraw.ImageDraw, title: str, radius: float) -> None:
    """The title centred below the star, shrunk to fit the width of the seal there."""
    size = radius * _TITLE_SIZE
    font = _font(max(1, round(size)))
    width = draw.textlength(title, font=font)
    if width > radius * _TITLE_WIDTH:
        font = _font(max(1, round(size * radius * _TITLE_WIDTH / width)))
    draw.text((radius, radius * (1 + _TITLE_Y)), title, fill=255, font=font, anchor="mm")


_UPLOAD_TYPES = {"PNG": "PNG", "JPEG": "JPG", "MPO": "JPG"}  # MPO: a JPEG with extra frames


def check_uploaded_picture(
    data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS
) -> tuple[str, int, int]:
    """Check an uploaded seal picture and return its type ("PNG" or "JPG", the names SES uses),
    width and height in pixels.

    Only PNG and JPEG decoders are tried. The pixel count is checked from the header before any
    decoding (a small file may declare a huge image), then the whole image is decoded once, so
    a truncated or corrupt file is refused now rather than when a viewer draws it. Raises
    :class:`InputTooLargeError` or :class:`MalformedInputError`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInputError("a picture is bytes")
    if len(data) > max_bytes:
        raise InputTooLargeError(f"the picture is larger than {max_bytes} bytes")
    if not data:
        raise MalformedInputError("the picture is empty")
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=("PNG", "JPEG")) as image:
            kind = _UPLOAD_TYPES.get(str(image.format))
            width, height = image.size
            if kind is None:
                raise MalformedInputError(f"{image.format} pictures are not accepted")
            if width * height > max_pixels:
                raise InputTooLargeError(
                    f"the picture has {width}x{height} pixels, more than {max_pixels}"
                )
            image.load()
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"the picture declares too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise MalformedInputError("the upload is not a PNG or JPEG picture") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MalformedInputError(f"the picture cannot be decoded: {exc}") from exc
    if width < 1 or height < 1:
        raise MalformedInputError("the picture has no pixels")
    return kind, width, height
