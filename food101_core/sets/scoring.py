"""A set of photos predicted by the bundle's shipped model and measured against the test split.

The model is the one the app serves (ONNX Runtime, the bundle's temperature applied: calibration is measured on the
set, never refitted). Photos are decoded and resized on every core while the model runs batches. What comes out is
what the bundle keeps of a set (`bundle.SetResults`): every file accounted for, the evaluation of its scored photos
(the same metrics as a stage's on the test split), its photo properties and failure slices (the same finder), its
place on the map (the bundle's PCA; map coordinates from its nearest test photos) and its mistakes' thumbnails.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from ..bundle import Bundle, SetResults, check_set_name, set_split
from ..embedding import Embedding
from ..image_props import exposure_free, measure_files
from ..labels import LabelMatcher
from ..metrics import Evaluation, evaluate_probs
from ..metrics import most_confident_mistakes as mistakes_of
from ..photos import thumbnail_jpeg
from ..serving.images import ImageError
from ..serving.predictor import Predictor
from ..slice_finder import SLICE_COLUMNS, find_slices
from .uploads import Collected

BATCH = 32
MAX_MISTAKES = 40  # thumbnails kept of each dish's most confident mistakes (as the test split's), and
RIGHT_PER_DISH = 3  # of its right answers
MAP_NEIGHBOURS = 10  # test photos whose map places average into a set photo's


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
    """Raw probabilities (n x classes, no temperature) and pooled features of every photo (NaN rows for those
    unreadable), and per photo None or the reason it was refused. Decoding runs on every core, a batch ahead of the
    model."""
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
                p, f = predictor.predict_batch(np.stack(batch), calibrated=False)
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


def summary(b: Bundle, table: pd.DataFrame, collected: Collected, ev: Evaluation, unfamiliar: np.ndarray | None,
            slices: pd.DataFrame | None = None) -> dict:  # fmt: skip
    """The set against the test split, as `/evaluate_set` answers it; top-1, top-5 and ECE are its evaluation's."""
    test = b.evaluation()
    scored = table[table["status"] == "scored"] if len(table) else table
    n = len(scored)
    out = {"n_files": len(collected.photos) + len(collected.refused), "scored": n}
    if n:
        m = ev.metrics
        k_test, n_test = round(test.metrics["top1"] * test.metrics["n"]), test.metrics["n"]
        d, low, high = newcombe(int(ev.predictions["correct"].astype(bool).sum()), n, int(k_test), int(n_test))
        out.update(top1=m["top1"], top5=m["top5"], ece=m["ece"], reliability=m["reliability"])
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
    out["slices"] = slice_records(slices)
    return out


def slice_records(found: pd.DataFrame | None) -> list[dict]:
    """The slices as `/slices` answers them: name, conditions, n, accuracy, overall, p_value."""
    if found is None or not len(found):
        return []
    keep = ["name", "conditions", "n", "accuracy", "overall", "p_value"]
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in found[keep].to_dict("records")]


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
    b: Bundle,
    predictor: Predictor,
    collected: Collected,
    progress: Callable[[int, int], None] | None = None,
    name: str = "your-photos",
) -> SetResults:
    """Every photo of the set predicted by `predictor` (the bundle's shipped stage) and measured: what the bundle keeps
    of a set, its summary against the test split included."""
    check_set_name(name)
    raw, feats, why = predict_photos(predictor, collected.photos, progress)
    temperature = b.evaluation().temperature
    table = predictions_table(b, collected, temper_rows(raw, temperature), why)
    scored = np.flatnonzero((table["status"] == "scored").to_numpy()) if len(table) else np.zeros(0, int)
    ev = set_evaluation(b, table, raw, scored)
    emb, unfamiliar = place(b, table, feats, why, scored)
    props = set_properties(collected, table, scored, emb)
    found = find_slices(props[[c for c in SLICE_COLUMNS if c in props]], ev.predictions["correct"].to_numpy(bool)) \
        if len(scored) else None  # fmt: skip
    return SetResults(
        name=name, files=table, evaluation=ev, summary=summary(b, table, collected, ev, unfamiliar, found),
        properties=props, slices=found, embedding=emb, photos=set_photos(name, collected, ev),
    )  # fmt: skip


def temper_rows(raw: np.ndarray, temperature: float) -> np.ndarray:
    """The bundle's temperature applied row by row (NaN rows, refused photos, stay NaN)."""
    from ..calibration import temper

    out = raw.copy()
    ok = ~np.isnan(raw).any(axis=1)
    if ok.any():
        out[ok] = temper(raw[ok], temperature)
    return out


def set_evaluation(b: Bundle, table: pd.DataFrame, raw: np.ndarray, scored: np.ndarray) -> Evaluation:
    """The scored photos' evaluation, as a stage's on the test split (`metrics.evaluate_probs`), with the bundle's
    temperature: its calibration measured on the set, not refitted. `id` is each photo's file name."""
    labels = np.array([b.class_ids.index(t) for t in table["true"].iloc[scored]], int)
    ids = table["file"].iloc[scored].astype(str).tolist()
    c = b.num_classes
    raw_scored = raw[scored] if len(scored) else np.zeros((0, c), np.float32)
    return evaluate_probs(raw_scored, labels, ids, b.class_ids, calibrated=b.evaluation().metrics.get("calibration"))


def place(b: Bundle, table: pd.DataFrame, feats: np.ndarray | None, why: list, scored: np.ndarray
          ) -> tuple[Embedding | None, np.ndarray | None]:  # fmt: skip
    """The scored photos in the shipped stage's feature space (its PCA) and on its map (each at the mean place of
    its nearest test photos, by distance in that space: the bundle keeps the map, not UMAP's model), and the
    unfamiliar flag of every predicted photo (also in `table`)."""
    emb = b.embedding(b.final_stage)
    if emb is None or feats is None:
        return None, None
    ok = np.array([w is None for w in why], bool)
    if not ok.any():
        return None, None
    y, r = emb.project(feats[ok])
    unfamiliar = emb.unfamiliarity(y, r) > emb.threshold
    table.loc[ok, "unfamiliar"] = unfamiliar
    rows = np.flatnonzero(ok)
    pick = np.searchsorted(rows, scored)
    ys, rs = y[pick], r[pick]
    return dataclasses.replace(emb, test=ys, test_resid=rs, xy=map_places(emb, ys, rs)), unfamiliar


def map_places(emb: Embedding, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Map coordinates of new photos: the inverse-distance mean of their `MAP_NEIGHBOURS` nearest test photos'."""
    if not len(y):
        return np.zeros((0, 2), np.float32)
    out = np.empty((len(y), 2), np.float32)
    k = min(MAP_NEIGHBOURS, len(emb.test))
    for start in range(0, len(y), 256):  # distances to every test photo, a block at a time
        part = slice(start, start + 256)
        d2 = (np.square(y[part]).sum(1)[:, None] + np.square(emb.test).sum(1)[None] - 2 * y[part] @ emb.test.T
              + (r[part][:, None] - emb.test_resid[None]) ** 2)  # fmt: skip
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]
        w = 1 / (np.sqrt(np.maximum(np.take_along_axis(d2, near, 1), 0)) + 1e-6)
        out[part] = (w[..., None] * emb.xy[near]).sum(1) / w.sum(1, keepdims=True)
    return out


def set_properties(collected: Collected, table: pd.DataFrame, scored: np.ndarray, emb: Embedding | None
                   ) -> pd.DataFrame:  # fmt: skip
    """The scored photos' properties (as the test split's: `image_props`, the dish, the unfamiliar score)."""
    files = [(i, str(collected.photos[j].path)) for i, j in enumerate(scored)]
    props = exposure_free(measure_files(files)) if files else pd.DataFrame({"index": []})
    props.insert(1, "id", table["file"].iloc[scored].astype(str).to_numpy())
    props.insert(2, "dish", table["true"].iloc[scored].to_numpy())
    if emb is not None:
        props["unfamiliar"] = emb.unfamiliarity(emb.test, emb.test_resid).astype(np.float32)
    return props


def set_photos(name: str, collected: Collected, ev: Evaluation) -> dict:
    """Thumbnails the bundle keeps of a set: each dish's most confident mistakes and a few right answers."""
    p = ev.predictions
    keep = set(mistakes_of(p, per_class=MAX_MISTAKES)["index"].astype(int))
    keep |= set(p[p["correct"].astype(bool)].groupby("true", sort=False).head(RIGHT_PER_DISH)["index"].astype(int))
    by_name = {ph.name: ph.path for ph in collected.photos}
    out = {}
    for i in sorted(keep):
        image_id = str(p["id"].iloc[i])
        try:
            out[(set_split(name), image_id)] = thumbnail_jpeg(by_name[image_id].read_bytes())
        except (OSError, ValueError, KeyError):  # decoded for the model, so this is rare: the photo goes unpictured
            continue
    return out


def most_confident_mistakes(table: pd.DataFrame, k: int = MAX_MISTAKES) -> pd.DataFrame:
    """The set's scored photos the model got wrong, the surest first."""
    if not len(table) or "correct" not in table:
        return table.head(0)
    wrong = table[(table["status"] == "scored") & ~table["correct"].fillna(True).astype(bool)]
    return wrong.sort_values("confidence", ascending=False).head(k)
