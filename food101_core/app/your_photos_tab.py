"""Your photos: a visitor's own labelled set (a zip, or many photos) predicted by the shipped model and measured
against the test split; the same scoring as `python -m food101_core.sets evaluate`, and `/evaluate_set` for scripts.

A visitor's set lives only in that visitor's session: its files sit in a folder of that session, deleted when the
page closes or after an hour, whichever comes first. It is kept as a standalone set (`bundle.standalone_set`) that
the bundle reads beside its own sets under a random key only that session's Photos selector offers, so every analysis
tab can show it; its download is that set, which `python -m food101_core.sets add RUN SET.zip` adds to the bundle.
At most one set is scored at a time; the others wait in the queue, which says their place.
"""

from __future__ import annotations

import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from ..bundle import put_files, served_model_sha, standalone_set
from ..sets.scoring import most_confident_mistakes, score_set
from ..sets.uploads import Limits, UploadError, collect_many
from . import errors, header, photo_view
from .context import AppContext, captioned_gallery, scroll_hint, show_js, tab_intro
from .run_summary import VISITOR
from .tabs import TITLE

LIMITS = Limits()
KEEP_S = 3600  # a visitor's set is deleted an hour after it was scored, or when the page closes
ONE_AT_A_TIME = {"concurrency_id": "evaluate-set", "concurrency_limit": 1}


def build(ctx: AppContext) -> None:
    with gr.Tab(TITLE["your-photos"], id="your-photos"):
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
        with gr.Row():
            download = gr.DownloadButton("Download the predictions (CSV)", visible=False, elem_id="set-csv")
            keep = gr.DownloadButton("Download the set (for sets add)", visible=False, elem_id="set-zip")
        api_in, api_out = gr.File(visible=False), gr.JSON(visible=False)
        api_go = gr.Button(visible=False)

    def evaluate(uploads: list[str] | None, request: gr.Request, progress=gr.Progress()):
        """Score a visitor's upload; what the page shows."""
        if not uploads:
            raise gr.Error("Choose a zip or some photos first.")
        return {parts[name]: value for name, value in show(ctx, run(ctx, uploads, request, progress)).items()}

    def evaluate_set(upload: str | None, request: gr.Request, progress=gr.Progress()) -> dict:
        """How the served model does on your own labelled photos, beside the test split: n_files, scored, top1,
        top5, ece, test_top1, difference {top1, low, high} (95 % interval), per_class, unknown_labels, unlabelled,
        refused [{file, reason}] (every file is accounted for), slices (where it fails), unfamiliar_share.

        Args:
            upload: a zip of photos: folders named by dish, or a CSV of path,label inside (photos without a label are
                predicted, not scored).
        """
        if not upload:
            raise gr.Error("send a zip of photos")
        return run(ctx, [upload], request, progress).summary

    parts = {"words": words, "table": table, "mistakes": mistakes, "csv": download, "set": keep, "photos": ctx.photos}
    go.click(evaluate, files, list(parts.values()), api_name=False, **ONE_AT_A_TIME).then(
        None, js=show_js("#set-summary")
    )
    api_go.click(evaluate_set, api_in, api_out, api_name="evaluate_set", **ONE_AT_A_TIME)

    def closed(request: gr.Request) -> None:
        """The page closed: its sets go (Gradio passes the request only to a parameter annotated gr.Request)."""
        forget(ctx, request)

    ctx.blocks.unload(closed)


def session_folder(ctx: AppContext, request: gr.Request | None) -> Path:
    """This browser session's folder for its sets (none other's files are ever served from it)."""
    session = (getattr(request, "session_hash", None) or "anonymous").replace("/", "_")
    return ctx.files / "sets" / session


def drop(ctx: AppContext, folder: Path) -> None:
    """One visitor's set: unread by the bundle, then deleted (its folder is named by its key)."""
    ctx.bundle.detach_set(folder.name)
    shutil.rmtree(folder, ignore_errors=True)


def forget(ctx: AppContext, request: gr.Request) -> None:
    """The page closed: its sets go."""
    for folder in session_folder(ctx, request).glob("set-*"):
        drop(ctx, folder)
    shutil.rmtree(session_folder(ctx, request), ignore_errors=True)


def purge_old(ctx: AppContext) -> None:
    """Sets scored over an hour ago, whatever their session."""
    for folder in (ctx.files / "sets").glob("*/*"):
        if folder.is_dir() and time.time() - folder.stat().st_mtime > KEEP_S:
            drop(ctx, folder)


@dataclass
class Upload:
    """A visitor's upload once scored: the files table, the summary, its session folder, each photo's file by the
    name the user gave it, and the set's key."""

    files: pd.DataFrame
    summary: dict
    folder: Path
    photos: dict[str, Path]
    name: str


def run(ctx: AppContext, uploads: list[str], request: gr.Request, progress) -> Upload:
    """Read the upload safely into this session's folder, score it, keep its predictions as CSV and the set itself
    (read by the bundle beside its own under a random key); also each photo's file by the name the user gave it
    (for the mistakes' pictures)."""
    purge_old(ctx)
    name = f"{VISITOR}{secrets.token_hex(8)}"  # a key no other session can guess
    folder = session_folder(ctx, request) / f"set-{name}"
    folder.mkdir(parents=True)
    try:
        found = collect_many([Path(u) for u in uploads], folder, LIMITS)
    except UploadError as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise gr.Error(f"This upload cannot be read: {e}. Limits: {LIMITS.words()}.") from None
    b = ctx.bundle
    step = lambda done, total: progress((done, total), desc="photos", unit="photos")  # noqa: E731
    scored = score_set(b, ctx.predictor(b.final_stage, bulk=True), found, step, name=name)
    scored.files.to_csv(folder / "predictions.csv", index=False)
    kept = standalone_set(scored, b.class_ids, served_model_sha(b.manifest))
    put_files(folder / "set", kept)
    with zipfile.ZipFile(folder / f"{name}.set.zip", "w", zipfile.ZIP_STORED) as z:
        for rel, data in kept.items():
            z.writestr(rel, data)
    b.attach_set(folder / "set")
    return Upload(scored.files, scored.summary, folder, {p.name: p.path for p in found.photos}, name)


def show(ctx: AppContext, up: Upload) -> dict:
    """The summary in words, the dishes that dropped most, the most confident mistakes, the CSV, the set's download,
    and the Photos selector offering the set (this session's only) to every analysis tab; by part name."""
    b, table, s, folder, files, name = ctx.bundle, up.files, up.summary, up.folder, up.photos, up.name
    items = [(str(files[r.file]), errors.photo_words(b.name_of[r.true], b.name_of[r.pred], r.confidence))
             for r in most_confident_mistakes(table).itertuples() if r.file in files]  # fmt: skip
    rows = pd.DataFrame(s["per_class"], columns=["id", "name", "n", "top1", "test_top1"]).drop(columns="id")
    rows = rows.rename(columns={"name": "dish", "n": "photos", "top1": "top-1 here", "test_top1": "top-1, test split"})
    mine = (f"Your upload: {s['scored']:,} photos", name)
    words = summary_words(s)
    if s["scored"]:
        words += ("\n\nTo see your photos in every tab (confusion matrix, per-class, mistakes, slices, calibration, "
                  "map), choose **Your upload** in **Photos** at the top of the page.")  # fmt: skip
    return {
        "words": words,
        "table": gr.update(value=rows.round(3), visible=bool(len(rows))),
        "mistakes": gr.update(value=items, visible=bool(items)),
        "csv": gr.update(value=str(folder / "predictions.csv"), visible=True),
        "set": gr.update(value=str(folder / f"{name}.set.zip"), visible=True),
        "photos": gr.update(choices=header.photo_choices(ctx.bundle, mine if s["scored"] else None), visible=True),
    }


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
