"""Predict: a photo in (upload, webcam, paste or a test photo), the top 5 out, Grad-CAM on request, the most similar
training photos and a warning when the photo looks like nothing the model was trained on."""

from __future__ import annotations

from functools import partial

import gradio as gr
import numpy as np
from PIL import Image

from ..serving.gradcam import HEAT_KEY, overlay_heatmap
from ..serving.images import ImageError, read_image
from ..serving.predictor import LOW_CONFIDENCE
from . import neighbours
from .context import AppContext, UploadedImage, captioned_gallery, stage_label, tab_intro

START = "Upload, paste or take a photo of a dish, or click one of the test photos below."
# On a phone the answer sits below the photo: bring it into view once it is there (a desktop shows both already).
SHOW_ANSWER = """() => { const el = document.querySelector('#top5');
  if (!el) return; const r = el.getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) el.scrollIntoView({behavior: 'smooth', block: 'start'}); }"""


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    examples = neighbours.example_photos(b, ctx.predictor(b.stages[-1]))
    with gr.Tab("Predict", id="predict") as tab:
        tab_intro(f"Which of the {b.num_classes} dishes the model sees in a photo, how sure it is, and why.")
        with gr.Row():
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
                cam_out = gr.Image(label="Grad-CAM", interactive=False, height=300, elem_id="gradcam", visible=False)
                cam_key = gr.HTML(HEAT_KEY, visible=False, elem_id="gradcam-key")
            with gr.Column(min_width=300):
                top5 = gr.Label(num_top_classes=5, label="Top 5 dishes", elem_id="top5")
                verdict = gr.Markdown(START, elem_id="verdict")
                similar, versus, contrast = by_example()
                found = gr.State({})  # inside the tab: gr.Tabs must hold only tabs, or the tab bar mislabels them
                gallery = captioned_gallery(
                    "Test photos: click one to predict it (✓ the model gets it right, ✗ it does not)",
                    "examples",
                    value=[(path, caption) for path, caption, _ in examples],
                    visible=bool(examples),
                )

    def pick_example(evt: gr.SelectData) -> Image.Image:
        return read_image(examples[evt.index][2])

    predict = partial(predict_photo, ctx)
    # /predict keeps its three outputs (scripts rely on them); what only the page shows (similar photos, the key, a
    # refused file cleared away) travels in a State, which the API leaves out, and a follow-up step shows it.
    inputs, outputs = [photo, show_cam, ctx.stage], [top5, verdict, cam_out, found]
    after = [similar, cam_out, cam_key, photo, versus, contrast]
    go_btn.click(predict, inputs, outputs, api_name="predict").then(show_extras, found, after, api_name=False).then(
        None, js=SHOW_ANSWER
    )
    for event in (photo.input, show_cam.change, ctx.stage.change):  # a new photo, Grad-CAM ticked, another model
        event(predict, inputs, outputs, api_name=False).then(show_extras, found, after, api_name=False)
    gallery.select(pick_example, None, photo, api_name=False).then(predict, inputs, outputs, api_name=False).then(
        show_extras, found, after, api_name=False
    ).then(None, js=SHOW_ANSWER)
    with tab:  # for scripts only: no button on the page
        explained = gr.JSON(visible=False)
        explain = partial(explain_photo, ctx)
        gr.Button(visible=False).click(explain, [photo, ctx.stage], explained, api_name="explain")


def by_example() -> tuple[gr.Gallery, gr.Markdown, gr.Gallery]:
    """Why, by example: the most similar training photos, and those of the answer beside those of the runner-up."""
    similar = captioned_gallery(
        "Similar training photos (dish · distance): what the model finds most alike", "similar", visible=False
    )
    versus = gr.Markdown(elem_id="contrast-line")
    contrast = captioned_gallery(
        "Its answer against the runner-up: the nearest training photos of each (dish · distance)",
        "contrast",
        visible=False,
    )
    return similar, versus, contrast


def predict_photo(ctx: AppContext, path: str | None, cam: bool, stage: str):
    """Top 5 dishes ({name: probability}), a verdict in words, Grad-CAM when asked for, and what only the page shows."""
    if not path:
        return None, START, None, {}
    b, p = ctx.bundle, ctx.predictor(stage)
    try:
        image = p.read(path)
    except ImageError as e:
        return None, f"⚠️ {e}", None, {"refused": True}
    pred = p.predict(image)
    why = neighbours.explain(b, pred, final_features(ctx, stage, image, pred))
    heat, note = None, ""
    if cam and p.head is None:
        note = "\n\nGrad-CAM is not available for this model (its head is not linear after pooling)."
    elif cam:
        heat = overlay_heatmap(image, p.gradcam(pred, int(np.argmax(pred.probs))))
    label = {name: prob for _, name, prob in pred.top}
    words = verdict_text(pred, why, b.num_classes) + stage_note(ctx, stage, why) + note
    items, line = neighbours.contrast_gallery(b, why["contrast"])
    extras = {"similar": neighbours.similar_gallery(b, why["similar"]), "cam": heat is not None,
              "contrast": items, "versus": line}  # fmt: skip
    return label, words, heat, extras


def show_extras(extras: dict):
    """The similar photos (hidden when there are none), the Grad-CAM box and its key (hidden without a map), a
    refused file cleared from the box (it would otherwise show as a broken image), and the contrastive photos."""
    similar, contrast = extras.get("similar") or [], extras.get("contrast") or []
    photo = gr.update(value=None) if extras.get("refused") else gr.update()
    cam = gr.update(visible=bool(extras.get("cam")))
    versus = extras.get("versus", "")
    return (
        gr.update(value=similar, visible=bool(similar)),
        cam,
        cam,
        photo,
        versus,
        gr.update(value=contrast, visible=bool(contrast)),
    )


def stage_note(ctx: AppContext, stage: str, why: dict) -> str:
    """What a non-final model's answer borrows from the final one, said plainly."""
    final = ctx.bundle.stages[-1]
    if stage == final or why["unfamiliar"] is None:
        return ""
    return (
        f"\n\n*Answer from {stage_label(ctx.bundle, stage)}. The similar photos and the unfamiliar-photo check "
        f"use the final model's features ({stage_label(ctx.bundle, final)}), the only ones the bundle maps.*"
    )


def explain_photo(ctx: AppContext, path: str | None, stage: str) -> dict:
    """The prediction for a photo with its explanation: top 5, unfamiliar or not (and the score), similar photos."""
    if not path:
        raise gr.Error("send a photo")
    b = ctx.bundle
    if stage not in b.stages:
        raise gr.Error(f"unknown stage {stage!r}: this bundle has {', '.join(b.stages)}")
    p = ctx.predictor(stage)
    try:
        image = p.read(path)
    except ImageError as e:
        raise gr.Error(str(e)) from None
    pred = p.predict(image)
    return neighbours.explain(b, pred, final_features(ctx, stage, image, pred))


def final_features(ctx: AppContext, stage: str, image: Image.Image, pred):
    """The photo's pooled features in the final model's space, the only one the bundle maps: the prediction's own
    for the final stage, one more forward pass of the final model for an earlier one."""
    final = ctx.bundle.stages[-1]
    return pred.features if stage == final else ctx.predictor(final).predict(image).features


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
