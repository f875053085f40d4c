"""Marks that feed the next training run: the app's marks CSV (`split, id, given, decision, new_label`) read by
`train.py --exclude` and `--relabel`; training photos excluded or relabelled, test photos' marks reported and never
applied; bad files refused with the row that is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from food101_core import marks
from food101_core.config import TrainConfig
from food101_core.training.data import DataError, load_data

MARKS = [
    {"split": "train", "id": "red_soup/3", "given": "red_soup", "decision": "exclude", "new_label": ""},
    {"split": "train", "id": "red_soup/4", "given": "red_soup", "decision": "relabel", "new_label": "Green Salad"},
    {"split": "train", "id": "blue_cheese/2", "given": "blue_cheese", "decision": "relabel", "new_label": "red-soup"},
    {"split": "train", "id": "green_salad/1", "given": "green_salad", "decision": "right", "new_label": ""},
    {"split": "test", "id": "red_soup/100", "given": "red_soup", "decision": "relabel", "new_label": "blue_cheese"},
    {"split": "test", "id": "green_salad/101", "given": "green_salad", "decision": "exclude", "new_label": ""},
]


def test_marks_exclude_and_relabel_training_photos_and_only_report_test_ones(tmp_path, tiny_food101):
    path = tmp_path / "marks.csv"
    path.write_text(marks.to_csv(MARKS))
    plain = load_data(TrainConfig(data=str(tiny_food101), val_fraction=0.0, calibration_fraction=0.0))
    cfg = TrainConfig(data=str(tiny_food101), val_fraction=0.0, calibration_fraction=0.0, exclude=str(path),
                      relabel=str(path))  # fmt: skip
    data = load_data(cfg)
    ids = plain.class_ids
    before = dict(zip(plain.train.ids, plain.train.labels))
    after = dict(zip(data.train.ids, data.train.labels))
    assert set(before) - set(after) == {"red_soup/3"}  # only the photo marked exclude left
    assert ids[after["red_soup/4"]] == "green_salad" and ids[after["blue_cheese/2"]] == "red_soup"
    assert {k: v for k, v in after.items() if k not in ("red_soup/4", "blue_cheese/2")} == {
        k: v for k, v in before.items() if k not in ("red_soup/3", "red_soup/4", "blue_cheese/2")
    }  # nothing else moved, "right" included
    assert data.test.ids == plain.test.ids and np.array_equal(data.test.labels, plain.test.labels)
    assert data.source["excluded"] == ["red_soup/3"]
    assert data.source["relabelled"] == [
        {"id": "red_soup/4", "from": "red_soup", "to": "green_salad"},
        {"id": "blue_cheese/2", "from": "blue_cheese", "to": "red_soup"},
    ]
    assert [m["id"] for m in data.source["test_marks"]] == ["red_soup/100", "green_salad/101"]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"decision": "delete"}, "decision must be one of right, exclude, relabel; row 2"),
        ({"split": "val"}, "split must be train or test; row 2"),
        ({"decision": "relabel", "new_label": ""}, "row 2 relabels red_soup/3 without a new_label"),
        ({"decision": "relabel", "new_label": "Sushi"}, "not classes of this data set, e.g. red_soup/3 -> Sushi"),
        ({"id": "red_soup/999", "decision": "relabel", "new_label": "Sushi"}, "not training images"),
    ],
)
def test_a_bad_marks_file_is_refused_naming_what_is_wrong(tmp_path, tiny_food101, change, words):
    path = tmp_path / "marks.csv"
    path.write_text(marks.to_csv([{**MARKS[0], **change}, *MARKS[1:]]))
    cfg = TrainConfig(data=str(tiny_food101), val_fraction=0.0, relabel=str(path))
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(">", ">")):
        load_data(cfg)


def test_the_last_mark_of_a_photo_wins(tmp_path):
    path = tmp_path / "marks.csv"
    path.write_text(marks.to_csv([MARKS[0], {**MARKS[0], "decision": "right"}]))
    assert marks.excluded(marks.read(path)) == []
