"""The app's plotly figures, computed from a bundle: confusion heatmap, F1 bars, training curves, reliability.

No UI code: the app's tabs show these, and the API endpoints return them as JSON.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..bundle import Bundle
from .analysis import per_class_table


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


def training_figure(b: Bundle) -> go.Figure:
    """Loss and accuracy per epoch, both stages, the boundary between them marked."""
    from plotly.subplots import make_subplots

    h = b.history
    # what Keras validated on each epoch: held-out training images, or (--val-fraction 0) the test split
    held_out = "validation" if b.train_config.val_fraction > 0 else "test split"
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
    for stage, words in ((2, "stage 2: blocks unfrozen"), (3, "stage 3: polish")):
        later = h[h["stage"] == stage]
        if not len(later):
            continue
        boundary = float(later["epoch"].min()) + 0.5
        for col in (1, 2):
            fig.add_vline(x=boundary, line_dash="dash", line_color="gray", row=1, col=col)
        fig.add_annotation(x=boundary, y=1.08, xref="x", yref="paper", text=words, showarrow=False, xanchor="left")
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
    raw = [x for x in m.get("reliability_raw", []) if x["count"]]
    t = m.get("calibration", {}).get("temperature", 1.0)
    title = f"Reliability diagram: expected calibration error {m['ece']:.3f}"
    if raw and t != 1.0:  # a calibrated stage: where the raw confidences were, and the numbers before and after
        fig.add_trace(
            go.Scatter(
                x=[x["confidence"] for x in raw],
                y=[x["accuracy"] for x in raw],
                mode="markers",
                marker={"symbol": "x", "color": "gray"},
                name="before calibration",
            )
        )
        title += f" (before calibration {m['ece_raw']:.3f}; temperature {t:.2f})"
    fig.update_layout(
        height=460,
        xaxis={"title": "confidence", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1]},
        title=title,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return fig


MAP_COLOURINGS = ("true class", "predicted class", "right / wrong", "confidence")


def class_palette(n: int) -> list[str]:
    """n distinguishable colours for n classes (a qualitative set, then evenly sampled hues for more)."""
    import plotly.colors as pc

    base = pc.qualitative.Dark24 + pc.qualitative.Light24 + pc.qualitative.Alphabet
    if n <= len(base):
        return base[:n]
    return pc.sample_colorscale("Turbo", [(i * 0.618034) % 1.0 for i in range(n)])


def map_marker(b: Bundle, stage: str, colour_by: str) -> dict:
    """The points' colours: by true or predicted class (one colour each), right/wrong, or confidence (a scale)."""
    p = b.evaluation(stage).predictions
    palette = np.array(class_palette(b.num_classes))
    if colour_by == "confidence":
        return {
            "color": p["confidence"].to_numpy(),
            "colorscale": "Viridis",
            "cmin": 0,
            "cmax": 1,
            "colorbar": {"title": "confidence"},
        }
    if colour_by == "right / wrong":
        return {"color": np.where(p["correct"], "#1f77b4", "#d62728")}
    column = "true" if colour_by == "true class" else "pred"
    return {"color": palette[p[column].map({c: i for i, c in enumerate(b.class_ids)}).to_numpy()]}


def map_figure(
    b: Bundle, stage: str, colour_by: str, true_name: str | None = None, pred_name: str | None = None
) -> go.Figure:
    """Every test photo in the model's feature space (UMAP), one WebGL trace; a class or pair highlighted."""
    emb, p = b.embedding(stage), b.evaluation(stage).predictions
    true, pred = p["true"].map(b.name_of), p["pred"].map(b.name_of)
    percent = (p["confidence"] * 100).round().astype(int).astype(str) + "%"
    text = np.where(p["correct"], true + " ✓ · ", true + " → " + pred + " · ") + percent
    marker = {"size": 5, **map_marker(b, stage, colour_by)}
    chosen = np.ones(len(p), bool)
    if true_name:
        chosen &= (true == true_name).to_numpy()
    if pred_name:
        chosen &= (pred == pred_name).to_numpy()
    title = f"{len(p):,} test photos in the model's feature space (UMAP)"
    if true_name or pred_name:
        marker["opacity"] = np.where(chosen, 0.95, 0.07)
        title += f"; {int(chosen.sum()):,} highlighted"
    fig = go.Figure(
        go.Scattergl(
            x=emb.xy[:, 0],
            y=emb.xy[:, 1],
            mode="markers",
            marker=marker,
            text=text,
            customdata=np.arange(len(p)),
            hovertemplate="%{text}<extra>#%{customdata}</extra>",
        )
    )
    fig.update_layout(
        height=560,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        dragmode="lasso",
        showlegend=False,
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
        title=title,
    )
    return fig


def quality_figure(counts: pd.DataFrame, show: int = 30) -> go.Figure:
    """Share of each dish's training photos with a suspect label, highest first (the `show` highest)."""
    top = counts.head(show).iloc[::-1]
    fig = go.Figure(
        go.Bar(
            x=top["suspect share"],
            y=top["class"],
            orientation="h",
            customdata=top[["suspect labels", "training photos"]].to_numpy(),
            hovertemplate="%{y}: %{customdata[0]} of %{customdata[1]} (%{x:.1%})<extra></extra>",
        )
    )
    fig.update_layout(
        height=min(1000, 120 + 22 * len(top)),
        xaxis={"title": "share of training photos with a suspect label", "tickformat": ".0%"},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title=f"Suspect labels by dish ({min(show, len(counts))} highest shares)",
    )
    return fig


def f1_change_figure(per_class: pd.DataFrame, name_a: str, name_b: str) -> go.Figure:
    """Per-class F1 of run B minus run A, sorted: green where B is better, red where it is worse."""
    df = per_class.sort_values("change", kind="stable")
    fig = go.Figure(
        go.Bar(
            x=df["change"],
            y=df["class"],
            orientation="h",
            marker_color=np.where(df["change"] >= 0, "#2ca02c", "#d62728"),
            customdata=df[["f1_a", "f1_b"]].to_numpy(),
            hovertemplate="%{y}: F1 %{customdata[0]:.3f} → %{customdata[1]:.3f} (%{x:+.3f})<extra></extra>",
        )
    )
    fig.update_layout(
        height=min(2400, 120 + 22 * len(df)),
        xaxis={"title": f"F1 change, {name_b} − {name_a}", "zeroline": True},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Per-class F1 change (B − A), sorted",
    )
    return fig
