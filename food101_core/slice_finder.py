"""Failure slices named in words (issue 24): groups of test photos, defined by one or two readable conditions ("dark
photos of steak", "low-confidence photos in map region 3"), where top-1 accuracy is clearly lower than overall.

1. Each numeric property is cut at its 10th, 25th, 75th and 90th percentiles into five readable bins ("very dark",
   "dark", "mid-brightness", "bright", "very bright"); dish, map region and boolean flags keep their values.
2. SliceLine (Sagadeeva & Boehm, SIGMOD 2021; the `sliceline` package) searches the conjunctions of one or two bins
   for the slices with the highest error. Its score, alpha (error ratio - 1) - (1 - alpha) (N / size - 1), is kept
   above 0 only by slices of `min_size` photos with at least twice the average error (alpha = 1 - min_size / N; its
   default 0.6 would hide every slice smaller than a few percent of the set, a dish's worth of photos included).
3. Each slice found is tested against the other photos: a one-sided Fisher exact test (accuracy lower), corrected by
   Bonferroni for every slice SliceLine could have returned, i.e. every conjunction of one or two bins with at least
   `min_size` photos (counted exactly; its pruning looks at the errors, so only the whole space is an honest count).
   A slice of two conditions must also be significantly worse than the other photos of each one-condition parent
   (the same test and correction), or it only repeats its parent: "very dark, mid-contrast photos" are no news when
   all very dark photos fail alike.
4. Significant slices are ranked by corrected p-value; one that lies mostly (`overlap`) inside a better-ranked one
   is left out (of two that are nearly the same photos, the one of fewer conditions is kept).

25,250 photos, 101 dishes, 12 columns (~5,900 slices of at most two conditions): 2.5 s, SliceLine 2 s of it (5 s with
the first imports), on a busy 2-core machine. numpy and pandas at import (the app can call `slice_mask`); scipy,
scikit-learn and sliceline when searching: nothing here runs a model or reads a bundle.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from .slicing import condition_mask, slice_mask  # the floor's: the app shows a slice's photos with them

__all__ = ["SLICE_COLUMNS", "find_slices", "slice_mask"]

# What a slice may be defined by: brightness, then properties that do not move with it (`exposure_free`), so that
# dark photos are called dark and not also "blurry" and "dull" (CleanVision's edge score and colourfulness scale with
# the light), the dish, and the analyses' two columns. The rest of `image_props` stays in properties.csv.
SLICE_COLUMNS = ["brightness", "relative_contrast", "sharpness", "saturation", "entropy", "aspect_ratio", "width",
                 "dish", "unfamiliar", "region"]  # fmt: skip

QUANTILES = (0.10, 0.25, 0.75, 0.90)  # bin edges: the lowest / highest 10 % are "very", 10-25 % / 75-90 % plain
SLACK = 0.02  # a bin reads "lowest 25 %" up to 27 % (ties, interpolation)
BROADEST = 0.6  # a bin holding more of the photos (ties: "width ≤ 512" when most are 512) is no group worth naming
DEFAULT_CATEGORICAL = ("dish", "region")  # kept as values even when stored as integers
IGNORED = ("index", "id")  # row identifiers, never a condition
MIN_SIZE = 20  # a Food-101 dish has 250 test photos: a tenth of one dish is still a slice worth showing
SEARCH_K = 1000  # SliceLine's top k tested: all 151 significant of a 25,250-row synthetic set were in it
WORDS = {  # column: (word for low values, word for high values, noun)
    "brightness": ("dark", "bright", "brightness"),
    "brightness_p5": ("deep-shadowed", "shadowless", "shadow brightness"),
    "brightness_p99": ("dim-highlight", "bright-highlight", "highlight brightness"),
    "contrast": ("low-contrast", "high-contrast", "contrast"),
    "blur": ("blurry", "sharp", "sharpness"),
    "sharpness": ("blurry", "sharp", "sharpness"),
    "relative_contrast": ("low-contrast", "high-contrast", "contrast"),
    "saturation": ("dull-coloured", "colourful", "colour saturation"),
    "colourfulness": ("dull-coloured", "colourful", "colourfulness"),
    "entropy": ("plain", "detailed", "detail"),
    "aspect_ratio": ("tall", "wide", "aspect ratio"),
    "confidence": ("low-confidence", "high-confidence", "confidence"),
    "unfamiliar": ("familiar", "unfamiliar", "unfamiliarity"),
}


def percent(q: float) -> str:
    return f"{100 * q:.0f} %"


def bin_words(column: str, q_lo: float, q_hi: float) -> str:
    """The adjective for values between the q_lo and q_hi quantiles ("very dark"), within `SLACK` of `QUANTILES`."""
    noun = column.replace("_", " ")
    low, high, noun = WORDS.get(column, (f"low-{noun}", f"high-{noun}", noun))
    if q_hi <= QUANTILES[1] + SLACK:
        return ("very " if q_hi <= QUANTILES[0] + SLACK else "") + low
    if q_lo >= QUANTILES[2] - SLACK:
        return ("very " if q_lo >= QUANTILES[3] - SLACK else "") + high
    return "mid-" + noun.replace(" ", "-")


def numeric_levels(values: pd.Series) -> list[dict[str, Any]]:
    """The readable bins of one numeric column: (low, high] between its quantiles (`QUANTILES`), ties merged, empty
    bins and bins broader than `BROADEST` dropped; NaN belongs to none."""
    x, name = values.to_numpy(float), str(values.name)
    ok = x[~np.isnan(x)]
    if len(ok) == 0:
        return []
    edges = np.unique(np.quantile(ok, QUANTILES, method="inverted_cdf"))  # edges are values seen: "≤ 99", not "≤ 471"
    levels = []
    for low, high in itertools.pairwise([-math.inf, *edges.tolist(), math.inf]):
        share = float(((ok > low) & (ok <= high)).mean())
        if share == 0 or share > BROADEST:
            continue
        q_lo, q_hi = float((ok <= low).mean()), float((ok <= high).mean())
        if low == -math.inf:
            text = f"{name} ≤ {high:.3g} (lowest {percent(q_hi)})"
        elif high == math.inf:
            text = f"{name} > {low:.3g} (highest {percent(1 - q_lo)})"
        else:
            text = f"{low:.3g} < {name} ≤ {high:.3g} ({percent(q_lo)}–{percent(q_hi)})"
        levels.append({"column": name, "low": None if low == -math.inf else low,
                       "high": None if high == math.inf else high, "text": text,
                       "phrase": bin_words(name, q_lo, q_hi)})  # fmt: skip
    return levels


def categorical_levels(values: pd.Series) -> list[dict[str, Any]]:
    """One level a value (NaN none; a value of more than `BROADEST` of the photos, such as "not grayscale", none):
    a dish reads "of steak", a region "in map region 3", a flag "blurry"."""
    column, levels = values.name, []
    shares = values.value_counts(normalize=True, dropna=False, sort=False)
    for v in pd.unique(values.dropna()):
        if shares[v] > BROADEST:
            continue
        v = v.item() if isinstance(v, np.generic) else v
        if column == "dish":
            phrase, text = f"of {str(v).replace('_', ' ')}", f"dish = {v}"
        elif column == "region":
            phrase, text = f"in map region {v}", f"map region = {v}"
        elif isinstance(v, bool):
            flag = column.replace("_", " ")
            phrase, text = (flag, f"{flag} (check)") if v else (f"not {flag}", f"not {flag} (check)")
        else:
            phrase, text = f"with {column} {v}", f"{column} = {v}"
        levels.append({"column": column, "value": v, "text": text, "phrase": phrase})
    return levels


def is_categorical(values: pd.Series, categorical: tuple[str, ...]) -> bool:
    return values.name in categorical or not pd.api.types.is_numeric_dtype(values) or values.dtype == bool


def slice_name(conditions: list[dict[str, Any]]) -> str:
    """The slice in words: adjectives, "photos", then the dish and the other values ("dark photos of steak")."""
    phrases = [c["phrase"] for c in conditions]
    adjectives = [p for p in phrases if not p.startswith(("of ", "in ", "with "))]
    after = sorted((p for p in phrases if p.startswith(("of ", "in ", "with "))), key=lambda p: not p.startswith("of"))
    return " ".join([", ".join(adjectives), "photos", *after]).strip()


def discretise(
    table: pd.DataFrame, categorical: tuple[str, ...] = DEFAULT_CATEGORICAL
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(each photo's level per column as an int matrix, -1 = none; every level, numbered across columns)."""
    levels: list[dict[str, Any]] = []
    codes = np.full(table.shape, -1, np.int64)
    for j, column in enumerate(table.columns):
        values = table[column]
        column_levels = categorical_levels(values) if is_categorical(values, categorical) else numeric_levels(values)
        for level in column_levels:
            codes[condition_mask(table, level), j] = len(levels)
            levels.append(level)
    return codes, levels


def one_hot(codes: np.ndarray, count: int):
    """The photos × levels indicator matrix (sparse) of `discretise`'s codes."""
    from scipy import sparse

    rows, cols = np.nonzero(codes >= 0)
    data = np.ones(len(rows), np.float64)
    return sparse.csr_matrix((data, (rows, codes[rows, cols])), shape=(len(codes), count))


def search_space(codes: np.ndarray, count: int, min_size: int) -> int:
    """How many slices of one or two conditions hold at least `min_size` photos: the number of tests that the
    Bonferroni correction divides by (two levels of one column never meet, so they never count)."""
    x = one_hot(codes, count)
    together = (x.T @ x).toarray()
    return int((np.diag(together) >= min_size).sum() + (np.triu(together, 1) >= min_size).sum())


def sliceline_candidates(codes: np.ndarray, errors: np.ndarray, min_size: int, k: int, alpha: float) -> list[list[int]]:
    """The level ids of each slice of one or two conditions that SliceLine ranks in its top `k` (by its score:
    error rate against size, `alpha`); a slice on a photo without a level (-1) is left out."""
    import warnings

    from sliceline.slicefinder import Slicefinder

    if errors.sum() == 0 or len(errors) < min_size:
        return []
    finder = Slicefinder(alpha=alpha, k=k, max_l=2, min_sup=min_size, verbose=False)
    with warnings.catch_warnings():  # numba is optional: without it SliceLine is slower, not different
        warnings.simplefilter("ignore", UserWarning)
        finder.fit(codes, errors.astype(float))
    found = []
    for row in finder.top_slices_:
        ids = [int(v) for v in row if v is not None]
        if ids and min(ids) >= 0:
            found.append(ids)
    return found


def fisher_less(k_in: np.ndarray, n_in: np.ndarray, k_all: np.ndarray | int, n_all: np.ndarray | int) -> np.ndarray:
    """log p of the one-sided Fisher exact test that a slice (k_in right of n_in) is less often right than the other
    photos (k_all right of n_all in all): P(at most k_in right) under the hypergeometric law, as
    `scipy.stats.fisher_exact(..., alternative="less")` gives."""
    from scipy.stats import hypergeom

    return hypergeom.logcdf(k_in, n_all, k_all, n_in)


def members(codes: np.ndarray, column_of: np.ndarray, ids: list[int]) -> np.ndarray:
    """The photos at every level `ids` (`column_of`: each level's column in `codes`)."""
    mask = np.ones(len(codes), bool)
    for i in ids:
        mask &= codes[:, column_of[i]] == i
    return mask


def against_parents(
    level_masks: list[np.ndarray], correct: np.ndarray, candidates: list[list[int]], n: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """log p that each two-condition slice is less often right than the other photos of each one-condition parent
    (the larger of the two; -inf for one condition): "dark photos of steak" must be worse than the other dark photos
    and than the other photos of steak, or it only repeats "dark photos" or "photos of steak"."""
    size = np.array([m.sum() for m in level_masks], np.int64)
    size_right = np.array([correct[m].sum() for m in level_masks], np.int64)
    worst = np.full(len(candidates), -math.inf)
    pairs = np.array([i for i, ids in enumerate(candidates) if len(ids) == 2], np.int64)
    for side in (0, 1):
        if len(pairs):
            parent = np.array([candidates[i][side] for i in pairs], np.int64)
            log_p = fisher_less(right[pairs], n[pairs], size_right[parent], size[parent])
            worst[pairs] = np.maximum(worst[pairs], log_p)
    return worst


def evaluate(
    codes: np.ndarray, column_of: np.ndarray, correct: np.ndarray, candidates: list[list[int]], tested: int
) -> pd.DataFrame:
    """Each candidate's n, accuracy, the other photos' accuracy, log raw p against the other photos and the
    Bonferroni-corrected p-value; p_parents: the same correction of `against_parents`."""
    level_masks = [codes[:, column] == i for i, column in enumerate(column_of)]
    member = [np.logical_and.reduce([level_masks[i] for i in ids]) for ids in candidates]
    n = np.array([m.sum() for m in member], np.int64)
    right = np.array([correct[m].sum() for m in member], np.int64)
    log_p = fisher_less(right, n, int(correct.sum()), len(correct))
    parents = against_parents(level_masks, correct, candidates, n, right)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame({
            "ids": candidates,
            "n": n,
            "accuracy": right / n,
            "rest_accuracy": (correct.sum() - right) / (len(correct) - n),
            "log_p": log_p,
            "p_value": np.minimum(1.0, np.exp(log_p) * tested),
            "p_parents": np.minimum(1.0, np.exp(parents) * tested),
        })  # fmt: skip


def drop_overlapping(
    rows: pd.DataFrame, codes: np.ndarray, column_of: np.ndarray, overlap: float, limit: int
) -> pd.DataFrame:
    """The best-ranked `limit` rows, less any slice of which at least `overlap` lies in a better-ranked kept one;
    when the two are nearly the same photos (each `overlap` inside the other), the one of fewer conditions stays."""
    kept: list[int] = []
    masks: list[np.ndarray] = []
    for i, ids in zip(rows.index, rows["ids"]):
        mask = members(codes, column_of, ids)
        inside = [j for j, other in enumerate(masks) if (mask & other).sum() >= overlap * mask.sum()]
        if not inside:
            kept.append(i)
            masks.append(mask)
        elif len(ids) < len(rows.at[kept[inside[0]], "ids"]) and all(
            (mask & masks[j]).sum() >= overlap * masks[j].sum() for j in inside
        ):
            kept[inside[0]], masks[inside[0]] = i, mask  # the simpler name for (nearly) the same photos
        if len(kept) == limit:
            break
    return rows.loc[kept].sort_values(["log_p", "n"], ascending=[True, False], kind="stable")


def find_slices(
    table: pd.DataFrame,
    correct: np.ndarray,
    columns: list[str] | None = None,
    categorical: tuple[str, ...] = DEFAULT_CATEGORICAL,
    min_size: float = MIN_SIZE,
    max_slices: int = 50,
    significance: float = 0.05,
    overlap: float = 0.8,
    search_k: int = SEARCH_K,
    alpha: float | None = None,
) -> pd.DataFrame:
    """The failure slices of one or two conditions, most significant first (module docstring).

    table: one row per test photo, readable properties (`image_props`) and the model's own (dish, confidence,
    unfamiliar, region); columns `IGNORED` are skipped. correct: whether each photo's top-1 answer is right.
    min_size: photos a slice needs at least (below 1: a fraction of the table). Columns: name, conditions (dicts that
    `slice_mask` takes; "text" reads each), n, accuracy, overall, rest_accuracy, p_value (Bonferroni-corrected,
    one-sided Fisher); `.attrs` holds tested (the Bonferroni factor) and the settings.
    """
    table = table[[c for c in (columns or table.columns) if c not in IGNORED]]
    correct = np.asarray(correct, bool)
    if len(correct) != len(table):
        raise ValueError(f"{len(correct)} correctness values for {len(table)} photos")
    need = max(1, math.ceil(min_size * len(table)) if min_size < 1 else int(min_size))
    codes, levels = discretise(table, categorical)
    tested = search_space(codes, len(levels), need)
    column_of = np.array([table.columns.get_loc(level["column"]) for level in levels], np.int64)
    alpha = 1 - need / max(len(table), need + 1) if alpha is None else alpha
    candidates = sliceline_candidates(codes, ~correct, need, search_k, alpha)
    found = evaluate(codes, column_of, correct, candidates, tested)
    overall = float(correct.mean()) if len(correct) else math.nan
    significant = (found["p_value"] < significance) & (found["p_parents"] < significance)
    found = found[significant & (found["n"] >= need) & (found["accuracy"] < overall)]
    found = found.sort_values(["log_p", "n"], ascending=[True, False], kind="stable")
    found = drop_overlapping(found, codes, column_of, overlap, max_slices)
    conditions = [[{k: v for k, v in levels[i].items() if k != "phrase"} for i in ids] for ids in found["ids"]]
    result = pd.DataFrame({
        "name": [slice_name([levels[i] for i in ids]) for ids in found["ids"]],
        "conditions": conditions,
        "n": found["n"].to_numpy(),
        "accuracy": found["accuracy"].to_numpy(),
        "overall": overall,
        "rest_accuracy": found["rest_accuracy"].to_numpy(),
        "p_value": found["p_value"].to_numpy(),
    })  # fmt: skip
    result.attrs.update(
        tested=tested, correction="bonferroni", test="one-sided Fisher exact", min_size=need, alpha=alpha
    )
    return result
