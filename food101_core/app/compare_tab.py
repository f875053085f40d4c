"""Compare: this run (A) against another evaluated on the same test set (B): the headline metrics side by side,
whether the top-1 difference is real (paired bootstrap interval, exact McNemar), the per-class F1 change, and the
photos that one run gets right and the other wrong."""

from __future__ import annotations

import gradio as gr

from .. import compare
from ..bundle import Bundle
from . import comparison, photo_view
from .context import AppContext, captioned_gallery, chart, tab_intro, tool
from .tabs import TITLE

MAX_FLIPS = 120
FLIPS = {"right in A only": "a_only", "right in B only": "b_only"}


def build(ctx: AppContext, other: Bundle) -> None:
    a = ctx.bundle
    try:
        c = compare.compare(a, other)
    except compare.CompareError as e:
        with gr.Tab(TITLE["compare"], id="compare"):
            gr.Markdown(f"**These runs cannot be compared:** {e}.", elem_id="compare-error")
        return

    @tool("compare")
    def api_compare() -> dict:
        """Top-1 of both runs, the paired bootstrap 95 % interval of B - A, exact McNemar p, flips, per class."""
        return c.to_dict()

    with gr.Tab(TITLE["compare"], id="compare"):
        gr.api(api_compare, api_name="compare")
        tab_intro(
            "This run (A) against another on the same test photos (B): whether the difference in top-1 is more than "
            "chance, which dishes each does better, and the photos one gets right and the other wrong."
        )
        gr.Markdown(f"**A**: `{c.name_a}` (this run) · **B**: `{c.name_b}`", elem_id="compare-names")
        with gr.Row():
            gr.Dataframe(c.metrics.round(4), label="Test split, shipped stage of each", elem_id="compare-table")
            gr.Markdown(compare.verdict(c), elem_id="compare-verdict")
        chart(comparison.f1_change_figure(c.per_class, "A", "B"), "compare-plot")
        which = gr.Radio(list(FLIPS), value=next(iter(FLIPS)), label="Flips", elem_id="compare-which")
        gallery = captioned_gallery(
            "Photos the runs disagree on (each run's answer, ✓ right)", "compare-flips", height=420
        )
        photo_view.viewer(ctx, gallery, "flip-view")

    def flips(label: str) -> list[tuple[str, str]]:
        indices = getattr(c, FLIPS[label])
        pa, pb = a.evaluation(a.final_stage).predictions, other.evaluation(other.final_stage).predictions
        items = []
        for i in indices:
            # a flip is wrong in one run, whose bundle may keep its thumbnail
            thumb = a.thumb(i) if a.has_thumb(i) else other.thumb(i)
            if thumb is not None:
                mark = ("✓", "✗") if label.endswith("A only") else ("✗", "✓")
                items.append((str(thumb), f"A: {a.name_of[pa['pred'].iloc[i]]} {mark[0]} · "
                                          f"B: {other.name_of[pb['pred'].iloc[i]]} {mark[1]}"))  # fmt: skip
            if len(items) >= MAX_FLIPS:
                break
        return items

    for trigger in (which.change, ctx.blocks.load):
        trigger(flips, which, gallery, api_name=False)
