"""Where the model errs: the confusion matrix and its most confused pairs, per-class metrics, the most confident
mistakes; tables, galleries, captions and their plotly figures."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..bundle import Bundle
from ..metrics import most_confident_mistakes
from .run_summary import photos_words


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
        (str(b.source_photo(stage, r.index)), f"{r.confidence:.0%} sure · {r.id}")
        for r in cell.itertuples()
        if b.has_source_photo(stage, r.index)
    ]
    return items, len(cell)


def per_class_table(b: Bundle, stage: str) -> pd.DataFrame:
    """F1, precision, recall and support per class (F1 beside the name, so a phone shows it without scrolling),
    with the change in F1 since stage 1; worst F1 first."""
    ev = b.evaluation(stage).per_class
    df = pd.DataFrame(
        {
            "class": b.class_names,
            "f1": ev["f1"],
            "precision": ev["precision"],
            "recall": ev["recall"],
            "support": ev["support"],
        }
    )
    if b.is_set(stage):  # a set: its dishes only, beside the same model's on the test split
        df["f1 change vs test split"] = ev["f1"] - b.evaluation(b.stage_of(stage)).per_class["f1"]
        df = df[ev["support"].to_numpy() > 0]
    elif "stage1" in b.stages and stage != "stage1":
        df["f1 change vs stage 1"] = ev["f1"] - b.evaluation("stage1").per_class["f1"]
    return df.round(4).sort_values("f1", kind="stable").reset_index(drop=True)


def mistakes_table(
    b: Bundle, stage: str, true_name: str | None, pred_name: str | None, min_confidence: float,
    mistakes_only: bool = True,
) -> pd.DataFrame:  # fmt: skip
    """The most confident mistakes (or, with `mistakes_only` False, every test photo), filtered; index refers to the
    test image."""
    p = b.evaluation(stage).predictions
    m = most_confident_mistakes(p) if mistakes_only else p.sort_values("confidence", ascending=False, kind="stable")
    m = m[m["confidence"] >= min_confidence]
    if true_name:
        m = m[m["true"] == b.id_of.get(true_name)]
    if pred_name:
        m = m[m["pred"] == b.id_of.get(pred_name)]
    return m.assign(true_name=m["true"].map(b.name_of), pred_name=m["pred"].map(b.name_of))


def top5_of(b: Bundle, stage: str, index: int) -> dict[str, float]:
    row = b.evaluation(stage).predictions.iloc[int(index)]
    return {b.name_of.get(row[f"top{k}"], row[f"top{k}"]): float(row[f"p{k}"]) for k in range(1, 6) if f"top{k}" in row}


def pair_title(true_name: str, pred_name: str, n: int, shown: int) -> str:
    """The heading of a confusion cell's gallery."""
    s = "s" if n != 1 else ""
    if true_name == pred_name:
        title = f"**{true_name}**, recognised: {n} test photo{s} the model gets right"
    else:
        title = f"**{true_name} → {pred_name}**: {n} {true_name} photo{s} taken for {pred_name}"
    return title + (f" ({shown} with a picture kept)" if shown < n else "")


def mistake_gallery(
    b: Bundle, stage: str, true_name: str | None, pred_name: str | None, min_conf: float, limit: int,
    mistakes_only: bool = True,
) -> tuple[list[tuple[str, str]], list[int], str]:  # fmt: skip
    """The most confident mistakes (or every test photo) with thumbnails: gallery items, their test indices, and a
    count line."""
    m = mistakes_table(b, stage, true_name, pred_name, min_conf, mistakes_only)
    pictured = m[m["index"].map(lambda i: b.has_source_photo(stage, i))] if len(m) else m
    shown = list(pictured.head(limit).itertuples())
    items = [(str(b.source_photo(stage, r.index)), photo_words(r.true_name, r.pred_name, r.confidence)) for r in shown]
    if not mistakes_only:
        right = int(m["correct"].astype(bool).sum()) if len(m) else 0
        count = f"**{len(m):,}** test photo{'s' if len(m) != 1 else ''} ({right:,} recognised); the saved run "
        count += f"keeps pictures of {len(pictured):,} of them, the {len(shown)} most confident shown"
        return items, [int(r.index) for r in shown], count
    count = f"**{len(m):,}** mistake{'s' if len(m) != 1 else ''}"
    count += f", the {len(shown)} most confident shown" if len(shown) < len(m) else ", most confident first"
    if len(pictured) < len(m):  # the cap: the bundle keeps pictures of each stage's most confident per dish
        cap = b.train_config.mistake_thumbs_per_class
        count += (
            f". The saved run keeps pictures of only the {cap} most confident mistakes per dish, so "
            f"{len(m) - len(pictured):,} more are counted here but not shown"
        )
    return items, [int(r.index) for r in shown], count


def photo_words(true_name: str, pred_name: str, confidence: float) -> str:
    """A thumbnail's caption: "Apple Pie → Baklava · 93%" for a mistake, "Apple Pie ✓ · 93%" for a right answer."""
    answer = f"{true_name} ✓" if true_name == pred_name else f"{true_name} → {pred_name}"
    return f"{answer} · {confidence:.0%}"


def photo_caption(b: Bundle, stage: str, index: int, full_image: bool) -> str:
    """Any test photo in words: its dish and the model's answer ("✓ recognised" when right), the confidence and the
    image id; the Mistakes tab's and the map's caption."""
    row = b.evaluation(stage).predictions.iloc[int(index)]
    true, pred = b.name_of[row["true"]], b.name_of[row["pred"]]
    answer = f"**{true}** ✓ recognised" if true == pred else f"**{true}** predicted as **{pred}**"
    where = f"`{row['id']}`, one of the {photos_words(b, stage)}" if b.is_set(stage) else f"test image `{row['id']}`"
    return f"{answer} ({row['confidence']:.0%}) · {where}" + (
        "" if full_image or b.is_set(stage) else " · full image not on this machine"
    )


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a table for download; concurrent requests never serve a half-written file."""
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def class_order(confusion: np.ndarray, names: list[str], by: str) -> list[int]:
    """Class indices alphabetically, or so that classes confused with each other sit side by side."""
    if by == "alphabetical" or len(names) < 3:
        return sorted(range(len(names)), key=lambda i: names[i].lower())
    from scipy.cluster.hierarchy import leaves_list, linkage

    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    similarity = rates + rates.T
    np.fill_diagonal(similarity, 0)
    distance = similarity.max() - similarity
    np.fill_diagonal(distance, 0)
    condensed = distance[np.triu_indices(len(names), 1)]
    return leaves_list(linkage(condensed, method="average")).tolist()


def confusion_figure(b: Bundle, stage: str, normalize: bool, hide_diagonal: bool, order_by: str) -> go.Figure:
    """Heatmap with true classes as rows; hover gives both names, the count and the row share."""
    cm = b.evaluation(stage).confusion.astype(float)
    names = b.class_names
    order = class_order(cm, names, order_by)
    counts = cm[np.ix_(order, order)]
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    z = share.copy() if normalize else counts.copy()
    if hide_diagonal:
        np.fill_diagonal(z, np.nan)
    labels = [names[i] for i in order]
    custom = np.dstack([counts, share * 100])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            customdata=custom,
            colorscale="Blues",
            xgap=1,
            ygap=1,
            hovertemplate="true: %{y}<br>predicted: %{x}<br>%{customdata[0]:.0f} images "
            "(%{customdata[1]:.1f}% of the row)<extra>click to see them</extra>",
            colorbar={"title": "share of row" if normalize else "images"},
        )
    )
    n = len(labels)
    fig.update_layout(
        height=min(1400, 260 + 18 * n),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "predicted", "tickangle": -60, "tickfont": {"size": 9 if n > 30 else 12}, "side": "bottom"},
        yaxis={"title": "true", "autorange": "reversed", "tickfont": {"size": 9 if n > 30 else 12}},
        dragmode="zoom",
    )
    return fig


def f1_figure(b: Bundle, stage: str) -> go.Figure:
    """F1 per class as bars, worst at the top, the lowest tenth (at least 3) in red; stage 1's F1 as a tick."""
    df = per_class_table(b, stage)
    n_worst = min(max(3, round(len(df) / 10)), max(len(df) - 1, 1))  # a set of few dishes: not all of them red
    worst = df.index < n_worst  # the table is sorted worst first
    fig = go.Figure()
    lowest = "F1, the lowest" if n_worst == 1 else f"F1, the {n_worst} lowest"
    for mask, colour, name in ((~worst, "#1f77b4", "F1"), (worst, "#d62728", lowest)):
        fig.add_trace(
            go.Bar(x=df["f1"][mask], y=df["class"][mask], orientation="h", marker_color=colour, name=name,
                   hovertemplate="%{y}: F1 %{x:.3f}<extra></extra>")
        )  # fmt: skip
    for column, who in (("f1 change vs stage 1", "stage 1's F1"), ("f1 change vs test split", "F1 on the test split")):
        if column not in df:
            continue
        fig.add_trace(
            go.Scatter(
                x=df["f1"] - df[column],
                y=df["class"],
                mode="markers",
                name=who,
                marker={"symbol": "line-ns-open", "size": 12, "color": "black"},
                hovertemplate="%{y}: " + who + " %{x:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        height=min(2400, 160 + 22 * len(df)),
        xaxis={"title": "F1", "range": [0, 1]},
        yaxis={"categoryorder": "array", "categoryarray": list(df["class"]), "autorange": "reversed"},
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        barmode="overlay",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        title={"text": "F1 by class, worst at the top", "y": 0.99, "yanchor": "top", "font": {"size": 14}},
    )
    return fig
