"""Slices: the kinds of photos the final model fails on, named in words ("very dark photos of steak: 41 % right
against 80 %"), found at evaluation; a click lists a slice's photos."""

from __future__ import annotations

import gradio as gr

from ..bundle import BundleError
from . import photo_view, slice_report
from .context import AppContext, captioned_gallery, scroll_hint, show_js, tab_intro, tool
from .tabs import TITLE

MAX_GALLERY = 60


def build(ctx: AppContext) -> None:
    b = ctx.bundle

    @tool("slices")
    def api_slices() -> list[dict]:
        """Where the served model fails: groups of test photos (a dish, dark photos, a region of the map...) on which
        it is significantly less accurate than on the rest, each as {name (in words), conditions, n, accuracy,
        overall, p_value}, the worst first."""
        try:
            return slice_report.api_rows(b)
        except BundleError as e:
            raise gr.Error(str(e)) from None

    with gr.Tab(TITLE["slices"], id="slices"):
        gr.api(api_slices, api_name="slices")  # inside the tab: gr.Tabs holds only tabs
        if b.slices() is None:
            gr.Markdown(slice_report.NO_SLICES, elem_id="slices-missing")
            return
        tab_intro(
            "Kinds of photos the final model fails on, found among groups of one or two readable conditions "
            "(brightness, contrast, sharpness, colour, detail, shape, size, dish; with the analyses, how unfamiliar "
            "a photo is and where it lies on the map)."
        )
        summary = gr.Markdown(slice_report.summary_line(b), elem_id="slices-summary")
        table = gr.Dataframe(slice_report.slices_table(b), label="Failure slices, most significant first",
                             interactive=False, wrap=True, elem_id="slices-table")  # fmt: skip
        scroll_hint()
        line = gr.Markdown(elem_id="slice-line")
        gallery = captioned_gallery("The slice's photos (true → answer ✓/✗)", "slice-gallery", height=480)
        photo_view.viewer(ctx, gallery, "slice-view")

    def show(source: str, evt: gr.SelectData):
        items, words = slice_report.slice_gallery(b, evt.index[0], MAX_GALLERY, source)
        return gr.update(value=items, visible=True), words

    def follow(source: str):
        """The slices of the photos chosen in the header (the final model's on the test split, or a set's)."""
        try:
            return slice_report.summary_line(b, source), slice_report.slices_table(b, source), gr.update(value=[])
        except BundleError as e:
            return str(e), slice_report.slices_table(b).head(0), gr.update(value=[])

    table.select(show, ctx.view, [gallery, line], api_name=False).then(None, js=show_js("#slice-line"))
    ctx.view.change(follow, ctx.view, [summary, table, gallery], api_name=False)
