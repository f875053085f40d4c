"""Training: loss and accuracy per epoch of both stages, the boundary between them marked."""

from __future__ import annotations

import json

import gradio as gr

from . import run_summary
from .context import AppContext, chart, tab_intro


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    with gr.Tab("Training", id="training") as tab:
        tab_intro(
            "How the model learnt, epoch by epoch: the loss and the top-1 accuracy on the training photos and on "
            "photos it never trained on, with the start of each stage marked. Train accuracy is measured on the "
            "batches as they were trained (dropout on, and augmentation or MixUp when the recipe uses them), so it "
            "can sit below the held-out line, and it drops when stage 2 starts training on full images."
        )
        chart(run_summary.training_figure(b), "training-plot")

    def training() -> dict:
        """The training curves as plotly JSON."""
        return json.loads(run_summary.training_figure(b).to_json())

    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(training, api_name="training")
