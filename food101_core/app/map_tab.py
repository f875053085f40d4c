"""Map: every test photo in the model's feature space (a WebGL scatter of the bundle's UMAP), coloured by class,
answer or confidence; a click shows the photo, its top 5, Grad-CAM and its nearest training photos; a lasso
selection fills a gallery; a class or a (true, predicted) pair is highlighted."""

from __future__ import annotations

import gradio as gr

from ..bundle import Bundle
from . import errors, neighbours
from .context import AppContext, plotly_html

MAX_SELECTION = 120
# plotly events -> Gradio events, bound once on the drawn chart
MAP_BIND = """div.on('plotly_click', (ev) => trigger('click', {index: ev.points[0].customdata}));
    div.on('plotly_selected', (ev) => {
      if (ev && ev.points) trigger('submit', {indices: ev.points.map(p => p.customdata)});
    });"""


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    names = sorted(b.class_names, key=str.lower)
    with gr.Tab("Map", id="map"):

        def map_points(stage: str) -> list[dict]:
            """Every test photo's place on the map: id, x, y, true and predicted dish, confidence."""
            return embedding_map(b, stage)

        gr.api(map_points, api_name="embedding_map")
        if not b.has_feature_space:
            gr.Markdown(neighbours.NO_FEATURE_SPACE, elem_id="map-missing")
            return
        with gr.Row():
            colour = gr.Radio(
                list(neighbours.MAP_COLOURINGS), value="true class", label="Colour by", elem_id="map-colour"
            )
            f_true = gr.Dropdown([None, *names], value=None, label="Highlight true class", elem_id="map-true")
            f_pred = gr.Dropdown([None, *names], value=None, label="Highlight predicted class", elem_id="map-pred")
        gr.Markdown(
            f"The final model's ({b.stages[-1].replace('stage', 'stage ')}) features. Hover for the dish; "
            "**click a point** to see the photo; drag a lasso to select many.",
            elem_classes="cm-hint",
        )
        plot = plotly_html("map-plot", "map-plot", MAP_BIND)
        details = details_panel()
        count = gr.Markdown(elem_id="map-count")
        selection = gr.Gallery(label="Selected photos", columns=8, height=360, elem_id="map-selection")

    last = b.stages[-1]  # the feature space is the shipped model's

    def draw(colour_by: str, true_name: str | None, pred_name: str | None) -> str:
        return neighbours.map_figure(b, last, colour_by, true_name, pred_name).to_json()

    def on_click(evt: gr.EventData):
        return photo_details(ctx, last, int(evt.index))

    def on_select(evt: gr.EventData):
        items, _, line = neighbours.selection_gallery(b, last, [int(i) for i in evt.indices], MAX_SELECTION)
        return items, line

    inputs = [colour, f_true, f_pred]
    for trigger in (colour.change, f_true.change, f_pred.change, ctx.blocks.load):
        trigger(draw, inputs, [plot], api_name=False)
    plot.click(on_click, None, details, api_name=False)
    plot.submit(on_select, None, [selection, count], api_name=False)
    ctx.pair.change(lambda pair: tuple(pair or (None, None)), ctx.pair, [f_true, f_pred], api_name=False)


def details_panel() -> list:
    """Where a clicked point shows: the photo, its caption, its top 5, Grad-CAM, its nearest training photos."""
    with gr.Row():
        with gr.Column():
            photo = gr.Image(label="The photo", interactive=False, height=260, elem_id="map-photo")
            caption = gr.Markdown(elem_id="map-caption")
            top5 = gr.Label(num_top_classes=5, label="Its top 5")
        with gr.Column():
            cam = gr.Image(label="Grad-CAM", interactive=False, height=260)
            similar = gr.Gallery(label="Nearest training photos", columns=3, height="auto", elem_id="map-similar")
    return [photo, caption, top5, cam, similar]


def embedding_map(b: Bundle, stage: str) -> list[dict]:
    """Every test photo's place on the map: id, x, y, true and predicted dish, confidence (test_set.csv order)."""
    if stage not in b.stages:
        raise gr.Error(f"unknown stage {stage!r}: this bundle has {', '.join(b.stages)}")
    try:
        return neighbours.embedding_points(b, stage)
    except ValueError as e:
        raise gr.Error(str(e)) from None


def photo_details(ctx: AppContext, stage: str, index: int) -> tuple:
    """One test photo: the image (full size where at hand), a caption, its top 5, Grad-CAM, nearest training photos."""
    b = ctx.bundle
    image, heat = ctx.test_photo(stage, index)
    emb = b.embedding(stage)
    near = neighbours.similar_photos(b, stage, emb.test[index : index + 1], emb.test_resid[index : index + 1])
    text = errors.mistake_caption(b, stage, index, heat is not None).replace(" predicted as ", " → ")
    return image, text, errors.top5_of(b, stage, index), heat, neighbours.similar_gallery(b, near)
