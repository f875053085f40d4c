"""Evaluation numbers against scikit-learn and pandas computed independently, and calibration by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import lopsided_model, tiny_config
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    top_k_accuracy_score,
)

from food101_core.metrics import calibration, evaluate_probs, most_confident_mistakes
from food101_core.training.data import load_data, make_dataset
from food101_core.training.predictions import predict
from food101_core.training.thumbnails import thumbnail_jpeg


def random_probs(n=400, c=7, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), labels] += rng.uniform(0, 3, n)  # better than chance, not perfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs.astype(np.float32), labels


def test_metrics_equal_scikit_learn():
    probs, y = random_probs()
    classes = [f"dish_{i}" for i in range(7)]
    ev = evaluate_probs(probs, y, [f"id{i}" for i in range(len(y))], classes)
    pred = probs.argmax(1)
    assert ev.metrics["top1"] == accuracy_score(y, pred)
    assert abs(ev.metrics["top5"] - top_k_accuracy_score(y, probs, k=5, labels=range(7))) < 1e-12
    report = classification_report(y, pred, labels=range(7), target_names=classes, output_dict=True, zero_division=0)
    for row in ev.per_class.itertuples():
        r = report[row._1]  # the 'class' column
        assert np.isclose(row.precision, r["precision"]) and np.isclose(row.recall, r["recall"])
        assert np.isclose(row.f1, r["f1-score"]) and row.support == r["support"]
    assert np.isclose(ev.metrics["macro_f1"], report["macro avg"]["f1-score"])
    np.testing.assert_array_equal(ev.confusion, confusion_matrix(y, pred))
    assert ev.confusion.sum() == len(y) and np.trace(ev.confusion) == (pred == y).sum()


def test_predictions_table_and_most_confident_mistakes():
    probs, y = random_probs(50, 6, seed=2)
    classes = list("abcdef")
    ev = evaluate_probs(probs, y, [f"x/{i}" for i in range(50)], classes)
    p = ev.predictions
    assert list(p["index"]) == list(range(50)) and p.loc[7, "id"] == "x/7"
    for i in (0, 13, 49):
        order = np.argsort(-probs[i])[:5]
        assert list(p.loc[i, ["top1", "top2", "top3", "top4", "top5"]]) == [classes[k] for k in order]
        np.testing.assert_allclose(p.loc[i, ["p1", "p2", "p3", "p4", "p5"]].astype(float), probs[i, order], rtol=1e-6)
    mistakes = most_confident_mistakes(p)
    independent = pd.DataFrame({"conf": probs.max(1), "wrong": probs.argmax(1) != y})
    expected = independent[independent.wrong].sort_values("conf", ascending=False).index.tolist()
    assert mistakes["index"].tolist() == expected
    assert most_confident_mistakes(p, 3)["confidence"].is_monotonic_decreasing


def test_expected_calibration_error_by_hand():
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False, True, False])
    ece, bins = calibration(conf, correct, n_bins=10)
    # bin (0.9, 1.0]: accuracy 0.75 vs confidence 0.95; bin (0.5, 0.6]: 0.5 vs 0.55
    assert np.isclose(ece, 4 / 6 * 0.20 + 2 / 6 * 0.05)
    counts = {round(b["hi"], 1): b["count"] for b in bins if b["count"]}
    assert counts == {1.0: 4, 0.6: 2} and sum(b["count"] for b in bins) == 6
    perfect, _ = calibration(np.ones(5), np.ones(5, bool))
    assert perfect == 0.0


def test_thumbnails_are_small_upright_rgb_jpegs(tmp_path):
    import io

    from PIL import Image

    im = Image.new("RGBA", (600, 300), (10, 200, 30, 128))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", exif=exif)
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(buf.getvalue())))
    assert thumb.format == "JPEG" and thumb.mode == "RGB"
    assert max(thumb.size) <= 128 and thumb.size[1] > thumb.size[0]  # EXIF rotation applied


@pytest.mark.parametrize("tta", [False, True])
def test_evaluation_averages_each_photo_with_its_mirror_when_asked(tiny_food101, tmp_path, tta):
    """--tta-flip: each test photo's answer is the mean of the model's answers for it and its mirror, in order."""
    cfg = tiny_config(tiny_food101, tmp_path, tta_flip=tta, batch_size=4)  # 18 photos: batches of 4, 4, 4, 4, 2
    data = load_data(cfg)
    model = lopsided_model(cfg.image_size, data.num_classes)
    x = np.concatenate(list(make_dataset(data.test, data.num_classes, cfg, training=False, with_labels=False)))
    plain, mirrored = model.predict(x, verbose=0), model.predict(x[:, :, ::-1], verbose=0)  # independently
    assert np.abs(plain - mirrored).max() > 1e-4
    expected = (plain + mirrored) / 2 if tta else plain
    np.testing.assert_allclose(predict(model, data.test, data.num_classes, cfg), expected, atol=1e-6)
