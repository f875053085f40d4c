"""Mistakes: the most confident wrong answers, filtered by true and predicted dish and confidence; one selected
shows large, with its top 5 and (where the full image is on this machine) Grad-CAM."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from ..bundle import Bundle
from ..serving.gradcam import HEAT_KEY
from . import errors, links, marking
from .context import ALL, AppContext, captioned_gallery, chosen, dish_filter, on_settled, show_js, tab_intro, tool
from .links import link
from .tabs import TITLE

MAX_GALLERY = 120
SHOW = {"mistakes only": True, "every photo, right ones too": False}  # label -> mistakes_only


def build(ctx: AppContext) -> None:
    with gr.Tab(TITLE["mistakes"], id="mistakes") as tab:
        tab_intro(
            "The test photos the model got wrong, the most confident first: each caption reads true dish → the "
            "model's answer · how sure it was. Click one to see it large. Choose “every photo” and a dish to "
            "browse all its test photos, right answers too."
        )
        f, count, gallery, v = layout(ctx)
        shown = gr.State([])
        gr.api(mistakes_api(ctx.bundle), api_name="mistakes")
    b = ctx.bundle

    def mistakes(stage: str, true_name: str | None, pred_name: str | None, min_conf_pct: float, show: str):
        true_name, pred_name = chosen(true_name), chosen(pred_name)
        return errors.mistake_gallery(b, stage, true_name, pred_name, min_conf_pct / 100, MAX_GALLERY, SHOW[show])

    # filled when the tab is opened (a Space downloading the bundle on demand fetches the photos only then)
    triggers = [f["true"].change, f["pred"].change, f["conf"].release, f["show"].change, ctx.view.change, tab.select]
    on_settled(triggers, mistakes, [ctx.view, *f.values()], [gallery, shown, count])
    bind_view(ctx, gallery, shown, v)
    for key, default, parse in (
        ("true", ALL, links.dish(b)),
        ("pred", ALL, links.dish(b)),
        ("conf", 0, links.number(0, 100)),
        ("show", next(iter(SHOW)), links.one_of(SHOW)),
    ):
        link(ctx, key, f[key], parse, default)  # fmt: skip


def layout(ctx: AppContext) -> tuple[dict, gr.Markdown, gr.Gallery, dict]:
    """The filters, the count, the gallery and the large view (its parts by name, with its mark's controls)."""
    names = sorted(ctx.bundle.class_names, key=str.lower)
    with gr.Row():
        f = {"true": dish_filter(names, "True dish", "f-true"), "pred": dish_filter(names, "Model's answer", "f-pred"),
             "conf": gr.Slider(0, 100, value=0, step=5, label="Minimum confidence (%)", elem_id="f-conf"),
             "show": gr.Radio(list(SHOW), value=next(iter(SHOW)), label="Show", elem_id="f-show")}  # fmt: skip
    count = gr.Markdown(elem_id="mistake-count")
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            gallery = captioned_gallery("Most confident mistakes", "mistakes-gallery", height=560)
        with gr.Column(scale=2, min_width=300, elem_id="mistake-view"):
            v = {"caption": gr.Markdown("Click a photo to see it here.", elem_id="mistake-caption"),
                 "big": gr.Image(label="Selected", interactive=False, height=300, visible=False),
                 "top5": gr.Label(num_top_classes=5, label="Its top 5", visible=False),
                 "cam": gr.Image(label="Grad-CAM: where the model looked", interactive=False, height=300,
                                 visible=False),
                 "key": gr.HTML(HEAT_KEY, visible=False),
                 "mark": gr.Textbox(visible=False),  # "test:ID" of the large photo, for its mark
                 "opened": gr.Textbox(visible=False, elem_id="mistake-opened")}  # its test id, for links  # fmt: skip
            marking.panel(ctx, v["mark"])
    return f, count, gallery, v


def bind_view(ctx: AppContext, gallery: gr.Gallery, shown: gr.State, v: dict) -> None:
    """A click on a photo opens it large; a link's photo opens again on load."""
    b, parts = ctx.bundle, list(v.values())

    def large(stage: str, index: int) -> dict:
        """One photo large: its caption, top 5 and Grad-CAM, and its id (which the page's URL keeps)."""
        image, heat = ctx.test_photo(stage, index)
        image_id = b.photo_id(stage, index)
        return {v["big"]: gr.update(value=image, visible=True), v["key"]: gr.update(visible=heat is not None),
                v["top5"]: gr.update(value=errors.top5_of(b, stage, index), visible=True),
                v["caption"]: errors.photo_caption(b, stage, index, heat is not None),
                v["cam"]: gr.update(value=heat, visible=heat is not None), v["opened"]: image_id,
                v["mark"]: "" if b.is_set(stage) else f"test:{image_id}"}  # fmt: skip

    def on_select(stage: str, indices: list[int], evt: gr.SelectData) -> dict:
        return large(stage, indices[evt.index])

    def reopen(stage: str, image_id: str) -> dict:
        """A link's photo opened again, if it is one of the chosen photos (else the notice says so)."""
        if not image_id:
            return links.unchanged(parts)
        try:
            return large(stage, b.source_index(stage, image_id))
        except (KeyError, ValueError, IndexError):
            gr.Info(f"This link's photo {image_id} is not among these photos, so it was left out.")
            return {v["opened"]: ""}

    gallery.select(on_select, [ctx.view, shown], parts, api_name=False).then(None, js=show_js("#mistake-caption"))
    link(ctx, "photo", v["opened"], str, "")
    links.restorer(ctx, reopen, [ctx.view, v["opened"]], parts)


def mistakes_api(b: Bundle) -> Callable:
    """`/mistakes`, also an MCP tool."""

    @tool("mistakes")
    def api_mistakes(stage: str, true_name: str | None, pred_name: str | None, min_conf: float) -> list[dict]:
        """The model's wrong answers on the test split, most confident first: index, id, true_name, pred_name,
        confidence.

        Args:
            stage: the model: "stage1" (head only), "stage2" (fine-tuned) or "stage3" (polished); the last is served.
            true_name: only photos of this true dish (display name); None or "All" for every dish.
            pred_name: only photos answered as this dish; None or "All" for every dish.
            min_conf: only answers at least this confident, 0 to 1.
        """
        m = errors.mistakes_table(b, stage, chosen(true_name), chosen(pred_name), min_conf)
        return m[["index", "id", "true_name", "pred_name", "confidence"]].to_dict("records")

    return api_mistakes
