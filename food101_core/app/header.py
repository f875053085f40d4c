"""The top of the page: the title, one summary line, the demo note (demo bundle only), run details, Model choice."""

from __future__ import annotations

import gradio as gr

from ..backbones import BACKBONES
from ..bundle import Bundle
from . import run_summary
from .context import stage_label

DEMO_NOTE = (
    "**Demo model**: {backbone} fine-tuned on a CPU on *food101-mini* (10 Food-101 classes), shipped so that the "
    "app works offline. The full recipe is EfficientNetB0 on all 101 classes: `python train.py` (README)."
)


def header_text(b: Bundle, stage: str | None = None) -> str:
    """The page's one h1, the summary line (a desktop) and the selected model's top-1 alone (a phone, whose header
    is one line, title, top-1 and Model, so the number stands alone: interface.CSS shows one paragraph or the
    other; Run details say the rest)."""
    top1 = b.evaluation(stage or b.stages[-1]).metrics["top1"]
    return f"# Food-101 Explorer\n\n{run_summary.summary_line(b, stage)}\n\n**{top1:.1%}**"


def build(b: Bundle, demo: bool) -> gr.Dropdown:
    """Lays out the header and returns the Model selector that every tab reads. On a phone it folds to one line
    (title, top-1, Model); the demo note and everything else wait behind the Run details tap."""
    with gr.Row(equal_height=True, elem_id="header"):
        with gr.Column(scale=4, min_width=160):
            title = gr.Markdown(header_text(b), elem_id="header-text")
        stage = gr.Dropdown(
            [(stage_label(b, s), s) for s in reversed(b.stages)],
            value=b.stages[-1],
            label="Model",
            elem_id="stage",
            scale=1,
            min_width=150,
        )
    note = DEMO_NOTE.format(backbone=BACKBONES[b.train_config.backbone].builder) if demo else ""
    if demo:
        gr.Markdown(note, elem_id="demo-note", elem_classes="desktop-only")
    with gr.Accordion("Run details: recipe, data and every stage's results", open=False, elem_id="run-details"):
        if demo:
            gr.Markdown(note, elem_classes="phone-only")
        gr.Markdown(run_summary.summary_details(b), elem_id="summary")
        gr.Markdown(run_summary.results_table(b), elem_id="results-table")

    def metrics(stage: str) -> dict:
        """A stage's test metrics: top-1, top-5, macro averages, ECE and the reliability bins."""
        return b.evaluation(stage).metrics

    gr.api(metrics, api_name="metrics")
    stage.change(lambda s: header_text(b, s), stage, title, api_name=False)
    return stage
