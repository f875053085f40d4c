"""`build_app`: the page over one bundle, composed of the header and one builder per tab."""

from __future__ import annotations

import gradio as gr

from ..bundle import Bundle, log_fetch
from . import (
    calibration_tab,
    compare_tab,
    confusion_tab,
    header,
    map_tab,
    mistakes_tab,
    per_class_tab,
    predict_tab,
    quality_tab,
    slices_tab,
    training_tab,
)
from .context import PLOTLY_HEAD, PLOTLY_JS, AppContext

__all__ = ["CSS", "PLOTLY_HEAD", "PLOTLY_JS", "build_app", "no_run_app", "say_download"]

CSS = """
#header-text h2 {margin: 0 0 2px 0}
#header-text p {margin: 0}
.cm-hint p {color: var(--body-text-color-subdued); font-size: 0.95em}
.tab-intro p {font-size: 0.95em; margin: 0}
#results-table table {display: block; overflow-x: auto; white-space: nowrap}
#results-table th, #results-table td {padding: 4px 8px; font-size: 0.9em}
/* galleries: as many columns as the width holds, each caption in full under its photo */
.captioned .grid-wrap {overflow-x: hidden !important; padding-top: 30px !important}
.captioned .grid-container {grid-template-columns: repeat(auto-fill, minmax(132px, 1fr)) !important;
  grid-template-rows: none !important; grid-auto-rows: auto !important}
.captioned .thumbnail-lg {aspect-ratio: auto !important; height: auto !important; display: flex !important;
  flex-direction: column}
.captioned .thumbnail-lg > img {height: 120px !important; flex: none}
.captioned .caption-label {position: static !important; max-width: none !important; white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; border: 0 !important; border-radius: 0 !important;
  font-size: 12px !important; line-height: 1.3; text-align: center; opacity: 1 !important}
@media (max-width: 640px) {
  .captioned .grid-container {grid-template-columns: repeat(2, minmax(0, 1fr)) !important}
  #cm-pairs-first {order: -1}
  .tab-intro {order: -2}
  #confusion-plot {overflow-x: auto}
  #confusion-plot .cm-plot {min-width: 560px}
}
/* labels and table headers wrap between words, never inside one */
label, label *, th, th * {word-break: normal !important; overflow-wrap: normal !important; hyphens: manual}
label span {white-space: normal !important}
.heat-key {display: flex; align-items: center; gap: 8px; font-size: 0.9em; margin: 4px 0}
.heat-key .bar {flex: 1; max-width: 220px; height: 12px; border-radius: 6px;
  background: linear-gradient(90deg, rgb(48,18,140), rgb(30,110,230), rgb(40,220,240), rgb(235,255,255))}
#filter-note {background: var(--background-fill-secondary); padding: 4px 8px; border-radius: 6px}
"""


def build_app(bundle: Bundle, demo: bool = False, compare: Bundle | None = None) -> gr.Blocks:
    """The whole UI over one bundle; `demo` marks the small model shipped in assets/ (a note says so); `compare`:
    another run on the same test set, for the Compare tab."""
    with gr.Blocks(title="Food-101 Explorer") as page:
        stage = header.build(bundle, demo)
        ctx = AppContext(bundle=bundle, blocks=page, stage=stage, demo=demo)
        ctx.predictor(bundle.stages[-1])  # load the served model now, not during the first request
        with gr.Tabs():
            predict_tab.build(ctx)
            confusion_tab.build(ctx)
            per_class_tab.build(ctx)
            mistakes_tab.build(ctx)
            slices_tab.build(ctx)
            map_tab.build(ctx)
            quality_tab.build(ctx)
            training_tab.build(ctx)
            calibration_tab.build(ctx)
            if compare is not None:
                compare_tab.build(ctx, compare)
    return page


def say_download(rel: str, size: int) -> None:
    """A Hub bundle's file fetched on its first use: said in the log and, within a request, on the page."""
    log_fetch(rel, size)
    gr.Info(f"Downloading {rel} ({size / 1e6:.1f} MB) from the Hub: once, on first use…", duration=6)


def no_run_app(message: str) -> gr.Blocks:
    """What the app shows when there is no bundle to load: what happened and how to make one."""
    with gr.Blocks(title="Food-101 Explorer") as page:
        gr.Markdown(
            "# Food-101 Explorer\n\n"
            f"**No run bundle could be loaded.** {message}\n\n"
            "Make one with `python train.py` (see the README), then start the app with "
            "`python app.py --run runs/NAME`, or point it at a bundle on the Hugging Face Hub with "
            "`--run OWNER/REPO` or the `FOOD101_RUN` environment variable.",
            elem_id="no-run",
        )
    return page
