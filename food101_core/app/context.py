"""What every tab shares: the bundle, the model selector, the page, and the models loaded so far."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import plotly
from PIL import Image

from ..bundle import Bundle
from ..serving.gradcam import overlay_heatmap
from ..serving.images import read_image
from ..serving.predictor import Predictor

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"  # served locally: no CDN on a Space
# Loaded once with the page (deferred, so the first screen does not wait for it): every chart of every tab draws
# with it as soon as its tab opens, instead of fetching and parsing 3.5 MB of JavaScript on the first chart.
PLOTLY_HEAD = f'<script defer src="/gradio_api/file={PLOTLY_JS}"></script>'


def stage_label(b: Bundle, stage: str) -> str:
    """The Model selector's words for a stage; the last one is the shipped, "(final)" model."""
    words = {
        "stage1": "Stage 1: head only",
        "stage2": "Stage 2: fine-tuned",
        "stage3": f"Stage 3: polished at {b.train_config.final_size} px",
    }[stage]
    return words + (" (final)" if stage == b.stages[-1] else "")


def on_settled(triggers: list, fn, inputs: list, outputs: list) -> gr.Dependency:
    """Bind a view fed by several inputs as ONE event for all of them: while it runs, further changes wait
    (`always_last`) and it then runs once more on the inputs' settled values. Separate listeners per input would each
    run on the values of their moment, and whichever answer came back last would win (the Map once showed Beet Salad
    under menus that said Baklava)."""
    return gr.on(triggers, fn, inputs, outputs, trigger_mode="always_last", api_name=False)


def show_js(selector: str) -> str:
    """JavaScript for `.then(None, js=show_js("#box"))`: once the box an action filled has drawn, scroll the page so
    that its top is in view (a phone's answer sits below the photo; a matrix cell's photos sit below the matrix).
    Nothing moves when the top is already on screen, so nothing jumps under the reader."""
    return f"""() => {{ let tries = 0; const go = () => {{
  const el = document.querySelector('{selector}');
  if ((!el || el.offsetParent === null) && tries++ < 40) {{ setTimeout(go, 50); return; }}
  if (!el) return;
  const top = el.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight - 96) window.scrollBy({{top: top - 12, behavior: 'instant'}});
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


def plotly_js(div_class: str, bind: str) -> str:
    """`js_on_load` for a `gr.HTML` whose value is a plotly figure as JSON: draw it with the locally served
    plotly.js whenever the value changes, and bind its events once (`bind`: JavaScript using `div` and `trigger`,
    which turns a plotly event into a Gradio event). `gr.Plot` has no click or selection events."""
    return f"""
const draw = () => {{
  const div = element.querySelector('.{div_class}');
  if (!div) return;
  if (typeof Plotly === 'undefined' || !props.value) {{ setTimeout(draw, 100); return; }}
  const fig = JSON.parse(props.value);
  const phone = window.matchMedia('(max-width: 640px)').matches;  // no toolbar over a phone's small chart
  const config = {{responsive: true, displaylogo: false, displayModeBar: phone ? false : 'hover'}};
  Plotly.react(div, fig.data, fig.layout, config);
  if (!div.dataset.bound) {{
    div.dataset.bound = '1';
    {bind}
  }}
}};
draw();
watch('value', draw);
"""


@dataclass
class AppContext:
    """Passed to every tab builder: the bundle, the shared "Model" selector and the page being built."""

    bundle: Bundle
    blocks: gr.Blocks
    stage: gr.Dropdown
    demo: bool = False
    # The (true, predicted) pair last chosen in the confusion tab; other tabs (the map) follow it.
    pair: gr.State = field(default_factory=lambda: gr.State(None))
    files: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="food101-explorer-")))
    _predictors: dict[str, Predictor] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def test_photo(self, stage: str, index: int) -> tuple[Image.Image | None, Image.Image | None]:
        """A test photo as the tabs show it: full size where the data set is at hand, else its thumbnail (None if
        the bundle kept none), and Grad-CAM of the predicted dish, only for the full image (a 128 px thumbnail would
        show blur)."""
        b = self.bundle
        original, thumb = b.original_image(index), b.thumb(index)
        image = read_image(original) if original else (Image.open(thumb).convert("RGB") if thumb else None)
        if not original:
            return image, None
        pred_id = b.evaluation(stage).predictions.iloc[index]["pred"]
        return image, overlay_heatmap(image, self.predictor(stage).gradcam(image, b.class_ids.index(pred_id)))

    def predictor(self, stage: str) -> Predictor:
        """The stage's model, served as its evaluation ran; loaded on first use and shared by all requests."""
        with self._lock:
            if stage not in self._predictors:
                self._predictors[stage] = Predictor.from_bundle(self.bundle, stage)
            return self._predictors[stage]


class UploadedImage(gr.Image):
    """`gr.Image` that hands the raw upload to `images.read_image`, so a bad file gets our clear message
    instead of failing inside Gradio's own decoding."""

    is_template = True  # the front end is gr.Image's

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)
