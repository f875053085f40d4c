"""What the app's tabs show besides figures, computed from a bundle: tables, galleries, captions. No UI code."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..backbones import BACKBONES
from ..bundle import Bundle
from ..config import TrainConfig
from ..metrics import most_confident_mistakes

if TYPE_CHECKING:
    from ..serving.predictor import Predictor

# Published top-1 on all 101 Food-101 classes: short names for the results table, and what they are.
REFERENCE = {"reference": 0.8066, "DeepFood": 0.774}
REFERENCE_NOTE = (
    "*reference*: the two-stage EfficientNetB0 recipe this project implements (`python train.py`); "
    "*DeepFood*: Liu et al. 2016. Both on all 101 classes. F1: the mean over classes; ECE: expected calibration error."
)


def most_confused_pairs(b: Bundle, stage: str, k: int = 20) -> pd.DataFrame:
    cm = b.evaluation(stage).confusion
    support = cm.sum(axis=1)
    off = cm.astype(float).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    rows = []
    for t, p in zip(*np.unravel_index(flat, cm.shape)):
        if off[t, p] == 0:
            break
        rows.append(
            {
                "true": b.class_names[t],
                "predicted": b.class_names[p],
                "images": int(cm[t, p]),
                "% of true class": round(100 * cm[t, p] / max(support[t], 1), 1),
            }
        )
    return pd.DataFrame(rows, columns=["true", "predicted", "images", "% of true class"])


def pair_examples(b: Bundle, stage: str, true_name: str, pred_name: str) -> tuple[list, int]:
    """Thumbnails (path, caption) of test images of one (true, predicted) cell, most confident first."""
    p = b.evaluation(stage).predictions
    cell = p[(p["true"] == b.id_of.get(true_name)) & (p["pred"] == b.id_of.get(pred_name))]
    cell = cell.sort_values("confidence", ascending=False)
    items = [
        (str(b.thumb(r.index)), f"{r.confidence:.0%} · {r.id}")
        for r in cell.itertuples()
        if b.thumb(r.index) is not None
    ]
    return items, len(cell)


def per_class_table(b: Bundle, stage: str) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, with the change in F1 since stage 1."""
    ev = b.evaluation(stage).per_class
    df = pd.DataFrame(
        {
            "class": b.class_names,
            "precision": ev["precision"],
            "recall": ev["recall"],
            "f1": ev["f1"],
            "support": ev["support"],
        }
    )
    if "stage1" in b.stages and stage != "stage1":
        df["f1 change vs stage 1"] = ev["f1"] - b.evaluation("stage1").per_class["f1"]
    return df.round(4).sort_values("f1", kind="stable").reset_index(drop=True)


def mistakes_table(
    b: Bundle, stage: str, true_name: str | None, pred_name: str | None, min_confidence: float
) -> pd.DataFrame:
    """The most confident mistakes, filtered; index refers to the test image."""
    m = most_confident_mistakes(b.evaluation(stage).predictions)
    m = m[m["confidence"] >= min_confidence]
    if true_name:
        m = m[m["true"] == b.id_of.get(true_name)]
    if pred_name:
        m = m[m["pred"] == b.id_of.get(pred_name)]
    return m.assign(true_name=m["true"].map(b.name_of), pred_name=m["pred"].map(b.name_of))


def top5_of(b: Bundle, stage: str, index: int) -> dict[str, float]:
    row = b.evaluation(stage).predictions.iloc[int(index)]
    return {b.name_of.get(row[f"top{k}"], row[f"top{k}"]): float(row[f"p{k}"]) for k in range(1, 6) if f"top{k}" in row}


def recipe_extras(cfg: TrainConfig) -> list[str]:
    """The optional parts of a run's recipe, as words (a setting an older bundle lacks reads as its default: off)."""
    extras = [f"stage-2 learning rate {cfg.stage2_lr:g}"] if cfg.stage2_lr else []
    extras += [f"top {cfg.unfreeze_blocks} blocks unfrozen"] if cfg.unfreeze_blocks else []
    extras += [f"{cfg.stage2_schedule} schedule"] if cfg.stage2_schedule != "constant" else []
    extras += ["augmentation"] if cfg.augment else []
    extras += [f"label smoothing {cfg.label_smoothing:g}"] if cfg.label_smoothing else []
    extras += [f"mixup {cfg.mixup:g}"] if cfg.mixup else []
    extras += [f"weight EMA {cfg.ema_momentum:g}"] if cfg.ema_momentum else []
    extras += [f"gradient clipping {cfg.clipnorm:g}"] if cfg.clipnorm else []
    extras += ["test-time flip"] if cfg.tta_flip else []
    extras += ["last epoch of each stage kept"] if cfg.keep_epoch == "last" else []
    return extras


def summary_line(b: Bundle) -> str:
    """One line for the top of the page: what model, on what, and how good."""
    cfg, last = b.train_config, b.stages[-1]
    m = b.evaluation(last).metrics
    return (
        f"**{BACKBONES[cfg.backbone].builder}** on {b.num_classes} dishes · top-1 **{m['top1']:.1%}**, "
        f"top-5 {m['top5']:.1%} on {m['n']:,} test photos"
    )


def results_table(b: Bundle) -> str:
    """Each stage's test metrics beside the published reference numbers, as a short Markdown table (fits a phone)."""
    lines = ["| | top-1 | top-5 | F1 | ECE |", "|---|---|---|---|---|"]
    for stage in b.stages:
        m = b.evaluation(stage).metrics  # the raw ECE is in the calibration line and the Calibration tab
        cells = [f"{m['top1']:.2%}", f"{m['top5']:.2%}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}"]
        lines.append(f"| {stage.replace('stage', 'stage ')} | {' | '.join(cells)} |")
    lines += [f"| {name} | {acc:.2%} | – | – | – |" for name, acc in REFERENCE.items()]
    return "\n".join(lines) + "\n\n" + REFERENCE_NOTE


def polish_words(cfg: TrainConfig) -> str:
    return f" + {cfg.polish_epochs} epochs polish at {cfg.final_size} px" if cfg.polish_epochs > 0 else ""


def calibration_words(b: Bundle) -> str:
    """How the shipped model's confidences were calibrated, with the ECE and warning rate before and after."""
    m = b.evaluation().metrics
    c = m.get("calibration") or {}
    if not c.get("fitted_on"):
        return "none (no held-out training photos: the confidences are the model's own)"
    return (
        f"temperature {c['temperature']:.2f} fitted on the {c['fitted_on']} ({c['n']:,} photos); ECE "
        f"{m['ece_raw']:.3f} → {m['ece']:.3f}, low-confidence warnings {m['warning_rate_raw']:.0%} → "
        f"{m['warning_rate']:.0%} of test photos"
    )


def summary_details(b: Bundle) -> str:
    """The run's recipe and data in words, for the details under the summary line."""
    cfg, data = b.train_config, b.data_source
    n = b.num_classes
    scope = "all 101 Food-101 classes" if n == 101 else f"{n} classes ({', '.join(b.class_names[:10])}"
    scope += "" if n == 101 else (", …)" if n > 10 else ")")
    weights = cfg.weights if cfg.weights in {"imagenet", "none"} else "ImageNet (local file)"
    note = (
        ""
        if n == 101
        else (
            f"\n\n*The reference numbers are for all 101 classes; this run covers {n}, so the numbers are not "
            "directly comparable. The full recipe is `python train.py` (EfficientNetB0, Food-101, 15 + 10 epochs) "
            "on a machine with internet and a GPU.*"
        )
    )
    recipe = ", ".join([f"{cfg.image_size} px", *recipe_extras(cfg)])
    return (
        f"**Backbone** {cfg.backbone} ({weights} weights) · **data** {data.get('kind', '?')}, {scope} · "
        f"{data.get('train', '?')} training / {data.get('test', len(b.test_ids))} test images · "
        f"**recipe** {cfg.stage1_epochs} epochs head-only + {cfg.stage2_epochs} epochs fine-tuning "
        f"(BatchNorm frozen){polish_words(cfg)}, {recipe} · **calibration** {calibration_words(b)}{note}"
    )


def example_photos(b: Bundle, predictor: Predictor, per_kind: int = 4) -> list[tuple[str, str, str]]:
    """(thumbnail, caption, photo) of test photos of different dishes: confident hits, then confident misses.

    The photo is the full-size test image where the data set is on this machine, else the bundle's thumbnail; the
    caption is `predictor`'s answer on that very photo, so a click on it shows what the label promised.
    """
    p = b.evaluation(b.stages[-1]).predictions
    p = p[p["index"].map(lambda i: b.thumb(i) is not None)]  # the bundle keeps thumbnails of only some hits
    out = []
    for correct in (True, False):
        rows = p[p["correct"] == correct].sort_values("confidence", ascending=not correct, kind="stable")
        for r in rows.drop_duplicates("true").head(per_kind).itertuples():
            thumb = b.thumb(r.index)
            photo = str(b.original_image(r.index) or thumb)
            top_id = predictor.predict(predictor.read(photo)).top[0][0]
            out.append((str(thumb), f"{b.name_of[r.true]} {'✓' if top_id == r.true else '✗'}", photo))
    return out


def pair_title(true_name: str, pred_name: str, n: int, shown: int) -> str:
    """The heading of a confusion cell's gallery."""
    kind = "correct" if true_name == pred_name else "mistaken"
    title = f"**{true_name} → {pred_name}**: {n} {kind} test image{'s' if n != 1 else ''}"
    return title + (f" ({shown} with thumbnails in the bundle)" if shown < n else "")


def mistake_gallery(
    b: Bundle, stage: str, true_name: str | None, pred_name: str | None, min_conf: float, limit: int
) -> tuple[list[tuple[str, str]], list[int], str]:
    """The most confident mistakes with thumbnails: gallery items, their test indices, and a count line."""
    m = mistakes_table(b, stage, true_name, pred_name, min_conf)
    shown = [r for r in m.head(limit).itertuples() if b.thumb(r.index) is not None]
    items = [(str(b.thumb(r.index)), f"{r.true_name} → {r.pred_name} · {r.confidence:.0%}") for r in shown]
    count = f"**{len(m)}** mistake{'s' if len(m) != 1 else ''}"
    count += f", the {len(shown)} most confident shown" if len(shown) < len(m) else ", most confident first"
    return items, [int(r.index) for r in shown], count


def mistake_caption(b: Bundle, stage: str, index: int, full_image: bool) -> str:
    """What the selected mistake is: its true and predicted dish, the confidence and the image id."""
    row = b.evaluation(stage).predictions.iloc[int(index)]
    return (
        f"**{b.name_of[row['true']]}** predicted as **{b.name_of[row['pred']]}** ({row['confidence']:.0%}) · "
        f"test image `{row['id']}`" + ("" if full_image else " · full image not on this machine")
    )


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a table for download; concurrent requests never serve a half-written file."""
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def embedding_points(b: Bundle, stage: str) -> list[dict]:
    """Every test photo's place on the map, in test_set.csv order, with display names."""
    emb, p = b.embedding(stage), b.evaluation(stage).predictions
    if emb is None:
        raise ValueError(NO_FEATURE_SPACE if not b.has_feature_space else f"the map is kept for {b.stages[-1]} only")
    return [
        {"id": i, "x": float(x), "y": float(y), "true": b.name_of[t], "pred": b.name_of[q], "confidence": float(c)}
        for i, (x, y), t, q, c in zip(p["id"], emb.xy, p["true"], p["pred"], p["confidence"])
    ]


NO_FEATURE_SPACE = (
    "This bundle has no feature-space analysis (it was written before it existed, or with "
    "--reference-per-class 0). Add it where the data set is at hand: python -m food101_core.training.evaluate RUN"
)


def similar_photos(b: Bundle, stage: str, y: np.ndarray, r: np.ndarray, k: int = 6) -> list[dict]:
    """The k reference training photos nearest to a photo (PCA coordinates, residual): row, id, label, distance."""
    idx, dist = b.embedding(stage).nearest(y, r, k)
    ref = b.reference
    return [
        {
            "row": int(i),
            "id": str(ref["id"].iloc[i]),
            "label": b.class_names[int(ref["label"].iloc[i])],
            "distance": round(float(d), 4),
        }
        for i, d in zip(idx[0], dist[0])
    ]


def explain(b: Bundle, stage: str, prediction, k: int = 6) -> dict:
    """A prediction in words and numbers: its top 5, whether the photo is unlike the training photos, and why
    by example (the nearest reference training photos). Only the final stage keeps a feature space."""
    top = [{"id": cid, "name": name, "p": round(p, 6)} for cid, name, p in prediction.top]
    emb = b.embedding(stage)
    if emb is None or prediction.features is None:
        return {"top": top, "unfamiliar": None, "score": None, "threshold": None, "similar": []}
    y, r = emb.project(prediction.features)
    score = float(emb.unfamiliarity(y, r)[0])
    return {
        "top": top,
        "unfamiliar": score > emb.threshold,
        "score": round(score, 4),
        "threshold": round(emb.threshold, 4),
        "similar": similar_photos(b, stage, y, r, k),
    }


def similar_gallery(b: Bundle, similar: list[dict]) -> list[tuple[str, str]]:
    """Reference thumbnails with their label and distance, for a gallery."""
    return [
        (str(b.reference_thumb(s["row"])), f"{s['label']} · {s['distance']:.2f}")
        for s in similar
        if b.reference_thumb(s["row"]) is not None
    ]


def selection_gallery(b: Bundle, stage: str, indices: list[int], limit: int) -> tuple[list, list[int], str]:
    """Thumbnails of the selected test photos (those the bundle has), their indices, and a count line."""
    p = b.evaluation(stage).predictions
    shown = [i for i in indices if b.thumb(i) is not None][:limit]
    items = [
        (
            str(b.thumb(i)),
            f"{b.name_of[p['true'].iloc[i]]} → {b.name_of[p['pred'].iloc[i]]} · {p['confidence'].iloc[i]:.0%}",
        )
        for i in shown
    ]
    line = f"**{len(indices)}** photos selected; {len(shown)} with thumbnails in the bundle shown"
    return items, shown, line
