"""Evaluation of a model on the test split: everything the app shows, computed once and stored.

`python -m food101_core.evaluate RUN [--data PATH]` re-evaluates an existing bundle (e.g. after moving the
data, or to add files a newer version writes) and rewrites it atomically.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

if TYPE_CHECKING:
    import keras

    from .config import TrainConfig
    from .data import Split

THUMB_SIZE = 128
CALIBRATION_BINS = 15


@dataclass
class Evaluation:
    """One model's results on the test split."""

    probs: np.ndarray  # (n, classes) float
    predictions: pd.DataFrame  # one row per test image, in test order
    per_class: pd.DataFrame  # precision, recall, f1, support per class
    confusion: np.ndarray  # (classes, classes): rows true, columns predicted
    metrics: dict  # top1, top5, ece, macro averages, reliability bins


def evaluate_probs(probs: np.ndarray, labels: np.ndarray, ids: list[str], class_ids: list[str]) -> Evaluation:
    """All metrics from a probability matrix; scikit-learn for the per-class numbers."""
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
    }
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


def most_confident_mistakes(predictions: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    mistakes = predictions[~predictions["correct"]].sort_values("confidence", ascending=False, kind="stable")
    return mistakes if k is None else mistakes.head(k)


def predict(model: keras.Model, split: Split, num_classes: int, cfg: TrainConfig) -> np.ndarray:
    """Class probabilities for a split, in order; with `tta_flip`, averaged with the mirrored image."""
    from .data import make_dataset
    from .inference import mirror_averaged

    ds = make_dataset(split, num_classes, cfg, training=False, with_labels=False)
    served = mirror_averaged(model) if cfg.tta_flip else model
    return served.predict(ds, verbose=1).astype(np.float32)


def thumbnail_jpeg(data: bytes, size: int = THUMB_SIZE) -> bytes:
    """A small JPEG (longer side <= size), upright and RGB, from any image PIL reads."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=85, optimize=True)
        return out.getvalue()


def thumbnail_indices(evals: dict[str, Evaluation], labels: np.ndarray, per_class: int) -> list[int]:
    """Every image some stage gets wrong, and the first `per_class` that the last stage gets right."""
    wrong = set()
    for ev in evals.values():
        wrong |= set(np.flatnonzero(~ev.predictions["correct"].to_numpy()).tolist())
    last = list(evals.values())[-1].predictions["correct"].to_numpy()
    right = []
    for c in np.unique(labels):
        right += np.flatnonzero((labels == c) & last)[:per_class].tolist()
    return sorted(wrong | set(right))


def make_thumbnails(split: Split, indices: list[int]) -> dict[int, bytes]:
    """Thumbnails of the test images at `indices`, read from files or from the TFDS split."""
    from tqdm.auto import tqdm

    wanted = set(indices)
    out: dict[int, bytes] = {}
    if split.paths is not None:
        source = ((i, Path(split.paths[i]).read_bytes()) for i in sorted(wanted))
    else:
        source = ((i, b) for i, b in enumerate(split.encoded().as_numpy_iterator()) if i in wanted)
    for i, data in tqdm(source, total=len(wanted), desc="thumbnails", leave=False):
        try:
            out[i] = thumbnail_jpeg(data)
        except Exception as e:  # one bad image must not lose the bundle
            logging.getLogger(__name__).warning("no thumbnail for test image %d: %s", i, e)
    return out


def evaluate_models(
    models: dict[str, keras.Model], data, cfg: TrainConfig
) -> tuple[dict[str, Evaluation], dict[int, bytes]]:
    """Evaluate every stage's model on the test split and make the thumbnails the app needs."""
    evals = {}
    for stage, model in models.items():
        probs = predict(model, data.test, data.num_classes, cfg)
        evals[stage] = evaluate_probs(probs, data.test.labels, data.test.ids, data.class_ids)
        m = evals[stage].metrics
        print(f"{stage}: top-1 {m['top1']:.2%}  top-5 {m['top5']:.2%}  ECE {m['ece']:.3f}  (n={m['n']})")
    idx = thumbnail_indices(evals, data.test.labels, cfg.thumbs_correct_per_class)
    return evals, make_thumbnails(data.test, idx)


def main(argv: list[str] | None = None) -> int:
    """Re-evaluate an existing bundle's models on its test split and rewrite the bundle atomically."""
    from .bundle import BundleError, load_bundle, write_bundle
    from .config import TrainConfig
    from .data import DataError, load_data

    ap = argparse.ArgumentParser(prog="python -m food101_core.evaluate", description=main.__doc__)
    ap.add_argument("run", help="bundle folder or Hugging Face Hub repo id")
    ap.add_argument("--data", help="where the data set is now (default: where it was at training)")
    ap.add_argument("--out", help="write the re-evaluated bundle here (default: in place)")
    args = ap.parse_args(argv)
    try:
        bundle = load_bundle(args.run)
        cfg = TrainConfig.from_dict(bundle.config["train"])
        if args.data:
            cfg.data = args.data
        data = load_data(cfg)
        if data.test.ids != bundle.test_ids:
            raise DataError(
                f"{cfg.data}: its test split is not the one this bundle was evaluated on "
                f"({len(data.test.ids)} vs {len(bundle.test_ids)} images, or other ids)"
            )
        models = {stage: bundle.model(stage) for stage in bundle.stages}
        evals, thumbs = evaluate_models(models, data, cfg)
        dest = Path(args.out) if args.out else bundle.path
        write_bundle(
            dest,
            cfg=cfg,
            data=data,
            model_files={s: bundle.path / f"models/{s}.keras" for s in models},
            history=bundle.history,
            evals=evals,
            thumbs=thumbs,
            extra=bundle.config.get("timings", {}),
            overwrite=True,
        )
    except (BundleError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"re-evaluated bundle written to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
