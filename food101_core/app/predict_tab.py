"""Predict: a photo in (upload, webcam, paste or a test photo), the top 5 out, Grad-CAM on request."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from .. import analysis
from ..images import ImageError, read_image
from ..inference import LOW_CONFIDENCE, overlay_heatmap
from .context import AppContext, UploadedImage

START = "Upload, paste or take a photo of a dish, or click one of the test photos below."


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    examples = analysis.example_photos(b, ctx.predictor(b.stages[-1]))
    with gr.Tab("Predict", id="predict"), gr.Row():
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

    def predict(path: str | None, cam: bool, stage: str):
        """Top 5 dishes ({name: probability}), a verdict in words, and the Grad-CAM overlay when asked for."""
        if not path:
            return None, START, None
        p = ctx.predictor(stage)
        try:
            image = p.read(path)
        except ImageError as e:
            return None, f"⚠️ {e}", None
        pred = p.predict(image)
        msg = f"**{pred.top[0][1]}** ({pred.top[0][2]:.0%}) · predicted in {pred.seconds * 1000:.0f} ms"
        if pred.low_confidence:
            msg += (
                f"\n\n⚠️ Low confidence: the model is not sure (top guess under {LOW_CONFIDENCE:.0%}). "
                f"The dish may not be one of the {b.num_classes} it knows."
            )
        heat = overlay_heatmap(image, p.gradcam(image, int(np.argmax(pred.probs)))) if cam else None
        return {name: prob for _, name, prob in pred.top}, msg, heat

    def pick_example(evt: gr.SelectData) -> Image.Image:
        return read_image(examples[evt.index][2])

    inputs = [photo, show_cam, ctx.stage]
    go_btn.click(predict, inputs, [top5, verdict, cam_out], api_name="predict")
    photo.change(predict, inputs, [top5, verdict, cam_out], api_name=False)
    gallery.select(pick_example, None, photo, api_name=False)
