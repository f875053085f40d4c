"""Predict: a photo in (upload, webcam, paste or a test photo), the top 5 out, Grad-CAM on request."""

from __future__ import annotations

from functools import partial

import gradio as gr
import numpy as np
from PIL import Image

from ..serving.gradcam import overlay_heatmap
from ..serving.images import ImageError, read_image
from ..serving.predictor import LOW_CONFIDENCE
from . import neighbours
from .context import AppContext, UploadedImage

START = "Upload, paste or take a photo of a dish, or click one of the test photos below."


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    examples = neighbours.example_photos(b, ctx.predictor(b.stages[-1]))
    with gr.Tab("Predict", id="predict") as tab, gr.Row():
        with gr.Column(min_width=300):
            photo = UploadedImage(
                type="filepath",
                sources=["upload", "webcam", "clipboard"],
                label="Your photo",
                format="png",  # a photo set by the app (a test photo) keeps its exact pixels
                height=300,
                elem_id="photo",
            )
            with gr.Row():
                show_cam = gr.Checkbox(label="Show Grad-CAM: where the model looked", value=False, scale=2)
                go_btn = gr.Button("Predict", variant="primary", elem_id="predict-btn", scale=1)
            cam_out = gr.Image(label="Grad-CAM", interactive=False, height=300, elem_id="gradcam")
        with gr.Column(min_width=300):
            top5 = gr.Label(num_top_classes=5, label="Top 5 dishes", elem_id="top5")
            verdict = gr.Markdown(START, elem_id="verdict")
            similar = gr.Gallery(
                label="Similar training photos (label · distance): what the model finds most alike",
                columns=3,
                height="auto",
                object_fit="cover",
                allow_preview=False,
                elem_id="similar",
                visible=b.has_feature_space,
            )
            found = gr.State([])  # inside the tab: gr.Tabs must hold only tabs, or the tab bar mislabels them
            gallery = gr.Gallery(
                [(path, caption) for path, caption, _ in examples],
                label="Test photos: click one to predict it (✓ the model gets it right, ✗ it does not)",
                columns=4,
                height="auto",
                fit_columns=False,
                object_fit="cover",
                allow_preview=False,
                elem_id="examples",
                visible=bool(examples),
            )

    def pick_example(evt: gr.SelectData) -> Image.Image:
        return read_image(examples[evt.index][2])

    predict = partial(predict_photo, ctx)
    # /predict keeps its three outputs (scripts rely on them): the similar photos travel in a State, which the API
    # leaves out, and a follow-up step shows them.
    inputs, outputs = [photo, show_cam, ctx.stage], [top5, verdict, cam_out, found]
    go_btn.click(predict, inputs, outputs, api_name="predict").then(lambda x: x, found, similar, api_name=False)
    photo.change(predict, inputs, outputs, api_name=False).then(lambda x: x, found, similar, api_name=False)
    gallery.select(pick_example, None, photo, api_name=False)
    with tab:  # for scripts only: no button on the page
        explained = gr.JSON(visible=False)
        explain = partial(explain_photo, ctx)
        gr.Button(visible=False).click(explain, [photo, ctx.stage], explained, api_name="explain")


def predict_photo(ctx: AppContext, path: str | None, cam: bool, stage: str):
    """Top 5 dishes ({name: probability}), a verdict in words, Grad-CAM when asked for, similar training photos."""
    if not path:
        return None, START, None, []
    b, p = ctx.bundle, ctx.predictor(stage)
    try:
        image = p.read(path)
    except ImageError as e:
        return None, f"⚠️ {e}", None, []
    pred = p.predict(image)
    why = neighbours.explain(b, stage, pred)
    heat = overlay_heatmap(image, p.gradcam(pred, int(np.argmax(pred.probs)))) if cam and p.head else None
    label = {name: prob for _, name, prob in pred.top}
    return label, verdict_text(pred, why, b.num_classes), heat, neighbours.similar_gallery(b, why["similar"])


def explain_photo(ctx: AppContext, path: str | None, stage: str) -> dict:
    """The prediction for a photo with its explanation: top 5, unfamiliar or not (and the score), similar photos."""
    if not path:
        raise gr.Error("send a photo")
    if stage not in ctx.bundle.stages:
        raise gr.Error(f"unknown stage {stage!r}: this bundle has {', '.join(ctx.bundle.stages)}")
    p = ctx.predictor(stage)
    try:
        return neighbours.explain(ctx.bundle, stage, p.predict(p.read(path)))
    except ImageError as e:
        raise gr.Error(str(e)) from None


def verdict_text(pred, why: dict, num_classes: int) -> str:
    """The answer in words, with a warning when the model is unsure or the photo is unlike its training photos."""
    msg = f"**{pred.top[0][1]}** ({pred.top[0][2]:.0%}) · predicted in {pred.seconds * 1000:.0f} ms"
    if why["unfamiliar"]:
        msg += (
            "\n\n⚠️ **This photo does not look like the dishes the model was trained on** (its features are far "
            f"from every training photo kept: {why['score']:.2f} against {why['threshold']:.2f} for 99 % of the test "
            "photos). The answer above may mean little."
        )
    if pred.low_confidence:
        msg += (
            f"\n\n⚠️ Low confidence: the model is not sure (top guess under {LOW_CONFIDENCE:.0%}). "
            f"The dish may not be one of the {num_classes} it knows."
        )
    return msg
