"""Temperature scaling: fitted where the likelihood is highest, never changing an answer, and making confidences
honest on photos it was not fitted on; the calibration hold-out is photos training never saw."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import log_loss

from food101_core.calibration import LOW_CONFIDENCE, fit_report, fit_temperature, temper, warning_rate
from food101_core.config import TrainConfig
from food101_core.metrics import calibration, evaluate_probs
from food101_core.training.data import load_data


def under_confident(n: int, classes: int = 10, squash: float = 0.4, seed: int = 0):
    """Labels drawn from softmax(z), and a model that reports softmax(squash * z): right as often as it should be,
    but too unsure (as mixup and label smoothing make a model); the right temperature is `squash`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in softmax(z, axis=1)])
    return softmax(squash * z, axis=1), labels


def test_fitted_temperature_is_the_one_with_the_lowest_log_loss():
    probs, labels = under_confident(4000)
    t = fit_temperature(probs, labels)
    grid = np.geomspace(0.1, 3, 400)
    losses = [log_loss(labels, temper(probs, g), labels=range(10)) for g in grid]  # scikit-learn's NLL
    assert t == pytest.approx(grid[int(np.argmin(losses))], rel=0.02)
    assert t == pytest.approx(0.4, rel=0.08)  # the squash the model was made with
    assert log_loss(labels, temper(probs, t), labels=range(10)) <= min(losses) + 1e-6


def test_temperature_never_changes_an_answer_and_one_changes_nothing():
    probs, _ = under_confident(500)
    for t in (0.3, 1.0, 4.0):
        tempered = temper(probs, t)
        np.testing.assert_allclose(tempered.sum(1), 1, rtol=1e-5)
        np.testing.assert_array_equal(np.argsort(-tempered, 1)[:, :5], np.argsort(-probs, 1)[:, :5])
    np.testing.assert_allclose(temper(probs, 1.0), probs, rtol=1e-6)


def test_calibration_fitted_on_held_out_photos_lowers_ece_on_others():
    """Fitted on one sample, judged on another: ECE falls, and so does the share of "not sure" warnings of an
    under-confident model, while top-1 stays exactly the same."""
    held_out, held_labels = under_confident(3000, seed=1)
    test, test_labels = under_confident(3000, seed=2)
    report = fit_report(held_out, held_labels, "validation split")
    assert report["nll_after"] < report["nll_before"] and report["n"] == 3000
    classes = [f"c{i}" for i in range(10)]
    ev = evaluate_probs(test, test_labels, [str(i) for i in range(3000)], classes, report)
    raw = evaluate_probs(test, test_labels, [str(i) for i in range(3000)], classes)
    assert ev.metrics["top1"] == raw.metrics["top1"] and ev.temperature == report["temperature"]
    assert ev.metrics["ece_raw"] == pytest.approx(raw.metrics["ece"]) and raw.metrics["calibration"]["n"] == 0
    assert ev.metrics["ece"] < 0.5 * ev.metrics["ece_raw"], (ev.metrics["ece"], ev.metrics["ece_raw"])
    tempered = temper(test, report["temperature"])  # what is stored is what the metrics were computed from
    np.testing.assert_allclose(ev.probs, tempered, rtol=1e-5)
    conf = tempered.max(1)
    assert ev.metrics["ece"] == pytest.approx(calibration(conf, tempered.argmax(1) == test_labels)[0])
    assert ev.metrics["warning_rate"] == pytest.approx((conf < LOW_CONFIDENCE).mean())
    assert ev.metrics["warning_rate"] < ev.metrics["warning_rate_raw"] == warning_rate(test)


def test_calibration_hold_out_is_never_trained_on(tiny_food101):
    """With --val-fraction 0 a share of each class is held out of training for the temperature; with a
    validation split, that split is used and training keeps the rest."""
    cfg = TrainConfig(data=str(tiny_food101), val_fraction=0.0, calibration_fraction=0.2, weights="none")
    data = load_data(cfg)
    full = load_data(TrainConfig(data=str(tiny_food101), val_fraction=0.0, calibration_fraction=0.0))
    held = set(data.calibration.ids)
    assert held and not held & set(data.train.ids) and held | set(data.train.ids) == set(full.train.ids)
    assert set(data.calibration.labels) == set(range(data.num_classes))  # every class has some
    assert data.source["calibration"] == len(held) and data.val is None and full.calibration is None
    with_val = load_data(TrainConfig(data=str(tiny_food101), val_fraction=0.2))
    assert with_val.calibration is with_val.val
    assert len(with_val.train) + len(with_val.val) == len(full.train)  # no second hold-out beside validation


def test_a_bundle_from_before_calibration_is_not_recalibrated_on_photos_it_trained_on():
    """An older config (no calibration_fraction) reads as "off": re-evaluating it must not hold out, and fit on,
    photos that run trained on; a new run without validation gets the hold-out by default."""
    old = TrainConfig().to_dict()
    del old["calibration_fraction"]
    assert TrainConfig.from_dict({**old, "val_fraction": 0.0}).calibration_fraction == 0.0
    assert TrainConfig().calibration_fraction > 0
    same = TrainConfig(val_fraction=0.1)  # with validation the hold-out setting is unused: it renames no run
    assert same.recipe_hash() == TrainConfig(val_fraction=0.1, calibration_fraction=0.3).recipe_hash()
