"""Reading uploads: every kind of odd or hostile file gives a picture or a clear ImageError, fast and small."""

from __future__ import annotations

import io
import resource
import time

import numpy as np
import pytest
from helpers import lopsided_model, onnx_predictor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from food101_core.serving.gradcam import overlay_heatmap
from food101_core.serving.images import ImageError, read_image, to_rgb

RNG = np.random.default_rng(0)
PHOTO = Image.fromarray(RNG.integers(0, 255, (120, 160, 3), dtype=np.uint8))
SMOOTH = Image.fromarray(
    np.dstack([*np.meshgrid(np.linspace(0, 255, 160), np.linspace(0, 255, 120)), np.full((120, 160), 90.0)]).astype(
        np.uint8
    )
)
FLIPPED = SMOOTH.transpose(Image.FLIP_LEFT_RIGHT)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


VALID = {
    "jpeg": encode(PHOTO, "JPEG"),
    "png": encode(PHOTO, "PNG"),
    "webp": encode(PHOTO, "WEBP"),
    "bmp": encode(PHOTO, "BMP"),
    "tiff": encode(PHOTO, "TIFF"),
    "gif": encode(PHOTO, "GIF"),
    "animated-webp": encode(SMOOTH, "WEBP", save_all=True, append_images=[FLIPPED], duration=50),
    "animated-gif": encode(SMOOTH, "GIF", save_all=True, append_images=[FLIPPED], duration=50),
    "cmyk": encode(PHOTO.convert("CMYK"), "JPEG"),
    "gray": encode(PHOTO.convert("L"), "PNG"),
    "gray-alpha": encode(PHOTO.convert("LA"), "PNG"),
    "rgba": encode(PHOTO.convert("RGBA"), "PNG"),
    "palette": encode(PHOTO.convert("P"), "PNG"),
    "palette-transparent": encode(PHOTO.convert("P"), "PNG", transparency=0),
    "16-bit": encode(Image.fromarray(RNG.integers(0, 65535, (120, 160), dtype=np.uint16)), "PNG"),
    "32-bit-int": encode(Image.fromarray(RNG.integers(0, 2**20, (120, 160), dtype=np.int32)), "TIFF"),
    "float": encode(Image.fromarray(RNG.random((120, 160), dtype=np.float32)), "TIFF"),
    "1-bit": encode(PHOTO.convert("1"), "PNG"),
    "huge-photo": encode(Image.new("RGB", (6000, 4000), (120, 80, 40)), "JPEG"),
    "extreme-but-ok": encode(Image.new("RGB", (1900, 100), "white"), "PNG"),
}
INVALID = {
    "text": (b"hello, I am a text file", "not a format this app reads"),
    "empty": (b"", "not a format this app reads"),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not a format this app reads"),
    "elf": (b"\x7fELF\x02\x01\x01" + bytes(100), "not a format this app reads"),
    "heic-like": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "not a format this app reads"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not a format this app reads"),
    "truncated-jpeg": (VALID["jpeg"][: len(VALID["jpeg"]) // 2], "damaged"),
    "truncated-png": (VALID["png"][: len(VALID["png"]) // 2], "damaged"),
    "bomb": (encode(Image.new("1", (20000, 20000)), "PNG", optimize=True), "too large"),
    "jpeg-header-bomb": (None, "too large"),  # built below: a valid JPEG header claiming 60000 x 60000
    "tiny": (encode(Image.new("RGB", (3, 3)), "PNG"), "too small"),
    "strip": (encode(Image.new("RGB", (3000, 60)), "PNG"), "strip"),
}


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


INVALID["jpeg-header-bomb"] = (jpeg_claiming(60000, 60000), "too large")


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_images_become_upright_rgb(name):
    im = read_image(VALID[name], decode_hint=448)
    assert im.mode == "RGB" and min(im.size) >= 16
    if name.startswith("animated"):
        a = np.asarray(im, float)
        assert np.abs(a - np.asarray(SMOOTH, float)).mean() < np.abs(a - np.asarray(FLIPPED, float)).mean() / 4


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_files_get_a_clear_message(name):
    data, message = INVALID[name]
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match=message):
        read_image(data)
    assert time.perf_counter() - t0 < 2


def test_transparency_is_white_and_16_bit_keeps_its_range():
    clear = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert to_rgb(clear).getpixel((5, 5)) == (255, 255, 255)
    ramp = Image.fromarray(np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (20, 1)))
    out = np.asarray(read_image(encode(ramp, "PNG")))
    assert out.min() == 0 and out.max() == 255 and out[0, 128, 0] in range(120, 136)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise
    im = read_image(encode(PHOTO, "JPEG", exif=exif))
    assert im.size == (120, 160)


def test_huge_jpeg_decodes_reduced_and_fast():
    t0 = time.perf_counter()
    im = read_image(VALID["huge-photo"], decode_hint=448)
    assert time.perf_counter() - t0 < 2 and min(im.size) >= 448 and max(im.size) < 6000


def _mutations():
    """Valid files with bytes flipped, cut or inserted: what a broken upload or a fuzzer sends."""
    seeds = st.sampled_from(sorted(VALID))
    return st.tuples(
        seeds, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12), st.integers(0, 10**6)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data):
    try:
        im = read_image(data)
        assert im.mode == "RGB"
    except ImageError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_mutated_images_never_crash_and_stay_bounded(mutation):
    name, flips, cut = mutation
    if name == "huge-photo":
        return
    data = bytearray(VALID[name])
    for pos, value in flips:
        data[pos % len(data)] = value
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        im = read_image(data, decode_hint=448)
        assert im.mode == "RGB"
    except ImageError:
        pass
    assert time.perf_counter() - t0 < 3
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: no 500 MB blow-up


def test_overlay_keeps_size_and_marks_the_hot_region():
    heat = np.zeros((32, 32), np.float32)
    heat[:16, :16] = 1.0
    out = np.asarray(overlay_heatmap(PHOTO, heat), float)
    base = np.asarray(PHOTO, float)
    assert out.shape == base.shape
    assert np.abs(out[:40, :60] - base[:40, :60]).mean() > 20 and np.abs(out[80:, 100:] - base[80:, 100:]).max() == 0


@pytest.mark.parametrize("tta", [False, True])
def test_predictor_averages_the_mirror_image_when_the_evaluation_did(tta, tmp_path):
    """A bundle evaluated with --tta-flip is served the same way, so the app's answers match its metrics."""
    predictor = onnx_predictor(lopsided_model(), tmp_path, list("abcd"), tta_flip=tta)
    x = predictor.preprocess(PHOTO)
    plain = predictor.forward(x)["probs"][0]
    mirrored = predictor.forward(np.ascontiguousarray(x[:, :, ::-1]))["probs"][0]
    assert np.abs(plain - mirrored).max() > 1e-4  # the photo is not symmetric, so the two views differ
    expected = (plain + mirrored) / 2 if tta else plain
    np.testing.assert_allclose(predictor.predict(PHOTO).probs, expected, atol=1e-6)
