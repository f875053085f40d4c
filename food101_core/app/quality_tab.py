"""Data quality: training photos whose label is probably wrong (filterable gallery, the list as CSV for
`train.py --exclude`), near-duplicate photos test↔train and within the test split side by side, counts per dish."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from ..bundle import BundleError
from . import errors, quality_report
from .context import AppContext

MAX_SUSPECTS = 120
MAX_PAIRS = 60
CSV_COLUMNS = ["rank", "id", "given", "suggested", "quality", "given_name", "suggested_name"]


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    names = sorted(b.class_names, key=str.lower)

    def api_suspects(given_name: str | None, suggested_name: str | None) -> list[dict]:
        """Suspected label errors of the training split, most suspect first (filters: dish names or None)."""
        try:
            return quality_report.suspects_table(b, given_name, suggested_name)[CSV_COLUMNS].to_dict("records")
        except BundleError as e:
            raise gr.Error(str(e)) from None

    with gr.Tab("Data quality", id="quality"):
        gr.api(api_suspects, api_name="suspects")  # inside the tab: gr.Tabs holds only tabs
        if not b.has_data_quality:
            gr.Markdown(quality_report.NO_DATA_QUALITY, elem_id="quality-missing")
            return
        gr.Markdown(quality_report.summary_line(b), elem_id="quality-summary")
        with gr.Row():
            given = gr.Dropdown([None, *names], value=None, label="Labelled as", elem_id="q-given")
            suggested = gr.Dropdown([None, *names], value=None, label="Looks like", elem_id="q-suggested")
        count = gr.Markdown(elem_id="suspect-count")
        gallery = gr.Gallery(columns=4, height=560, label="Suspect training labels", elem_id="suspects-gallery")
        csv = gr.DownloadButton("Download these suspects (CSV, for train.py --exclude)", elem_id="suspects-csv")
        gr.Markdown("### Near-duplicate photos")
        kind = gr.Radio(list(quality_report.KINDS), value=next(iter(quality_report.KINDS)), label="Pairs")
        pair_count = gr.Markdown(elem_id="pair-count")
        pairs = gr.Gallery(columns=3, height="auto", label="Pairs, most similar first", elem_id="pairs-gallery")
        chart = gr.Plot(label="Suspect labels by dish", elem_id="quality-plot")

    def suspects(given_name: str | None, suggested_name: str | None):
        items, line = quality_report.suspect_gallery(b, given_name, suggested_name, MAX_SUSPECTS)
        return items, line, write_suspects(ctx, given_name, suggested_name)

    def duplicates(kind_label: str):
        return quality_report.duplicate_gallery(b, quality_report.KINDS[kind_label], MAX_PAIRS)

    for trigger in (given.change, suggested.change, ctx.blocks.load):
        trigger(suspects, [given, suggested], [gallery, count, csv], api_name=False)
    for trigger in (kind.change, ctx.blocks.load):
        trigger(duplicates, [kind], [pairs, pair_count], api_name=False)
    ctx.blocks.load(lambda: quality_report.quality_figure(quality_report.class_counts(b)), None, chart, api_name=False)


def write_suspects(ctx: AppContext, given: str | None, suggested: str | None) -> Path:
    """The filtered suspect list as CSV (its `id` column is what train.py --exclude reads), one file per filter."""
    df = quality_report.suspects_table(ctx.bundle, given, suggested)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{given or 'all'}_as_{suggested or 'any'}").strip("-").lower()
    return errors.write_csv(df[CSV_COLUMNS], ctx.files / f"suspects_{slug}.csv")
