"""A run's findings as one HTML file to send: it opens offline in any browser, charts interactive, photos embedded.

    python -m food101_core.report RUN out.html [--stage stage1]

The same views as the app, computed by the app's own modules (so the report never disagrees with the page): the run
and its recipe, every stage's results, per-class metrics, the confusion matrix, the most confused pairs with their
photos, the most confident mistakes, the failure slices, calibration before and after, the data-quality findings and
the evaluated sets. plotly.js is inlined once (4.8 MB) and each photo is re-encoded small, so a 101-class report
stays under 8 MB.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from markdown_it import MarkdownIt
from PIL import Image
from plotly.offline import get_plotlyjs

from ..bundle import Bundle, BundleError, load_bundle
from . import errors, quality_report, run_summary, slice_report

PHOTO_SIDE = 160  # px: big enough to see the dish, small enough for ~150 photos in about 1 MB
PAIRS, PAIR_PHOTOS, MISTAKES, SLICES, SLICE_PHOTOS, SUSPECTS, DUPLICATES = 10, 4, 24, 6, 4, 16, 6
SECTIONS = {  # id -> heading, in the report's order
    "summary": "The run",
    "results": "Results per model",
    "per-class": "Per-class metrics",
    "confusion": "Confusion matrix",
    "pairs": "Most confused pairs",
    "mistakes": "Most confident mistakes",
    "slices": "Where it fails",
    "calibration": "Calibration",
    "data-quality": "Data quality",
    "sets": "Evaluated sets",
    "training": "Training curves",
}
CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:1rem;color:#1f2937}
h1{font-size:1.6rem}h2{border-top:1px solid #d1d5db;padding-top:1rem;margin-top:2rem}nav a{margin-right:.8rem}
table{border-collapse:collapse;font-size:.9rem;display:block;overflow-x:auto}
td,th{border:1px solid #d1d5db;padding:.2rem .5rem;text-align:left}th{background:#f3f4f6}
.photos{display:flex;flex-wrap:wrap;gap:.5rem}figure{margin:0;width:160px}
figure img{width:160px;height:120px;object-fit:cover;border-radius:4px}figure.wide,figure.wide img{width:330px}
figcaption{font-size:.8rem;color:#374151}.note{color:#4b5563}
"""


def build_report(b: Bundle, stage: str | None = None) -> str:
    """The whole report as one HTML document, for `stage` (default: the served model)."""
    stage = stage or b.final_stage
    if stage not in b.stages:
        raise BundleError(f"unknown stage {stage!r}: this bundle has {', '.join(b.stages)}")
    parts = {key: safely(build, b, stage) for key, build in BUILDERS.items()}
    nav = " ".join(f'<a href="#{key}">{SECTIONS[key]}</a>' for key in parts)
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(f'<section id="{key}"><h2>{SECTIONS[key]}</h2>\n{part}</section>' for key, part in parts.items())
    title = f"Food-101 Explorer report: {b.path.name}"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style>'
        f"<script>{get_plotlyjs()}</script></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="note">{run_summary_words(b, stage)}. Made {made} from the run bundle '
        f"<code>{html.escape(str(b.path))}</code>.</p><nav>{nav}</nav>{body}</body></html>"
    )


def write_report(b: Bundle, out: Path, stage: str | None = None) -> Path:
    """The report written atomically (a crash leaves no half file), returned."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build_report(b, stage)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".report-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    return out


def safely(build: Callable[[Bundle, str], str], b: Bundle, stage: str) -> str:
    """A section, or a line saying why it is missing (a bundle without its analyses has no map or data quality)."""
    try:
        return build(b, stage)
    except BundleError as e:
        return f'<p class="note">Not in this run: {html.escape(str(e))}</p>'


def md(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


def run_summary_words(b: Bundle, stage: str) -> str:
    return md(run_summary.summary_line(b, stage)).strip().removeprefix("<p>").removesuffix("</p>")


def figure(fig: go.Figure, div_id: str) -> str:
    """An interactive chart that needs only the plotly.js inlined in the head."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"responsive": True})


def table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, escape=True, na_rep="–")


def photo(image: str | Path | Image.Image, caption: str, wide: bool = False) -> str:
    """One photo, re-encoded small and embedded as a data URL, with its caption as alt text and below it."""
    im = image if isinstance(image, Image.Image) else Image.open(image)
    im = im.convert("RGB")
    im.thumbnail((PHOTO_SIDE * (2 if wide else 1), PHOTO_SIDE))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    words = html.escape(caption)
    kind = ' class="wide"' if wide else ""
    return f'<figure{kind}><img src="{src}" alt="{words}"><figcaption>{words}</figcaption></figure>'


def photos(items: list[tuple], wide: bool = False) -> str:
    if not items:
        return '<p class="note">No photos of these are kept in the run.</p>'
    return '<div class="photos">' + "".join(photo(im, caption, wide) for im, caption in items) + "</div>"


def summary_section(b: Bundle, stage: str) -> str:
    return md(run_summary.summary_details(b))


def results_section(b: Bundle, stage: str) -> str:
    rows = []
    for s in b.stages:
        m = b.evaluation(s).metrics
        rows.append({"model": s + (" (served)" if s == b.final_stage else ""), "top-1": f"{m['top1']:.2%}",
                     "top-5": f"{m['top5']:.2%}", "macro F1": f"{m['macro_f1']:.3f}",
                     "ECE before calibration": f"{m['ece_raw']:.3f}" if m.get("ece_raw") is not None else "–",
                     "ECE after": f"{m['ece']:.3f}"})  # fmt: skip
    return table(pd.DataFrame(rows)) + md(
        "ECE (expected calibration error): the average gap between the model's confidence and how often it is right."
    )


def per_class_section(b: Bundle, stage: str) -> str:
    return figure(errors.f1_figure(b, stage), "f1-chart") + table(errors.per_class_table(b, stage))


def confusion_section(b: Bundle, stage: str) -> str:
    fig = errors.confusion_figure(b, stage, normalize=True, hide_diagonal=True, order_by="by confusion")
    return md("Each row is a true dish, as shares of its test photos; the right answers are left out so that the "
              "mistakes stand out; confused dishes sit side by side.") + figure(fig, "confusion-chart")  # fmt: skip


def pairs_section(b: Bundle, stage: str) -> str:
    pairs = errors.most_confused_pairs(b, stage, k=20)
    out = [table(pairs)]
    for row in pairs.head(PAIRS).itertuples():
        items, n = errors.pair_examples(b, stage, row.true, row.predicted)
        out.append(md("### " + errors.pair_title(row.true, row.predicted, n, len(items))))
        out.append(photos(items[:PAIR_PHOTOS]))
    return "\n".join(out)


def mistakes_section(b: Bundle, stage: str) -> str:
    items, _, line = errors.mistake_gallery(b, stage, None, None, 0.0, MISTAKES)
    return md(line) + photos(items)


def slices_section(b: Bundle, stage: str) -> str:
    out = [md(slice_report.summary_line(b).replace(" Click one to see its photos.", "")),
           table(slice_report.slices_table(b))]  # fmt: skip
    for number in range(min(SLICES, len(slice_report.found(b)["slices"]))):
        items, line = slice_report.slice_gallery(b, number, SLICE_PHOTOS)
        out += [md(line), photos(items)]
    return "\n".join(out)


def calibration_section(b: Bundle, stage: str) -> str:
    return md(run_summary.calibration_words(b)) + figure(run_summary.reliability_figure(b, stage), "reliability-chart")


def data_quality_section(b: Bundle, stage: str) -> str:
    suspects, line = quality_report.suspect_gallery(b, None, None, SUSPECTS)
    line = line.replace(" The CSV has them all.", " The app's Data-quality tab lists them all, as a CSV too.")
    out = [md(quality_report.summary_line(b)), md("### Suspect training labels"), md(line), photos(suspects)]
    for kind in ("train-test", "test-test"):
        items, words = quality_report.duplicate_gallery(b, kind, DUPLICATES)
        heading = "Test photos that repeat a training photo" if kind == "train-test" else "Near-copies among test"
        out += [md(f"### {heading}"), md(words), photos(items, wide=True)]
    counts = quality_report.class_counts(b)
    return "\n".join(out) + figure(quality_report.quality_figure(counts), "quality-chart")


def sets_section(b: Bundle, stage: str) -> str:
    if not b.sets:
        return md("No evaluated sets in this run: the app's *Your photos* tab, or `python -m food101_core.sets add`, "
                  "adds one.")  # fmt: skip
    rows = []
    for name in b.sets:
        s = b.set_summary(name)
        d = s.get("difference") or {}
        top1, unlike = s["top1"], s.get("unfamiliar_share")
        rows.append({
            "set": name, "files": s["n_files"], "scored": s["scored"], "top-1": "–" if top1 is None else f"{top1:.1%}",
            "test split top-1": f"{s['test_top1']:.1%}",
            "difference (95 % interval)": f"{d['top1']:+.1%} ({d['low']:+.1%} to {d['high']:+.1%})" if d else "–",
            "unlike training": "–" if unlike is None else f"{unlike:.0%}",
        })  # fmt: skip
    return table(pd.DataFrame(rows))


def training_section(b: Bundle, stage: str) -> str:
    return figure(run_summary.training_figure(b), "training-chart")


BUILDERS: dict[str, Callable[[Bundle, str], str]] = {
    "summary": summary_section, "results": results_section, "per-class": per_class_section,
    "confusion": confusion_section, "pairs": pairs_section, "mistakes": mistakes_section, "slices": slices_section,
    "calibration": calibration_section, "data-quality": data_quality_section, "sets": sets_section,
    "training": training_section,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m food101_core.report", description=__doc__.splitlines()[0])
    ap.add_argument("run", help="bundle folder or Hugging Face Hub model repo id")
    ap.add_argument("out", help="the HTML file to write")
    ap.add_argument("--stage", help="which model (default: the served one)")
    args = ap.parse_args(argv)
    try:
        out = write_report(load_bundle(args.run), Path(args.out), args.stage)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
