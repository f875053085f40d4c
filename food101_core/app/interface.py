"""`build_app`: the page over one bundle, composed of the header and one builder per tab."""

from __future__ import annotations

import gradio as gr

from ..bundle import Bundle, log_fetch
from . import (
    calibration_tab,
    compare_tab,
    confusion_tab,
    header,
    links,
    map_tab,
    marking,
    mistakes_tab,
    per_class_tab,
    predict_tab,
    quality_tab,
    slices_tab,
    training_tab,
    your_photos_tab,
)
from .context import PLOTLY_HEAD, PLOTLY_JS, AppContext
from .tabs import TABS

# each tab's builder, by its id in `tabs.TABS` (Compare, which needs a second run, is built apart)
BUILDERS = {
    "predict": predict_tab.build,
    "your-photos": your_photos_tab.build,
    "confusion": confusion_tab.build,
    "per-class": per_class_tab.build,
    "mistakes": mistakes_tab.build,
    "slices": slices_tab.build,
    "map": map_tab.build,
    "quality": quality_tab.build,
    "training": training_tab.build,
    "calibration": calibration_tab.build,
}

__all__ = ["CSS", "HEAD", "PLOTLY_HEAD", "PLOTLY_JS", "THEME", "build_app", "no_run_app", "say_download"]

# Contrast of at least 4.5:1 for text (WCAG AA, axe-core's color-contrast): Gradio's default subdued grey (#bbbbc2 on
# white, 1.9:1) and white on orange-500 (2.8:1) are darkened.
THEME = gr.themes.Default(primary_hue="orange").set(
    body_text_color_subdued="*neutral_600",
    color_accent="*primary_700",
    color_accent_soft="*primary_50",
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_text_color="white",
    block_info_text_color="*neutral_600",
    input_placeholder_color="*neutral_500",
)

# What Gradio's own markup leaves out for assistive technology, filled in as the page changes (axe-core's rules):
# a gallery thumbnail's name is "Thumbnail 3 of 8", without the caption it shows; an empty box is a <div> with an
# aria-label but no role; the upload area's name differs from the words it shows.
A11Y_SCRIPT = """<script>
(() => {
  const fix = () => {
    for (const t of document.querySelectorAll('.thumbnail-item')) {
      const cap = t.querySelector('.caption-label'), words = cap ? cap.innerText.trim() : '';
      const img = t.querySelector('img');
      const name = words || (img && img.alt) || '';
      const label = t.getAttribute('aria-label') || '';
      const which = label.replace('Thumbnail', 'photo');
      if (name && !label.includes(name)) t.setAttribute('aria-label', name + ' · ' + which);
    }
    for (const d of document.querySelectorAll('div.empty[aria-label]:not([role])')) d.setAttribute('role', 'img');
    for (const u of document.querySelectorAll('.upload-container[aria-label]')) u.removeAttribute('aria-label');
    const box = document.querySelector('#confusion-plot');  // a phone scrolls the matrix sideways: by keys too
    if (box && !box.hasAttribute('tabindex')) {
      box.tabIndex = 0; box.setAttribute('role', 'region'); box.setAttribute('aria-label', 'Confusion matrix');
    }
    const tab = document.querySelector('.tab-container button.selected');  // a phone's strip: the open tab in view
    if (tab && tab !== shown) { shown = tab; tab.scrollIntoView({block: 'nearest', inline: 'nearest'}); }
  };
  let shown = null;
  let queued = false;
  const later = () => { queued = false; fix(); };
  const watch = new MutationObserver(() => { if (!queued) { queued = true; requestAnimationFrame(later); } });
  watch.observe(document.documentElement, {subtree: true, childList: true, characterData: true});
})();
</script>"""
HEAD = PLOTLY_HEAD + A11Y_SCRIPT + links.SCRIPT

CSS = """
#header-text h1 {margin: 0 0 2px 0; font-size: 1.6em}
#header-text p {margin: 0}
#header-text .prose > p:nth-of-type(2) {display: none}
.phone-only {display: none !important}
.cm-hint p {color: var(--body-text-color-subdued); font-size: 0.95em}
.tab-intro p {font-size: 0.95em; margin: 0}
#results-table table {display: block; overflow-x: auto; white-space: nowrap}
#results-table th, #results-table td {padding: 4px 8px; font-size: 0.9em}
/* galleries: as many columns as the width holds, each caption in full under its photo */
.captioned .grid-wrap {overflow-x: hidden !important; padding-top: 30px !important}
.captioned [data-testid="block-label"] {max-width: calc(100% - 64px)}  /* clear of the gallery's buttons */
.captioned .grid-container {grid-template-columns: repeat(auto-fill, minmax(132px, 1fr)) !important;
  grid-template-rows: none !important; grid-auto-rows: auto !important}
.captioned .thumbnail-lg {aspect-ratio: auto !important; height: auto !important; display: flex !important;
  flex-direction: column}
.captioned .thumbnail-lg > img {height: 120px !important; flex: none}
.captioned .caption-label {position: static !important; max-width: none !important; white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; border: 0 !important; border-radius: 0 !important;
  font-size: 12px !important; line-height: 1.3; text-align: center; opacity: 1 !important}
@media (max-width: 640px) {
  .phone-only {display: block !important}
  .desktop-only {display: none !important}
  /* the header in one line: title, top-1, Model */
  #header {flex-wrap: nowrap !important; align-items: center; gap: 8px}
  #header > .column {min-width: 0 !important; flex: 0 0 auto !important}
  #header-text .prose {display: flex; align-items: baseline; gap: 4px; flex-wrap: nowrap; white-space: nowrap}
  #header-text h1 {font-size: 14px; margin: 0}
  #header-text .prose > p:nth-of-type(1) {display: none}
  #header-text .prose > p:nth-of-type(2) {display: block}
  #header-text .prose > p:nth-of-type(2) strong {font-weight: 600}
  #header > .form {min-width: 122px !important; flex: 1 1 auto !important}  /* the Model's name shows whole */
  #stage, #photos {min-width: 0 !important; padding: 2px 4px !important}
  #stage [data-testid="block-info"], #photos [data-testid="block-info"], #photos .info-text {position: absolute;
    width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%)}  /* "Model" and "Photos" stay their names
    for a screen reader; the line stays one line (with sets, Photos sits under Model) */
  #header > .form {flex-direction: column !important; flex-wrap: nowrap !important; gap: 2px}
  /* every tab in a strip that scrolls sideways (no "more" menu), each tab a full tap target */
  .tab-container.wrap {flex-wrap: nowrap !important; overflow-x: auto !important; overflow-y: hidden;
    scrollbar-width: thin; -webkit-overflow-scrolling: touch}
  .tab-container.wrap button {flex: none !important; min-height: 44px; height: 44px !important}
  /* tap targets of at least 44 x 44 px: the photo sources, a gallery's and an image's buttons */
  .source-selection button, .icon-button-wrapper button, button.icon-button, .icon-buttons button
    {min-width: 44px !important; min-height: 44px !important}
  /* no text under 14 px */
  body, .prose, label, span, td, th, p, button {font-size: max(14px, 1em)}
  .captioned .caption-label {font-size: 14px !important; overflow-wrap: anywhere}
  .prose p, .prose li, .prose strong, .prose em, .prose code, .prose td, .prose th {font-size: 14px !important}
  button, label.checkbox-container, .wrap label, .reset-button {min-height: 44px}
  button.label-wrap {padding-top: 12px; padding-bottom: 12px}
  .reset-button {min-width: 44px}
  label.checkbox-container {display: flex; align-items: center}
  .captioned .grid-wrap {padding-top: 52px !important}  /* a label of two lines */
  .table-container table, .table-container td, .table-container th, .table-container td *, .table-container th *
    {font-family: var(--font) !important; font-size: 14px !important}
  .table-container td, .table-container th {padding: 4px 6px !important}
  #results-table th, #results-table td {padding: 4px 3px !important}
  .scroll-hint p {font-size: 14px; color: var(--body-text-color-subdued); margin: 0}
  #stage input, #photos input {text-overflow: ellipsis; padding-left: 4px !important; padding-right: 24px !important}
  #stage .wrap-inner, #photos .wrap-inner {padding: 0 4px !important}
  .heat-key .bar {min-width: 120px}
  #photo {height: 200px !important}
  #photo .image-container, #photo .upload-container {max-height: 170px}
  .captioned .grid-container {grid-template-columns: repeat(2, minmax(0, 1fr)) !important}
  #cm-pairs-first {order: -1}
  .tab-intro {order: -2}
  #confusion-plot {overflow-x: auto !important}
  #confusion-plot .cm-plot {min-width: 560px}
}
/* labels and table headers wrap between words, never inside one */
label, label *, th, th * {word-break: normal !important; overflow-wrap: normal !important; hyphens: manual}
label span {white-space: normal !important}
.heat-key {display: flex; align-items: center; gap: 8px; font-size: 0.9em; margin: 4px 0}
.heat-key .bar {flex: 1; max-width: 220px; height: 12px; border-radius: 6px;
  background: linear-gradient(90deg, rgb(48,18,140), rgb(30,110,230), rgb(40,220,240), rgb(235,255,255))}
#copy-link {align-self: center; max-height: 44px}
#filter-note {background: var(--background-fill-secondary); padding: 4px 8px; border-radius: 6px}
"""


def build_app(bundle: Bundle, demo: bool = False, compare: Bundle | None = None, concurrency: int = 2) -> gr.Blocks:
    """The whole UI over one bundle; `demo` marks the small model shipped in assets/ (a note says so); `compare`:
    another run on the same test set, for the Compare tab; `concurrency`: predictions at once (app.py's queue)."""
    # the files Gradio keeps for a visitor (uploads, answers) go an hour after they were made, checked every 10 min
    with gr.Blocks(title="Food-101 Explorer", delete_cache=(600, your_photos_tab.KEEP_S)) as page:
        stage, photos, view = header.build(bundle, demo)
        ctx = AppContext(bundle, page, stage, photos, view, demo=demo, concurrency=concurrency)
        header.link_selectors(ctx)
        ctx.marks = marking.store(bundle)
        ctx.predictor(bundle.final_stage)  # load the served model now, not during the first request
        with gr.Tabs(overflow_behavior="wrap"):  # a phone scrolls the strip (CSS), no "more" menu
            for tab in TABS:  # in the one list's order
                if tab.needs == "compare":
                    if compare is not None:
                        compare_tab.build(ctx, compare)
                else:
                    BUILDERS[tab.id](ctx)
        for bind in ctx.after_build:  # events whose outputs live in later tabs
            bind()
        links.bind(ctx, page)  # the view in the URL, restored from it on load
    return page


def say_download(rel: str, size: int) -> None:
    """A Hub bundle's file fetched on its first use: said in the log and, within a request, on the page."""
    log_fetch(rel, size)
    gr.Info(f"Downloading {rel} ({size / 1e6:.1f} MB) from the Hub: once, on first use…", duration=6)


def no_run_app(message: str) -> gr.Blocks:
    """What the app shows when there is no bundle to load: what happened and how to make one."""
    with gr.Blocks(title="Food-101 Explorer") as page:
        gr.Markdown(
            "# Food-101 Explorer\n\n"
            f"**No run bundle could be loaded.** {message}\n\n"
            "Make one with `python train.py` (see the README), then start the app with "
            "`python app.py --run runs/NAME`, or point it at a bundle on the Hugging Face Hub with "
            "`--run OWNER/REPO` or the `FOOD101_RUN` environment variable.",
            elem_id="no-run",
        )
    return page
