"""The large view of any gallery's photo: a click on a thumbnail shows it large under the gallery, with its caption,
the model's top 5 and, for a test photo, Grad-CAM (as the Mistakes tab does), then scrolls it into view."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from ..serving.gradcam import HEAT_KEY
from . import errors, marking
from .context import AppContext, show_js


def viewer(ctx: AppContext, gallery: gr.Gallery, elem_id: str) -> None:
    """Lay out, just under `gallery`, the box its clicked photo opens in, and bind the click to it."""
    with gr.Column(visible=False, elem_id=elem_id, elem_classes="photo-view") as box:
        caption = gr.Markdown(elem_classes="photo-view-caption")
        with gr.Row():
            big = gr.Image(label="The photo, large", interactive=False, height=300)
            with gr.Column():
                top5 = gr.Label(num_top_classes=5, label="The model's top 5")
                cam = gr.Image(label="Grad-CAM: where the model looked", interactive=False, height=300, visible=False)
                key = gr.HTML(HEAT_KEY, visible=False)
        which = gr.Textbox(visible=False)  # "split:id" of the photo shown, for its mark
        marking.panel(ctx, which)

    parts = {"box": box, "caption": caption, "big": big, "top5": top5, "cam": cam, "key": key, "which": which}

    def on_select(stage: str, evt: gr.SelectData) -> dict:  # Gradio injects `evt` by this annotation, not a partial's
        return {parts[name]: value for name, value in open_photo(ctx, stage, evt).items()}

    gallery.select(on_select, [ctx.view], list(parts.values()), api_name=False).then(None, js=show_js(f"#{elem_id}"))


def open_photo(ctx: AppContext, stage: str, evt: gr.SelectData) -> dict:
    """The clicked thumbnail, known again by its file's name: a test photo gets the evaluation's caption, top 5 and
    (with the full image on this machine) Grad-CAM; a training photo the model's top 5 on the thumbnail shown.
    Returns each part of the view by name (`viewer`'s `parts`)."""
    value = evt.value if isinstance(evt.value, dict) else {}
    image = value.get("image") or {}
    path = image.get("path") or ""
    words = value.get("caption") or ""
    found = ctx.bundle.photos.find(Path(image.get("orig_name") or path).name) if path else None
    b = ctx.bundle
    if found and found[0] == "test":  # a test photo, as the chosen stage answers it (a set's view: the final stage)
        return {**test_photo(ctx, b.stage_of(stage), b.test_ids.index(found[1])), "which": f"test:{found[1]}"}
    if found and b.is_set(found[0]):  # a set's photo: its source is its split
        return {**test_photo(ctx, found[0], b.source_index(found[0], found[1])), "which": ""}
    if not path:
        return {"box": gr.update(visible=True), "caption": "This photo could not be opened.", "big": None, "top5": None,
                "which": ""}  # fmt: skip
    shown = Image.open(path).convert("RGB")
    if found:  # a training photo: what the model answers for it, here and now
        pred = ctx.predictor(stage).predict(shown)
        top = {name: float(p) for _, name, p in pred.top}
        label = ctx.bundle.name_of.get(found[1].split("/")[0], "")
        words = (
            f"Training photo `{found[1]}`"
            + (f" · {words}" if words else "")
            + (f" · labelled **{label}**" if label and label not in words else "")
        )
        words += "\n\nTop 5: the model's answer for this thumbnail."
        return {**view_of(words, shown, top), "which": f"{found[0]}:{found[1]}" if found[0] == "train" else ""}
    return {**view_of(words, shown, None), "which": ""}


def view_of(words: str, shown, top: dict | None, heat=None) -> dict:
    """The view's parts by name: caption, the photo large, top 5, and Grad-CAM with its key (hidden without)."""
    cam = gr.update(value=heat, visible=heat is not None)
    return {"box": gr.update(visible=True), "caption": words, "big": shown, "top5": top, "cam": cam,
            "key": gr.update(visible=heat is not None)}  # fmt: skip


def test_photo(ctx: AppContext, stage: str, index: int) -> dict:
    """A test photo as Mistakes shows it: large, in words, its top 5 and Grad-CAM where the full image is here."""
    image, heat = ctx.test_photo(stage, index)
    words = errors.photo_caption(ctx.bundle, stage, index, heat is not None)
    return view_of(words, image, errors.top5_of(ctx.bundle, stage, index), heat)
