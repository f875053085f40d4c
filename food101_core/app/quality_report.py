"""What the Data-quality tab shows, from a bundle's `quality/` files: the suspect labels (filtered, as a gallery and
as CSV), the near-duplicate pairs side by side, and the counts per class. No Gradio here, so scripts and tests use
the same tables the app does."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from ..bundle import Bundle, BundleError
from ..data_quality import MAX_PAIRS

NO_DATA_QUALITY = (
    "This saved run (its bundle: the folder of files the app reads) has no data-quality analysis. It is an "
    "optional step: `train.py --analyses`, or later, where the data set is at hand, "
    "`python -m food101_core.training.analyses RUN [--data PATH]`. A run saved with `--suspect-thumbs 0` has none."
)
KINDS = {"test ↔ train (leakage)": "train-test", "within the test split": "test-test"}


def require(b: Bundle):
    """The bundle's analysis, or a clear error naming how to add it."""
    dq = b.data_quality()
    if dq is None:
        raise BundleError(NO_DATA_QUALITY)
    return dq


def suspects_table(b: Bundle, given: str | None = None, suggested: str | None = None) -> pd.DataFrame:
    """Suspected label errors, most suspect first, with display names; filtered by given / suggested dish name."""
    s = require(b).suspects.copy()
    s.insert(0, "rank", range(1, len(s) + 1))
    s["given_name"] = s["given"].map(b.name_of)
    s["suggested_name"] = s["suggested"].map(b.name_of)
    if given:
        s = s[s["given_name"] == given]
    if suggested:
        s = s[s["suggested_name"] == suggested]
    return s


def suspect_gallery(
    b: Bundle, given: str | None, suggested: str | None, limit: int
) -> tuple[list[tuple[str, str]], str]:
    """Thumbnails of the matching suspects that the bundle has, captioned, and a line that counts them."""
    s = suspects_table(b, given, suggested)
    items = training_pictures(
        b, s, lambda r: f"#{r.rank}: {r.given_name} → looks like {r.suggested_name} · score {r.quality:.2f}", limit
    )
    line = (
        f"**{len(s):,}** suspect labels match; the {len(items)} with a picture kept are shown, most suspect first "
        f"(the saved run keeps pictures of the {b.train_config.suspect_thumbs:,} most suspect). Captions read "
        "label given → what the photo looks like · score: how likely the given label is, judged by a model that "
        "never saw this photo's label (low: probably wrong). The CSV has them all."
    )
    return items, line


def training_pictures(b: Bundle, rows: pd.DataFrame, caption, limit: int) -> list[tuple[str, str]]:
    """(thumbnail, caption(row)) of the first `limit` training photos of `rows` (by `id`) the bundle has pictures of."""
    items = []
    for row in rows.itertuples():
        thumb = b.photo("train", row.id)
        if thumb is not None:
            items.append((str(thumb), caption(row)))
            if len(items) >= limit:
                break
    return items


def pair_image(b: Bundle, row) -> Image.Image | None:
    """The two photos of a near-duplicate pair side by side (None when a thumbnail is missing)."""
    paths = [b.photo(row.a_split, row.a_id), b.photo(row.b_split, row.b_id)]
    if None in paths:
        return None
    ims = [Image.open(p).convert("RGB") for p in paths]
    h = max(im.height for im in ims)
    out = Image.new("RGB", (sum(im.width for im in ims) + 6, h), "white")
    out.paste(ims[0], (0, 0))
    out.paste(ims[1], (ims[0].width + 6, 0))
    ImageDraw.Draw(out).line([(ims[0].width + 3, 0), (ims[0].width + 3, h)], fill="white", width=6)
    return out


def duplicate_gallery(b: Bundle, kind: str, limit: int) -> tuple[list[tuple[Image.Image, str]], str]:
    """Pairs of one kind ("train-test" or "test-test"), most similar first, as side-by-side images."""
    d = require(b).duplicates
    d = d[d["kind"] == kind]
    items = []
    for row in d.head(limit).itertuples():
        im = pair_image(b, row)
        if im is not None:
            caption = f"{row.a_split} {row.a_id} ↔ {row.b_split} {row.b_id} · distance {1 - row.similarity:.3f}"
            items.append((im, caption))
    summary = require(b).summary
    one = summary.get("duplicates_found", {}).get(kind, len(d)) == 1
    what = ("test ↔ train pair" if kind == "train-test" else "pair among the test photos").replace(
        "pair", "pair" if one else "pairs", 1
    )
    what += " looks" if one else " look"
    threshold = summary.get("duplicate_threshold")
    line = f"{pair_count(summary, kind, len(d))} {what} almost the same to the network: a distance of at most "
    line += f"{1 - threshold:.2f} between their features (cosine distance; 0 is the same picture). {len(items)} shown"
    pictured = summary.get("pair_thumbs")
    if pictured is not None and len(d) > pictured:
        line += f" (the saved run keeps pictures of the {pictured:,} closest; the CSV lists all {len(d):,})"
    return items, line


def pair_count(summary: dict, kind: str, kept: int) -> str:
    """The number of pairs, saying so when the bundle keeps only the cap's worth (an older bundle: "at least")."""
    cap = summary.get("max_pairs", MAX_PAIRS)
    found = summary.get("duplicates_found", {}).get(kind)
    if kept < cap:
        return f"**{kept:,}**"
    if found is None:
        return f"at least **{kept:,}** (the saved run keeps at most {cap:,})"
    return f"**{found:,}** (the saved run keeps the {kept:,} closest, its most; {found - kept:,} more are not kept)"


def class_counts(b: Bundle) -> pd.DataFrame:
    """Per dish: training photos analysed, suspects labelled as it, suspects suggested as it, duplicate pairs."""
    dq = require(b)
    per_class = dq.summary.get("train_per_class", {})
    d = dq.duplicates
    dup_class = pd.concat([d["a_id"], d["b_id"]]).str.split("/").str[0] if len(d) else pd.Series([], dtype=str)
    rows = []
    for cid in b.class_ids:
        n, given = per_class.get(cid, 0), int((dq.suspects["given"] == cid).sum())
        rows.append(
            {
                "class": b.name_of[cid],
                "training photos": n,
                "suspect labels": given,
                "suspect share": round(given / n, 4) if n else 0.0,
                "suggested as this": int((dq.suspects["suggested"] == cid).sum()),
                "in duplicate pairs": int((dup_class == cid).sum()),
            }
        )
    return pd.DataFrame(rows).sort_values("suspect share", ascending=False, kind="stable")


def summary_line(b: Bundle) -> str:
    s = require(b).summary
    dups = s.get("duplicates", {})
    within = dups.get("test-test", 0)
    return (
        f"Training photos whose label is probably wrong, and photos that are near-copies of each other. "
        f"**{s['suspects']:,}** of {s['n_train']:,} training photos have a suspect label. They were found with "
        "cleanlab, a library that flags the labels a model strongly disagrees with. The model here is a simple "
        "classifier on what the pretrained network sees in each photo. It was trained "
        f"{s['folds']} times, so that each photo is judged by one that never saw its label (right on "
        f"{s['cv_top1']:.1%} of them). {pair_count(s, 'train-test', dups.get('train-test', 0))} test ↔ train pairs "
        f"are near-copies (the test photo leaked into training), and {pair_count(s, 'test-test', within)} "
        f"{'pair' if within == 1 else 'pairs'} among the test photos."
    )


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
            name="share of the dish's training photos with a suspect label",
            showlegend=True,
        )
    )
    fig.update_layout(
        height=min(1000, 160 + 22 * len(top)),
        xaxis={"title": "share of training photos with a suspect label", "tickformat": ".0%"},
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        title={"text": f"Suspect labels by dish ({min(show, len(counts))} highest shares)", "font": {"size": 14}},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    )
    return fig


CHECK_WORDS = {
    "dark": "dark",
    "light": "overexposed",
    "blurry": "blurry",
    "low_information": "near-constant (little detail)",
    "grayscale": "black-and-white",
    "odd_size": "odd size",
    "odd_aspect_ratio": "odd aspect ratio",
}


def image_check_counts(b: Bundle) -> dict[str, int]:
    """Training photos each image check flags (CleanVision's definitions), from the bundle's summary."""
    return require(b).summary.get("image_checks", {})


def image_check_gallery(b: Bundle, check: str, limit: int) -> tuple[list[tuple[str, str]], str, pd.DataFrame]:
    """The training photos one check flags: those with pictures, a count line, and the table (id first: the CSV
    `train.py --exclude` reads)."""
    table = require(b).image_checks
    if table is None:
        return [], "This saved run's data-quality analysis is older than the image checks: add it again.", None
    hits = table[table[check]]
    items = training_pictures(b, hits, lambda r: f"{b.name_of.get(r.given, r.given)} · {r.id}", limit)
    line = (
        f"**{len(hits):,}** training photos look {CHECK_WORDS.get(check, check)}; {len(items)} with a picture kept "
        "shown. The CSV lists them all; to train without them, pass it to `train.py --exclude` (it reads the `id` "
        "column)."
    )
    return items, line, hits
