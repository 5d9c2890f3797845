"""The CJK font of seal pictures and of text in the PDFs we write.

WenQuanYi Micro Hei (Debian ``fonts-wqy-microhei``, Apache-2.0): a sans-serif face with Chinese
and Latin glyphs, so identifiers and dates render beside the names (Droid Sans Fallback, tried
first, has no Latin letters or digits). It ships as a TrueType collection; the first face is
the proportional one.
"""

from __future__ import annotations

from pathlib import Path

from trust.errors import ConfigurationError

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
FONT_INDEX = 0
"""Face in the collection: 0 is Micro Hei, 1 Micro Hei Mono."""
FONT_PACKAGE = "fonts-wqy-microhei"


def font_path(path: Path | None = None) -> Path:
    """The font file, or ConfigurationError naming the package to install."""
    font = path or FONT_PATH
    if not font.is_file():
        raise ConfigurationError(
            f"the CJK font {font} is missing; install the Debian package {FONT_PACKAGE} "
            "(make system-deps)"
        )
    return font
