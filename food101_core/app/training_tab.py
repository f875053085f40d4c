"""Training: loss and accuracy per epoch of both stages, the boundary between them marked."""

from __future__ import annotations

import json

import gradio as gr

from . import run_summary
from .context import AppContext, chart, tab_intro
from .tabs import TITLE


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    with gr.Tab(TITLE["training"], id="training") as tab:
        tab_intro(
            "How the model learnt, epoch by epoch (an epoch: one pass over the training photos). Above, the loss "
            "(lower is better); below, the top-1 accuracy (the share of photos whose first answer is right). "
            "Stage 1 trains only the model's new last layer; stage 2 also fine-tunes layers of the network under it. "
            f"{run_summary.held_out_words(b.train_config)} The training line is measured while training, with its "
            "random changes on (dropout, and augmentation or MixUp when the recipe uses them), so it can sit below "
            "the dotted line, and it drops when stage 2 starts training on full images."
        )
        chart(run_summary.training_figure(b), "training-plot")

    def training() -> dict:
        """The training curves (loss and accuracy per epoch, on training photos and held-out ones, per stage) as a
        plotly figure (JSON)."""
        return json.loads(run_summary.training_figure(b).to_json())

    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(training, api_name="training")
