"""Per-class metrics: precision, recall, F1 and support per dish, the F1 chart, and the table as CSV."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from . import errors
from .context import AppContext, plotly_html, scroll_hint, tab_intro, tool
from .tabs import TITLE


def build(ctx: AppContext) -> None:
    b = ctx.bundle

    def per_class(stage: str) -> tuple[pd.DataFrame, str, Path]:
        df = errors.per_class_table(b, stage)  # the page shows 3 decimals (a phone's columns), the CSV all of them
        shown = df.round({c: 3 for c in df.select_dtypes("float").columns})
        return shown, errors.f1_figure(b, stage).to_json(), errors.write_csv(df, ctx.files / f"per_class_{stage}.csv")

    df, fig_json, path = per_class(b.final_stage)  # drawn with the page, not after a round trip
    with gr.Tab(TITLE["per-class"], id="per-class") as tab:
        tab_intro(
            "How well each dish is recognised. Precision: of the photos called this dish, the share that are; "
            "recall: of this dish's photos, the share found; F1 combines both (1 is perfect)."
        )
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                table = gr.Dataframe(
                    df, label="Per class, worst F1 first (click a header to sort)", interactive=False,
                    elem_id="per-class-table", wrap=True,
                )  # fmt: skip
                scroll_hint()
                csv = gr.DownloadButton("Download CSV", path, elem_id="csv")
            with gr.Column(scale=2, min_width=300):
                plot = plotly_html("f1-plot", "f1-plot", "", fig_json)

    @tool("per_class")
    def api_per_class(stage: str) -> list[dict]:
        """Every dish's precision, recall, F1 and support (test photos) for one model, worst F1 first.

        Args:
            stage: the model: "stage1" (head only), "stage2" (fine-tuned) or "stage3" (polished); the last is served.
        """
        return errors.per_class_table(b, stage).to_dict("records")

    ctx.view.change(per_class, [ctx.view], [table, plot, csv], api_name=False)
    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(api_per_class, api_name="per_class")
