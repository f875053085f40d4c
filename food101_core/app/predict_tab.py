"""Predict: a photo in (upload, webcam, paste or a test photo), the top 5 out, Grad-CAM on request, the most similar
training photos and a warning when the photo looks like nothing the model was trained on."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from ..serving.gradcam import HEAT_KEY, overlay_heatmap
from ..serving.images import ImageError, read_bytes, read_image
from ..serving.kept import photo_key
from ..serving.predictor import LOW_CONFIDENCE
from . import neighbours, photo_view
from .context import AppContext, UploadedImage, captioned_gallery, show_js, stage_label, stage_words, tab_intro
from .tabs import TITLE

START = "Upload, paste or take a photo of a dish, or click one of the test photos under the photo box."
# On a phone the answer sits below the photo: bring it into view once it is there (a desktop shows both already).
SHOW_ANSWER = show_js("#top5")
# Photos answered in one forward pass when visitors' requests queue up (8 with the mirror: 16 images, ~0.2 s here)
MAX_BATCH = 8


def build(ctx: AppContext) -> None:
    examples = neighbours.example_photos(ctx.bundle, ctx.predictor(ctx.bundle.final_stage))
    tab, parts = layout(ctx, examples)
    bind(ctx, tab, parts, examples)


def layout(ctx: AppContext, examples: list) -> tuple[gr.Tab, dict]:
    """The tab's boxes, by name: the photo and its examples on the left, the answer and its reasons on the right."""
    b = ctx.bundle
    with gr.Tab(TITLE["predict"], id="predict") as tab:
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
                gallery = captioned_gallery(  # beside the photo box: on a phone's first screen too
                    "Test photos: click one to predict it (✓ the model gets it right, ✗ it does not)",
                    "examples",
                    value=[(path, caption) for path, caption, _ in examples],
                    visible=bool(examples),
                )
                cam_out = gr.Image(label="Grad-CAM", interactive=False, height=300, elem_id="gradcam", visible=False)
                cam_key = gr.HTML(HEAT_KEY, visible=False, elem_id="gradcam-key")
            with gr.Column(min_width=300):
                top5 = gr.Label(num_top_classes=5, label="Top 5 dishes", elem_id="top5")
                verdict = gr.Markdown(START, elem_id="verdict")
                with gr.Accordion(f"The {b.num_classes} dishes it knows", open=False, elem_id="dishes"):
                    gr.Markdown(dish_list(b.class_names))
                similar, versus, contrast, runner_up = by_example()
                for shown, view in ((similar, "similar-view"), (contrast, "contrast-view"),
                                    (runner_up, "runner-up-view")):  # fmt: skip
                    photo_view.viewer(ctx, shown, view)
                found = gr.State({})  # inside the tab: gr.Tabs must hold only tabs, or the tab bar mislabels them
    return tab, {"photo": photo, "show_cam": show_cam, "go": go_btn, "gallery": gallery, "cam": cam_out,
                 "key": cam_key, "top5": top5, "verdict": verdict, "similar": similar, "versus": versus,
                 "contrast": contrast, "runner_up": runner_up, "found": found}  # fmt: skip


def bind(ctx: AppContext, tab: gr.Tab, p: dict, examples: list) -> None:
    """A photo in (uploaded, pasted, an example clicked, Grad-CAM ticked, another model): the answer, then what only
    the page shows; and the `/predict` and `/explain` endpoints."""
    answer_boxes = {name: p[name] for name in ("top5", "verdict", "cam", "found")}
    extra = {name: p[name] for name in ("similar", "cam", "key", "photo", "versus", "contrast", "runner_up")}

    def pick_example(evt: gr.SelectData) -> Image.Image:
        return read_image(examples[evt.index][2])

    def on_page(photo: list, grad_cam: list, stage: list, shown: bool = True) -> list[list]:
        """/predict's answers and what only the page shows (`found`; empty when not `shown`). Batched: each argument
        is a list, one item a request; the requests queued together share one forward pass."""
        answers = predict_photos(ctx, list(zip(photo, grad_cam, stage)), shown)
        return [[a[name] for a in answers] for name in answer_boxes]

    def predict(photo: list, grad_cam: list, stage: list) -> list[list]:
        """What dish a photo shows: the top 5 dishes with their probabilities, a verdict in words (with a warning when
        the photo is unlike the training photos) and, if asked, a Grad-CAM image of where the model looked.

        Args:
            photo: the photo (JPEG, PNG, WebP or HEIC), as a URL or an uploaded file.
            grad_cam: also return the Grad-CAM image.
            stage: the model: "stage1" (head only), "stage2" (fine-tuned) or "stage3" (polished); the last is served.
        """
        return on_page(photo, grad_cam, stage, shown=False)[:3]  # no photos to show: none looked up

    def extras_shown(found: dict) -> dict:
        return {extra[name]: value for name, value in show_extras(found).items()}

    # What only the page shows (similar photos, the key, a refused file cleared away) travels in a State and a
    # follow-up step shows it. /predict, for scripts and agents, is its own event with the three answers alone (scripts
    # rely on them; Gradio's MCP server cannot return a State); one concurrency id shares one limit among them all.
    inputs, outputs = [p["photo"], p["show_cam"], ctx.stage], list(answer_boxes.values())
    found, after, no_api = p["found"], list(extra.values()), {"api_name": False}
    # `concurrency` batches at once, each on its share of the cores (AppContext.predictor)
    batched = {"batch": True, "max_batch_size": MAX_BATCH, "concurrency_id": "predict",
               "concurrency_limit": ctx.concurrency}  # fmt: skip
    p["go"].click(on_page, inputs, outputs, **no_api, **batched).then(extras_shown, found, after, **no_api).then(
        None, js=SHOW_ANSWER
    )
    p["photo"].input(on_page, inputs, outputs, **no_api, **batched).then(extras_shown, found, after, **no_api).then(
        None, js=SHOW_ANSWER
    )
    for event in (p["show_cam"].change, ctx.stage.change):  # Grad-CAM ticked, another model: the answer stays put
        event(on_page, inputs, outputs, **no_api, **batched).then(extras_shown, found, after, **no_api)
    p["gallery"].select(pick_example, None, p["photo"], **no_api).then(
        on_page, inputs, outputs, **no_api, **batched
    ).then(extras_shown, found, after, **no_api).then(None, js=SHOW_ANSWER)
    with tab:  # for scripts only: no button on the page
        gr.Button(visible=False).click(predict, inputs, outputs[:3], api_name="predict", **batched)
    explain_endpoint(ctx, tab, p)


def explain_endpoint(ctx: AppContext, tab: gr.Tab, p: dict) -> None:
    """`/explain` (also an MCP tool), for scripts: no button on the page."""
    with tab:
        explained = gr.JSON(visible=False)

        def explain(photo: str | None, stage: str) -> dict:
            """Why the model answers what it does for a photo: its top 5, whether the photo is unlike every training
            photo (unfamiliar, with its score and the threshold), the most similar training photos, and the nearest
            training photos of the answer and of the runner-up (contrast).

            Args:
                photo: the photo, as a URL or an uploaded file.
                stage: the model: "stage1" (head only), "stage2" (fine-tuned), "stage3" (polished); the last is served.
            """
            return explain_photo(ctx, photo, stage)

        gr.Button(visible=False).click(explain, [p["photo"], ctx.stage], explained, api_name="explain")


def by_example() -> tuple[gr.Gallery, gr.Markdown, gr.Gallery, gr.Gallery]:
    """Why, by example: the most similar training photos, then the answer's nearest beside the runner-up's, each
    dish in its own gallery (labelled per photo by `show_extras`) so that the two never mix."""
    similar = captioned_gallery(
        "Training photos most like it, to the model (dish · distance: lower is more alike)", "similar", visible=False
    )
    versus = gr.Markdown(elem_id="contrast-line")
    contrast = captioned_gallery("Nearest training photos of the answer", "contrast", visible=False)
    runner_up = captioned_gallery("Nearest training photos of the runner-up", "contrast-runner-up", visible=False)
    return similar, versus, contrast, runner_up


def dish_list(names: list[str]) -> str:
    """Every dish the model can answer, alphabetical, so a reader knows what is worth showing it."""
    return ", ".join(sorted(names, key=str.lower)) + "."


def predict_photo(ctx: AppContext, path: str | None, cam: bool, stage: str) -> dict:
    """Top 5 dishes ({name: probability}), a verdict in words, Grad-CAM when asked for, and what only the page shows
    (`found`), by name."""
    return predict_photos(ctx, [(path, cam, stage)])[0]


def predict_photos(ctx: AppContext, asks: list[tuple[str | None, bool, str]], shown: bool = True) -> list[dict]:
    """`predict_photo` for several (path, cam, stage) requests at once: one forward pass for each model asked;
    without the photos only a page shows (similar, contrast) unless `shown`."""
    answers: list[dict] = [{"top5": None, "verdict": START, "cam": None, "found": {}} for _ in asks]
    images, keys, preds = {}, {}, {}
    for i, (path, _, stage) in enumerate(asks):
        if not path:
            continue
        try:
            data = read_bytes(path)
            keys[i] = photo_key(ctx.bundle.stage_of(stage), data)
            if kept := ctx.kept.get(keys[i]):  # asked before: the same answer, without the model
                images[i], preds[i] = kept
            else:
                images[i] = ctx.predictor(stage).read(data)
        except ImageError as e:
            answers[i] = {"top5": None, "verdict": f"⚠️ {e}", "cam": None, "found": {"refused": True}}
    for stage in dict.fromkeys(asks[i][2] for i in images if i not in preds):
        wanted = [i for i in images if i not in preds and asks[i][2] == stage]
        with ctx.serving(stage) as model:
            preds.update(zip(wanted, model.predict_many([images[i] for i in wanted])))
        for i in wanted:
            ctx.kept.put(keys[i], images[i], preds[i])
    for i, pred in preds.items():
        answers[i] = answer(ctx, images[i], pred, asks[i][1], asks[i][2], shown, keys[i][1])
    return answers


def answer(ctx: AppContext, image: Image.Image, pred, cam: bool, stage: str, shown: bool = True,
           digest: str | None = None) -> dict:  # fmt: skip
    """One prediction's outputs by name: the top 5, the verdict, Grad-CAM when asked for, and `found` (the photos
    only the page shows, when `shown`). `digest`: the photo's (`kept.photo_key`), to reuse the final model's pass."""
    b, p = ctx.bundle, ctx.predictor(stage)
    features = final_features(ctx, stage, image, pred, digest)
    why = neighbours.explain(b, pred, features, k=neighbours.SIMILAR if shown else 0)
    heat, note = None, ""
    if cam and p.head is None:
        note = "\n\nGrad-CAM (where the model looked) needs a model that ends in one plain layer; this one does not."
    elif cam:
        heat = overlay_heatmap(image, p.gradcam(pred, int(np.argmax(pred.probs))))
    label = {name: prob for _, name, prob in pred.top}
    words = verdict_text(pred, why, b.num_classes) + stage_note(ctx, stage, why) + note
    groups = neighbours.contrast_groups(b, why["contrast"])
    extras = {"similar": neighbours.similar_gallery(b, why["similar"]), "cam": heat is not None,
              "contrast": groups["answer"], "runner_up": groups["runner_up"], "versus": groups["line"]}  # fmt: skip
    return {"top5": label, "verdict": words, "cam": heat, "found": extras}


def show_extras(extras: dict) -> dict:
    """The similar photos (hidden when there are none), the Grad-CAM box and its key (hidden without a map), a
    refused file cleared from the box (it would otherwise show as a broken image), and the answer's and the
    runner-up's nearest photos, each gallery labelled with its dish and shown only when it has photos."""
    similar = extras.get("similar") or []
    photo = gr.update(value=None) if extras.get("refused") else gr.update()
    cam = gr.update(visible=bool(extras.get("cam")))
    out = {"similar": gr.update(value=similar, visible=bool(similar)), "cam": cam, "key": cam, "photo": photo,
           "versus": extras.get("versus", "")}  # fmt: skip
    for key in ("contrast", "runner_up"):
        label, items = extras.get(key) or ("", [])
        out[key] = gr.update(value=items, visible=bool(items), **({"label": label} if label else {}))
    return out


def stage_note(ctx: AppContext, stage: str, why: dict) -> str:
    """What a non-final model's answer borrows from the final one, said plainly."""
    final = ctx.bundle.final_stage
    if stage == final or why["unfamiliar"] is None:
        return ""
    return (
        f"\n\n*Answer from {stage_label(ctx.bundle, stage)}. The similar photos and the unfamiliar-photo check use "
        f"how the final model ({stage_words(ctx.bundle, final)}) sees the photo: the saved run keeps its map only.*"
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
    with ctx.serving(stage) as model:
        pred = model.predict(image)
    return neighbours.explain(b, pred, final_features(ctx, stage, image, pred))


def final_features(ctx: AppContext, stage: str, image: Image.Image, pred, digest: str | None = None):
    """The photo's pooled features in the final model's space, the only one the bundle maps: the prediction's own
    for the final stage, one more forward pass of the final model for an earlier one (kept by the photo's `digest`,
    when given: the final model's answer to the same bytes)."""
    final = ctx.bundle.final_stage
    if stage == final:
        return pred.features
    if digest and (kept := ctx.kept.get((final, digest))):
        return kept[1].features
    with ctx.serving(final) as model:
        final_pred = model.predict(image)
    if digest:
        ctx.kept.put((final, digest), image, final_pred)
    return final_pred.features


def verdict_text(pred, why: dict, num_classes: int) -> str:
    """The answer in words, with a warning when the model is unsure or the photo is unlike its training photos."""
    msg = f"**{pred.top[0][1]}** ({pred.top[0][2]:.0%}) · predicted in {pred.seconds * 1000:.0f} ms"
    if pred.kept:
        msg += " (this photo was asked before: its answer was kept)"
    if why["unfamiliar"]:
        msg += (
            "\n\n⚠️ **This photo does not look like the dishes the model was trained on.** To the model it is far "
            f"from every training photo kept: it scores {why['score']:.2f}, where 99 % of the test photos score at "
            f"most {why['threshold']:.2f}. The answer above may mean little."
        )
    if pred.low_confidence:
        msg += (
            f"\n\n⚠️ Low confidence: the model is not sure (top guess under {LOW_CONFIDENCE:.0%}). "
            f"The dish may not be one of the {num_classes} it knows."
        )
    return msg
