"""The top of the page: the title, one summary line, the demo note (demo bundle only), run details, Model choice."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from ..backbones import BACKBONES
from ..bundle import TEST, Bundle, BundleError
from . import run_summary
from .context import AppContext, stage_label
from .links import COPY_JS, derive, link, one_of
from .report import write_report

DEMO_NOTE = (
    "**Demo model**: {backbone} fine-tuned on a CPU on *food101-mini* (10 Food-101 classes), shipped so that the "
    "app works offline. The full recipe is EfficientNetB0 on all 101 classes: `python train.py` (README)."
)


PHOTOS_TEST = "Test split"


def header_text(b: Bundle, stage: str | None = None) -> str:
    """The page's one h1, the summary line (a desktop) and the selected model's top-1 alone (a phone, whose header
    is one line, title, top-1 and Model, so the number stands alone: interface.CSS shows one paragraph or the
    other; Run details say the rest)."""
    top1 = b.evaluation(stage or b.final_stage).metrics["top1"]
    title = '# Food-101 <span class="desktop-only">Explorer</span>'  # a phone's line keeps room for the Model
    return f"{title}\n\n{run_summary.summary_line(b, stage)}\n\n**{top1:.1%}**"


def build(b: Bundle, demo: bool) -> tuple[gr.Dropdown, gr.Dropdown, gr.Textbox]:
    """Lays out the header and returns the Model selector that Predict reads, the Photos selector (the test split,
    the bundle's sets and a visitor's own, shown once there is more than the test split) and the view the analysis
    tabs read (the Model's stage on the test split, or the chosen set). On a phone it folds to one line (title,
    top-1, Model); the demo note and everything else wait behind the Run details tap."""
    with gr.Row(equal_height=True, elem_id="header"):
        with gr.Column(scale=4, min_width=160):
            title = gr.Markdown(header_text(b), elem_id="header-text")
        stage = gr.Dropdown(
            [(stage_label(b, s), s) for s in reversed(b.stages)],
            value=b.final_stage,
            label="Model",
            elem_id="stage",
            scale=1,
            min_width=150,
        )
        photos = gr.Dropdown(
            photo_choices(b),
            value=TEST,
            label="Photos",
            info="the analysis tabs show these photos (a set: scored by the final model)",
            elem_id="photos",
            scale=1,
            min_width=150,
            visible=bool(b.sets),
        )
        view = gr.Textbox(b.final_stage, visible=False, elem_id="view")
        copy = gr.Button("Copy link", elem_id="copy-link", size="sm", scale=0, min_width=120,
                         elem_classes="desktop-only")  # fmt: skip
    note = DEMO_NOTE.format(backbone=BACKBONES[b.train_config.backbone].builder) if demo else ""
    if demo:
        gr.Markdown(note, elem_id="demo-note", elem_classes="desktop-only")
    run_details(b, demo, note, stage)

    def metrics(stage: str) -> dict:
        """A model's metrics on the test split: n, top1, top5, macro precision/recall/F1, ece (calibration error after
        temperature scaling; ece_raw before), the reliability bins and the fitted temperature.

        Args:
            stage: the model: "stage1" (head only), "stage2" (fine-tuned) or "stage3" (polished); the last is served.
        """
        return b.evaluation(stage).metrics

    def choose(stage: str, chosen: str):
        """The view the analysis tabs show, and the header's numbers for it."""
        try:
            source = view_of(b, stage, chosen)
        except BundleError:  # a visitor's set deleted meanwhile (an hour old): the test split again
            gr.Warning("Those photos were deleted (a set is kept an hour): showing the test split.")
            source = stage
        return source, header_text(b, source)

    gr.api(metrics, api_name="metrics")
    copy.click(None, js=COPY_JS)
    gr.on([stage.change, photos.change], choose, [stage, photos], [view, title], api_name=False)
    return stage, photos, view


def run_details(b: Bundle, demo: bool, note: str, stage: gr.Dropdown) -> None:
    """What the one-line header leaves out, behind a tap: the recipe, the data, every stage's results, the report of
    the selected model, and (on a phone) the link to this view."""
    with gr.Accordion("Run details: recipe, data and every stage's results", open=False, elem_id="run-details"):
        if demo:
            gr.Markdown(note, elem_classes="phone-only")
        gr.Markdown(run_summary.summary_details(b), elem_id="summary")
        gr.Markdown(run_summary.results_table(b), elem_id="results-table")
        with gr.Row():
            copy_phone = gr.Button("Copy a link to this view", elem_id="copy-link-phone", scale=0,
                                   elem_classes="phone-only")  # fmt: skip
            report_go = gr.Button("Make a report to send (one HTML file)", elem_id="report-go", scale=0)
            report_file = gr.File(label="Report: opens offline in any browser", visible=False, elem_id="report-file")
    reports: dict[str, Path] = {}

    def report(stage: str, progress=gr.Progress()) -> dict:
        """The selected model's report, made once per model and kept for the next visitor."""
        if stage not in reports:
            progress(0.1, desc="Writing the report: charts, tables and photos into one file")
            folder = Path(tempfile.mkdtemp(prefix="food101-report-"))
            reports[stage] = write_report(b, folder / f"food101-report-{b.path.name}-{stage}.html", stage)
        return gr.update(value=str(reports[stage]), visible=True)

    copy_phone.click(None, js=COPY_JS.replace("#copy-link", "#copy-link-phone"))
    report_go.click(report, stage, report_file, api_name=False, concurrency_id="report", concurrency_limit=1)


def link_selectors(ctx: AppContext) -> None:
    """The Model and Photos choices in the page's URL (`model`, `photos`), restored from it."""
    b = ctx.bundle
    link(ctx, "model", ctx.stage, one_of(b.stages), b.final_stage)
    link(ctx, "photos", ctx.photos, one_of([TEST, *b.sets]), TEST)
    derive(ctx, ctx.view, lambda got: view_of(b, got.get(ctx.stage, b.final_stage), got.get(ctx.photos, TEST)))


def view_of(b: Bundle, stage: str, chosen: str | None) -> str:
    """What the analysis tabs show: the Model's stage on the test split, or the chosen set (BundleError if gone)."""
    return stage if chosen in (None, "", TEST) else b.set_key(chosen)


def photo_choices(b: Bundle, visitor: tuple[str, str] | None = None) -> list[tuple[str, str]]:
    """The Photos selector's entries: the test split, the bundle's sets and (label, name) of a visitor's own."""
    return [(PHOTOS_TEST, TEST)] + [(f"Set: {name}", name) for name in b.sets] + ([visitor] if visitor else [])
