"""Confusion matrix: a clickable plotly heatmap (plotly.js served locally, drawn inside `gr.HTML`), the most
confused pairs, and the images of the chosen cell."""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from . import errors
from .context import AppContext, plotly_html

# plotly events -> Gradio events, bound once on the drawn chart
CONFUSION_BIND = """div.on('plotly_click', (ev) => {
      const p = ev.points[0];
      trigger('click', {true_class: String(p.y), pred_class: String(p.x)});
    });"""


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    with gr.Tab("Confusion matrix", id="confusion") as tab:
        with gr.Row():
            normalize = gr.Checkbox(label="Row-normalised (share of the true class)", value=False)
            hide_diag = gr.Checkbox(label="Hide the diagonal (correct predictions)", value=True)
            order = gr.Radio(["alphabetical", "by confusion"], value="by confusion", label="Order")
        gr.Markdown(
            "Zoom by dragging; hover for names and counts; **click a cell** to see its images.", elem_classes="cm-hint"
        )
        plot = plotly_html("cm-plot", "confusion-plot", CONFUSION_BIND)
        with gr.Row():
            with gr.Column(scale=2):
                pairs = gr.Dataframe(label="Most confused pairs (click a row)", interactive=False, elem_id="pairs")
            with gr.Column(scale=3):
                title = gr.Markdown("Click a cell or a row to see the images.", elem_id="pair-title")
                gallery = gr.Gallery(columns=6, height=420, label="Images of the pair", elem_id="pair-gallery")

    def confusion(stage: str, normalize: bool, hide_diagonal: bool, order: str) -> tuple[str, pd.DataFrame]:
        fig = errors.confusion_figure(b, stage, normalize, hide_diagonal, order)
        return fig.to_json(), errors.most_confused_pairs(b, stage)

    def pair(stage: str, true_name: str, pred_name: str) -> tuple[str, list]:
        """The heading and thumbnails (path, caption) of one (true, predicted) cell, most confident first."""
        items, n = errors.pair_examples(b, stage, true_name, pred_name)
        return errors.pair_title(true_name, pred_name, n, len(items)), items

    def on_cell_click(stage: str, evt: gr.EventData):
        return *pair(stage, evt.true_class, evt.pred_class), (evt.true_class, evt.pred_class)

    def on_row_select(stage: str, table: pd.DataFrame, evt: gr.SelectData):
        row = evt.row_value or table.iloc[evt.index[0]].tolist()
        return *pair(stage, row[0], row[1]), (row[0], row[1])

    def api_confusion(stage: str, normalize: bool, hide_diagonal: bool, order: str) -> dict:
        """The heatmap as plotly JSON, and the most confused pairs."""
        fig_json, pairs_df = confusion(stage, normalize, hide_diagonal, order)
        return {"figure": json.loads(fig_json), "pairs": pairs_df.to_dict("records")}

    inputs = [ctx.stage, normalize, hide_diag, order]
    for trigger in (normalize.change, hide_diag.change, order.change, ctx.stage.change, ctx.blocks.load):
        trigger(confusion, inputs, [plot, pairs], api_name=False)
    plot.click(on_cell_click, [ctx.stage], [title, gallery, ctx.pair], api_name=False)
    pairs.select(on_row_select, [ctx.stage, pairs], [title, gallery, ctx.pair], api_name=False)
    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(api_confusion, api_name="confusion")
        gr.api(pair, api_name="pair")
