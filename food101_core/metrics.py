"""Metrics of a model on the test split from its probabilities alone: pure numpy, pandas and scikit-learn.

`Evaluation` is what the bundle stores per stage; nothing here runs a model or touches a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .calibration import NOT_CALIBRATED, temper, warning_rate

CALIBRATION_BINS = 15


@dataclass
class Evaluation:
    """One model's results on the test split."""

    probs: np.ndarray  # (n, classes) float, calibrated (the temperature applied): what the app shows
    predictions: pd.DataFrame  # one row per test image, in test order
    per_class: pd.DataFrame  # precision, recall, f1, support per class
    confusion: np.ndarray  # (classes, classes): rows true, columns predicted
    metrics: dict  # top1, top5, ece, macro averages, reliability bins, calibration (temperature, raw ECE)

    @property
    def temperature(self) -> float:
        return float(self.metrics.get("calibration", NOT_CALIBRATED)["temperature"])


def evaluate_probs(
    raw: np.ndarray, labels: np.ndarray, ids: list[str], class_ids: list[str], calibrated: dict | None = None
) -> Evaluation:
    """All metrics from the model's probabilities, scikit-learn for the per-class numbers.

    `calibrated`: a `calibration.fit_report` (its temperature is applied to `raw` before anything is computed);
    the raw probabilities' ECE and warning rate are kept beside the calibrated ones.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # training side only

    calibrated = calibrated or NOT_CALIBRATED
    probs = temper(raw, calibrated["temperature"])
    n, c = probs.shape
    labels = np.asarray(labels)
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, : min(5, c)]
    pred = top5[:, 0]
    conf = probs[np.arange(n), pred]
    correct = pred == labels
    names = np.array(class_ids)
    predictions = pd.DataFrame(
        {
            "index": np.arange(n),
            "id": ids,
            "true": names[labels],
            "pred": names[pred],
            "confidence": conf.astype(np.float32),
            "correct": correct,
        }
    )
    for k in range(top5.shape[1]):
        predictions[f"top{k + 1}"] = names[top5[:, k]]
        predictions[f"p{k + 1}"] = probs[np.arange(n), top5[:, k]].astype(np.float32)
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=np.arange(c), zero_division=0)
    per_class = pd.DataFrame({"class": class_ids, "precision": p, "recall": r, "f1": f, "support": s})
    ece, bins = calibration(conf, correct)
    metrics = {
        "n": int(n),
        "top1": float(correct.mean()),
        "top5": float((top5 == labels[:, None]).any(axis=1).mean()),
        "macro_precision": float(p.mean()),
        "macro_recall": float(r.mean()),
        "macro_f1": float(f.mean()),
        "ece": ece,
        "reliability": bins,
        "warning_rate": warning_rate(probs),
        "mean_confidence": float(conf.mean()) if n else 0.0,
        "calibration": calibrated,
    }
    raw_conf = np.asarray(raw, np.float32)[np.arange(n), pred]
    metrics["ece_raw"], metrics["reliability_raw"] = calibration(raw_conf, correct)
    metrics["warning_rate_raw"] = warning_rate(raw)
    cm = confusion_matrix(labels, pred, labels=np.arange(c))
    return Evaluation(probs, predictions, per_class, cm, metrics)


def calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int = CALIBRATION_BINS) -> tuple[float, list]:
    """Expected calibration error (Guo et al. 2017) and its reliability bins over (0, 1]."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = which == b
        count = int(m.sum())
        acc = float(correct[m].mean()) if count else None
        mean_conf = float(confidence[m].mean()) if count else None
        if count:
            ece += count / len(confidence) * abs(acc - mean_conf)
        bins.append(
            {"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count, "accuracy": acc, "confidence": mean_conf}
        )
    return float(ece), bins


def most_confident_mistakes(predictions: pd.DataFrame, k: int | None = None, per_class: int | None = None
                            ) -> pd.DataFrame:  # fmt: skip
    """The mistakes, most confident first: all, the first `k`, or the first `per_class` of each true dish."""
    mistakes = predictions[~predictions["correct"].astype(bool)].sort_values(
        "confidence", ascending=False, kind="stable"
    )
    if per_class is not None:
        mistakes = mistakes.groupby("true", sort=False).head(per_class)
    return mistakes if k is None else mistakes.head(k)


def first_screen_photos(predictions: pd.DataFrame, right_per_class: int) -> set[int]:
    """The test photos the first screen (Predict's examples) picks among, by index: of each true dish, the most
    confident mistake and the first `right_per_class` right answers. Evaluation packs their thumbnails first."""
    right = predictions[predictions["correct"].astype(bool)].groupby("true", sort=False).head(right_per_class)
    return set(most_confident_mistakes(predictions, per_class=1)["index"].astype(int)) | set(right["index"].astype(int))
