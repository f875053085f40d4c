"""Readable properties of a photo (how bright, how sharp, how colourful...) and CleanVision-like checks on them, so
that a failure slice can be named in words ("dark photos of steak"; issue 24, `slice_finder.py`).

The definitions follow CleanVision 0.3.7 (`cleanvision/issue_managers/image_property.py` and the thresholds of
`ImagePropertyIssueManager.get_default_params`); each property says which one it follows. Everything but the original
width and height is measured on a copy whose longer side is at most `SIDE` pixels (the blur score on one of at most
`BLUR_SIDE`, as CleanVision does): 1.4 ms a decoded 512-px photo, 2.0 ms from JPEG bytes (decoded reduced), i.e.
35-51 s for the 25,250 Food-101 test photos on one core of a busy 2-core machine.

numpy, pandas and Pillow (tqdm for the progress bar): the app may import this, so no TensorFlow, scikit-learn or
CleanVision here.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter, ImageStat

SIDE = 128  # the copy measured: percentiles within 0.03 of CleanVision's on 512-px food101-mini photos (tests)
BLUR_SIDE = 64  # CleanVision's MAX_RESOLUTION_FOR_BLURRY_DETECTION: its blur score is measured at this size
PROPERTIES = [
    "brightness", "brightness_p5", "brightness_p99", "contrast", "blur", "blur_histogram_std", "colourfulness",
    "entropy", "aspect_ratio", "width", "height",
]  # fmt: skip

# CleanVision's default thresholds (ImagePropertyIssueManager.get_default_params, 0.3.7)
DARK_P99 = 0.32  # dark: the 99th percentile of perceived brightness is below this
LIGHT_SCORE = 0.05  # light: 1 - the 5th percentile of perceived brightness is below this
ODD_ASPECT = 0.35  # odd_aspect_ratio: min(w/h, h/w) below this
LOW_INFO_SCORE, LOW_INFO_FACTOR = 0.3, 0.1  # low_information: min(1, 0.1 * entropy) < 0.3, i.e. entropy < 3 bits
BLUR_SCORE, BLUR_FACTOR, BLUR_COLOUR = 0.29, 0.01, 0.18  # blurry: see `blurry_score`
ODD_SIZE_IQR = 3.0  # odd_size: sqrt(w * h) outside [Q1 - 3 IQR, Q3 + 3 IQR] of the set
# Not CleanVision's (it flags only images stored in mode "L"): of food101-mini's 4,500 photos, a black-and-white
# photo stored as RGB (beignets/1782162) measures 0.4, the least colourful colour photo (white beignets) 6.9.
GRAYSCALE_COLOURFULNESS = 2.0


def perceived_brightness(rgb: np.ndarray) -> np.ndarray:
    """CleanVision's per-pixel perceived brightness in [0, 1]: sqrt(0.241 R² + 0.691 G² + 0.068 B²) / 255 (the "HSP"
    colour model's weights); `rgb` is (..., 3) in 0-255."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return np.sqrt(0.241 * r * r + 0.691 * g * g + 0.068 * b * b) / 255.0


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk's (2003) colourfulness M in 0-255 units: 0 for a grey photo, ~15 "slightly", ~33 "moderately",
    ~59 "quite", ~82 "highly" colourful. Used instead of CleanVision's mode-only grayscale check."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def shrink(im: Image.Image, side: int) -> Image.Image:
    """A copy whose longer side is at most `side` (area-averaged: percentiles and histograms stay representative)."""
    factor = math.ceil(max(im.size) / side)
    return im.reduce(factor) if factor > 1 else im


def blur_scores(rgb_small: Image.Image) -> tuple[float, float]:
    """CleanVision's `blurriness` (standard deviation of Pillow's FIND_EDGES response on the greyscale photo scaled to
    at most 64 px, bicubic as its `resize`; lower = blurrier) and the standard deviation of that greyscale photo's
    256-bin histogram (its `blurriness_grayscale_std`, which spares flat photos the blurry flag)."""
    ratio = max(rgb_small.size) / BLUR_SIDE
    if ratio > 1:
        size = (max(int(rgb_small.width // ratio), 1), max(int(rgb_small.height // ratio), 1))
        rgb_small = rgb_small.resize(size, Image.Resampling.BICUBIC)
    gray = rgb_small.convert("L")
    edges = np.asarray(gray.filter(ImageFilter.FIND_EDGES), np.float64)
    return float(edges.std()), float(np.std(gray.histogram()))


def image_properties(im: Image.Image, size: tuple[int, int] | None = None) -> dict[str, float]:
    """Every property of one decoded photo (`size`: its original (width, height) when `im` is already reduced).

    - brightness: CleanVision's `brightness`, the perceived brightness of the photo's mean R, G, B (0-1);
      brightness_p5 / brightness_p99: the 5th / 99th percentile of per-pixel perceived brightness (its `light` and
      `dark` checks);
    - contrast: RMS contrast (Peli 1990), the standard deviation of per-pixel perceived brightness (0-0.5);
    - blur, blur_histogram_std: CleanVision's blurry-check inputs (`blur_scores`; lower blur = blurrier);
    - colourfulness: Hasler & Süsstrunk's M (`colourfulness`; 0 = grey);
    - entropy: Pillow's `Image.entropy()` in bits, as CleanVision's low_information check (of the RGB histogram);
    - aspect_ratio: width / height of the original (CleanVision's odd_aspect_ratio uses min(r, 1/r));
    - width, height: of the original photo, in pixels.
    """
    width, height = size or im.size
    small = shrink(im if im.mode == "RGB" else im.convert("RGB"), SIDE)
    rgb = np.asarray(small)
    bright = perceived_brightness(rgb)
    p5, p99 = np.percentile(bright, [5, 99])
    blur, hist_std = blur_scores(small)
    props = {
        "brightness": float(perceived_brightness(np.array(ImageStat.Stat(small).mean))),
        "brightness_p5": float(p5),
        "brightness_p99": float(p99),
        "contrast": float(bright.std()),
        "blur": blur,
        "blur_histogram_std": hist_std,
        "colourfulness": colourfulness(rgb),
        "entropy": float(small.entropy()),
        "aspect_ratio": width / height,
        "width": float(width),
        "height": float(height),
    }
    return props


def open_reduced(data: bytes) -> tuple[Image.Image, tuple[int, int]]:
    """Decode `data` at the smallest JPEG scale still at least `SIDE` (Pillow's `draft`: 2-4x faster than a full
    decode of a 512-px photo); also gives back the original size."""
    im = Image.open(io.BytesIO(data))
    size = im.size
    if im.format == "JPEG":
        im.draft("RGB", (SIDE, SIDE))
    im.load()
    return im, size


def properties_table(
    images: Iterable[tuple[int, Image.Image | bytes]], total: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """One row per photo (`index`, then `PROPERTIES`), in the order given; a photo that cannot be read gets NaNs and
    is named in one warning at the end, so that one bad file never stops an evaluation."""
    from tqdm.auto import tqdm

    rows, bad = [], []
    for index, image in tqdm(images, total=total, desc="photo properties", leave=False, disable=not progress):
        try:
            im, size = open_reduced(image) if isinstance(image, bytes | bytearray) else (image, None)
            rows.append({"index": index, **image_properties(im, size)})
        except Exception as e:  # any decoding or conversion error: the photo is reported, never fatal
            bad.append(f"{index} ({type(e).__name__}: {e})")
            rows.append({"index": index})
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"{len(bad)} photo(s) could not be measured, their properties are NaN: {shown}", stacklevel=2)
    return pd.DataFrame(rows, columns=["index", *PROPERTIES])


def blurry_score(props: pd.DataFrame) -> pd.Series:
    """CleanVision's blurry score: 1 - exp(-0.01 blur), plus 1 - exp(-0.01 histogram std) where that term exceeds 0.18
    (a flat photo has a peaked histogram: its low edge score is not blur), at most 1."""
    blur = 1 - np.exp(-BLUR_FACTOR * props["blur"])
    flat = 1 - np.exp(-BLUR_FACTOR * props["blur_histogram_std"])
    return np.minimum(blur + flat.where(flat > BLUR_COLOUR, 0.0), 1.0)


def odd_size(width: pd.Series, height: pd.Series) -> pd.Series:
    """CleanVision's odd_size: sqrt(w h) outside [Q1 - 3 IQR, Q3 + 3 IQR] of the set (every size but the common one
    when the IQR is 0, as its score then is)."""
    side = np.sqrt(width * height)
    q1, q3 = np.nanpercentile(side, [25, 75]) if side.notna().any() else (np.nan, np.nan)
    if q3 == q1:
        return side.notna() & (side != q1)
    return (side < q1 - ODD_SIZE_IQR * (q3 - q1)) | (side > q3 + ODD_SIZE_IQR * (q3 - q1))


def image_check_flags(props: pd.DataFrame) -> pd.DataFrame:
    """CleanVision's image checks with its default thresholds (constants above), one boolean column each; a photo
    whose properties are NaN is flagged nowhere.

    dark: brightness_p99 < 0.32; light: 1 - brightness_p5 < 0.05; blurry: `blurry_score` < 0.29; low_information:
    min(1, 0.1 entropy) < 0.3; grayscale: colourfulness < 2 (CleanVision: mode "L" only); odd_size: `odd_size`;
    odd_aspect_ratio: min(w/h, h/w) < 0.35.
    """
    ratio = props["aspect_ratio"]
    flags = {
        "dark": props["brightness_p99"] < DARK_P99,
        "light": (1 - props["brightness_p5"]) < LIGHT_SCORE,
        "blurry": blurry_score(props) < BLUR_SCORE,
        "low_information": np.minimum(1.0, LOW_INFO_FACTOR * props["entropy"]) < LOW_INFO_SCORE,
        "grayscale": props["colourfulness"] < GRAYSCALE_COLOURFULNESS,
        "odd_size": odd_size(props["width"], props["height"]),
        "odd_aspect_ratio": np.minimum(ratio, 1 / ratio) < ODD_ASPECT,
    }
    return pd.DataFrame({k: v.fillna(False).astype(bool) for k, v in flags.items()}, index=props.index)


def measure_files(files: list[tuple[int, str]], progress: bool = False) -> pd.DataFrame:
    """`properties_table` of files (index, path), each read here: what one worker process does."""
    return properties_table(((i, Path(p).read_bytes()) for i, p in files), total=len(files), progress=progress)


def files_properties(files: list[tuple[int, str]], workers: int | None = None, chunk: int = 500) -> pd.DataFrame:
    """`properties_table` of many files on every core: chunks measured in spawned processes (safe beside a loaded
    TensorFlow, whose threads a fork would copy mid-state), in the order given, with one progress bar."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(files) < 2 * chunk:
        return measure_files(files, progress=True)
    parts = [files[i : i + chunk] for i in range(0, len(files), chunk)]
    done = []
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    with pool, tqdm(total=len(files), desc="photo properties", leave=False) as bar:
        for part in pool.map(measure_files, parts):
            done.append(part)
            bar.update(len(part))
    return pd.concat(done, ignore_index=True)


def exposure_free(props: pd.DataFrame) -> pd.DataFrame:
    """The properties with three columns that a change of exposure leaves alone (each a ratio of two that scale
    together when a photo is darkened): relative contrast (RMS contrast / brightness), sharpness (CleanVision's edge
    score / RMS contrast, in grey levels) and saturation (Hasler and Süsstrunk's colourfulness / brightness)."""
    out = props.copy()
    light = np.maximum(out["brightness"], 1e-3)
    out["relative_contrast"] = out["contrast"] / light
    out["sharpness"] = out["blur"] / np.maximum(255 * out["contrast"], 1.0)
    out["saturation"] = out["colourfulness"] / (255 * light)
    return out
