"""Reading an uploaded photo safely: an allowlist of formats, size limits, EXIF orientation, any colour mode.

Every photo the app receives goes through `read_image`, which either returns an upright RGB picture or raises
`ImageError` with a message a person can act on. Only the formats in `FORMATS` are ever opened: Pillow would
otherwise hand, say, an uploaded EPS to Ghostscript. HEIC/HEIF (the iPhone's default) comes from `pillow-heif`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF = True
except ImportError:  # pragma: no cover - requirements.txt installs it
    HEIF = False

# Pillow's openers -> what a person calls them. JPEG's opener also reads MPO, the multi-picture JPEG of many phones.
FORMATS = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "GIF": "GIF",
    "BMP": "BMP",
    "TIFF": "TIFF",
    "AVIF": "AVIF",
    **({"HEIF": "HEIC/HEIF"} if HEIF else {}),
}
READABLE = ", ".join(dict.fromkeys(FORMATS.values()))
MAX_PIXELS = 40_000_000  # a 40-megapixel photo is fine; a "decompression bomb" is refused before decoding
MIN_SIDE = 16
MAX_ASPECT = 20.0


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message says why."""


NO_IMAGE = "No image was received."


def read_bytes(path: str | os.PathLike) -> bytes:
    """An upload's bytes (to read once, for both its digest and its decoding), or ImageError as `read_image` says."""
    try:
        return Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ImageError(NO_IMAGE) from None
    except OSError as e:
        raise ImageError(f"This image cannot be opened ({type(e).__name__}).") from None


def read_image(src: str | os.PathLike | bytes, decode_hint: int | None = None) -> Image.Image:
    """An upright RGB image from a file path or bytes, or ImageError.

    Handles grayscale, palette, CMYK, 16-bit and float images, transparency (composited on white),
    animations (first frame) and EXIF orientation. `decode_hint` lets JPEGs decode at a reduced scale
    that is still at least that many pixels on the short side (much faster for huge photos).
    """
    try:
        im = Image.open(io.BytesIO(src) if isinstance(src, bytes) else Path(src), formats=list(FORMATS))
    except UnidentifiedImageError:
        raise ImageError(f"This file is not a format this app reads: it reads {READABLE} photos.") from None
    except (FileNotFoundError, IsADirectoryError):
        raise ImageError(NO_IMAGE) from None
    except Image.DecompressionBombError:
        raise ImageError(
            f"This image is too large (over {MAX_PIXELS // 1_000_000} megapixels). Please upload a smaller photo."
        ) from None
    except Exception as e:
        raise ImageError(f"This image cannot be opened ({type(e).__name__}).") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"This image is too large: {w}×{h} pixels (the limit is {MAX_PIXELS // 1_000_000} "
            "megapixels). Please upload a smaller photo."
        )
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"This image is too small: {w}×{h} pixels (at least {MIN_SIDE} px on each side).")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageError(
            f"This image is a {w}×{h} strip, not a photo of a dish (aspect ratio over {MAX_ASPECT:.0f}:1)."
        )
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)  # animated GIF/WebP/PNG: the first frame
        if decode_hint and im.format in {"JPEG", "MPO"}:
            scale = max(1, min(w, h) // decode_hint)
            im.draft("RGB", (w // scale, h // scale))
        im.load()
        im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError:
        raise ImageError("This image is too large to decode safely.") from None
    except Exception as e:  # truncated or corrupt data: PIL raises OSError, SyntaxError, ValueError, ...
        raise ImageError(f"This image is damaged or incomplete and cannot be decoded ({type(e).__name__}).") from None
    return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparency becomes a white background."""
    if im.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
        im = Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in {"RGBA", "LA", "PA"}:
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    return im.convert("RGB")
