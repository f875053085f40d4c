"""Mistakes: the most confident wrong answers, filtered by true and predicted dish and confidence; one selected
shows large, with its top 5 and (where the full image is on this machine) Grad-CAM."""

from __future__ import annotations

import gradio as gr

from . import errors
from .context import AppContext

MAX_GALLERY = 120


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    names = sorted(b.class_names, key=str.lower)
    with gr.Tab("Mistakes", id="mistakes") as tab:
        with gr.Row():
            f_true = gr.Dropdown([None, *names], value=None, label="True class", elem_id="f-true")
            f_pred = gr.Dropdown([None, *names], value=None, label="Predicted class", elem_id="f-pred")
            f_conf = gr.Slider(0, 1, value=0.0, step=0.05, label="Minimum confidence", elem_id="f-conf")
        count = gr.Markdown(elem_id="mistake-count")
        with gr.Row():
            gallery = gr.Gallery(columns=6, height=520, label="Most confident mistakes", elem_id="mistakes-gallery")
            with gr.Column():
                big = gr.Image(label="Selected", interactive=False, height=300)
                caption = gr.Markdown()
                top5 = gr.Label(num_top_classes=5, label="Its top 5")
                cam = gr.Image(label="Grad-CAM", interactive=False, height=300)
        shown = gr.State([])

    def mistakes(stage: str, true_name: str | None, pred_name: str | None, min_conf: float):
        return errors.mistake_gallery(b, stage, true_name, pred_name, min_conf, MAX_GALLERY)

    def on_select(stage: str, indices: list[int], evt: gr.SelectData):
        index = indices[evt.index]
        image, heat = ctx.test_photo(stage, index)
        caption = errors.mistake_caption(b, stage, index, heat is not None)
        return image, errors.top5_of(b, stage, index), caption, heat

    def api_mistakes(stage: str, true_name: str | None, pred_name: str | None, min_conf: float) -> list[dict]:
        """Every mistake passing the filters, most confident first (index and id refer to the test set)."""
        m = errors.mistakes_table(b, stage, true_name, pred_name, min_conf)
        return m[["index", "id", "true_name", "pred_name", "confidence"]].to_dict("records")

    inputs = [ctx.stage, f_true, f_pred, f_conf]
    for trigger in (f_true.change, f_pred.change, f_conf.release, ctx.stage.change, ctx.blocks.load):
        trigger(mistakes, inputs, [gallery, shown, count], api_name=False)
    gallery.select(on_select, [ctx.stage, shown], [big, top5, caption, cam], api_name=False)
    with tab:  # endpoints live inside their tab: gr.Tabs holds only tabs
        gr.api(api_mistakes, api_name="mistakes")
