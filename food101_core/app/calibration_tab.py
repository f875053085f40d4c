"""Calibration: the reliability diagram, and the expected calibration error of the chosen stage."""

from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go

from . import run_summary
from .context import AppContext


def build(ctx: AppContext) -> None:
    with gr.Tab("Calibration", id="calibration"):
        chart = gr.Plot(label="Reliability diagram", elem_id="calibration-plot")

    def reliability(stage: str) -> go.Figure:
        return run_summary.reliability_figure(ctx.bundle, stage)

    for trigger in (ctx.stage.change, ctx.blocks.load):
        trigger(reliability, [ctx.stage], [chart], api_name=False)
