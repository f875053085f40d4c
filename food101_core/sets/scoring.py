"""A set of photos predicted by the bundle's shipped model and measured against the test split.

The model is the one the app serves (ONNX Runtime, the bundle's temperature applied: calibration is measured on the
set, never refitted). Photos are decoded and resized on every core while the model runs batches.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from ..bundle import Bundle
from ..metrics import calibration
from ..serving.images import ImageError
from ..serving.predictor import Predictor
from .labels import LabelMatcher
from .uploads import Collected

BATCH = 32
MAX_MISTAKES = 40


def decode(predictor: Predictor, photo) -> np.ndarray | str:
    """One photo resized for the model (size x size x 3, uint8), or why it cannot be read."""
    try:
        return predictor.preprocess(predictor.read(photo.path))[0].astype(np.uint8)
    except ImageError as e:
        return str(e)
    except OSError as e:  # a file that vanished or cannot be read
        return f"could not be read ({e.__class__.__name__})"


def predict_photos(
    predictor: Predictor, photos: list, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """Probabilities (n x classes) and pooled features of every photo (NaN rows for those unreadable), and per photo
    None or the reason it was refused. Decoding runs on every core, a batch ahead of the model."""
    n, c = len(photos), len(predictor.class_ids)
    probs = np.full((n, c), np.nan, np.float32)
    feats: np.ndarray | None = None
    why: list[str | None] = [None] * n
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        decoded = pool.map(lambda p: decode(predictor, p), photos)  # lazily, in order, ahead of the model
        batch, where = [], []
        for i, x in enumerate(decoded):
            if isinstance(x, str):
                why[i] = x
            else:
                batch.append(x)
                where.append(i)
            if len(batch) == BATCH or (i == n - 1 and batch):
                p, f = predictor.predict_batch(np.stack(batch))
                probs[where] = p
                if f is not None:
                    feats = np.full((n, f.shape[1]), np.nan, np.float32) if feats is None else feats
                    feats[where] = f
                batch, where = [], []
            if progress:
                progress(i + 1, n)
    return probs, feats, why


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """The difference of two independent proportions k1/n1 - k2/n2 and its 95 % interval (Newcombe's hybrid score
    interval, from each proportion's Wilson interval)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = binomtest(k1, n1).proportion_ci(method="wilson")
    l2, u2 = binomtest(k2, n2).proportion_ci(method="wilson")
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def predictions_table(b: Bundle, collected: Collected, probs: np.ndarray, why: list[str | None]) -> pd.DataFrame:
    """One row per photo: its name, the label given, the dish it matched (or why it is not scored), the answer."""
    match = LabelMatcher(b.class_ids, b.class_names)
    rows = []
    for photo, p, reason in zip(collected.photos, probs, why):
        true = match(photo.label)
        row = {"file": photo.name, "label": photo.label or "", "true": true or ""}
        if reason:
            row.update(status="refused", reason=reason)
        else:
            order = np.argsort(-p)[:5]
            row.update({f"top{k + 1}": b.class_ids[j] for k, j in enumerate(order)})
            row.update({f"p{k + 1}": float(p[j]) for k, j in enumerate(order)})
            row.update(pred=b.class_ids[order[0]], confidence=float(p[order[0]]))
            if true:
                row.update(status="scored", reason="", correct=bool(order[0] == b.class_ids.index(true)))
            else:
                unknown = f"the label {photo.label!r} is not one of the model's dishes"
                row.update(status="predicted only", reason=unknown if photo.label else "no label")
        rows.append(row)
    return pd.DataFrame(rows)


def summary(b: Bundle, table: pd.DataFrame, collected: Collected, unfamiliar: np.ndarray | None) -> dict:
    """The set against the test split, as `/evaluate_set` answers it."""
    test = b.evaluation()
    scored = table[table["status"] == "scored"] if len(table) else table
    n = len(scored)
    out = {"n_files": len(collected.photos) + len(collected.refused), "scored": n}
    if n:
        correct = scored["correct"].astype(bool).to_numpy()
        in_top5 = scored.apply(lambda r: r["true"] in {r[f"top{k}"] for k in range(1, 6) if f"top{k}" in r}, axis=1)
        ece, bins = calibration(scored["confidence"].to_numpy(np.float64), correct)
        k_test, n_test = round(test.metrics["top1"] * test.metrics["n"]), test.metrics["n"]
        d, low, high = newcombe(int(correct.sum()), n, int(k_test), int(n_test))
        out.update(top1=float(correct.mean()), top5=float(in_top5.mean()), ece=ece, reliability=bins)
        out["difference"] = {"top1": d, "low": low, "high": high}
    else:
        out.update(top1=None, top5=None, ece=None, reliability=[], difference=None)
    out["test_top1"] = float(test.metrics["top1"])
    out["per_class"] = per_class(b, scored)
    predicted = table[table["status"] != "refused"] if len(table) else table
    unknown = predicted[(predicted["status"] == "predicted only") & (predicted["label"] != "")] if len(table) else table
    out["unknown_labels"] = dict(Counter(unknown["label"])) if len(unknown) else {}
    out["unlabelled"] = int((predicted["label"] == "").sum()) if len(predicted) else 0
    out["refused"] = collected.refused + [
        {"file": r.file, "reason": r.reason} for r in table.itertuples() if r.status == "refused"
    ]
    out["unfamiliar_share"] = None if unfamiliar is None or not len(predicted) else float(np.mean(unfamiliar))
    out["slices"] = []  # the slice finder runs with the training side's packages; not yet on a set (see docs)
    return out


def per_class(b: Bundle, scored: pd.DataFrame) -> list[dict]:
    """Each dish of the set: its photos, top-1 on them, and the test split's top-1 (recall) of that dish; the dishes
    that dropped most first."""
    if not len(scored):
        return []
    test_recall = dict(zip(b.evaluation().per_class["class"], b.evaluation().per_class["recall"]))
    rows = [
        {"id": cid, "name": b.name_of[cid], "n": len(g), "top1": float(g["correct"].astype(bool).mean()),
         "test_top1": float(test_recall.get(cid, float("nan")))}
        for cid, g in scored.groupby("true")
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (r["top1"] - r["test_top1"], -r["n"]))


def score_set(
    b: Bundle, predictor: Predictor, collected: Collected, progress: Callable[[int, int], None] | None = None
) -> tuple[pd.DataFrame, dict]:
    """Every photo of the set predicted by `predictor` (the bundle's shipped stage), and the summary."""
    probs, feats, why = predict_photos(predictor, collected.photos, progress)
    table = predictions_table(b, collected, probs, why)
    unfamiliar = None
    emb = b.embedding(b.stages[-1])
    if emb is not None and feats is not None:
        ok = np.array([w is None for w in why], bool)
        if ok.any():
            y, r = emb.project(feats[ok])
            unfamiliar = emb.unfamiliarity(y, r) > emb.threshold
            table.loc[ok, "unfamiliar"] = unfamiliar
    return table, summary(b, table, collected, unfamiliar)


def most_confident_mistakes(table: pd.DataFrame, k: int = MAX_MISTAKES) -> pd.DataFrame:
    """The set's scored photos the model got wrong, the surest first."""
    if not len(table) or "correct" not in table:
        return table.head(0)
    wrong = table[(table["status"] == "scored") & ~table["correct"].fillna(True).astype(bool)]
    return wrong.sort_values("confidence", ascending=False).head(k)
