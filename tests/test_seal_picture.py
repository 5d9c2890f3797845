"""Seal pictures (signing/seal_picture.py): the drawn red seal and the upload checks."""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from signing import seal_picture
from signing.seal_picture import check_uploaded_picture, red_seal_png
from trust.errors import ConfigurationError, InputTooLargeError, MalformedInputError

NAME = "测试盟市场监督管理局"


def _open(png: bytes) -> Image.Image:
    """The picture as RGBA pixels, keeping format and info (dpi) of the file."""
    image = Image.open(io.BytesIO(png))
    image.load()
    rgba = image.convert("RGBA")
    rgba.format, rgba.info = image.format, image.info
    return rgba


def _is_red(pixel: tuple[int, int, int, int]) -> bool:
    r, g, b, a = pixel
    return a > 200 and r > 200 and g < 60 and b < 60


@pytest.fixture(scope="module")
def seal() -> Image.Image:
    return _open(red_seal_png(NAME, title="合同专用章"))


def test_seal_is_a_transparent_png_of_the_physical_size(seal: Image.Image) -> None:
    assert seal.format == "PNG"
    assert seal.mode == "RGBA"  # as opened (a palette PNG with transparency, see _open)
    assert len(red_seal_png(NAME)) < 32 * 1024  # it travels inside every signature
    assert seal.size == (496, 496)  # 42 mm at 300 dpi
    assert seal.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    small = _open(red_seal_png(NAME, diameter_mm=38, dpi=150))
    assert small.size == (round(38 / 25.4 * 150),) * 2


def test_rim_is_red_and_corners_are_transparent(seal: Image.Image) -> None:
    side = seal.width
    # Points in the middle of the rim, all around the circle.
    rim_radius = side / 2 * (0.98 - 0.065 / 2)
    for degrees in range(0, 360, 15):
        angle = math.radians(degrees)
        x = side / 2 + rim_radius * math.cos(angle)
        y = side / 2 + rim_radius * math.sin(angle)
        assert _is_red(seal.getpixel((round(x), round(y)))), degrees  # type: ignore[arg-type]
    for corner in ((0, 0), (side - 1, 0), (0, side - 1), (side - 1, side - 1), (1, side // 2)):
        assert seal.getpixel(corner)[3] == 0  # type: ignore[index]


def test_star_title_and_arc_text_are_drawn(seal: Image.Image) -> None:
    side = seal.width
    assert _is_red(seal.getpixel((side // 2, side // 2)))  # type: ignore[arg-type]  # the star
    alpha = seal.getchannel("A")

    def inked(box: tuple[int, int, int, int], image: Image.Image = alpha) -> int:
        return sum(image.crop(box).histogram()[129:])

    # The name along the upper arc, inside the rim; the title below the star.
    assert inked((side // 4, round(side * 0.09), 3 * side // 4, side // 5)) > 500
    assert inked((side // 4, round(side * 0.72), 3 * side // 4, round(side * 0.84))) > 300
    untitled = _open(red_seal_png(NAME)).getchannel("A")
    title_band = (side // 4, round(side * 0.72), 3 * side // 4, round(side * 0.84))
    assert inked(title_band, untitled) == 0
    # Only seal red is used: colour never varies, only coverage.
    colours = seal.getcolors(maxcolors=seal.width * seal.height) or []
    assert {rgba[:3] for _, rgba in colours if rgba[3] > 0} == {seal_picture.SEAL_RED}  # type: ignore[index]


def test_characters_follow_the_arc() -> None:
    """A one-character name sits at the top; along a long name each character is turned so
    its top points outward: a horizontal stroke (一) low on the right stands almost upright."""
    single = _open(red_seal_png("一")).getchannel("A")
    side = single.width
    # Inside the rim, above the star.
    box = (round(side * 0.3), 50, round(side * 0.7), round(side * 0.3))
    left, _, right, _ = single.crop(box).getbbox() or (0, 0, 0, 0)
    assert abs(box[0] + (left + right) / 2 - side / 2) < 3  # centred at the top
    strokes = _open(red_seal_png("一" * 12)).getchannel("A")
    others = ImageChops.subtract(strokes, single)  # the eleven characters off the top
    centre = side // 2
    for region, upright in [
        ((centre - 60, 30, centre + 60, 130), False),  # near the top: still flat
        ((centre + 90, centre + 20, side - 30, side - 60), True),  # low on the right
        ((30, centre + 20, centre - 90, side - 60), True),  # low on the left
    ]:
        found = others.crop(region).getbbox()
        assert found is not None, region
        width, height = found[2] - found[0], found[3] - found[1]
        assert (height > width) == upright, (region, found)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"organisation": ""},
        {"organisation": "  \n"},
        {"organisation": "名" * 41},
        {"organisation": NAME, "title": "章" * 13},
        {"organisation": NAME, "diameter_mm": 10},
        {"organisation": NAME, "dpi": 5000},
        {"organisation": NAME, "diameter_mm": 81},
        {"organisation": NAME, "dpi": 71},
    ],
)
def test_bad_seal_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(MalformedInputError):
        red_seal_png(**kwargs)  # type: ignore[arg-type]


def test_missing_font_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(seal_picture, "FONT_PATH", tmp_path / "no-such-font.ttf")
    with pytest.raises(ConfigurationError, match="fonts-wqy-microhei"):
        red_seal_png(NAME)


# --- uploads ---------------------------------------------------------------------------------


def _encoded(fmt: str, size: tuple[int, int] = (120, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, fmt)
    return out.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGBA pixels, with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_png_and_jpeg_uploads_are_accepted(seal: Image.Image) -> None:
    assert check_uploaded_picture(_encoded("PNG")) == ("PNG", 120, 80)
    assert check_uploaded_picture(_encoded("JPEG")) == ("JPG", 120, 80)
    assert check_uploaded_picture(red_seal_png(NAME)) == ("PNG", 496, 496)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        "这不是图片，而是一个文本文件。\n".encode(),
        b"%PDF-1.7\n",
        _encoded("GIF"),
        _encoded("BMP"),
        _encoded("PNG")[:200],  # truncated
        _encoded("JPEG")[:300],
        _png_declaring(100, 100),  # a valid header over too little image data
    ],
)
def test_non_pictures_and_broken_pictures_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedInputError) as caught:
        check_uploaded_picture(data)
    assert not isinstance(caught.value, InputTooLargeError)


@pytest.mark.parametrize(
    ("width", "height"),
    [(30000, 30000), (5000, 5000), (4097, 4096), (1, 20_000_000)],
)
def test_pictures_declaring_too_many_pixels_are_refused_before_decoding(
    width: int, height: int
) -> None:
    bomb = _png_declaring(width, height)
    assert len(bomb) < 100
    with pytest.raises(InputTooLargeError):
        check_uploaded_picture(bomb)


def test_a_real_decompression_bomb_within_the_pixel_limit_is_bounded() -> None:
    # 4000 x 4000 pixels of one colour compress to a few kilobytes; the limit still holds it to
    # 16 million pixels, and a lower limit refuses it.
    out = io.BytesIO()
    Image.new("L", (4000, 4000), 0).save(out, "PNG", optimize=True)
    bomb = out.getvalue()
    assert len(bomb) < 64 * 1024
    assert check_uploaded_picture(bomb) == ("PNG", 4000, 4000)
    with pytest.raises(InputTooLargeError):
        check_uploaded_picture(bomb, max_pixels=1_000_000)


def test_oversized_files_are_refused() -> None:
    big = _encoded("PNG") + b"\x00" * (512 * 1024)
    with pytest.raises(InputTooLargeError):
        check_uploaded_picture(big)
    with pytest.raises(InputTooLargeError):
        check_uploaded_picture(_encoded("PNG"), max_bytes=100)
