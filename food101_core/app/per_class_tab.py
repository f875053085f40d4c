"""Per-class metrics: precision, recall, F1 and support per dish, the F1 chart, and the table as CSV."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from . import errors
from .context import AppContext


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    with gr.Tab("Per-class metrics", id="per-class") as tab, gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(
                label="Per class (click a header to sort)", interactive=False, elem_id="per-class-table"
            )
            csv = gr.DownloadButton("Download CSV", elem_id="csv")
        with gr.Column(scale=2):
            chart = gr.Plot(label="F1 by class", elem_id="f1-plot")

    def per_class(stage: str) -> tuple[pd.DataFrame, go.Figure, Path]:
        df = errors.per_class_table(b, stage)
        return df, errors.f1_figure(b, stage), errors.write_csv(df, ctx.files / f"per_class_{stage}.csv")

    def api_per_class(stage: str) -> list[dict]:
        """Precision, recall, F1 and support of every class, worst F1 first."""
        return errors.per_class_table(b, stage).to_dict("records")

    for trigger in (ctx.stage.change, ctx.blocks.load):
        trigger(per_class, [ctx.stage], [table, chart, csv], api_name=False)
    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(api_per_class, api_name="per_class")
