"""The feature space: the map of the test set, a photo's nearest training photos, the unfamiliar-photo score, the
example photos of the Predict tab."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from ..bundle import Bundle
from .run_summary import photos_words

if TYPE_CHECKING:
    from ..serving.predictor import Predictor


def example_photos(b: Bundle, predictor: Predictor, per_kind: int = 4) -> list[tuple[str, str, str]]:
    """(thumbnail, caption, photo) of test photos of different dishes: confident hits, then confident misses.

    The photo is the full-size test image where the data set is on this machine, else the bundle's thumbnail; the
    caption is `predictor`'s answer on that very photo, so a click on it shows what the label promised.
    """
    p = b.evaluation(b.final_stage).predictions
    first = b.photos.on_first_screen
    p = p[[first("test", b.test_ids[i]) for i in p["index"]]]  # packed with the first screen: no other shard fetched
    out = []
    for correct in (True, False):
        rows = p[p["correct"] == correct].sort_values("confidence", ascending=not correct, kind="stable")
        for r in rows.drop_duplicates("true").head(per_kind).itertuples():
            thumb = b.thumb(r.index)
            photo = str(b.original_image(r.index) or thumb)
            top_id = predictor.predict(predictor.read(photo)).top[0][0]
            out.append((str(thumb), f"{b.name_of[r.true]} {'✓' if top_id == r.true else '✗'}", photo))
    return out


def embedding_points(b: Bundle, stage: str) -> list[dict]:
    """Every test photo's place on the map, in test_set.csv order, with display names."""
    emb, p = b.embedding(stage), b.evaluation(stage).predictions
    if emb is None:
        raise ValueError(NO_FEATURE_SPACE if not b.has_feature_space else f"the map is kept for {b.final_stage} only")
    return [
        {"id": i, "x": float(x), "y": float(y), "true": b.name_of[t], "pred": b.name_of[q], "confidence": float(c)}
        for i, (x, y), t, q, c in zip(p["id"], emb.xy, p["true"], p["pred"], p["confidence"])
    ]


NO_FEATURE_SPACE = (
    "This saved run (its bundle: the folder of files the app reads) has no map of how alike the model finds its "
    "photos. It is an optional step: `train.py --analyses`, or later, where the data set is at hand, "
    "`python -m food101_core.training.analyses RUN [--data PATH]`. A run saved with `--reference-per-class 0` has none."
)


SIMILAR = 6  # the training photos most like a photo that a page shows


def similar_photos(b: Bundle, stage: str, y: np.ndarray, r: np.ndarray, k: int = SIMILAR) -> list[dict]:
    """The k reference training photos nearest to a photo (PCA coordinates, residual): row, id, label, distance."""
    idx, dist = b.embedding(stage).nearest(y, r, k)
    ref = b.reference
    return [
        {
            "row": int(i),
            "id": str(ref["id"].iloc[i]),
            "label": reference_dish(b, i),
            "distance": round(float(d), 4),
        }
        for i, d in zip(idx[0], dist[0])
    ]


def reference_dish(b: Bundle, row: int) -> str:
    """The dish (display name) of a reference training photo."""
    return b.class_names[int(b.reference["label"].iloc[int(row)])]


def contrast(b: Bundle, stage: str, y: np.ndarray, r: np.ndarray, pred: str, runner_up: str, k: int = 3) -> dict:
    """The nearest reference photos of the predicted dish beside the nearest of the runner-up: "closer to these
    apple pies than to these baklavas" (class ids; rows into the reference table, ids and distances)."""
    emb, ref = b.embedding(stage), b.reference

    def of(class_id: str, with_label: bool) -> list[dict]:
        idx, dist = emb.nearest_of(y, r, b.class_ids.index(class_id), k)
        return [{"row": int(i), "id": str(ref["id"].iloc[i]), **({"label": b.name_of[class_id]} if with_label else {}),
                 "distance": round(float(d), 4)} for i, d in zip(idx, dist)]  # fmt: skip

    return {"pred": of(pred, False), "runner_up": of(runner_up, True)}


def explain(b: Bundle, prediction, features=None, k: int = SIMILAR) -> dict:
    """A prediction in words and numbers: its top 5, whether the photo is unlike the training photos, and why
    by example: the nearest reference training photos, and the nearest of the predicted dish beside those of the
    runner-up (`contrast`).

    The feature space is the final stage's (the bundle keeps only its map), so `features` are the final model's
    pooled features of the photo; by default the prediction's own (the final stage's prediction). `k=0`: the
    verdict's numbers alone, no photos (`/predict` for scripts, which shows none).
    """
    top = [{"id": cid, "name": name, "p": round(p, 6)} for cid, name, p in prediction.top]
    stage = b.final_stage
    emb = b.embedding(stage)
    features = prediction.features if features is None else features
    if emb is None or features is None:
        return {"top": top, "unfamiliar": None, "score": None, "threshold": None, "similar": [], "contrast": None}
    y, r = emb.project(features)
    score = float(emb.unfamiliarity(y, r)[0])
    return {
        "top": top,
        "unfamiliar": score > emb.threshold,
        "score": round(score, 4),
        "threshold": round(emb.threshold, 4),
        "similar": similar_photos(b, stage, y, r, k) if k else [],
        "contrast": contrast(b, stage, y, r, top[0]["id"], top[1]["id"]) if k and len(top) > 1 else None,
    }


CONTRAST_SIDES = (("pred", "answer", "the answer"), ("runner_up", "runner_up", "the runner-up"))


def contrast_groups(b: Bundle, found: dict | None) -> dict:
    """The answer's nearest training photos and the runner-up's, as two galleries (label, [(path, caption)]), and one
    sentence comparing them by the mean distances as printed, so the words never contradict the numbers."""
    groups: dict = {"line": "", "answer": ("", []), "runner_up": ("", [])}
    names, means = {}, {}
    for key, side, words in CONTRAST_SIDES:
        rows = (found or {}).get(key) or []
        if rows:
            names[side], means[side] = reference_dish(b, rows[0]["row"]), float(np.mean([s["distance"] for s in rows]))
            label = f"Nearest {names[side]} training photos: {words} (dish · distance)"
            groups[side] = (label, contrast_items(b, rows))
    if len(names) == 2:
        groups["line"] = contrast_line(names["answer"], means["answer"], names["runner_up"], means["runner_up"])
    return groups


def contrast_items(b: Bundle, rows: list[dict]) -> list[tuple[str, str]]:
    """(thumbnail, "dish · distance") of reference photos the bundle has pictures of."""
    return [(str(p), f"{reference_dish(b, s['row'])} · {s['distance']:.2f}") for s in rows
            if (p := b.reference_thumb(s["row"])) is not None]  # fmt: skip


def contrast_line(answer: str, a: float, runner_up: str, c: float) -> str:
    """Which dish's training photos the photo is nearer, judged on the mean distances as printed (2 decimals): a
    reader who compares the two numbers reaches the same verdict as the sentence."""
    a_s, c_s = f"{a:.2f}", f"{c:.2f}"
    if float(a_s) < float(c_s):
        verdict = (
            f"The photo is nearer the {answer} training photos (mean distance {a_s}) than the {runner_up} ones "
            f"({c_s}): its nearest photos agree with the answer."
        )
    elif float(a_s) > float(c_s):
        verdict = (
            f"The photo is nearer the {runner_up} training photos (mean distance {c_s}) than the {answer} ones "
            f"({a_s}): its nearest photos disagree with the answer and side with the runner-up."
        )
    else:
        verdict = (
            f"The photo is about as near the {answer} training photos as the {runner_up} ones (mean distance {a_s} "
            "both): its nearest photos do not settle it."
        )
    return verdict + " A distance says how unlike two photos look to the model: lower is more alike."


def similar_gallery(b: Bundle, similar: list[dict]) -> list[tuple[str, str]]:
    """Reference thumbnails with their label and distance, for a gallery."""
    paths = [b.reference_thumb(s["row"]) for s in similar]
    return [(str(p), f"{s['label']} · {s['distance']:.2f}") for p, s in zip(paths, similar) if p is not None]


def selection_gallery(b: Bundle, stage: str, indices: list[int], limit: int) -> tuple[list, list[int], str]:
    """Thumbnails of the selected test photos (those the bundle has), their indices, and a count line."""
    p = b.evaluation(stage).predictions
    shown = [i for i in indices if b.has_source_photo(stage, i)][:limit]
    items = [
        (
            str(b.source_photo(stage, i)),
            f"{b.name_of[p['true'].iloc[i]]} → {b.name_of[p['pred'].iloc[i]]} · {p['confidence'].iloc[i]:.0%}",
        )
        for i in shown
    ]
    line = f"**{len(indices)}** photos selected; {len(shown)} with a picture kept shown"
    return items, shown, line


MAP_COLOURINGS = ("right or wrong", "true dish", "predicted dish", "confidence")
MAP_KEY_HINT = {
    "right or wrong": "Click *right* or *wrong* in the key to hide those photos.",
    "true dish": "Click a dish in the key to hide it; double-click to show it alone.",
    "predicted dish": "Click a dish in the key to hide it; double-click to show it alone.",
    "confidence": "The colour bar is the key: how sure the model was of its answer.",
}


def class_palette(n: int) -> list[str]:
    """n distinguishable colours for n classes (a qualitative set, then evenly sampled hues for more)."""
    import plotly.colors as pc

    base = pc.qualitative.Dark24 + pc.qualitative.Light24 + pc.qualitative.Alphabet
    if n <= len(base):
        return base[:n]
    return pc.sample_colorscale("Turbo", [(i * 0.618034) % 1.0 for i in range(n)])


def map_groups(b: Bundle, stage: str, colour_by: str) -> list[tuple[str, np.ndarray, dict]]:
    """The map's traces, one per entry of its key: (name, which points, marker). Right/wrong: two; a dish
    colouring: one per dish, so that the legend names every colour; confidence: one, with a colour bar."""
    p = b.evaluation(stage).predictions
    if colour_by == "confidence":
        marker = {"color": p["confidence"].to_numpy(), "colorscale": "Viridis", "cmin": 0, "cmax": 1,
                  "colorbar": {"title": "confidence", "tickformat": ".0%"}}  # fmt: skip
        return [(photos_words(b, stage), np.ones(len(p), bool), marker)]
    if colour_by == "right or wrong":
        right = p["correct"].to_numpy(bool)
        return [(f"right ({right.sum():,})", right, {"color": "#1f77b4"}),
                (f"wrong ({(~right).sum():,})", ~right, {"color": "#d62728"})]  # fmt: skip
    column = p["true" if colour_by == "true dish" else "pred"].to_numpy()
    palette = class_palette(b.num_classes)
    order = sorted(range(b.num_classes), key=lambda i: b.class_names[i].lower())
    return [(b.class_names[i], column == b.class_ids[i], {"color": palette[i]}) for i in order]


def map_figure(
    b: Bundle, stage: str, colour_by: str, true_name: str | None = None, pred_name: str | None = None
) -> go.Figure:
    """Every test photo in the model's feature space (UMAP) as WebGL points, one trace per key entry; a dish or a
    (true, predicted) pair highlighted and the rest faded."""
    emb, p = b.embedding(stage), b.evaluation(stage).predictions
    true, pred = p["true"].map(b.name_of), p["pred"].map(b.name_of)
    percent = (p["confidence"] * 100).round().astype(int).astype(str) + "% sure"
    text = np.where(p["correct"], true + " ✓ · ", true + " → " + pred + " · ") + percent
    chosen = np.ones(len(p), bool)
    if true_name:
        chosen &= (true == true_name).to_numpy()
    if pred_name:
        chosen &= (pred == pred_name).to_numpy()
    fig = go.Figure()
    if b.is_set(stage):  # the test photos as a grey backdrop: where the set's photos fall among them
        test_xy = b.embedding(b.final_stage).xy
        fig.add_trace(
            go.Scattergl(x=test_xy[:, 0], y=test_xy[:, 1], mode="markers", name="test photos (for reference)",
                         marker={"size": 4, "color": "#c8c8c8", "opacity": 0.5}, hoverinfo="skip")
        )  # fmt: skip
    for name, points, marker in map_groups(b, stage, colour_by):
        idx = np.flatnonzero(points)
        marker = {"size": 5, **{k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in marker.items()}}
        if true_name or pred_name:
            marker["opacity"] = np.where(chosen[idx], 0.95, 0.07)
        fig.add_trace(
            go.Scattergl(x=emb.xy[idx, 0], y=emb.xy[idx, 1], mode="markers", marker=marker, name=name,
                         text=text[idx], customdata=idx, hovertemplate="%{text}<extra></extra>")
        )  # fmt: skip
    title = f"{len(p):,} {photos_words(b, stage)}: photos the model finds alike sit close together"
    if b.is_set(stage):
        title = f"{len(p):,} {photos_words(b, stage)}, each placed among its nearest test photos"
    if true_name or pred_name:
        title = f"{int(chosen.sum()):,} of {len(p):,} {photos_words(b, stage)} highlighted"
    fig.update_layout(
        height=560,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        dragmode="lasso",
        showlegend=colour_by != "confidence",
        legend={"title": {"text": colour_by}, "itemsizing": "constant"},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
        title={"text": title, "font": {"size": 14}},
    )
    return fig
