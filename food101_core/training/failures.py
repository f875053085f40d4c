"""Which kinds of photos the shipped model fails on, computed at evaluation: every test photo's readable properties
(`image_props`: brightness, contrast, sharpness, colourfulness, detail, shape, size) and the failure slices
(`slices.find_slices`) over them, the true dish, and, once the analyses have run, the unfamiliar score and the
map region. The training photos' image checks (dark, blurry, ...) are the data-quality step's (`image_checks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..image_props import exposure_free, files_properties, image_check_flags, properties_table
from ..slice_finder import SLICE_COLUMNS, find_slices

if TYPE_CHECKING:
    from ..embedding import Embedding
    from ..metrics import Evaluation
    from .data import FoodData, Split

CHECKS = ("dark", "light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio")


def split_properties(split: Split, class_ids: list[str]) -> pd.DataFrame:
    """Every photo's properties (index, id, dish, `image_props.PROPERTIES`, `exposure_free`'s), read from its file or
    the TFDS split."""
    if split.paths is not None:  # files: measured on every core
        table = files_properties([(i, str(p)) for i, p in enumerate(split.paths)])
    else:
        table = properties_table(split.photo_bytes(), total=len(split))
    return _labelled(table, split.ids, split.labels, class_ids)


def _labelled(table: pd.DataFrame, ids: list[str], labels: np.ndarray, class_ids: list[str]) -> pd.DataFrame:
    table = exposure_free(table)
    table.insert(1, "id", ids)
    table.insert(2, "dish", np.asarray(class_ids, object)[labels])  # class ids: "of apple pie"
    return table


@dataclass
class QualityData:
    """What the data-quality analysis needs of the data, and nothing that cannot travel to another process: the
    training labels and ids, the test ids, the class ids, and the training photos' files (or, from TFDS, their
    properties measured here)."""

    labels: np.ndarray
    ids: list[str]
    test_ids: list[str]
    class_ids: list[str]
    paths: list[str] | None
    measured: pd.DataFrame | None = None

    @classmethod
    def of(cls, data: FoodData) -> QualityData:
        t = data.train
        paths = [str(p) for p in t.paths] if t.paths is not None else None
        measured = None if paths is not None else split_properties(t, data.class_ids)
        return cls(t.labels, list(t.ids), list(data.test.ids), list(data.class_ids), paths, measured)

    def properties(self) -> pd.DataFrame:
        """The training photos' properties, as `split_properties` measures them."""
        if self.measured is not None:
            return self.measured
        table = files_properties(list(enumerate(self.paths or [])))
        return _labelled(table, self.ids, self.labels, self.class_ids)


def stage_slices(props: pd.DataFrame, ev: Evaluation) -> pd.DataFrame:
    """The failure slices of one stage's answers (`slices.find_slices`), over `SLICE_COLUMNS` present."""
    columns = [c for c in SLICE_COLUMNS if c in props]
    return find_slices(props[columns], ev.predictions["correct"].to_numpy(bool))


def add_model_columns(props: pd.DataFrame, emb: Embedding, class_names: list[str], labels: np.ndarray,
                      seed: int) -> pd.DataFrame:  # fmt: skip
    """The analyses' columns: each photo's unfamiliar score, and its map region (k-means of the 2-D map, a region
    named by its most common true dish, so that "in map region 3 (mostly steak)" can be found on the map)."""
    from sklearn.cluster import KMeans

    out = props.copy()
    out["unfamiliar"] = emb.unfamiliarity(emb.test, emb.test_resid).astype(np.float32)
    k = int(np.clip(len(out) // 1000, 4, 24)) if len(out) >= 40 else 1
    region = KMeans(k, n_init=4, random_state=seed).fit_predict(emb.xy) if k > 1 else np.zeros(len(out), int)
    names = {}
    for r in np.unique(region):
        common = np.bincount(labels[region == r]).argmax()
        names[r] = f"{r + 1} (mostly {class_names[common].lower()})"
    out["region"] = [names[r] for r in region]
    return out


def image_checks(props: pd.DataFrame) -> pd.DataFrame:
    """The photos CleanVision's checks flag (`image_props.image_check_flags`): id, given label, one column a check;
    only flagged photos, the most flagged first. Its `id` column is what `train.py --exclude` reads."""
    flags = image_check_flags(props)
    table = pd.concat([props[["index", "id", "dish"]].rename(columns={"dish": "given"}), flags], axis=1)
    flagged = table[flags.any(axis=1)].copy()
    flagged["checks"] = flags[flags.any(axis=1)].sum(axis=1)
    return flagged.sort_values(["checks", "index"], ascending=[False, True], kind="stable").drop(columns="checks")
