"""Uploads: only an allowlist of formats is opened; a phone's HEIC photo reads as the JPEG it was made from."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from food101_core.serving.images import FORMATS, ImageError, read_image


def photo() -> Image.Image:
    """A smooth, photo-like picture (gradients compress and re-encode like photos do)."""
    y, x = np.mgrid[0:120, 0:160]
    a = np.stack([x * 1.5, y * 2.0, (x + y) * 0.8], axis=-1)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def refused_formats() -> dict[str, bytes]:
    """Files Pillow itself can open (or hand to another program), which the app must not open."""
    im = photo()
    files = {
        "eps": encode(im, "EPS"),  # Pillow would run Ghostscript on it
        "pdf": encode(im, "PDF"),
        "ico": encode(im, "ICO"),
        "tga": encode(im, "TGA"),
        "ppm": encode(im, "PPM"),
        "pcx": encode(im, "PCX"),
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="9" height="9"/></svg>',
        "psd": b"8BPS\x00\x01" + bytes(6) + b"\x00\x03" + (100).to_bytes(4, "big") * 2 + b"\x00\x08\x00\x03" + bytes(9),
    }
    return files


@pytest.mark.parametrize("name", sorted(refused_formats()))
def test_formats_outside_the_allowlist_are_refused_by_name(name):
    data = refused_formats()[name]
    if name in {"ico", "tga", "ppm", "pcx", "pdf"}:  # real images that Pillow alone would open (PDF: it wrote it)
        assert name == "pdf" or Image.open(io.BytesIO(data)).load() is not None
    with pytest.raises(ImageError) as e:
        read_image(data)
    said = str(e.value)
    assert "not a format this app reads" in said
    for readable in ("JPEG", "PNG", "WebP", "HEIC"):
        assert readable in said


def test_eps_is_never_handed_to_ghostscript(monkeypatch):
    """Even where Ghostscript is installed: the EPS plug-in is never asked to load."""
    from PIL import EpsImagePlugin

    called = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: called.append(a))
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)
    with pytest.raises(ImageError):
        read_image(encode(photo(), "EPS"))
    assert called == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF"])
def test_every_allowed_format_reads(fmt, tmp_path: Path):
    assert fmt in FORMATS
    path = tmp_path / f"photo.{fmt.lower()}"
    photo().save(path, fmt)
    im = read_image(path)
    assert im.mode == "RGB" and im.size == (160, 120)
    diff = np.abs(np.asarray(im, float) - np.asarray(photo(), float)).mean()
    assert diff < (25 if fmt == "GIF" else 12), diff  # GIF: a 256-colour palette


def test_heic_from_a_jpeg_predicts_the_same_dish(tmp_path: Path):
    """A phone photo in HEIC (made here with pillow-heif from a JPEG) gets the JPEG's answer."""
    import pillow_heif
    from helpers import lopsided_model, onnx_predictor

    jpeg = tmp_path / "lunch.jpg"
    photo().save(jpeg, quality=92)
    heif = pillow_heif.from_pillow(Image.open(jpeg))
    heif.save(tmp_path / "lunch.heic", quality=90)
    assert (tmp_path / "lunch.heic").read_bytes()[4:12] == b"ftypheic"
    p = onnx_predictor(lopsided_model(32, 4), tmp_path, ["a", "b", "c", "d"])
    a, b = p.predict(p.read(jpeg)), p.predict(p.read(tmp_path / "lunch.heic"))
    assert a.top[0][0] == b.top[0][0]
    assert np.abs(a.probs - b.probs).max() < 0.05
