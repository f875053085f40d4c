"""Calibration: the reliability diagram, and the expected calibration error of the chosen stage."""

from __future__ import annotations

import gradio as gr

from . import run_summary
from .context import AppContext, chart, tab_intro


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    with gr.Tab("Calibration", id="calibration"):
        tab_intro(
            "Whether the model's confidence can be trusted: the test photos grouped by how sure the model was, "
            'against how often it was right. On the dashed line, "80 % sure" means right 80 % of the time; the '
            "calibration error (ECE) is the average gap. A temperature fitted on held-out photos rescales the "
            "confidences (never the ranking); grey crosses show where they were before."
        )
        plot = chart(run_summary.reliability_figure(b, b.stages[-1]), "calibration-plot")

    def reliability(stage: str) -> str:
        return run_summary.reliability_figure(b, stage).to_json()

    ctx.stage.change(reliability, [ctx.stage], [plot], api_name=False)
