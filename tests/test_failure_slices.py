"""Failure slices and image checks through the whole path: evaluation finds them, the bundle keeps them, the app
lists them (/slices) and shows a slice's photos; a planted slice on real photos and a real model comes first."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_BUNDLE, MINI, needs_mini
from PIL import Image, ImageEnhance

from food101_core.bundle import load_bundle
from food101_core.image_props import image_check_flags, properties_table
from food101_core.slicing import slice_mask


@needs_mini
@pytest.mark.skipif(not (DEMO_BUNDLE / "bundle.json").is_file(), reason="needs assets/demo-bundle")
def test_the_bundle_keeps_every_test_photos_properties_and_the_slices_they_define():
    """The demo (a real model): properties.csv matches an independent measurement of the photo files; each slice's
    n and accuracy are what its conditions select among the final stage's predictions; the app's gallery of a
    slice holds its photos only."""
    from food101_core.app import slice_report

    b = load_bundle(DEMO_BUNDLE)
    props = b.properties()
    assert props["id"].tolist() == b.test_ids and {"unfamiliar", "region"} <= set(props.columns)
    again = properties_table((i, b.original_image(i).read_bytes()) for i in range(len(b.test_ids)))
    np.testing.assert_allclose(props["brightness"], again["brightness"], rtol=1e-4)
    found = b.slices()
    assert found["correction"] == "bonferroni" and found["tested"] >= len(found["slices"]) >= 1
    p = b.evaluation(b.final_stage).predictions
    for s in found["slices"]:
        mask = slice_mask(props, s["conditions"])
        assert mask.sum() == s["n"] and p["correct"][mask].mean() == pytest.approx(s["accuracy"])
        assert s["overall"] == pytest.approx(p["correct"].mean()) and 0 <= s["p_value"] <= 0.05
    items, line = slice_report.slice_gallery(b, 0, 500)
    members = set(p["id"][slice_mask(props, found["slices"][0]["conditions"])])
    assert items and {caption for _, caption in items} and f"{found['slices'][0]['n']:,} photos" in line
    assert all(b.test_ids[i] in members for i in range(len(b.test_ids)) if b.has_thumb(i) and str(b.thumb(i)) in
               {path for path, _ in items})  # fmt: skip


def test_slices_endpoint_answers_the_bundles_slices(client, tiny_bundle):
    rows = client.predict(api_name="/slices")
    kept = load_bundle(tiny_bundle).slices()["slices"]
    assert [r["name"] for r in rows] == [s["name"] for s in kept]
    for r in rows:
        assert set(r) == {"name", "conditions", "n", "accuracy", "overall", "p_value"}


def test_training_photos_flagged_by_the_image_checks_are_listed_for_exclude(tiny_bundle):
    """quality/image_checks.csv: exactly the training photos CleanVision's checks flag, measured again here; its ids
    are training photos (what --exclude accepts)."""
    from food101_core.config import TrainConfig
    from food101_core.training.data import load_data

    b = load_bundle(tiny_bundle)
    dq = b.data_quality()
    data = load_data(TrainConfig.from_dict(b.config["train"]))
    props = properties_table((i, Path(p).read_bytes()) for i, p in enumerate(data.train.paths))
    flags = image_check_flags(props)
    expected = {data.train.ids[i] for i in np.flatnonzero(flags.any(axis=1))}
    assert set(dq.image_checks["id"]) == expected
    assert dq.summary["image_checks"] == {c: int(flags[c].sum()) for c in flags}


def darkened(data: bytes) -> bytes:
    """The planted condition: a photo darkened to a fifth and mostly desaturated."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    im = ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(0.2)).enhance(0.3)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


@needs_mini
@pytest.mark.skipif(not (DEMO_BUNDLE / "bundle.json").is_file(), reason="needs assets/demo-bundle")
def test_a_planted_slice_of_dark_dull_photos_comes_first():
    """food101-mini's test photos (every third), 15 % of them darkened and desaturated, answered by the demo's
    real model (ONNX, as the app serves it): the slice finder names darkness or dullness first."""
    from food101_core.serving.predictor import Predictor
    from food101_core.slice_finder import find_slices
    from food101_core.training.failures import SLICE_COLUMNS, exposure_free

    b = load_bundle(DEMO_BUNDLE)
    p = Predictor.from_bundle(b)
    rng = np.random.default_rng(0)
    ids, labels = b.test_ids[::3], b.test_labels[::3]
    planted = rng.random(len(ids)) < 0.15
    photos = []
    for image_id, dark in zip(ids, planted):
        data = (MINI / "images" / f"{image_id}.jpg").read_bytes()
        photos.append(darkened(data) if dark else data)
    correct = np.array([p.predict(p.read(d)).top[0][0] == b.class_ids[c] for d, c in zip(photos, labels)])
    table = exposure_free(properties_table(enumerate(photos), progress=False))
    table["dish"] = np.asarray(b.class_ids)[labels]
    found = find_slices(table[[c for c in SLICE_COLUMNS if c in table]], correct)
    print(f"planted: {correct[planted].mean():.0%} right vs {correct[~planted].mean():.0%}; first slices:",
          found[["name", "n", "accuracy", "p_value"]].head(3).to_dict("records"))  # fmt: skip
    assert len(found) and correct[planted].mean() < correct[~planted].mean()
    first = slice_mask(table, found["conditions"].iloc[0])
    assert {c["column"] for c in found["conditions"].iloc[0]} & {"brightness", "saturation"}
    assert planted[first].mean() > 0.8  # the photos it names are the planted ones
