"""The data-quality analysis at evaluation: suspected label errors (cleanlab's confident learning on K-fold
probabilities) and near-duplicate pairs (docs/data-quality.md). `data_quality.DataQuality` holds the result.

numpy, scikit-learn and cleanlab: nothing here runs a model or reads a bundle.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from ..data_quality import MAX_PAIRS, DataQuality  # MAX_PAIRS: a degenerate set must not flood the bundle
from ..embedding import unit

FOLDS = 5
PCA_DIMS = 256  # the K-fold classifier's input: 5x faster than 1280 dims, the same suspects (docs/data-quality.md)
DUPLICATE_SIMILARITY = 0.90  # altered copies measured 0.906-0.992; distinct photos 99th percentile 0.846 (docs)
FILTER_DIMS = 96  # the duplicate search's first look: exact (see `_block_pairs`), 1/8 of MobileNet's width
C = 0.003  # inverse L2 strength: the best top-k precision of 0.003-0.1 on food101-mini (docs/data-quality.md)
log = logging.getLogger(__name__)


def fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each image's fold (stratified by class); fewer folds when the smallest class has fewer images."""
    from sklearn.model_selection import StratifiedKFold

    k = max(2, min(folds, int(np.bincount(labels).max(initial=0)), len(labels)))
    smallest = np.bincount(labels)[np.unique(labels)].min()
    if smallest < k:
        log.warning("a class has only %d training images: some folds hold none of it", smallest)
    fold = np.empty(len(labels), int)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # the small-class warning is logged above, once
        warnings.simplefilter("ignore", UserWarning)
        for f, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            fold[held] = f
    return fold


def prepare(features: np.ndarray, seed: int = 42) -> np.ndarray:
    """The classifier's input: unit-length features, PCA to at most PCA_DIMS (unsupervised, so fitting it on every
    image leaks no label), scaled to unit variance on average so that one C suits any backbone's width."""
    from sklearn.decomposition import PCA

    x = unit(features)
    if x.shape[1] > PCA_DIMS and len(x) > PCA_DIMS:
        x = PCA(PCA_DIMS, random_state=seed).fit_transform(x).astype(np.float32)
    return x / max(float(x.std()), 1e-12)


def classifier():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=500, tol=1e-4)


def cross_val_probs(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = FOLDS, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample class probabilities for every image, and the fold whose classifier gave them.

    The classifier of fold f never sees fold f's images: each image's probabilities are those of a model trained
    on the other folds only, as confident learning requires.
    """
    from tqdm.auto import tqdm

    x = prepare(features, seed)
    fold = fold_of(labels, folds, seed)
    probs = np.zeros((len(x), num_classes), np.float32)
    for f in tqdm(range(fold.max() + 1), desc="cross-validation folds", leave=False):
        held = fold == f
        clf = classifier().fit(x[~held], labels[~held])
        probs[np.ix_(held, clf.classes_)] = clf.predict_proba(x[held])
    return probs, fold


def find_suspects(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of suspected label errors, most suspect first; every image's label quality in [0, 1]).

    cleanlab's confident learning (`prune_by_noise_rate`) decides which images are suspects; they are ranked by
    self-confidence, the out-of-sample probability of the given label (low: the label is probably wrong).
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    if len(np.unique(labels)) < 2:
        return np.array([], int), quality
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(ranked, int), quality


def projection(x: np.ndarray, dims: int = FILTER_DIMS, sample: int = 2000, seed: int = 0) -> np.ndarray | None:
    """Orthonormal (features, dims) axes that keep most of unit features' spread (PCA of a sample), or None when the
    features are too narrow for a filter to pay (or `dims` is 0). Any orthonormal axes make `similar_pairs`' filter
    exact; these make it sharp."""
    if dims <= 0 or x.shape[1] <= 2 * dims or len(x) <= dims:
        return None
    rows = np.random.default_rng(seed).choice(len(x), min(sample, len(x)), replace=False)
    centred = x[np.sort(rows)] - x[rows].mean(axis=0)
    return np.linalg.svd(centred, full_matrices=False)[2][:dims].T.astype(np.float32)


def _block_pairs(a, bb, pa, pb, rows: slice, first: int, threshold: float, within: bool):
    """(i, j, similarity) at or above `threshold` in one block of rows against the columns from `first` on, and
    whether the projected filter paid for itself in this block.

    With projections (pa, pb), a pair is compared in full only where its projected distance allows it: projecting
    onto orthonormal axes never lengthens a difference, so unit vectors with similarity >= t (distance² <= 2 - 2t)
    are never dropped, and the full products shrink to the few candidates (dims/width of the work). Where too
    many pairs pass (features whose spread the axes miss, or a set of look-alikes), the block is compared in full.
    """
    if pa is None:
        sims = a[rows] @ bb[first:].T
        if within:
            sims[np.tril_indices(len(sims), k=0, m=sims.shape[1])] = -1
        i, j = np.nonzero(sims >= threshold)
        return i, j + first, sims[i, j], False
    qa, qb = pa[rows], pb[first:]
    d2 = (qa * qa).sum(1)[:, None] + (qb * qb).sum(1)[None, :] - 2 * (qa @ qb.T)
    i, j = np.nonzero(d2 <= 2 - 2 * threshold + 1e-4)  # the margin: float32 rounding never drops a true pair
    if within:
        keep = j > i
        i, j = i[keep], j[keep]
    if len(i) > 16 * len(qa):  # gathering that many costs more (and more memory) than the block's full products
        return _block_pairs(a, bb, None, None, rows, first, threshold, within)
    sims = np.einsum("ij,ij->i", a[rows][i], bb[first:][j])
    keep = sims >= threshold
    return i[keep], j[keep] + first, sims[keep], True


def similar_pairs(
    a: np.ndarray,
    b: np.ndarray | None,
    threshold: float,
    chunk: int = 1024,
    limit: int = MAX_PAIRS,
    dims: int = FILTER_DIMS,
) -> tuple[list[tuple[int, int, float]], int]:
    """(i, j, cosine similarity) of the `limit` most similar a[i], b[j] at or above `threshold` (b None: pairs
    within a, i < j), most similar first; and how many pairs are at or above it in all (the cap's "of N").

    Exact, but most pairs are ruled out in `dims` projected dimensions first (`_block_pairs`; 0: every pair
    compared in full, the way before; where the filter stops paying, the rest is compared in full); chunked, so
    that 25,250 test against 75,750 training photos needs about 300 MB, not 7.6 GB; and only the best `limit` pairs
    are ever held, so that a degenerate set (every photo alike: 319 million pairs) cannot fill memory.
    """
    from tqdm.auto import tqdm

    a = unit(a)
    bb = a if b is None else unit(b)
    axes = projection(np.concatenate([a, bb]) if b is not None else a, dims)
    pa = None if axes is None else a @ axes
    pb = None if axes is None else (pa if b is None else bb @ axes)
    ii, jj, ss = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    found = 0
    for start in tqdm(range(0, len(a), chunk), desc="near-duplicates", leave=False):
        # within one set, each pair once: only the columns from this chunk's first row on (half the products)
        first = start if b is None else 0
        i, j, s, filtered = _block_pairs(a, bb, pa, pb, slice(start, start + chunk), first, threshold, b is None)
        if not filtered:  # the filter did not pay here: compare the rest in full
            pa = pb = None
        found += len(i)
        ii, jj, ss = np.concatenate([ii, i + start]), np.concatenate([jj, j]), np.concatenate([ss, s])
        if len(ss) > limit:
            keep = np.argpartition(-ss, limit - 1)[:limit]
            ii, jj, ss = ii[keep], jj[keep], ss[keep]
    order = np.lexsort((jj, ii, -ss))
    return list(zip(ii[order].tolist(), jj[order].tolist(), ss[order].tolist())), found


def duplicates_table(
    train: tuple[np.ndarray, list[str]],
    test: tuple[np.ndarray, list[str]],
    threshold: float,
    dims: int = FILTER_DIMS,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Near-duplicate pairs test↔train (leakage) and within the test split, most similar first in each kind (at
    most `MAX_PAIRS` a kind), and how many of each kind were found in all."""
    rows, found = [], {}
    for kind, other in (("train-test", train), ("test-test", None)):
        pairs, found[kind] = similar_pairs(test[0], None if other is None else other[0], threshold, dims=dims)
        b_split, b_ids = ("train", other[1]) if other is not None else ("test", test[1])
        rows += [
            {"kind": kind, "a_split": "test", "a_index": i, "a_id": test[1][i], "b_split": b_split, "b_index": j,
             "b_id": b_ids[j], "similarity": round(s, 4)}
            for i, j, s in pairs
        ]  # fmt: skip
    columns = ["kind", "a_split", "a_index", "a_id", "b_split", "b_index", "b_id", "similarity"]
    return pd.DataFrame(rows, columns=columns), found


def analyse(
    train: tuple[np.ndarray, np.ndarray, list[str]],
    test: tuple[np.ndarray, list[str]],
    class_ids: list[str],
    folds: int = FOLDS,
    seed: int = 42,
    threshold: float = DUPLICATE_SIMILARITY,
) -> DataQuality:
    """The whole analysis from features: train = (features, labels, ids), test = (features, ids)."""
    features, labels, ids = train
    probs, fold = cross_val_probs(features, labels, len(class_ids), folds, seed)
    ranked, quality = find_suspects(probs, labels)
    suggested = probs.argmax(axis=1)
    suspects = pd.DataFrame(
        {
            "index": ranked,
            "id": [ids[i] for i in ranked],
            "given": [class_ids[labels[i]] for i in ranked],
            "suggested": [class_ids[suggested[i]] for i in ranked],
            "quality": np.round(quality[ranked], 4),
        }
    )
    duplicates, found = duplicates_table((features, ids), test, threshold)
    summary = {
        "method": "cleanlab find_label_issues (prune_by_noise_rate) on K-fold logistic-regression probabilities "
        "of the frozen backbone's pooled features",
        "folds": int(fold.max() + 1),
        "cv_top1": float((suggested == labels).mean()),
        "n_train": len(labels),
        "n_test": len(test[1]),
        "suspects": len(suspects),
        "duplicate_threshold": threshold,
        "duplicates": duplicates["kind"].value_counts().to_dict(),  # kept in the bundle
        "duplicates_found": found,  # in all: beyond the cap when more than `max_pairs`
        "max_pairs": MAX_PAIRS,
        "train_per_class": {c: int(n) for c, n in zip(class_ids, np.bincount(labels, minlength=len(class_ids)))},
    }
    return DataQuality(suspects, duplicates, summary)
