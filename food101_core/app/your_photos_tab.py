"""Your photos: a visitor's own labelled set (a zip, or many photos) predicted by the shipped model and measured
against the test split; the same scoring as `python -m food101_core.sets evaluate`, and `/evaluate_set` for scripts.

A visitor's set lives only in that visitor's session: its files sit in a folder of that session, deleted when the
page closes or after an hour, whichever comes first. At most one set is scored at a time; the others wait in the
queue, which says their place.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from ..sets.scoring import most_confident_mistakes, score_set
from ..sets.uploads import Limits, UploadError, collect_many
from . import errors, photo_view
from .context import AppContext, captioned_gallery, scroll_hint, show_js, tab_intro

LIMITS = Limits()
KEEP_S = 3600  # a visitor's set is deleted an hour after it was scored, or when the page closes
ONE_AT_A_TIME = {"concurrency_id": "evaluate-set", "concurrency_limit": 1}


def build(ctx: AppContext) -> None:
    with gr.Tab("Your photos", id="your-photos"):
        tab_intro(
            "How the model does on your own photos: upload a zip of folders named by dish (or with a CSV of "
            f"path,label inside), or many photos at once. Limits: {LIMITS.words()}. Your photos are seen only "
            "in this browser tab and deleted when you close it (or after an hour)."
        )
        files = gr.File(file_count="multiple", file_types=[".zip", ".csv", "image"], label="Your photos",
                        elem_id="set-files")  # fmt: skip
        go = gr.Button("Evaluate these photos", variant="primary", elem_id="set-go")
        words = gr.Markdown(elem_id="set-summary")
        table = gr.Dataframe(label="Your dishes, those that dropped most first", interactive=False, wrap=True,
                             visible=False, elem_id="set-per-class")  # fmt: skip
        scroll_hint()
        mistakes = captioned_gallery("Its most confident mistakes on your photos (your label → its answer · sure)",
                                     "set-mistakes", height=360, visible=False)  # fmt: skip
        photo_view.viewer(ctx, mistakes, "set-mistake-view")
        download = gr.DownloadButton("Download the predictions (CSV)", visible=False, elem_id="set-csv")
        api_in, api_out = gr.File(visible=False), gr.JSON(visible=False)
        api_go = gr.Button(visible=False)

    def evaluate(uploads: list[str] | None, request: gr.Request, progress=gr.Progress()):
        """Score a visitor's upload; what the page shows."""
        if not uploads:
            raise gr.Error("Choose a zip or some photos first.")
        return show(ctx, *run(ctx, uploads, request, progress))

    def evaluate_set(upload: str | None, request: gr.Request, progress=gr.Progress()) -> dict:
        """A zip of photos (class folders, or a CSV of path,label inside) scored by the shipped model: n_files,
        scored, top1, top5, ece, test_top1, difference {top1, low, high} (95 %), per_class, unknown_labels,
        unlabelled, refused [{file, reason}], slices, unfamiliar_share."""
        if not upload:
            raise gr.Error("send a zip of photos")
        return run(ctx, [upload], request, progress)[1]

    go.click(evaluate, files, [words, table, mistakes, download], api_name=False, **ONE_AT_A_TIME).then(
        None, js=show_js("#set-summary")
    )
    api_go.click(evaluate_set, api_in, api_out, api_name="evaluate_set", **ONE_AT_A_TIME)
    ctx.blocks.unload(lambda request: forget(ctx, request))


def session_folder(ctx: AppContext, request: gr.Request | None) -> Path:
    """This browser session's folder for its sets (none other's files are ever served from it)."""
    session = (getattr(request, "session_hash", None) or "anonymous").replace("/", "_")
    return ctx.files / "sets" / session


def forget(ctx: AppContext, request: gr.Request) -> None:
    """The page closed: its sets go."""
    shutil.rmtree(session_folder(ctx, request), ignore_errors=True)


def purge_old(ctx: AppContext) -> None:
    """Sets scored over an hour ago, whatever their session."""
    for folder in (ctx.files / "sets").glob("*/*"):
        if folder.is_dir() and time.time() - folder.stat().st_mtime > KEEP_S:
            shutil.rmtree(folder, ignore_errors=True)


def run(ctx: AppContext, uploads: list[str], request: gr.Request, progress) -> tuple[pd.DataFrame, dict, Path, dict]:
    """Read the upload safely into this session's folder, score it, keep its predictions as CSV; also each photo's
    file by the name the user gave it (for the mistakes' pictures)."""
    purge_old(ctx)
    folder = session_folder(ctx, request) / f"set-{time.time_ns()}"
    folder.mkdir(parents=True)
    try:
        found = collect_many([Path(u) for u in uploads], folder, LIMITS)
    except UploadError as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise gr.Error(f"This upload cannot be read: {e}. Limits: {LIMITS.words()}.") from None
    b = ctx.bundle
    scored = score_set(b, ctx.predictor(b.stages[-1]), found,
                       lambda done, total: progress((done, total), desc="photos", unit="photos"))  # fmt: skip
    scored.files.to_csv(folder / "predictions.csv", index=False)
    return scored.files, scored.summary, folder, {p.name: p.path for p in found.photos}


def show(ctx: AppContext, table: pd.DataFrame, s: dict, folder: Path, files: dict) -> tuple:
    """The summary in words, the dishes that dropped most, the most confident mistakes, the CSV."""
    b = ctx.bundle
    items = [(str(files[r.file]), errors.photo_words(b.name_of[r.true], b.name_of[r.pred], r.confidence))
             for r in most_confident_mistakes(table).itertuples() if r.file in files]  # fmt: skip
    rows = pd.DataFrame(s["per_class"], columns=["id", "name", "n", "top1", "test_top1"]).drop(columns="id")
    rows = rows.rename(columns={"name": "dish", "n": "photos", "top1": "top-1 here", "test_top1": "top-1, test split"})
    return (
        summary_words(s),
        gr.update(value=rows.round(3), visible=bool(len(rows))),
        gr.update(value=items, visible=bool(items)),
        gr.update(value=str(folder / "predictions.csv"), visible=True),
    )


def summary_words(s: dict) -> str:
    """What the set says about the model, in a few sentences."""
    refused = len(s["refused"])
    head = (f"**{s['n_files']:,} files**: {s['scored']:,} scored, {s['unlabelled']:,} without a label, "
            f"{sum(s['unknown_labels'].values()):,} with a label the model does not know (predicted, not scored), "
            f"{refused:,} refused.")  # fmt: skip
    if not s["scored"]:
        return head + " Nothing to score: label the photos by folder name (one folder per dish) or with a CSV."
    d = s["difference"]
    lines = [head, (
        f"**Top-1 {s['top1']:.1%}** on your photos against {s['test_top1']:.1%} on the test split: "
        f"{d['top1']:+.1%} (95 % interval {d['low']:+.1%} to {d['high']:+.1%}). Top-5 {s['top5']:.1%}; "
        f"calibration error (ECE) {s['ece']:.3f}, with the test split's temperature."
    )]  # fmt: skip
    if s["unfamiliar_share"] is not None:
        lines.append(f"{s['unfamiliar_share']:.0%} of your photos look like nothing the model was trained on.")
    if s["unknown_labels"]:
        lines.append("Labels it does not know: " + ", ".join(f"{k} ({n})" for k, n in s["unknown_labels"].items()))
    if refused:
        lines.append("Refused: " + "; ".join(f"`{r['file']}`: {r['reason']}" for r in s["refused"][:10])
                     + (" …" if refused > 10 else ""))  # fmt: skip
    lines.append(f"Limits: {LIMITS.words()}.")
    return "\n\n".join(lines)
