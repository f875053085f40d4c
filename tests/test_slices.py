"""Readable photo properties (image_props) and failure slices named in words (slice_finder): issue 24."""

from __future__ import annotations

import importlib.util
import io
import json

import numpy as np
import pandas as pd
import pytest
from helpers import MINI, needs_mini
from PIL import Image, ImageFilter

from food101_core import slice_finder as slices
from food101_core.image_props import image_check_flags, image_properties, properties_table

has_cleanvision = importlib.util.find_spec("cleanvision") is not None


def textured(seed: int = 0, size: tuple[int, int] = (512, 384), gain: float = 1.0, offset: float = 0.0) -> Image.Image:
    """A photo-like image: smooth colour blobs plus fine detail, brightness scaled by `gain` and shifted by `offset`."""
    rng = np.random.default_rng(seed)
    blobs = Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).resize(size, Image.Resampling.BICUBIC)
    x = np.asarray(blobs, np.float32) + rng.normal(0, 20, (size[1], size[0], 3))
    return Image.fromarray(np.clip(x * gain + offset, 0, 255).astype(np.uint8))


def jpeg(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


def props_of(*images: Image.Image) -> pd.DataFrame:
    return properties_table(enumerate(images), progress=False)


def test_dark_is_darker_and_flagged():
    dark, normal, light = textured(gain=0.2), textured(), textured(gain=0.1, offset=240)
    p = props_of(dark, normal, light)
    assert p.loc[0, "brightness"] < p.loc[1, "brightness"] < p.loc[2, "brightness"]
    assert p.loc[0, "brightness_p99"] < p.loc[1, "brightness_p99"]
    flags = image_check_flags(p)
    assert flags["dark"].tolist() == [True, False, False]
    assert flags["light"].tolist() == [False, False, True]


def test_blurred_scores_lower_and_is_flagged():
    sharp = textured(1)
    p = props_of(sharp, sharp.filter(ImageFilter.GaussianBlur(3)), sharp.filter(ImageFilter.GaussianBlur(12)))
    assert p.loc[0, "blur"] > p.loc[1, "blur"] > p.loc[2, "blur"]
    assert image_check_flags(p)["blurry"].tolist() == [False, False, True]


def test_grayscale_flagged_in_any_mode():
    colour = textured(2)
    grey_rgb_jpeg = Image.open(io.BytesIO(jpeg(colour.convert("L").convert("RGB"))))  # a grey photo stored as RGB
    p = props_of(colour, colour.convert("L"), grey_rgb_jpeg)
    assert p.loc[1, "colourfulness"] == 0
    assert image_check_flags(p)["grayscale"].tolist() == [False, True, True]


def test_constant_image_has_low_information():
    p = props_of(Image.new("RGB", (300, 200), (120, 80, 40)), textured(3))
    assert p.loc[0, "entropy"] < 3 < p.loc[1, "entropy"]
    flags = image_check_flags(p)
    assert flags["low_information"].tolist() == [True, False]
    assert not flags.loc[0, "blurry"]  # a flat photo is low-information, not blurry (CleanVision's histogram term)


def test_odd_aspect_ratio_and_size():
    images = [textured(i, (512, 384)) for i in range(6)] + [textured(6, (600, 100)), textured(7, (2000, 1500))]
    p = props_of(*images)
    assert p.loc[6, "aspect_ratio"] == pytest.approx(6.0)
    flags = image_check_flags(p)
    assert flags["odd_aspect_ratio"].tolist() == [False] * 6 + [True, False]
    assert flags["odd_size"].tolist() == [False] * 6 + [True, True]


def test_table_from_bytes_keeps_the_original_size_and_survives_a_bad_photo():
    photo = textured(4, (512, 384))
    with pytest.warns(UserWarning, match=r"1 photo\(s\) could not be measured.*7 \("):
        p = properties_table([(5, jpeg(photo)), (7, b"not a photo"), (9, photo)], progress=False)
    assert p["index"].tolist() == [5, 7, 9]
    assert p.loc[0, ["width", "height"]].tolist() == [512, 384]
    assert p.iloc[1, 1:].isna().all()
    assert not image_check_flags(p).iloc[1].any()
    # the reduced JPEG decode measures what the decoded photo does, within JPEG's own loss
    for column, tol in {"brightness": 0.01, "brightness_p99": 0.03, "blur": 3, "entropy": 0.2}.items():
        assert p.loc[0, column] == pytest.approx(p.loc[2, column], abs=tol)


@pytest.mark.skipif(not has_cleanvision, reason="cleanvision is not installed (only this comparison needs it)")
def test_properties_match_cleanvision_on_generated_photos():
    from cleanvision.issue_managers.image_property import BlurrinessProperty, BrightnessProperty, EntropyProperty

    for i, im in enumerate([textured(10), textured(11, gain=0.3), textured(12).filter(ImageFilter.GaussianBlur(4))]):
        theirs = {**BrightnessProperty("dark").calculate(im), **BlurrinessProperty().calculate(im)}
        theirs.update(EntropyProperty().calculate(im))
        ours = image_properties(im)
        assert ours["brightness"] == pytest.approx(theirs["brightness"], abs=0.005), i
        assert ours["brightness_p99"] == pytest.approx(theirs["brightness_perc_99"], abs=0.03), i
        assert ours["brightness_p5"] == pytest.approx(theirs["brightness_perc_5"], abs=0.03), i
        assert ours["blur"] == pytest.approx(theirs["blurriness"], rel=0.1), i
        assert ours["entropy"] == pytest.approx(theirs["entropy"], abs=0.15), i


@needs_mini
@pytest.mark.skipif(not has_cleanvision, reason="cleanvision is not installed (only this comparison needs it)")
def test_properties_match_cleanvision_on_real_photos():
    """The claim beside `image_props.SIDE`: food101-mini photos at Food-101's 512 px, decoded reduced, against
    CleanVision on the full photo."""
    from cleanvision.issue_managers.image_property import BlurrinessProperty, BrightnessProperty

    files = sorted(MINI.glob("images/*/*.jpg"))[::450]
    for f in files:
        im = Image.open(f).convert("RGB")
        data = jpeg(im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC))
        full = Image.open(io.BytesIO(data)).convert("RGB")
        theirs = {**BrightnessProperty("dark").calculate(full), **BlurrinessProperty().calculate(full)}
        ours = properties_table([(0, data)], progress=False).iloc[0]
        assert ours["brightness_p99"] == pytest.approx(theirs["brightness_perc_99"], abs=0.03), f
        assert ours["brightness_p5"] == pytest.approx(theirs["brightness_perc_5"], abs=0.03), f
        assert ours["blur"] == pytest.approx(theirs["blurriness"], rel=0.1), f


# ---- failure slices


def synthetic(n: int, dishes: int, seed: int, planted: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(a per-photo table like the evaluation's, whether each answer is right, the planted slice): right 85 % of the
    time, 30 % for the darkest 15 % of dish_003 when `planted`."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "index": np.arange(n),
        "dish": [f"dish_{i:03d}" for i in rng.integers(0, dishes, n)],
        "region": rng.integers(0, 12, n),
        "brightness": rng.beta(4, 4, n), "contrast": rng.gamma(5, 0.05, n), "blur": rng.normal(60, 15, n),
        "colourfulness": rng.gamma(6, 9, n), "entropy": 9.5 - rng.gamma(2, 0.3, n),
        "aspect_ratio": rng.choice([0.75, 1.0, 4 / 3, 1.5], n, p=[0.15, 0.6, 0.2, 0.05]),
        "width": np.where(rng.random(n) < 0.9, 512.0, rng.integers(200, 512, n)),
        "confidence": rng.beta(5, 2, n), "unfamiliar": rng.gamma(3, 0.1, n),
        "grayscale": rng.random(n) < 0.01,
    })  # fmt: skip
    target = (table["brightness"] <= table["brightness"].quantile(0.15)).to_numpy() & (table["dish"] == "dish_003")
    p = np.where(target & planted, 0.3, 0.85)
    return table, rng.random(n) < p, target.to_numpy()


def test_planted_slice_comes_first():
    table, correct, planted = synthetic(5000, 10, seed=0, planted=True)
    found = slices.find_slices(table, correct)
    first = found.iloc[0]
    assert {c["column"] for c in first["conditions"]} == {"brightness", "dish"}
    assert "dark photos of dish 003" in first["name"]
    assert first["p_value"] < 0.05 and first["n"] >= 20
    mask = slices.slice_mask(table, first["conditions"])
    assert planted[mask].mean() >= 0.9  # the slice found lies in the planted one
    assert found.attrs["correction"] == "bonferroni" and found.attrs["tested"] > 1000
    json.dumps(found["conditions"].tolist())  # the bundle can store the conditions as they are


def test_no_slice_when_correctness_is_independent():
    table, correct, _ = synthetic(5000, 10, seed=1, planted=False)
    found = slices.find_slices(table, correct)
    assert found.empty
    assert list(found.columns) == ["name", "conditions", "n", "accuracy", "overall", "rest_accuracy", "p_value"]


def test_reported_numbers_match_slice_mask():
    table, correct, _ = synthetic(5000, 10, seed=2, planted=True)
    correct = correct & ~((table["confidence"] < 0.45).to_numpy() & (np.arange(5000) % 2 == 0))  # a second failure
    found = slices.find_slices(table, correct, max_slices=10)
    assert len(found) >= 2
    assert (found["p_value"].diff().dropna() >= 0).all()  # ranked
    for _, row in found.iterrows():
        mask = slices.slice_mask(table, row["conditions"])
        assert row["n"] == mask.sum() >= 20
        assert row["accuracy"] == pytest.approx(pd.Series(correct)[mask].mean())
        assert row["rest_accuracy"] == pytest.approx(pd.Series(correct)[~mask].mean())
        assert row["overall"] == pytest.approx(correct.mean()) and row["accuracy"] < row["overall"]


def test_fisher_p_matches_scipy():
    from scipy.stats import fisher_exact

    for right, n, k_all, n_all in [(6, 20, 850, 1000), (30, 100, 700, 1000), (0, 25, 20000, 25250)]:
        table = [[right, n - right], [k_all - right, n_all - n - (k_all - right)]]
        expected = fisher_exact(table, alternative="less").pvalue
        assert np.exp(slices.fisher_less(np.array([right]), np.array([n]), k_all, n_all))[0] == pytest.approx(expected)


def test_sliceline_keeps_every_significant_slice_of_brute_force():
    """Brute force over every slice of one or two conditions: the search space counted for Bonferroni is exactly
    those of `min_size` photos or more, and each significant one is among SliceLine's candidates."""
    table, _, _ = synthetic(5000, 10, seed=3, planted=False)
    rng = np.random.default_rng(4)
    dish_accuracy = dict(zip(sorted(table["dish"].unique()), rng.uniform(0.6, 0.95, 10)))
    p = table["dish"].map(dish_accuracy).to_numpy() * (0.6 + 0.5 * table["confidence"].to_numpy())
    correct = rng.random(len(table)) < np.clip(p - 0.2 * (table["brightness"] < 0.3), 0, 1)
    data = table.drop(columns="index")
    codes, levels = slices.discretise(data)
    column_of = np.array([data.columns.get_loc(level["column"]) for level in levels])
    x = slices.one_hot(codes, len(levels)).toarray()
    together = x.T @ x
    every = [[i] for i in range(len(levels)) if together[i, i] >= 20]
    every += [[int(i), int(j)] for i, j in np.argwhere(np.triu(together, 1) >= 20)]
    tested = slices.search_space(codes, len(levels), 20)
    assert tested == len(every)
    brute = slices.evaluate(codes, column_of, correct, every, tested)
    significant = {tuple(ids) for ids in brute[(brute["p_value"] < 0.05) & (brute["accuracy"] < correct.mean())]["ids"]}
    assert len(significant) >= 10
    found = slices.sliceline_candidates(codes, ~correct, 20, slices.SEARCH_K, 1 - 20 / len(table))
    assert significant <= {tuple(sorted(ids)) for ids in found}


def test_bins_read_in_words():
    values = pd.Series(np.arange(1000, dtype=float), name="brightness")
    phrases = [level["phrase"] for level in slices.numeric_levels(values)]
    assert phrases == ["very dark", "dark", "mid-brightness", "bright", "very bright"]
    ties = pd.Series([512.0] * 900 + list(range(100)), name="width")  # most photos 512 px: one bin left, "lowest"
    assert [level["text"] for level in slices.numeric_levels(ties)] == ["width ≤ 99 (lowest 10 %)"]
    dishes = slices.categorical_levels(pd.Series(["steak", "sushi", "ramen"], name="dish"))
    assert slices.slice_name([dishes[0], slices.numeric_levels(values)[0]]) == "very dark photos of steak"
    flags = slices.categorical_levels(pd.Series([True] + [False] * 99, name="grayscale"))
    assert [level["phrase"] for level in flags] == ["grayscale"]  # "not grayscale" (99 %) is no group


def test_overlapping_slices_keep_the_simpler_name():
    """Two conditions that pick nearly the photos of one: the one-condition slice is shown, ranked where it belongs;
    a slice lying inside a better one is left out."""
    first = np.r_[np.zeros(100, int), np.ones(900, int)]  # column 0: level 0 for the first 100 photos
    second = np.r_[np.full(95, 2), np.full(905, 3)]  # column 1: level 2 for 95 of those
    third = np.r_[np.full(50, 4), np.full(950, 5)]  # column 2: level 4, inside level 0
    codes, column_of = np.c_[first, second, third], np.array([0, 0, 1, 1, 2, 2])
    rows = pd.DataFrame({"ids": [[0, 2], [4], [0]], "n": [95, 50, 100], "log_p": [-30.0, -20.0, -29.0]})
    kept = slices.drop_overlapping(rows, codes, column_of, overlap=0.8, limit=10)
    assert kept["ids"].tolist() == [[0]]
