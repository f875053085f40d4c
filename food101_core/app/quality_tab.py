"""Data quality: training photos whose label is probably wrong (filterable gallery, the list as CSV for
`train.py --exclude`), near-duplicate photos test↔train and within the test split side by side, counts per dish."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from ..bundle import BundleError
from . import errors, links, marking, photo_view, quality_report
from .context import ALL, AppContext, captioned_gallery, chart, chosen, dish_filter, on_settled, tool
from .links import link
from .tabs import TITLE

MAX_SUSPECTS = 120
MAX_PAIRS = 60
CSV_COLUMNS = ["rank", "id", "given", "suggested", "quality", "given_name", "suggested_name"]


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    names = sorted(b.class_names, key=str.lower)

    @tool("suspects")
    def api_suspects(given_name: str | None, suggested_name: str | None) -> list[dict]:
        """Training photos whose label looks wrong (cleanlab on cross-validated predictions), most suspect first:
        id, the given label, the suggested one and a label-quality score (0 to 1, low is suspect).

        Args:
            given_name: only photos labelled as this dish (display name); None or "All" for every dish.
            suggested_name: only photos that look like this dish; None or "All" for every dish.
        """
        try:
            table = quality_report.suspects_table(b, chosen(given_name), chosen(suggested_name))
            return table[CSV_COLUMNS].to_dict("records")
        except BundleError as e:
            raise gr.Error(str(e)) from None

    def suspects(given_name: str | None, suggested_name: str | None):
        given_name, suggested_name = chosen(given_name), chosen(suggested_name)
        items, line = quality_report.suspect_gallery(b, given_name, suggested_name, MAX_SUSPECTS)
        return items, line, write_suspects(ctx, given_name, suggested_name)

    def duplicates(kind_label: str):
        return quality_report.duplicate_gallery(b, quality_report.KINDS[kind_label], MAX_PAIRS)

    with gr.Tab(TITLE["quality"], id="quality") as tab:
        gr.api(api_suspects, api_name="suspects")  # inside the tab: gr.Tabs holds only tabs
        marks_section(ctx)
        if not b.has_data_quality:
            gr.Markdown(quality_report.NO_DATA_QUALITY, elem_id="quality-missing")
            return
        gr.Markdown(quality_report.summary_line(b), elem_id="quality-summary")
        with gr.Row():
            given = dish_filter(names, "Labelled as", "q-given")
            suggested = dish_filter(names, "Looks like", "q-suggested")
        count = gr.Markdown(elem_id="suspect-count")
        gallery = captioned_gallery("Suspect training labels", "suspects-gallery", height=560)
        photo_view.viewer(ctx, gallery, "suspect-view")
        link(ctx, "given", given, links.dish(b), ALL)
        link(ctx, "suggested", suggested, links.dish(b), ALL)
        csv = gr.DownloadButton("Download these suspects (CSV, for train.py --exclude)", elem_id="suspects-csv")
        image_checks_section(ctx, tab)
        gr.Markdown("### Near-duplicate photos")
        kind = gr.Radio(list(quality_report.KINDS), value=next(iter(quality_report.KINDS)), label="Pairs")
        pair_count = gr.Markdown(elem_id="pair-count")
        pairs = captioned_gallery(
            "Pairs, most similar first (both photos · their distance)", "pairs-gallery", object_fit="contain"
        )
        photo_view.viewer(ctx, pairs, "pair-photo-view")
        chart(quality_report.quality_figure(quality_report.class_counts(b)), "quality-plot")

    # filled when the tab is opened: a Space downloading the bundle on demand fetches these photos only then
    on_settled([given.change, suggested.change, tab.select], suspects, [given, suggested], [gallery, count, csv])
    on_settled([kind.change, tab.select], duplicates, [kind], [pairs, pair_count])


def marks_section(ctx: AppContext) -> None:
    """Every mark made in this browser (any tab's large photo): counted, listed, downloadable for train.py."""
    with gr.Accordion("Your marks", open=False, elem_id="marks"):
        words = gr.Markdown(marking.summary([]), elem_id="marks-summary")
        listed = gr.Dataframe(marking.table(ctx.bundle, []), interactive=False, elem_id="marks-table", wrap=True)
        download = gr.DownloadButton("Download my marks (CSV, for train.py --exclude and --relabel)",
                                     elem_id="marks-csv", visible=False)  # fmt: skip

    def show(all_marks: list | None) -> dict:
        path = marking.write_csv(ctx.files, all_marks)
        return {words: marking.summary(all_marks), listed: marking.table(ctx.bundle, all_marks),
                download: gr.update(value=path, visible=path is not None)}  # fmt: skip

    ctx.marks.change(show, ctx.marks, [words, listed, download], api_name=False)
    ctx.blocks.load(show, ctx.marks, [words, listed, download], api_name=False)


def image_checks_section(ctx: AppContext, tab: gr.Tab) -> None:
    """The training photos CleanVision's checks flag, one check at a time: counts, a gallery, the ids as CSV."""
    b = ctx.bundle
    gr.Markdown("### Image checks: dark, blurry, near-constant, odd size…")
    counts = quality_report.image_check_counts(b)
    check = gr.Radio(
        [(f"{quality_report.CHECK_WORDS[c]} ({n:,})", c) for c, n in counts.items()],
        value=max(counts, key=counts.get) if counts else None,
        label="Training photos flagged by CleanVision's checks",
        elem_id="q-check",
    )
    check_count = gr.Markdown(elem_id="check-count")
    check_gallery = captioned_gallery("Flagged training photos (label · id)", "checks-gallery", height=360)
    photo_view.viewer(ctx, check_gallery, "check-view")
    check_csv = gr.DownloadButton("Download these photos' ids (CSV, for train.py --exclude)", elem_id="checks-csv")

    def flagged(name: str | None):
        if not name:
            return [], "No image check flags any training photo.", None
        items, line, table = quality_report.image_check_gallery(b, name, MAX_SUSPECTS)
        path = None if table is None else errors.write_csv(table, ctx.files / f"image_check_{name}.csv")
        return items, line, path

    on_settled([check.change, tab.select], flagged, [check], [check_gallery, check_count, check_csv])


def write_suspects(ctx: AppContext, given: str | None, suggested: str | None) -> Path:
    """The filtered suspect list as CSV (its `id` column is what train.py --exclude reads), one file per filter."""
    df = quality_report.suspects_table(ctx.bundle, given, suggested)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{given or 'all'}_as_{suggested or 'any'}").strip("-").lower()
    return errors.write_csv(df[CSV_COLUMNS], ctx.files / f"suspects_{slug}.csv")
