"""Confusion matrix: a clickable plotly heatmap (plotly.js served locally, drawn inside `gr.HTML`), the most
confused pairs, and the images of the chosen cell."""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from ..bundle import Bundle
from . import errors, links, photo_view
from .context import ALL, AppContext, captioned_gallery, on_settled, plotly_html, show_js, tab_intro, tool
from .links import link
from .tabs import TITLE

# plotly events -> Gradio events, bound once on the drawn chart
CONFUSION_BIND = """div.on('plotly_click', (ev) => {
      const p = ev.points[0];
      trigger('click', {true_class: String(p.y), pred_class: String(p.x)});
    });"""


def confusion(b: Bundle, stage: str, normalize: bool, hide_diagonal: bool, order: str) -> tuple[str, pd.DataFrame]:
    """The heatmap as plotly JSON, and the most confused pairs (all columns)."""
    fig = errors.confusion_figure(b, stage, normalize, hide_diagonal, order)
    return fig.to_json(), errors.most_confused_pairs(b, stage)


def build(ctx: AppContext) -> None:
    b = ctx.bundle

    def on_change(stage: str, normalize: bool, hide_diagonal: bool, order: str) -> tuple[str, pd.DataFrame]:
        fig_json, table = confusion(b, stage, normalize, hide_diagonal, order)
        return fig_json, pair_rows(table)

    with gr.Tab(TITLE["confusion"], id="confusion") as tab:
        normalize, hide_diag, order, plot, pairs, title, gallery = layout(*on_change(b.final_stage, False, True,
                                                                                     "by confusion"))  # fmt: skip
        photo_view.viewer(ctx, gallery, "pair-view")
        chosen_pair = gr.Textbox(visible=False, elem_id="chosen-pair")  # "True → Answered", for links

    @tool("confusion_pair")
    def pair(stage: str, true_name: str, pred_name: str) -> tuple[str, list]:
        """One cell of the confusion matrix: a heading (how many test photos of the true dish the model answered as
        the other) and their thumbnails as (path, caption), most confident first.

        Args:
            stage: the model: "stage1" (head only), "stage2" (fine-tuned) or "stage3" (polished); the last is served.
            true_name: the true dish, by display name ("Apple Pie").
            pred_name: the dish the model answered, by display name.
        """
        items, n = errors.pair_examples(b, stage, true_name, pred_name)
        return errors.pair_title(true_name, pred_name, n, len(items)), items

    def show_pair(stage: str, true_name: str, pred_name: str, extra: tuple) -> dict:
        """The pair's title and photos, and every following view's answer for it (`extra`: their inputs), each
        keyed by its component."""
        words, items = pair(stage, true_name, pred_name)
        out, at = {title: words, gallery: gr.update(value=items, visible=bool(items)), chosen_pair: PAIR.join(
            [true_name, pred_name])}, 0  # fmt: skip
        for f in ctx.pair_followers:
            out.update(f.answer(true_name, pred_name, *extra[at : at + len(f.inputs)]))
            at += len(f.inputs)
        return out

    @tool("confusion")
    def api_confusion(stage: str, normalize: bool, hide_diagonal: bool, order: str) -> dict:
        """The confusion matrix as a plotly figure (JSON) and the most confused pairs (true, predicted, images, % of
        the true dish), most photos first.

        Args:
            stage: the model: "stage1" (head only), "stage2" (fine-tuned) or "stage3" (polished); the last is served.
            normalize: each row as shares of the true dish instead of counts.
            hide_diagonal: leave the right answers out, so the mistakes stand out.
            order: the dishes' order, "alphabetical" or "by confusion" (confused dishes side by side).
        """
        fig_json, pairs_df = confusion(b, stage, normalize, hide_diagonal, order)
        return {"figure": json.loads(fig_json), "pairs": pairs_df.to_dict("records")}

    inputs = [ctx.view, normalize, hide_diag, order]
    on_settled([normalize.change, hide_diag.change, order.change, ctx.view.change], on_change, inputs, [plot, pairs])

    ctx.after_build.append(lambda: bind_pair(ctx, plot, pairs, [title, gallery, chosen_pair], show_pair))
    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(api_confusion, api_name="confusion")
        gr.api(pair, api_name="pair")


def bind_pair(ctx: AppContext, plot, pairs, shown: list, show_pair) -> None:
    """A cell and a row both choose the pair, one at a time in the order clicked; one answer (`show_pair`) sets its
    photos (`shown`: title, gallery, the pair's key) and the other tabs' menus that follow it (bound once those tabs
    exist). A link's pair is shown again on load the same way."""
    extra = [i for f in ctx.pair_followers for i in f.inputs]
    outputs = [*shown, *[o for f in ctx.pair_followers for o in f.outputs]]

    def on_cell_click(stage: str, evt: gr.EventData, *extra):  # Gradio injects `evt` at its place among positionals
        return show_pair(stage, evt.true_class, evt.pred_class, extra)

    def on_row_select(stage: str, table: pd.DataFrame, evt: gr.SelectData, *extra):
        row = evt.row_value or table.iloc[evt.index[0]].tolist()
        return show_pair(stage, *row[0].split(" → "), extra)

    def reopen(stage: str, key: str, *extra) -> dict:
        return show_pair(stage, *key.split(PAIR), extra) if key else links.unchanged(outputs)

    one_pair = {"concurrency_id": "confusion-pair", "concurrency_limit": 1, "api_name": False}
    plot.click(on_cell_click, [ctx.view, *extra], outputs, **one_pair).then(None, js=show_js("#pair-title"))
    pairs.select(on_row_select, [ctx.view, pairs, *extra], outputs, **one_pair).then(None, js=show_js("#pair-title"))
    link(ctx, "pair", shown[2], pair_of(ctx.bundle), "")
    links.restorer(ctx, reopen, [ctx.view, shown[2], *extra], outputs)


def layout(fig_json: str, top_pairs: pd.DataFrame) -> tuple:
    """The tab's components, drawn with the page: the options, the heatmap, the pairs list and the cell's photos."""
    tab_intro(
        "Which dish the model answers for each true dish: rows are the true dish, columns the answer, so "
        "every off-diagonal cell is a kind of mistake. The list of the most confused pairs comes first on a phone."
    )
    with gr.Row():  # one column each, so that a phone stacks them instead of squeezing their words
        with gr.Column(min_width=240):
            normalize = gr.Checkbox(label="Shares of each true dish, not counts", value=False)
        with gr.Column(min_width=240):
            hide_diag = gr.Checkbox(label="Hide the right answers (the diagonal)", value=True)
        with gr.Column(min_width=240):
            order = gr.Radio(["alphabetical", "by confusion"], value="by confusion", label="Order")
    gr.Markdown(
        "Zoom by dragging (on a phone: scroll the matrix sideways); hover for names and counts; **click a cell** "
        "to see its images.",
        elem_classes="cm-hint",
    )
    plot = plotly_html("cm-plot", "confusion-plot", CONFUSION_BIND, fig_json)
    with gr.Row(elem_id="cm-pairs-first"):
        with gr.Column(scale=2, min_width=300):
            pairs = gr.Dataframe(
                top_pairs, label="Most confused pairs (click a row)", interactive=False, elem_id="pairs", wrap=True
            )
        with gr.Column(scale=3, min_width=300):
            title = gr.Markdown("Click a cell or a row to see the images.", elem_id="pair-title")
            gallery = captioned_gallery(
                "Images of the pair (confidence · photo)", "pair-gallery", height=420, visible=False
            )
    return normalize, hide_diag, order, plot, pairs, title, gallery


PAIR = " → "


def pair_of(b: Bundle):
    """The URL's pair ("Apple Pie → Baklava", or by ids) as display names, or ValueError for a dish not in the run."""
    dish = links.dish(b)

    def parse(text: str) -> str:
        sides = text.split(PAIR.strip())
        if len(sides) != 2 or ALL in (names := [dish(s) for s in sides]):
            raise ValueError(text)
        return PAIR.join(names)

    return parse


def pair_rows(pairs: pd.DataFrame) -> pd.DataFrame:
    """The most confused pairs as the page shows them: three short columns that fit a phone."""
    return pd.DataFrame(
        {
            "true → answered": pairs["true"] + " → " + pairs["predicted"],
            "photos": pairs["images"],
            "% of the dish": pairs["% of true class"],
        }
    )
