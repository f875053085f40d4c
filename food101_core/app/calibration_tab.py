"""Calibration: the reliability diagram, and the expected calibration error of the chosen stage."""

from __future__ import annotations

import gradio as gr

from ..bundle import Bundle
from . import run_summary
from .context import AppContext, chart, tab_intro
from .tabs import TITLE


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    with gr.Tab(TITLE["calibration"], id="calibration"):
        tab_intro(intro(b))
        plot = chart(run_summary.reliability_figure(b, b.final_stage), "calibration-plot")

    def reliability(stage: str) -> str:
        return run_summary.reliability_figure(b, stage).to_json()

    ctx.view.change(reliability, [ctx.view], [plot], api_name=False)


def intro(b: Bundle) -> str:
    """What the diagram shows and what its two terms mean, saying temperature scaling only where it was done."""
    words = (
        "Whether the model's confidence can be trusted: the test photos grouped by how sure the model was, "
        'against how often it was right. On the dashed line, "80 % sure" means right 80 % of the time. '
        "The calibration error (ECE, expected calibration error) is how far the stated confidence is from "
        "the real share right, on average (0 is perfect)."
    )
    if not (b.evaluation().metrics.get("calibration") or {}).get("fitted_on"):
        return words + " The confidences are the model's own: no held-out photos were kept to adjust them."
    return words + (
        " The confidences were adjusted by temperature scaling: one number, fitted on training photos held out "
        "from training, that makes the model more or less sure without changing the order of its answers. "
        "Grey crosses show where they were before."
    )
