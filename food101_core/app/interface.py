"""`build_app`: the page over one bundle, composed of the header and one builder per tab."""

from __future__ import annotations

import gradio as gr

from ..bundle import Bundle
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
    training_tab,
)
from .context import PLOTLY_JS, AppContext

__all__ = ["CSS", "PLOTLY_JS", "build_app", "no_run_app"]

CSS = """
#header-text h2 {margin: 0 0 2px 0}
#header-text p {margin: 0}
.cm-hint {color: var(--body-text-color-subdued); font-size: 0.9em}
#results-table table {display: block; overflow-x: auto; white-space: nowrap}
#results-table th, #results-table td {padding: 4px 8px; font-size: 0.9em}
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
            map_tab.build(ctx)
            quality_tab.build(ctx)
            training_tab.build(ctx)
            calibration_tab.build(ctx)
            if compare is not None:
                compare_tab.build(ctx, compare)
    return page


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
