"""A person's marks on photos, as the app downloads them and training reads them back: one CSV,
`split, id, given, decision, new_label`.

- `right`: the given label is right (a suspect cleared; nothing changes in training);
- `exclude`: leave this training photo out (`train.py --exclude MARKS.csv`);
- `relabel`: this training photo is `new_label` (`train.py --relabel MARKS.csv`).

Marks on test photos are reported by training (a test label the person judges wrong), never applied: the test
split stays the one every run is compared on. Neither side's code is imported here: the app writes the file, the
training reads it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

COLUMNS = ["split", "id", "given", "decision", "new_label"]
DECISIONS = {"right": "label is right", "exclude": "exclude", "relabel": "relabel as …"}  # value -> words
SPLITS = ("train", "test")


class MarksError(ValueError):
    """A marks file that cannot be used as it is, said plainly."""


def to_csv(marks: list[dict]) -> str:
    """The marks (dicts with COLUMNS' keys) as the CSV a person downloads, in the order they were made."""
    table = pd.DataFrame([{c: m.get(c, "") or "" for c in COLUMNS} for m in marks], columns=COLUMNS)
    return table.to_csv(index=False)


def read(path: str | Path) -> pd.DataFrame:
    """A marks CSV, checked: its columns, decisions and splits, and a new label for every relabel. The last mark of a
    photo wins (a person may change their mind)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MarksError(f"{path}: no such file")
    try:
        table = pd.read_csv(io.StringIO(path.read_text(errors="replace")), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise MarksError(f"{path}: not a CSV ({e})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise MarksError(f"{path}: a marks file has the columns {', '.join(COLUMNS)}; missing {', '.join(missing)}")
    table = table[COLUMNS].apply(lambda col: col.str.strip())
    bad = table[~table["decision"].isin(list(DECISIONS))]
    if len(bad):
        raise MarksError(f"{path}: decision must be one of {', '.join(DECISIONS)}; row {bad.index[0] + 2} says "
                         f"{bad['decision'].iloc[0]!r}")  # fmt: skip
    bad = table[~table["split"].isin(SPLITS)]
    if len(bad):
        raise MarksError(f"{path}: split must be train or test; row {bad.index[0] + 2} says {bad['split'].iloc[0]!r}")
    bad = table[(table["decision"] == "relabel") & (table["new_label"] == "")]
    if len(bad):
        raise MarksError(f"{path}: row {bad.index[0] + 2} relabels {bad['id'].iloc[0]} without a new_label")
    return table.drop_duplicates(["split", "id"], keep="last").reset_index(drop=True)


def is_marks_file(path: str | Path) -> bool:
    """Whether a CSV has the marks' columns (an --exclude file may also be a plain id list or the suspects CSV)."""
    with open(Path(path).expanduser(), errors="replace") as f:
        header = f.readline()
    return set(COLUMNS) <= {c.strip() for c in header.split(",")}


def excluded(table: pd.DataFrame) -> list[str]:
    """Training photo ids marked `exclude`."""
    return table[(table["split"] == "train") & (table["decision"] == "exclude")]["id"].tolist()


def relabelled(table: pd.DataFrame) -> dict[str, str]:
    """Training photo id -> its new label, as written (a class id or display name)."""
    rows = table[(table["split"] == "train") & (table["decision"] == "relabel")]
    return dict(zip(rows["id"], rows["new_label"]))


def test_marks(table: pd.DataFrame) -> list[dict]:
    """Marks on test photos, to report (`right` is no finding: left out)."""
    rows = table[(table["split"] == "test") & (table["decision"] != "right")]
    return rows[["id", "given", "decision", "new_label"]].to_dict("records")
