"""What the app's analysis tabs show, computed from a bundle: plotly figures and pandas tables, no UI code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .bundle import Bundle
from .evaluate import most_confident_mistakes

REFERENCE = {"two-stage EfficientNetB0 (reference)": 0.8066, "DeepFood (Liu et al. 2016)": 0.774}


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
    ids = dict(zip(b.class_names, b.class_ids))
    p = b.evaluation(stage).predictions
    cell = p[(p["true"] == ids.get(true_name)) & (p["pred"] == ids.get(pred_name))]
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


def f1_figure(b: Bundle, stage: str) -> go.Figure:
    df = per_class_table(b, stage)
    worst = df["f1"].rank(method="first") <= max(3, len(df) // 10)
    fig = go.Figure(
        go.Bar(
            x=df["f1"],
            y=df["class"],
            orientation="h",
            marker_color=np.where(worst, "#d62728", "#1f77b4"),
            hovertemplate="%{y}: F1 %{x:.3f}<extra></extra>",
        )
    )
    if "f1 change vs stage 1" in df:
        fig.add_trace(
            go.Scatter(
                x=df["f1"] - df["f1 change vs stage 1"],
                y=df["class"],
                mode="markers",
                name="stage 1",
                marker={"symbol": "line-ns-open", "size": 12, "color": "black"},
                hovertemplate="%{y}: stage-1 F1 %{x:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        height=min(2400, 120 + 22 * len(df)),
        xaxis={"title": "F1", "range": [0, 1]},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        showlegend=False,
        title="F1 by class, worst first (red: the worst tenth; marks: stage 1)",
    )
    return fig


def mistakes_table(
    b: Bundle, stage: str, true_name: str | None, pred_name: str | None, min_confidence: float
) -> pd.DataFrame:
    """The most confident mistakes, filtered; index refers to the test image."""
    ids = dict(zip(b.class_names, b.class_ids))
    names = dict(zip(b.class_ids, b.class_names))
    m = most_confident_mistakes(b.evaluation(stage).predictions)
    m = m[m["confidence"] >= min_confidence]
    if true_name:
        m = m[m["true"] == ids.get(true_name)]
    if pred_name:
        m = m[m["pred"] == ids.get(pred_name)]
    return m.assign(true_name=m["true"].map(names), pred_name=m["pred"].map(names))


def top5_of(b: Bundle, stage: str, index: int) -> dict[str, float]:
    row = b.evaluation(stage).predictions.iloc[int(index)]
    names = dict(zip(b.class_ids, b.class_names))
    return {names.get(row[f"top{k}"], row[f"top{k}"]): float(row[f"p{k}"]) for k in range(1, 6) if f"top{k}" in row}


def training_figure(b: Bundle) -> go.Figure:
    """Loss and accuracy per epoch, both stages, the boundary between them marked."""
    from plotly.subplots import make_subplots

    h = b.history
    # what Keras validated on each epoch: held-out training images, or (--val-fraction 0) the test split
    held_out = "validation" if b.config["train"].get("val_fraction", 0.05) > 0 else "test split"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for key, dash, label in ((metric, "solid", "train"), (f"val_{metric}", "dot", held_out)):
            if key in h:
                fig.add_trace(
                    go.Scatter(
                        x=h["epoch"] + 1,
                        y=h[key],
                        mode="lines+markers",
                        name=label,
                        line={"dash": dash},
                        showlegend=col == 1,
                        legendgroup=label,
                    ),
                    1,
                    col,
                )
    stage2 = h[h["stage"] == 2]
    if len(stage2):
        boundary = float(stage2["epoch"].min()) + 0.5
        for col in (1, 2):
            fig.add_vline(x=boundary, line_dash="dash", line_color="gray", row=1, col=col)
        fig.add_annotation(
            x=boundary, y=1.08, xref="x", yref="paper", text="stage 2: blocks unfrozen", showarrow=False, xanchor="left"
        )
    fig.update_xaxes(title="epoch")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


def reliability_figure(b: Bundle, stage: str) -> go.Figure:
    m = b.evaluation(stage).metrics
    bins = [x for x in m["reliability"] if x["count"]]
    centres = [(x["lo"] + x["hi"]) / 2 for x in bins]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dash", "color": "gray"})
    )
    fig.add_trace(
        go.Bar(
            x=centres,
            y=[x["accuracy"] for x in bins],
            width=1 / len(m["reliability"]),
            name="accuracy",
            customdata=[x["count"] for x in bins],
            hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} over %{customdata} images",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[x["confidence"] for x in bins], y=[x["accuracy"] for x in bins], mode="markers", name="mean confidence"
        )
    )
    fig.update_layout(
        height=460,
        xaxis={"title": "confidence", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1]},
        title=f"Reliability diagram: expected calibration error {m['ece']:.3f}",
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return fig


def recipe_extras(cfg: dict) -> list[str]:
    """The optional parts of a run's recipe, as words (older bundles lack some keys: they were off)."""
    extras = [f"stage-2 learning rate {cfg['stage2_lr']:g}"] if cfg.get("stage2_lr") else []
    if cfg.get("unfreeze_blocks"):
        extras.append(f"top {cfg['unfreeze_blocks']} blocks unfrozen")
    if cfg.get("stage2_schedule", "constant") != "constant":
        extras.append(f"{cfg['stage2_schedule']} schedule")
    extras += ["augmentation"] if cfg.get("augment") else []
    extras += [f"label smoothing {cfg['label_smoothing']:g}"] if cfg.get("label_smoothing") else []
    extras += [f"mixup {cfg['mixup']:g}"] if cfg.get("mixup") else []
    extras += [f"weight EMA {cfg['ema_momentum']:g}"] if cfg.get("ema_momentum") else []
    extras += ["test-time flip"] if cfg.get("tta_flip") else []
    extras += ["last epoch of each stage kept"] if cfg.get("keep_epoch", "best") == "last" else []
    return extras


def summary_markdown(b: Bundle) -> str:
    cfg, data = b.config["train"], b.config.get("data", {})
    rows = []
    for stage in b.stages:
        m = b.evaluation(stage).metrics
        rows.append(
            f"| {stage.replace('stage', 'stage ')} | {m['top1']:.2%} | {m['top5']:.2%} | "
            f"{m['macro_f1']:.3f} | {m['ece']:.3f} |"
        )
    refs = "\n".join(f"| {name} | {acc:.2%} | – | – | – |" for name, acc in REFERENCE.items())
    n = len(b.class_ids)
    scope = "all 101 Food-101 classes" if n == 101 else f"{n} classes ({', '.join(b.class_names[:10])}"
    scope += "" if n == 101 else (", …)" if n > 10 else ")")
    weights = cfg["weights"] if cfg["weights"] in {"imagenet", "none"} else "ImageNet (local file)"
    note = (
        ""
        if n == 101
        else (
            f"\n\n*The reference numbers are for all 101 classes; this run covers {n}, so the numbers are not "
            "directly comparable. The full recipe is `python train.py` (EfficientNetB0, Food-101, 15 + 10 epochs) "
            "on a machine with internet and a GPU.*"
        )
    )
    recipe = ", ".join([f"{cfg['image_size']} px", *recipe_extras(cfg)])
    return (
        f"**Backbone** {cfg['backbone']} ({weights} weights) · **data** {data.get('kind', '?')}, {scope} · "
        f"{data.get('train', '?')} training / {data.get('test', len(b.test_ids))} test images · "
        f"**recipe** {cfg['stage1_epochs']} epochs head-only + {cfg['stage2_epochs']} epochs fine-tuning "
        f"(BatchNorm frozen), {recipe}\n\n"
        "| model | top-1 | top-5 | macro F1 | ECE |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n" + refs + note
    )
