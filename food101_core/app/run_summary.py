"""What the run is and how it went, in words, tables and charts: the header's summary and details, the results table,
the training curves and the reliability diagram."""

from __future__ import annotations

import plotly.graph_objects as go

from ..backbones import BACKBONES
from ..bundle import Bundle
from ..config import TrainConfig

# Published top-1 on all 101 Food-101 classes: short names for the results table, and what they are.
REFERENCE = {"reference": 0.8066, "DeepFood": 0.774}


REFERENCE_NOTE = (
    "*reference*: the two-stage EfficientNetB0 recipe this project implements (`python train.py`); "
    "*DeepFood*: Liu et al. 2016. Both on all 101 classes. Top-1: the first answer is right; top-5: the right dish "
    "is among the first five. F1: per dish, a balance of how often an answer of that dish is right and how many of "
    "its photos are found, averaged over the dishes. ECE (expected calibration error): how far the stated "
    "confidence is from the real share right, on average (0 is perfect)."
)


def recipe_extras(cfg: TrainConfig) -> list[str]:
    """The optional parts of a run's recipe, as words (a setting an older bundle lacks reads as its default: off)."""
    extras = [f"stage-2 learning rate {cfg.stage2_lr:g}"] if cfg.stage2_lr else []
    extras += [f"top {cfg.unfreeze_blocks} blocks unfrozen"] if cfg.unfreeze_blocks else []
    extras += [f"{cfg.stage2_schedule} schedule"] if cfg.stage2_schedule != "constant" else []
    extras += ["augmentation"] if cfg.augment else []
    extras += [f"label smoothing {cfg.label_smoothing:g}"] if cfg.label_smoothing else []
    extras += [f"mixup {cfg.mixup:g}"] if cfg.mixup else []
    extras += [f"weights averaged over the steps (EMA {cfg.ema_momentum:g})"] if cfg.ema_momentum else []
    extras += [f"gradient clipping {cfg.clipnorm:g}"] if cfg.clipnorm else []
    extras += ["test-time flip"] if cfg.tta_flip else []
    extras += ["last epoch of each stage kept"] if cfg.keep_epoch == "last" else []
    return extras


VISITOR = "visitor-"  # a set a visitor uploaded in the app (your_photos_tab): named by a random key


def photos_words(b: Bundle, source: str | None) -> str:
    """What a view's photos are, in words: "test photos", "photos of the set canteen", "photos you uploaded"."""
    if not b.is_set(source):
        return "test photos"
    name = b.set_name(source)
    return "photos you uploaded" if name.startswith(VISITOR) else f"photos of the set {name}"


def summary_line(b: Bundle, stage: str | None = None) -> str:
    """One line for the top of the page: what model, on what, and how good (the selected stage's numbers)."""
    cfg, stage = b.train_config, stage or b.final_stage
    m = b.evaluation(stage).metrics
    which = "" if b.stage_of(stage) == b.final_stage else f" ({stage.replace('stage', 'stage ')}, not the final model)"
    return (
        f"**{BACKBONES[cfg.backbone].builder}** on {b.num_classes} dishes{which} · top-1 **{m['top1']:.1%}**, "
        f"top-5 {m['top5']:.1%} on {m['n']:,} {photos_words(b, stage)}"
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
        f"temperature scaling: the model's raw scores divided by one number, T = {c['temperature']:.2f}, so that "
        f"its confidence matches how often it is right. T was fitted on the {c['fitted_on']} ({c['n']:,} training "
        f"photos never trained on); the order of the dishes never changes. Expected calibration error (ECE, the "
        f"average gap between confidence and the share right) {m['ece_raw']:.3f} → {m['ece']:.3f}; low-confidence "
        f"warnings {m['warning_rate_raw']:.0%} → {m['warning_rate']:.0%} of test photos"
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


TRAIN, HELD_OUT = "#1f77b4", "#ff7f0e"  # one colour per split, the same in both panels and in the legend


def held_out_name(cfg: TrainConfig) -> str:
    """The dotted curve's legend entry: what Keras validated on each epoch, in plain words, "validation" beside."""
    if cfg.val_fraction > 0:
        return f"held-out {cfg.val_fraction * 100:g} % of training photos (validation)"
    if cfg.keep_epoch == "last":
        return "test photos (validation, watched only)"
    return "test photos (validation: best epoch chosen on them)"


def held_out_words(cfg: TrainConfig) -> str:
    """The dotted curve in a sentence: which photos, and whether an epoch was chosen on them (the legend is short)."""
    last = cfg.keep_epoch == "last"
    if cfg.val_fraction > 0:
        use = "only watched: each stage keeps its last epoch" if last else "used to choose each stage's best epoch"
        return f"The dotted line is {cfg.val_fraction * 100:g} % of the training photos, held out from training, {use}."
    if last:
        return "The dotted line is the test photos: watched each epoch, but no epoch was chosen on them."
    return "The dotted line is the test photos. Each stage's best epoch was chosen on them, so they may flatter it."


def training_figure(b: Bundle) -> go.Figure:
    """Loss above accuracy on one shared epoch axis, train and held-out, each stage's start marked below the titles."""
    from plotly.subplots import make_subplots

    h = b.history
    held_out = held_out_name(b.train_config)  # held-out training images, or (--val-fraction 0) the test split
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("Loss (lower is better)", "Top-1 accuracy"))  # fmt: skip
    for row, metric in ((1, "loss"), (2, "accuracy")):
        for key, colour, dash, label in (
            (metric, TRAIN, "solid", "train"),
            (f"val_{metric}", HELD_OUT, "dot", held_out),
        ):
            if key in h:
                fig.add_trace(
                    go.Scatter(x=h["epoch"] + 1, y=h[key], mode="lines+markers", name=label, legendgroup=label,
                               line={"dash": dash, "color": colour}, marker={"color": colour}, showlegend=row == 1),
                    row, 1,
                )  # fmt: skip
    for stage, words in ((2, "stage 2: blocks unfrozen"), (3, "stage 3: polish")):
        later = h[h["stage"] == stage]
        if len(later):
            boundary = float(later["epoch"].min()) + 0.5
            fig.add_vline(x=boundary, line_dash="dash", line_color="gray")
            fig.add_annotation(x=boundary, y=0.02, xref="x2", yref="y2 domain", text=words, showarrow=False,
                               xanchor="left", yanchor="bottom", bgcolor="rgba(255,255,255,0.8)")  # fmt: skip
    fig.update_xaxes(title="epoch", row=2, col=1)
    fig.update_layout(
        height=560,
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
        legend={"orientation": "h", "y": 1.12, "x": 0, "title": ""},
    )
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
    title = f"How often it is right at each confidence · calibration error {m['ece']:.3f}"
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
        title += f" (before {m['ece_raw']:.3f})"
    fig.update_layout(
        height=460,
        xaxis={"title": "confidence", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1]},
        title={"text": title, "y": 0.97, "font": {"size": 14}},
        margin={"l": 10, "r": 10, "t": 90, "b": 10},
        legend={"orientation": "h", "y": 1.08, "x": 0},
    )
    return fig
