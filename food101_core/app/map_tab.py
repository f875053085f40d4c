"""Map: every test photo in the model's feature space (a WebGL scatter of the bundle's UMAP), coloured by class,
answer or confidence; a click shows the photo, its top 5, Grad-CAM and its nearest training photos; a lasso
selection fills a gallery; a class or a (true, predicted) pair is highlighted."""

from __future__ import annotations

import gradio as gr

from ..bundle import Bundle
from ..serving.gradcam import HEAT_KEY
from . import errors, links, neighbours, photo_view
from .context import (
    ALL,
    AppContext,
    PairFollower,
    captioned_gallery,
    chosen,
    dish_filter,
    on_settled,
    plotly_html,
    show_js,
    tab_intro,
)
from .links import link
from .tabs import TITLE

LINKED = {"colour", "map_true", "map_pred"}  # the URL keys of the map's menus

MAX_SELECTION = 120
# plotly events -> Gradio events, bound once on the drawn chart
# (points without customdata, a set's grey test-photo backdrop, answer nothing)
MAP_BIND = """div.on('plotly_click', (ev) => {
      const i = ev.points[0].customdata;
      if (i !== undefined && i !== null) trigger('click', {index: i});
    });
    div.on('plotly_selected', (ev) => {
      if (ev && ev.points) trigger('submit', {indices: ev.points.map(p => p.customdata).filter(i => i != null)});
    });"""


def build(ctx: AppContext) -> None:
    b = ctx.bundle
    names = sorted(b.class_names, key=str.lower)
    with gr.Tab(TITLE["map"], id="map"):
        map_api(b)
        if not b.has_feature_space:
            gr.Markdown(neighbours.NO_FEATURE_SPACE, elem_id="map-missing")
            return
        tab_intro(
            f"Every test photo placed by what the final model ({b.final_stage.replace('stage', 'stage ')}) sees in "
            "it: photos it finds alike sit close together, so a red island among blue is a kind of photo it gets "
            "wrong. Hover for the dish; **click a point** to see the photo; drag a lasso to select many. Another "
            "set of photos (Photos, at the top) is drawn over the test photos, in grey."
        )
        colour, f_true, f_pred, note_row, note, clear, hint = menus_layout(names)
        first = neighbours.map_figure(b, b.final_stage, neighbours.MAP_COLOURINGS[0]).to_json()  # with the page
        plot = plotly_html("map-plot", "map-plot", MAP_BIND, first)
        details = details_panel(ctx)
        count = gr.Markdown(elem_id="map-count")
        selection = captioned_gallery("Selected photos", "map-selection", height=360, visible=False)
        photo_view.viewer(ctx, selection, "map-selection-view")

    def source_of(view: str) -> str:
        """The map is the shipped model's feature space: its test photos, or a set's placed among them."""
        return view if b.is_set(view) else b.final_stage

    def draw(view: str, colour_by: str, true_name: str | None, pred_name: str | None) -> dict:
        true_name, pred_name = chosen(true_name), chosen(pred_name)
        source = source_of(view)
        if b.embedding(source) is None:  # a set added without the bundle's analyses: the test photos' map
            source = b.final_stage
        fig = neighbours.map_figure(b, source, colour_by, true_name, pred_name).to_json()
        words = filter_words(true_name, pred_name)
        hint_words = neighbours.MAP_KEY_HINT[colour_by]
        return {plot: fig, note_row: gr.update(visible=bool(words)), note: words, hint: hint_words}

    def on_click(view: str, evt: gr.EventData) -> dict:
        return photo_details(ctx, source_of(view), int(evt.index), details)

    def on_select(view: str, evt: gr.EventData):
        indices = [int(i) for i in evt.indices]
        items, _, line = neighbours.selection_gallery(b, source_of(view), indices, MAX_SELECTION)
        return gr.update(value=items, visible=bool(items)), line

    def follow(true_name: str, pred_name: str, view: str, colour_by: str) -> dict:
        """The menus and the map for a pair chosen elsewhere, in one answer."""
        return {f_true: true_name, f_pred: pred_name, **draw(view, colour_by, true_name, pred_name)}

    # a person's change of a menu (or of the photos shown) draws once from the settled menus; a pair chosen in the
    # confusion tab, or "Show all photos", sets the menus and draws in the same answer (a programmatic change of a
    # menu fires no `input`)
    menus, drawn = [ctx.view, colour, f_true, f_pred], [plot, note_row, note, hint]
    on_settled([ctx.view.change] + [m.input for m in menus[1:]], draw, menus, drawn)
    plot.click(on_click, ctx.view, list(details.values()), api_name=False).then(None, js=show_js("#map-caption"))
    plot.submit(on_select, ctx.view, [selection, count], api_name=False).then(None, js=show_js("#map-count"))
    ctx.pair_followers.append(PairFollower([ctx.view, colour], [f_true, f_pred, *drawn], follow))
    clear.click(lambda v, c: follow(ALL, ALL, v, c), [ctx.view, colour], [f_true, f_pred, *drawn], api_name=False)
    link_menus(ctx, menus, drawn, draw)


def link_menus(ctx: AppContext, menus: list, drawn: list, draw) -> None:
    """The map's colouring and highlights in the page's URL; a link that sets them draws the map from them (the page
    already drew the plain map)."""
    _, colour, f_true, f_pred = menus

    def redraw(view: str, colour_by: str, true_name: str | None, pred_name: str | None, request: gr.Request) -> dict:
        if not LINKED & set(request.query_params if request else {}):
            return links.unchanged(drawn)
        return draw(view, colour_by, true_name, pred_name)

    link(ctx, "colour", colour, links.one_of(neighbours.MAP_COLOURINGS), neighbours.MAP_COLOURINGS[0])
    link(ctx, "map_true", f_true, links.dish(ctx.bundle), ALL)
    link(ctx, "map_pred", f_pred, links.dish(ctx.bundle), ALL)
    links.restorer(ctx, redraw, menus, drawn)


def menus_layout(names: list[str]) -> tuple:
    """The map's menus (colouring, the two dish highlights), the note of what is highlighted, and the key's hint."""
    with gr.Row():
        colour = gr.Radio(list(neighbours.MAP_COLOURINGS), value=neighbours.MAP_COLOURINGS[0],
                          label="Colour by", elem_id="map-colour")  # fmt: skip
        f_true = dish_filter(names, "Highlight true dish", "map-true")
        f_pred = dish_filter(names, "Highlight the model's answer", "map-pred")
    with gr.Row(visible=False, elem_id="filter-note") as note_row:
        note = gr.Markdown(elem_id="map-filter")
        clear = gr.Button("Show all photos", size="sm", scale=0, elem_id="map-clear")
    hint = gr.Markdown(neighbours.MAP_KEY_HINT[neighbours.MAP_COLOURINGS[0]], elem_classes="cm-hint")
    return colour, f_true, f_pred, note_row, note, clear, hint


def map_api(b: Bundle) -> None:
    """The map's points as an API endpoint, `/embedding_map`, whether or not the page draws the map."""

    def map_points(stage: str) -> list[dict]:
        """Every test photo's place on the map of the model's feature space (UMAP): id, x, y, true and predicted
        dish, confidence. Nearby photos look alike to the model.

        Args:
            stage: the model: "stage1" (head only), "stage2" (fine-tuned) or "stage3" (polished); the last is served.
        """
        return embedding_map(b, stage)

    gr.api(map_points, api_name="embedding_map")


def filter_words(true_name: str | None, pred_name: str | None) -> str:
    """What the highlight is, said where the map is (it may come from a click in the Confusion matrix tab)."""
    if not (true_name or pred_name):
        return ""
    parts = [f"true dish **{true_name}**"] if true_name else []
    parts += [f"answered **{pred_name}**"] if pred_name else []
    return f"Highlighted: the photos of {' and '.join(parts)}; the others are faded."


def details_panel(ctx: AppContext) -> dict[str, gr.components.Component]:
    """Where a clicked point shows: the photo, its caption, its top 5, Grad-CAM, its nearest training photos."""
    with gr.Row():
        with gr.Column():
            caption = gr.Markdown("Click a point of the map to see its photo here.", elem_id="map-caption")
            photo = gr.Image(label="The photo", interactive=False, height=260, elem_id="map-photo", visible=False)
            top5 = gr.Label(num_top_classes=5, label="Its top 5", visible=False)
        with gr.Column():
            cam = gr.Image(label="Grad-CAM: where the model looked", interactive=False, height=260, visible=False)
            key = gr.HTML(HEAT_KEY, visible=False)
            similar = captioned_gallery("Nearest training photos (dish · distance)", "map-similar", visible=False)
            versus = gr.Markdown(elem_id="map-contrast-line")
            contrast = captioned_gallery("Nearest training photos of the answer", "map-contrast", visible=False)
            runner_up = captioned_gallery(
                "Nearest training photos of the runner-up", "map-contrast-runner-up", visible=False
            )
    for gallery, view in ((similar, "map-similar-view"), (contrast, "map-contrast-view"),
                          (runner_up, "map-runner-up-view")):  # fmt: skip
        photo_view.viewer(ctx, gallery, view)
    return {"photo": photo, "caption": caption, "top5": top5, "cam": cam, "key": key, "similar": similar,
            "versus": versus, "contrast": contrast, "runner_up": runner_up}  # fmt: skip


def embedding_map(b: Bundle, stage: str) -> list[dict]:
    """Every test photo's place on the map: id, x, y, true and predicted dish, confidence (test_set.csv order)."""
    if stage not in b.stages:
        raise gr.Error(f"unknown stage {stage!r}: this bundle has {', '.join(b.stages)}")
    try:
        return neighbours.embedding_points(b, stage)
    except ValueError as e:
        raise gr.Error(str(e)) from None


def photo_details(ctx: AppContext, stage: str, index: int, out: dict[str, gr.components.Component]) -> dict:
    """One test photo: the image (full size where at hand), a caption, its top 5, Grad-CAM, nearest training photos
    (each value keyed by its box in `details_panel`'s `out`)."""
    b = ctx.bundle
    image, heat = ctx.test_photo(stage, index)
    emb = b.embedding(stage)
    y, r = emb.test[index : index + 1], emb.test_resid[index : index + 1]
    near = neighbours.similar_photos(b, stage, y, r)
    row = b.evaluation(stage).predictions.iloc[index]
    groups = neighbours.contrast_groups(b, neighbours.contrast(b, stage, y, r, row["top1"], row["top2"]))
    text = errors.photo_caption(b, stage, index, heat is not None)
    (a_label, a_items), (r_label, r_items) = groups["answer"], groups["runner_up"]
    return {
        out["photo"]: gr.update(value=image, visible=image is not None),
        out["caption"]: text,
        out["top5"]: gr.update(value=errors.top5_of(b, stage, index), visible=True),
        out["cam"]: gr.update(value=heat, visible=heat is not None),
        out["key"]: gr.update(visible=heat is not None),
        out["similar"]: gr.update(value=neighbours.similar_gallery(b, near), visible=True),
        out["versus"]: groups["line"],
        out["contrast"]: gr.update(value=a_items, label=a_label or None, visible=bool(a_items)),
        out["runner_up"]: gr.update(value=r_items, label=r_label or None, visible=bool(r_items)),
    }
