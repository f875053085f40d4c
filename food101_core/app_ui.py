"""The Gradio app: a `gr.Blocks` over one run bundle, one function per event; computing lives elsewhere.

Tabs: Predict (upload/webcam/paste, top-5, Grad-CAM), Confusion matrix (clickable plotly heatmap rendered by
a locally served plotly.js inside `gr.HTML`), Per-class metrics, Mistakes, Training, Calibration.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly
import plotly.graph_objects as go
from PIL import Image

from . import analysis
from .bundle import Bundle
from .inference import ImageError, Predictor, overlay_heatmap, read_image

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"  # served locally: no CDN on a Space
MAX_GALLERY = 120
STAGE_LABELS = {"stage2": "Stage 2: fine-tuned (final)", "stage1": "Stage 1: head only"}
CSS = """
.cm-hint {color: var(--body-text-color-subdued); font-size: 0.9em}
#title h1 {margin-bottom: 0}
"""
CONFUSION_JS = """
const draw = () => {
  const div = element.querySelector('.cm-plot');
  if (!div) return;
  if (typeof Plotly === 'undefined' || !props.value) { setTimeout(draw, 100); return; }
  const fig = JSON.parse(props.value);
  Plotly.react(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
  if (!div.dataset.bound) {
    div.dataset.bound = '1';
    div.on('plotly_click', (ev) => {
      const p = ev.points[0];
      trigger('click', {true_class: String(p.y), pred_class: String(p.x)});
    });
  }
};
draw();
watch('value', draw);
"""


class UploadedImage(gr.Image):
    """`gr.Image` that hands the raw upload to `read_image`, so a bad file gets our clear message
    instead of failing inside Gradio's own decoding."""

    is_template = True  # the front end is gr.Image's

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


def original_image_path(b: Bundle, index: int) -> Path | None:
    """The full-size test image, when the data set the bundle was evaluated on is on this machine."""
    data = b.config.get("data", {})
    root, image_id = Path(data.get("location", "")), b.test_ids[int(index)]
    if data.get("kind") == "food101-folder":
        p = root / "images" / f"{image_id}.jpg"
        return p if p.is_file() else None
    if data.get("kind") == "class-folders" and (root / image_id).parent.is_dir():
        return next((root / image_id).parent.glob(Path(image_id).name + ".*"), None)
    return None


DEMO_NOTE = (
    "> **Demo model.** This is the small model shipped with the repository so that the app works offline: "
    "{backbone} with ImageNet weights, fine-tuned on a CPU on *food101-mini*, the first 10 Food-101 classes "
    "({classes}). The full recipe is EfficientNetB0 on all 101 classes: `python train.py` on a machine with "
    "internet (ideally a GPU). `assets/README.md` has the exact command that made this model."
)


def build_app(b: Bundle, demo: bool = False) -> gr.Blocks:
    """The whole UI over one bundle. The stage-2 model is loaded now, once, and shared by every request."""
    predictors = {"stage2": Predictor.from_bundle(b, "stage2")}
    csv_dir = Path(tempfile.mkdtemp(prefix="food101-explorer-"))

    def predictor(stage: str) -> Predictor:
        if stage not in predictors:
            predictors[stage] = Predictor.from_bundle(b, stage)
        return predictors[stage]

    # ------------------------------------------------------------------ events (one function each)

    def predict(path: str | None, show_cam: bool, stage: str):
        if not path:
            return None, "Upload, paste or take a photo of a dish.", None
        p = predictor(stage)
        try:
            image = p.read(path)
        except ImageError as e:
            return None, f"⚠️ {e}", None
        pred = p.predict(image)
        label = {name: prob for _, name, prob in pred.top}
        top_name, top_prob = pred.top[0][1], pred.top[0][2]
        msg = f"**{top_name}** ({top_prob:.0%}) · predicted in {pred.seconds * 1000:.0f} ms"
        if pred.low_confidence:
            msg += (
                f"\n\n⚠️ Low confidence: the model is not sure (top guess under "
                f"{int(100 * 0.5)}%). The dish may not be one of the {b.num_classes} it knows."
            )
        cam = overlay_heatmap(image, p.gradcam(image, int(np.argmax(pred.probs)))) if show_cam else None
        return label, msg, cam

    def confusion(stage: str, normalize: bool, hide_diagonal: bool, order: str) -> tuple[str, pd.DataFrame]:
        fig = analysis.confusion_figure(b, stage, normalize, hide_diagonal, order)
        return fig.to_json(), analysis.most_confused_pairs(b, stage)

    def pair(stage: str, true_name: str, pred_name: str) -> tuple[str, list]:
        items, n = analysis.pair_examples(b, stage, true_name, pred_name)
        kind = "correct" if true_name == pred_name else "mistaken"
        title = f"**{true_name} → {pred_name}**: {n} {kind} test image{'s' if n != 1 else ''}"
        if len(items) < n:
            title += f" ({len(items)} with thumbnails in the bundle)"
        return title, items

    def on_cell_click(stage: str, evt: gr.EventData):
        return pair(stage, evt.true_class, evt.pred_class)

    def on_pair_select(stage: str, table, evt: gr.SelectData):
        row = evt.row_value or table.iloc[evt.index[0]].tolist()
        return pair(stage, row[0], row[1])

    def per_class(stage: str) -> tuple[pd.DataFrame, go.Figure, str]:
        df = analysis.per_class_table(b, stage)
        csv = csv_dir / f"per_class_{stage}.csv"
        tmp = csv.with_suffix(f".{threading.get_ident()}.tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, csv)  # concurrent requests never serve a half-written file
        return df, analysis.f1_figure(b, stage), str(csv)

    def mistakes(stage: str, true_name: str | None, pred_name: str | None, min_conf: float) -> tuple[list, list, str]:
        m = analysis.mistakes_table(b, stage, true_name, pred_name, min_conf)
        shown = [r for r in m.head(MAX_GALLERY).itertuples() if b.thumb(r.index) is not None]
        items = [(str(b.thumb(r.index)), f"{r.true_name} → {r.pred_name} · {r.confidence:.0%}") for r in shown]
        count = f"**{len(m)}** mistake{'s' if len(m) != 1 else ''}"
        count += f", the {len(shown)} most confident shown" if len(shown) < len(m) else ", most confident first"
        return items, [int(r.index) for r in shown], count

    def api_confusion(stage: str, normalize: bool, hide_diagonal: bool, order: str) -> dict:
        fig_json, pairs_df = confusion(stage, normalize, hide_diagonal, order)
        return {"figure": json.loads(fig_json), "pairs": pairs_df.to_dict("records")}

    def api_per_class(stage: str) -> list[dict]:
        return analysis.per_class_table(b, stage).to_dict("records")

    def api_mistakes(stage: str, true_name: str | None, pred_name: str | None, min_conf: float) -> list[dict]:
        m = analysis.mistakes_table(b, stage, true_name, pred_name, min_conf)
        return m[["index", "id", "true_name", "pred_name", "confidence"]].to_dict("records")

    def training() -> dict:
        return json.loads(analysis.training_figure(b).to_json())

    def metrics(stage: str) -> dict:
        return b.evaluation(stage).metrics

    def on_mistake_select(stage: str, indices: list[int], evt: gr.SelectData):
        index = indices[evt.index]
        row = b.evaluation(stage).predictions.iloc[index]
        names = dict(zip(b.class_ids, b.class_names))
        original = original_image_path(b, index)
        image = read_image(original) if original else Image.open(b.thumb(index)).convert("RGB")
        cam = None
        if original:  # Grad-CAM needs the full image: a 128 px thumbnail would only show blur
            cam = overlay_heatmap(image, predictor(stage).gradcam(image, b.class_ids.index(row["pred"])))
        caption = (
            f"**{names[row['true']]}** predicted as **{names[row['pred']]}** ({row['confidence']:.0%}) · "
            f"test image `{row['id']}`" + ("" if original else " · full image not on this machine")
        )
        return image, analysis.top5_of(b, stage, index), caption, cam

    # ------------------------------------------------------------------------------------ layout

    names_sorted = sorted(b.class_names, key=str.lower)
    with gr.Blocks(title="Food-101 Explorer") as demo:
        gr.Markdown(
            "# Food-101 Explorer\nWhat does the model see in your lunch, and where does it go wrong?", elem_id="title"
        )
        if demo:
            gr.Markdown(
                DEMO_NOTE.format(backbone=b.config["train"]["backbone"], classes=", ".join(b.class_names)),
                elem_id="demo-note",
            )
        gr.Markdown(analysis.summary_markdown(b), elem_id="summary")
        stage = gr.Radio(
            [(STAGE_LABELS[s], s) for s in reversed(b.stages)], value=b.stages[-1], label="Model", elem_id="stage"
        )
        with gr.Tabs():
            with gr.Tab("Predict", id="predict"):
                with gr.Row():
                    with gr.Column():
                        photo = UploadedImage(
                            type="filepath",
                            sources=["upload", "webcam", "clipboard"],
                            label="Your photo",
                            height=360,
                            elem_id="photo",
                        )
                        show_cam = gr.Checkbox(label="Show Grad-CAM: where the model looked", value=False)
                        go_btn = gr.Button("Predict", variant="primary", elem_id="predict-btn")
                    with gr.Column():
                        top5 = gr.Label(num_top_classes=5, label="Top 5 dishes", elem_id="top5")
                        verdict = gr.Markdown(elem_id="verdict")
                        cam_out = gr.Image(label="Grad-CAM", interactive=False, height=300, elem_id="gradcam")
                examples = example_photos(b)
                if examples:
                    gr.Examples(
                        examples=[[p] for p, _ in examples],
                        inputs=photo,
                        example_labels=[c for _, c in examples],
                        label="Test photos from the bundle",
                    )
            with gr.Tab("Confusion matrix", id="confusion"):
                with gr.Row():
                    normalize = gr.Checkbox(label="Row-normalised (share of the true class)", value=False)
                    hide_diag = gr.Checkbox(label="Hide the diagonal (correct predictions)", value=True)
                    order = gr.Radio(["alphabetical", "by confusion"], value="by confusion", label="Order")
                gr.Markdown(
                    "Zoom by dragging; hover for names and counts; **click a cell** to see its images.",
                    elem_classes="cm-hint",
                )
                cm_plot = gr.HTML(
                    value="",
                    html_template='<div class="cm-plot" style="width:100%"></div>',
                    js_on_load=CONFUSION_JS,
                    elem_id="confusion-plot",
                    head=f'<script src="/gradio_api/file={PLOTLY_JS}"></script>',
                )
                with gr.Row():
                    with gr.Column(scale=2):
                        pairs = gr.Dataframe(
                            label="Most confused pairs (click a row)", interactive=False, elem_id="pairs"
                        )
                    with gr.Column(scale=3):
                        pair_title = gr.Markdown("Click a cell or a row to see the images.", elem_id="pair-title")
                        pair_gallery = gr.Gallery(
                            columns=6, height=420, label="Images of the pair", elem_id="pair-gallery"
                        )
            with gr.Tab("Per-class metrics", id="per-class"), gr.Row():
                with gr.Column(scale=3):
                    table = gr.Dataframe(
                        label="Per class (click a header to sort)", interactive=False, elem_id="per-class-table"
                    )
                    csv_btn = gr.DownloadButton("Download CSV", elem_id="csv")
                with gr.Column(scale=2):
                    f1_plot = gr.Plot(label="F1 by class")
            with gr.Tab("Mistakes", id="mistakes"):
                with gr.Row():
                    f_true = gr.Dropdown([None, *names_sorted], value=None, label="True class", elem_id="f-true")
                    f_pred = gr.Dropdown([None, *names_sorted], value=None, label="Predicted class", elem_id="f-pred")
                    f_conf = gr.Slider(0, 1, value=0.0, step=0.05, label="Minimum confidence", elem_id="f-conf")
                m_count = gr.Markdown(elem_id="mistake-count")
                with gr.Row():
                    m_gallery = gr.Gallery(
                        columns=6, height=520, label="Most confident mistakes", elem_id="mistakes-gallery"
                    )
                    with gr.Column():
                        m_big = gr.Image(label="Selected", interactive=False, height=300)
                        m_caption = gr.Markdown()
                        m_top5 = gr.Label(num_top_classes=5, label="Its top 5")
                        m_cam = gr.Image(label="Grad-CAM", interactive=False, height=300)
                m_indices = gr.State([])
            with gr.Tab("Training", id="training"):
                gr.Plot(analysis.training_figure(b), label="Loss and accuracy per epoch", elem_id="training-plot")
            with gr.Tab("Calibration", id="calibration"):
                calib = gr.Plot(label="Reliability diagram", elem_id="calibration-plot")

        # ------------------------------------------------------------------------------- wiring
        pred_inputs = [photo, show_cam, stage]
        go_btn.click(predict, pred_inputs, [top5, verdict, cam_out], api_name="predict")
        photo.change(predict, pred_inputs, [top5, verdict, cam_out], api_name=False)
        cm_inputs = [stage, normalize, hide_diag, order]
        for trigger in (normalize.change, hide_diag.change, order.change, stage.change):
            trigger(confusion, cm_inputs, [cm_plot, pairs], api_name=False)
        cm_plot.click(on_cell_click, [stage], [pair_title, pair_gallery], api_name=False)
        pairs.select(on_pair_select, [stage, pairs], [pair_title, pair_gallery], api_name=False)
        stage.change(per_class, [stage], [table, f1_plot, csv_btn], api_name=False)
        m_inputs = [stage, f_true, f_pred, f_conf]
        for trigger in (f_true.change, f_pred.change, f_conf.release, stage.change):
            trigger(mistakes, m_inputs, [m_gallery, m_indices, m_count], api_name=False)
        m_gallery.select(on_mistake_select, [stage, m_indices], [m_big, m_top5, m_caption, m_cam], api_name=False)
        stage.change(lambda s: analysis.reliability_figure(b, s), [stage], [calib], api_name=False)
        demo.load(confusion, cm_inputs, [cm_plot, pairs], api_name=False)
        demo.load(per_class, [stage], [table, f1_plot, csv_btn], api_name=False)
        demo.load(mistakes, m_inputs, [m_gallery, m_indices, m_count], api_name=False)
        demo.load(lambda s: analysis.reliability_figure(b, s), [stage], [calib], api_name=False)
        # The same computations as plain JSON API endpoints, for gradio_client and scripts.
        gr.api(api_confusion, api_name="confusion")
        gr.api(pair, api_name="pair")
        gr.api(api_per_class, api_name="per_class")
        gr.api(api_mistakes, api_name="mistakes")
        gr.api(training, api_name="training")
        gr.api(metrics, api_name="metrics")
    return demo


def example_photos(b: Bundle, per_kind: int = 4) -> list[tuple[str, str]]:
    """A few test images the model gets right and a few it gets wrong (full size when at hand)."""
    p = b.evaluation(b.stages[-1]).predictions
    names = dict(zip(b.class_ids, b.class_names))
    out = []
    for correct in (True, False):
        rows = p[p["correct"] == correct].sort_values("confidence", ascending=not correct)
        rows = rows.drop_duplicates("true").head(per_kind)
        for r in rows.itertuples():
            path = original_image_path(b, r.index) or b.thumb(r.index)
            if path:
                tag = "✓" if correct else f"✗ seen as {names[r.pred]}"
                out.append((str(path), f"{names[r.true]} {tag}"))
    return out


def no_run_app(message: str) -> gr.Blocks:
    """What the app shows when there is no bundle to load: what happened and how to make one."""
    with gr.Blocks(title="Food-101 Explorer") as demo:
        gr.Markdown(
            "# Food-101 Explorer\n\n"
            f"**No run bundle could be loaded.** {message}\n\n"
            "Make one with `python train.py` (see the README), then start the app with "
            "`python app.py --run runs/NAME`, or point it at a bundle on the Hugging Face Hub with "
            "`--run OWNER/REPO` or the `FOOD101_RUN` environment variable.",
            elem_id="no-run",
        )
    return demo
