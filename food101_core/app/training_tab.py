"""Training: loss and accuracy per epoch of both stages, the boundary between them marked."""

from __future__ import annotations

import json

import gradio as gr

from . import run_summary
from .context import AppContext


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    with gr.Tab("Training", id="training") as tab:
        gr.Plot(run_summary.training_figure(b), label="Loss and accuracy per epoch", elem_id="training-plot")

    def training() -> dict:
        """The training curves as plotly JSON."""
        return json.loads(run_summary.training_figure(b).to_json())

    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(training, api_name="training")
