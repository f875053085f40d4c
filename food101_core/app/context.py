"""What every tab shares: the bundle, the model selector, the page, and the models loaded so far."""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import plotly
from PIL import Image

from ..bundle import Bundle
from ..serving.gradcam import overlay_heatmap
from ..serving.images import read_image
from ..serving.kept import KeptPredictions
from ..serving.predictor import Predictor

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"  # served locally: no CDN on a Space
# Loaded once with the page (deferred, so the first screen does not wait for it): every chart of every tab draws
# with it as soon as its tab opens, instead of fetching and parsing 3.5 MB of JavaScript on the first chart.
PLOTLY_HEAD = f'<script defer src="/gradio_api/file={PLOTLY_JS}"></script>'


def stage_words(b: Bundle, stage: str) -> str:
    """What a stage's model is, in a few words ("fine-tuned")."""
    return {
        "stage1": "head only",
        "stage2": "fine-tuned",
        "stage3": f"polished, {b.train_config.final_size} px",
    }[stage]


def stage_label(b: Bundle, stage: str) -> str:
    """The Model selector's words for a stage: "Final: …" for the shipped model, "Stage N: …" for the others.
    Short enough to show whole in the phone's one-line header (about 26 characters)."""
    words = stage_words(b, stage)
    return f"Final: {words}" if stage == b.final_stage else f"Stage {stage.removeprefix('stage')}: {words}"


def on_settled(triggers: list, fn, inputs: list, outputs: list) -> gr.Dependency:
    """Bind a view fed by several inputs as ONE event for all of them, whose last request always has the last word.

    Separate listeners per input each ran on the values of their moment, and whichever answer came back last won (the
    Map once showed Beet Salad under menus that said Baklava). One event with `always_last` mostly holds a second run
    until the first is back, but two inputs set at once (a confusion pair sets both dish menus) can still send two
    requests; so each request of a browser session takes a ticket as it starts, and an answer whose ticket is no
    longer that session's newest is dropped (`gr.skip()`): the newest request's answer is what the page shows.
    """
    newest: dict[str, int] = {}
    tickets, lock = itertools.count(), threading.Lock()
    skip = tuple(gr.skip() for _ in outputs) if len(outputs) > 1 else gr.skip()

    def run(request: gr.Request, *values):
        session = getattr(request, "session_hash", None) or ""
        with lock:
            ticket = newest[session] = next(tickets)
            if len(newest) > 10_000:  # sessions long gone: keep the table small
                newest.clear()
                newest[session] = ticket
        answer = fn(*values)
        with lock:
            return answer if newest.get(session, ticket) == ticket else skip

    return gr.on(triggers, run, inputs, outputs, trigger_mode="always_last", api_name=False)


def tool(name: str) -> Callable:
    """Name an endpoint's function as its endpoint: Gradio's MCP server calls each tool by the function's name."""

    def named(fn: Callable) -> Callable:
        fn.__name__ = name
        return fn

    return named


def show_js(selector: str) -> str:
    """JavaScript for `.then(None, js=show_js("#box"))`: once the box an action filled has drawn, scroll the page so
    that its top is in view (a phone's answer sits below the photo; a matrix cell's photos sit below the matrix).
    Nothing moves when the top is already on screen, so nothing jumps under the reader. Each run, done, counts
    itself in `<html data-shown>`: a script (or a browser test on a slow machine) knows when the page has settled."""
    return f"""() => {{ let tries = 0; const root = document.documentElement; const go = () => {{
  const el = document.querySelector('{selector}');
  if ((!el || el.offsetParent === null) && tries++ < 40) {{ setTimeout(go, 50); return; }}
  const top = el ? el.getBoundingClientRect().top : 0;
  if (el && (top < 0 || top > window.innerHeight - 96)) window.scrollBy({{top: top - 12, behavior: 'instant'}});
  root.dataset.shown = String(Number(root.dataset.shown || 0) + 1);
}}; requestAnimationFrame(() => setTimeout(go, 30)); }}"""


ALL = "All"  # what an unset dish filter shows (a blank box reads as broken)


def dish_filter(names: list[str], label: str, elem_id: str) -> gr.Dropdown:
    """A dish filter that shows "All" when unset; `chosen` turns its value back into a dish name or None."""
    return gr.Dropdown([ALL, *names], value=ALL, label=label, elem_id=elem_id)


def chosen(value: str | None) -> str | None:
    """A filter's dish, or None for "All" (and for None, which scripts send through the API)."""
    return None if value in (None, "", ALL) else value


def captioned_gallery(label: str, elem_id: str, height: int | str = "auto", **kwargs) -> gr.Gallery:
    """A gallery whose columns follow the width and whose captions show in full under each photo (interface.CSS)."""
    return gr.Gallery(
        label=label, elem_id=elem_id, elem_classes="captioned", height=height, columns=6, allow_preview=False, **kwargs
    )


def scroll_hint() -> gr.Markdown:
    """A phone's sign that the table above has more columns than its screen shows (interface.CSS: phones only)."""
    return gr.Markdown("Swipe the table sideways for all its columns →", elem_classes=["phone-only", "scroll-hint"])


def tab_intro(text: str) -> gr.Markdown:
    """The one plain sentence at the top of a tab that says what you are looking at."""
    return gr.Markdown(text, elem_classes="tab-intro")


def plotly_html(div_class: str, elem_id: str, bind: str, value: str = "") -> gr.HTML:
    """A `gr.HTML` that draws its value, a plotly figure as JSON, and turns plotly events into Gradio events."""
    return gr.HTML(
        value=value,
        html_template=f'<div class="{div_class}" style="width:100%"></div>',
        js_on_load=plotly_js(div_class, bind),
        elem_id=elem_id,
    )


def chart(fig, elem_id: str) -> gr.HTML:
    """A plotly figure drawn with the page's plotly.js (`plotly_html` without events); update it with
    `fig.to_json()`. Unlike `gr.Plot`, which loads its own plotly bundle when its first chart mounts (1.5 s here),
    it draws as soon as its tab opens."""
    return plotly_html(elem_id, elem_id, "", fig.to_json())


# A chart on a 390 px phone: text of at least 14 px (a dense axis of 30+ dishes keeps its small labels: 101 rows of
# 14 px labels do not fit any screen; hover names them), a title broken into lines instead of cut, the legend and
# colour bars under the plot instead of over it, and the map at least as wide as tall.
PHONE_FIT_JS = """
const fitPhone = (fig, div) => {
  const L = fig.layout = fig.layout || {};
  L.font = Object.assign({}, L.font, {size: Math.max(14, (L.font && L.font.size) || 0)});
  const wrap = (text, width) => {  // lines of at most `width` characters, broken between words
    const lines = [''];
    for (const w of String(text || '').replace(/<br>/g, ' ').split(' ')) {
      if ((lines[lines.length - 1] + ' ' + w).trim().length > width) lines.push(w);
      else lines[lines.length - 1] = (lines[lines.length - 1] + ' ' + w).trim();
    }
    return lines;
  };
  if (L.title) {
    const t = typeof L.title === 'string' ? {text: L.title} : Object.assign({}, L.title);
    const lines = wrap(t.text, 34);
    t.text = lines.join('<br>'); t.font = Object.assign({}, t.font, {size: 14});
    L.title = t;
    L.margin = Object.assign({}, L.margin, {t: Math.max((L.margin && L.margin.t) || 0, 24 + 18 * lines.length)});
  }
  for (const ax of Object.keys(L).filter(k => /^[xy]axis/.test(k))) {
    const tf = L[ax].tickfont || {};
    if (!tf.size || tf.size >= 10) L[ax].tickfont = Object.assign({}, tf, {size: 14});
    const at = L[ax].title;
    if (at) L[ax].title = Object.assign({}, typeof at === 'string' ? {text: at} : at,
                                        {text: wrap(typeof at === 'string' ? at : at.text, 24).join('<br>')});
  }
  for (const tr of fig.data || []) if (tr.name && String(tr.name).length > 30) tr.name = wrap(tr.name, 30).join('<br>');
  const title = Object.assign({}, (L.legend || {}).title, {side: 'top'});
  L.legend = Object.assign({}, L.legend, {orientation: 'h', x: 0, xanchor: 'left', y: -0.18, yanchor: 'top', title});
  for (const tr of fig.data || []) {
    if (tr.type === 'heatmap' || (tr.marker && tr.marker.colorbar) || tr.colorbar) {
      // above the plot, at the figure's left edge, short enough for the screen (the matrix scrolls sideways)
      const bar = {orientation: 'h', xref: 'container', x: 0.02, xanchor: 'left', yref: 'container', y: 0.99,
                   yanchor: 'top', thickness: 12, lenmode: 'pixels', len: 260, title: {side: 'right'}};
      L.margin = Object.assign({}, L.margin, {t: ((L.margin && L.margin.t) || 30) + 60});
      if (tr.type === 'heatmap') tr.colorbar = Object.assign({}, tr.colorbar, bar);
      else if (tr.marker && tr.marker.colorbar) tr.marker.colorbar = Object.assign({}, tr.marker.colorbar, bar);
    }
  }
  const cats = new Set((fig.data || []).filter(t => t.type === 'bar' && t.orientation === 'h')
    .flatMap(t => Array.isArray(t.y) ? t.y : []));
  if (cats.size) L.height = Math.max(L.height || 450, 26 * cats.size + 220);  // a 14 px label for every bar
  if (div.classList.contains('map-plot')) L.height = Math.round(0.9 * Math.max(div.clientWidth, 320)) + 150;
};
// Once drawn: the legend sits a fixed share of the plot's height under it, which a short plot with a wrapped
// x-axis title leaves too little; where it runs into the axis's tick labels or title, it moves down by the overlap
// and the figure grows as much (its margin follows the legend), so the plot keeps its size.
const clearAxis = (div) => {
  const legend = div.querySelector('.legend');
  const axis = Array.from(div.querySelectorAll('.xtick text, [class*="xtitle"]'))
    .map(el => el.getBoundingClientRect()).filter(r => r.height > 0);
  if (!legend || !axis.length) return;
  const overlap = Math.ceil(Math.max(...axis.map(r => r.bottom)) + 6 - legend.getBoundingClientRect().top);
  const fl = div._fullLayout;
  if (overlap > 0) Plotly.relayout(div, {'legend.y': fl.legend.y - overlap / fl._size.h, height: fl.height + overlap});
};
"""


def plotly_js(div_class: str, bind: str) -> str:
    """`js_on_load` for a `gr.HTML` whose value is a plotly figure as JSON: draw it with the locally served
    plotly.js whenever the value changes, and bind its events once (`bind`: JavaScript using `div` and `trigger`,
    which turns a plotly event into a Gradio event). `gr.Plot` has no click or selection events."""
    return (
        PHONE_FIT_JS
        + f"""
const draw = () => {{
  const div = element.querySelector('.{div_class}');
  if (!div) return;
  if (typeof Plotly === 'undefined' || !props.value) {{ setTimeout(draw, 100); return; }}
  const fig = JSON.parse(props.value);
  const phone = window.matchMedia('(max-width: 640px)').matches;  // no toolbar over a phone's small chart
  if (phone) fitPhone(fig, div);
  const config = {{responsive: true, displaylogo: false, displayModeBar: phone ? false : 'hover'}};
  const drawn = Plotly.react(div, fig.data, fig.layout, config);
  if (phone) drawn.then(() => clearAxis(div));
  if (!div.dataset.bound) {{
    div.dataset.bound = '1';
    {bind}
  }}
}};
draw();
watch('value', draw);
"""
    )


@dataclass
class PairFollower:
    """A view that follows the confusion tab's pair: its extra inputs, its outputs, and
    `answer(true_name, pred_name, *inputs) -> {output: value}`."""

    inputs: list
    outputs: list
    answer: Callable[..., dict]


@dataclass
class AppContext:
    """Passed to every tab builder: the bundle, the shared "Model" selector and the page being built."""

    bundle: Bundle
    blocks: gr.Blocks
    stage: gr.Dropdown
    photos: gr.Dropdown  # the test split, a set of the bundle, or the visitor's own (Your photos adds it)
    # what the analysis tabs show: the chosen stage on the test split, or an evaluation set (scored by the shipped
    # stage), as `Bundle.evaluation` keys them; set by the Model and Photos selectors together
    view: gr.Textbox
    demo: bool = False
    # predictions run at once (app.py --concurrency): each gets its share of the cores, so that two visitors' photos
    # run side by side, one a core, while Gradio's own work finds a core between them (bench/app_load.py)
    concurrency: int = 2
    # other tabs (the map) that follow the pair chosen in the confusion tab: answered in the same request as the
    # pair's photos, so the tabs can never disagree on which pair was chosen last
    pair_followers: list[PairFollower] = field(default_factory=list)
    # events bound once every tab is built (those whose outputs live in later tabs)
    after_build: list[Callable[[], None]] = field(default_factory=list)
    # the view's state in the page's URL (links.link) and the steps that restore it from there (links.restorer)
    links: list = field(default_factory=list)
    restorers: list = field(default_factory=list)
    derived: list = field(default_factory=list)  # (component, fn(restored values by component) -> its value)
    marks: Any = None  # the person's marks on photos, in the browser's storage (marking.store)
    files: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="food101-explorer-")))
    kept: KeptPredictions = field(default_factory=KeptPredictions)  # answers for photos asked again (/predict)
    _predictors: dict[tuple[str, bool], Predictor] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _batches: int = 0  # visitors' batches running now (`serving`)

    def test_photo(self, source: str, index: int) -> tuple[Image.Image | None, Image.Image | None]:
        """A test photo (or a set's) as the tabs show it: full size where the data set is at hand, else its thumbnail
        (None if the bundle kept none), and Grad-CAM of the predicted dish, only for the full image (a 128 px
        thumbnail would show blur). A set's photos are kept as thumbnails only."""
        b = self.bundle
        original = None if b.is_set(source) else b.original_image(index)
        thumb = b.source_photo(source, index)
        image = read_image(original) if original else (Image.open(thumb).convert("RGB") if thumb else None)
        if not original:
            return image, None
        pred_id = b.evaluation(source).predictions.iloc[index]["pred"]
        return image, overlay_heatmap(image, self.predictor(source).gradcam(image, b.class_ids.index(pred_id)))

    def predictor(self, stage: str, bulk: bool = False) -> Predictor:
        """The stage's model (a set's: the shipped stage's), served as its evaluation ran; loaded on first use and
        shared by all requests. Its session runs on the share of the cores of one of `concurrency` batches at once;
        `bulk`, on every core (one visitor's set of many photos, batch after batch: 500 photos scored in 8.7 s
        instead of 12.4 s here; and a visitor's batch that runs alone, `serving`)."""
        stage = self.bundle.stage_of(stage)
        with self._lock:
            if (stage, bulk) not in self._predictors:
                threads = None if bulk else max(1, (os.cpu_count() or 1) // self.concurrency)
                self._predictors[stage, bulk] = Predictor.from_bundle(self.bundle, stage, threads)
            return self._predictors[stage, bulk]

    @contextmanager
    def serving(self, stage: str) -> Iterator[Predictor]:
        """The stage's model for one batch of visitors' photos: on every core when no other batch is running (one
        visitor's answer as soon as the machine allows), else on its share of the cores (many visitors: each batch
        on a core of its own, no thread waiting for one). The answers are the same either way."""
        with self._lock:
            alone = self._batches == 0
            self._batches += 1
        try:
            yield self.predictor(stage, bulk=alone)
        finally:
            with self._lock:
                self._batches -= 1


class UploadedImage(gr.Image):
    """`gr.Image` that hands the raw upload to `images.read_image`, so a bad file gets our clear message
    instead of failing inside Gradio's own decoding."""

    is_template = True  # the front end is gr.Image's

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)
