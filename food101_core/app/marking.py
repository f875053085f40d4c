"""Marks on photos: under a photo opened large, a person says "label is right", "exclude" or "relabel as …" (any
dish, searchable); the marks live in the browser (`gr.BrowserState`: they survive a reload), show on the photo, can
be undone, and download as one CSV (`marks.py`) that `train.py --exclude/--relabel` reads.

A photo is known by a key "split:id" (train or test, and its id in the data set), which the large view that opens
it writes into a hidden box; `panel` binds that box to the mark controls.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import marks
from .context import AppContext

WORDS = marks.DECISIONS  # decision -> the words on the page
DECISION_OF = {words: d for d, words in WORDS.items()}
COUNTED = {"right": "label right", "exclude": "excluded", "relabel": "relabelled"}
NOT_MARKED = "Not marked. Is its label right? Mark it below: the marks stay in this browser and download as a CSV."


def store(b) -> gr.BrowserState:
    """The page's marks, in the browser's storage under a key of this run's classes (another run's ids differ)."""
    key = hashlib.sha1(",".join(b.class_ids).encode()).hexdigest()[:10]
    return gr.BrowserState([], storage_key=f"food101-explorer-marks-{key}")


def panel(ctx: AppContext, key: gr.Textbox) -> None:
    """The mark controls under a large photo whose key ("split:id", or "" for a photo that cannot be marked) is
    `key`'s value."""
    if ctx.marks is None:  # a tab built on its own (build_app makes the page's store first)
        ctx.marks = store(ctx.bundle)
    names = sorted(ctx.bundle.class_names, key=str.lower)
    with gr.Group(elem_classes="mark-panel", visible=False) as group:  # shown once a markable photo is open
        note = gr.Markdown(elem_classes="mark-note")
        with gr.Row():
            decision = gr.Radio(list(WORDS.values()), label="Your mark for this photo", scale=2, min_width=240)
            dish = gr.Dropdown(names, value=None, label="Relabel as (type to search)", filterable=True, scale=1,
                               min_width=180)  # fmt: skip
        with gr.Row():
            go = gr.Button("Mark", variant="primary", elem_classes="mark-go")
            undo = gr.Button("Undo the mark", elem_classes="mark-undo")
    parts = [group, note, decision, dish]

    def shown(all_marks: list, photo: str) -> dict:
        """The opened photo's mark (or that it has none), the controls set to it; hidden for a photo not markable."""
        m = find(all_marks, photo)
        new_dish = ctx.bundle.name_of.get(m["new_label"], m["new_label"]) if m else None
        return {group: gr.update(visible=bool(photo)), note: words_of(m, ctx.bundle.name_of),
                decision: WORDS[m["decision"]] if m else None, dish: new_dish}  # fmt: skip

    def mark(all_marks: list, photo: str, words: str | None, new_dish: str | None):
        if not photo:
            raise gr.Error("Open a photo first.")
        if words not in DECISION_OF:
            raise gr.Error("Choose a mark: label is right, exclude, or relabel as a dish.")
        decision_ = DECISION_OF[words]
        if decision_ == "relabel" and not new_dish:
            raise gr.Error("Choose the dish to relabel it as.")
        new = make(ctx.bundle, photo, decision_, new_dish if decision_ == "relabel" else None)
        kept = [m for m in all_marks or [] if key_of(m) != photo] + [new]
        return kept, words_of(new, ctx.bundle.name_of)

    def unmark(all_marks: list, photo: str):
        return [m for m in all_marks or [] if key_of(m) != photo], words_of(None)

    key.change(shown, [ctx.marks, key], parts, api_name=False, queue=False)
    go.click(mark, [ctx.marks, key, decision, dish], [ctx.marks, note], api_name=False, queue=False)
    undo.click(unmark, [ctx.marks, key], [ctx.marks, note], api_name=False, queue=False)


def make(b, photo: str, decision: str, dish_name: str | None) -> dict:
    """One mark: split, id, the given label (class id), the decision and the new label (class id)."""
    split, image_id = photo.split(":", 1)
    # a test photo's label is the test split's; a training photo's id begins with its folder, its given label
    given = b.class_ids[int(b.test_labels[b.test_ids.index(image_id)])] if split == "test" else image_id.split("/")[0]
    new_label = b.id_of.get(dish_name, "") if dish_name else ""
    return {"split": split, "id": image_id, "given": given, "decision": decision, "new_label": new_label}


def key_of(m: dict) -> str:
    return f"{m['split']}:{m['id']}"


def find(all_marks: list | None, photo: str) -> dict | None:
    return next((m for m in all_marks or [] if key_of(m) == photo), None)


def words_of(m: dict | None, names: dict | None = None) -> str:
    """The opened photo's mark in words (`names`: class id -> display name)."""
    if not m:
        return NOT_MARKED
    what = WORDS[m["decision"]].replace(" …", "")
    to = f" **{(names or {}).get(m['new_label'], m['new_label'])}**" if m["decision"] == "relabel" else ""
    where = "kept out of the next training run" if m["decision"] == "exclude" else "applied by `train.py --relabel`"
    effect = "" if m["decision"] == "right" else f" ({where}" + ("; a test photo's mark is reported, not applied)"
                                                                  if m["split"] == "test" else ")")  # fmt: skip
    return f"✎ **Your mark: {what}**{to}{effect}. Undo it below, or download every mark in Data quality."


def table(b, all_marks: list | None) -> pd.DataFrame:
    rows = [{**m, "given": b.name_of.get(m["given"], m["given"]), "new_label": b.name_of.get(m["new_label"],
             m["new_label"])} for m in all_marks or []]  # fmt: skip
    return pd.DataFrame(rows, columns=marks.COLUMNS)


def summary(all_marks: list | None) -> str:
    if not all_marks:
        return ("No marks yet. Open a photo (a suspect, a mistake, any gallery's) and mark its label: right, exclude "
                "or relabel as another dish.")  # fmt: skip
    n = pd.Series([m["decision"] for m in all_marks]).value_counts()
    parts = ", ".join(f"{n.get(d, 0)} {COUNTED[d]}" for d in WORDS if n.get(d, 0))
    return (f"**{len(all_marks)}** marks in this browser ({parts}). Train again with them: `python train.py "
            "--exclude marks.csv --relabel marks.csv` (test photos' marks are reported, never applied).")  # fmt: skip


def write_csv(folder: Path, all_marks: list | None) -> str | None:
    """The marks as a CSV in a folder of its own (each download its own file, whichever visitor asks)."""
    if not all_marks:
        return None
    path = Path(tempfile.mkdtemp(dir=folder, prefix="marks-")) / "marks.csv"
    path.write_text(marks.to_csv(all_marks))
    return str(path)
