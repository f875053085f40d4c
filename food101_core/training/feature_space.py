"""Fitting the feature space at evaluation: PCA of the pooled features, the seeded UMAP map, the reference photos
and the unfamiliar-photo threshold (`embedding.Embedding` holds the result; the bundle stores it).

numpy, scikit-learn and umap-learn: nothing here runs a model.
"""

from __future__ import annotations

import numpy as np

from ..embedding import DIMS, PASS_RATE, Embedding, unit


def fit_pca(features: np.ndarray, dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """PCA of unit features: (mean, components), at most `dims` axes (fewer for tiny data)."""
    from sklearn.decomposition import PCA

    x = unit(features)
    pca = PCA(n_components=min(dims, x.shape[0], x.shape[1]), svd_solver="auto", random_state=0).fit(x)
    return pca.mean_.astype(np.float32), pca.components_.astype(np.float32)


def knn_graph(y: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Every row's exact k nearest rows by cosine distance (itself first, at 0): indices and distances.

    In the map's 64 PCA dimensions an exact search is a few matrix products (25,250 photos: about a second), where
    UMAP's own approximate search (NN-descent, one thread when seeded) took longer and finds fewer true neighbours.
    """
    x = y.astype(np.float32) / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    idx = np.empty((len(x), k), np.int64)
    dist = np.empty((len(x), k), np.float32)
    for start in range(0, len(x), chunk):
        d = 1.0 - x[start : start + chunk] @ x.T
        rows = np.arange(len(d))
        d[rows, rows + start] = -1.0  # each row's own point first, whatever rounding says
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        idx[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        dist[start : start + chunk] = np.maximum(np.take_along_axis(d, idx[start : start + chunk], axis=1), 0.0)
    return idx, dist


LARGE = 10_000  # photos past which UMAP's own default is 200 epochs (500 below)
LARGE_EPOCHS = 100  # 25,250 photos: 6 s instead of 15, trustworthiness 0.823 against 0.820 (docs/benchmarks.md)


def umap_2d(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 2-D UMAP of PCA coordinates over their exact cosine k-NN graph; the same input and seed give the
    same map. Started from the PCA axes; past `LARGE` photos, `LARGE_EPOCHS` epochs (measured as trustworthy)."""
    import warnings

    import umap

    if len(y) < 4:  # UMAP needs a few neighbours; a toy test set gets its first two PCA axes
        return np.pad(y[:, :2], ((0, 0), (0, max(0, 2 - y.shape[1])))).astype(np.float32)
    k = min(15, len(y) - 1)
    reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1,
                        init="pca", n_epochs=LARGE_EPOCHS if len(y) > LARGE else None,
                        precomputed_knn=knn_graph(y, k))  # fmt: skip
    with warnings.catch_warnings():  # no search index: the bundle keeps the map, not a model to transform with
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        return reducer.fit_transform(y).astype(np.float32)


def fit_embedding(
    test_pooled: np.ndarray, ref_pooled: np.ndarray, ref_labels: np.ndarray, seed: int = 42, dims: int = DIMS
) -> Embedding:
    """Compress, map and calibrate the features (PCA fitted on the test and reference photos together)."""
    mean, components = fit_pca(np.concatenate([test_pooled, ref_pooled]), dims)
    empty = np.empty((0, components.shape[0]), np.float32)
    emb = Embedding(empty, empty[:, 0], np.empty((0, 2)), mean, components, empty, empty[:, 0], ref_labels, 0.0)
    emb.test, emb.test_resid = emb.project(test_pooled)
    emb.ref, emb.ref_resid = emb.project(ref_pooled)
    emb.ref_labels = np.asarray(ref_labels)
    # from the coordinates as the bundle stores them (float16): anyone can redraw the bundle's map from the bundle
    emb.xy = umap_2d(emb.test.astype(np.float16).astype(np.float32), seed)
    emb.threshold = float(np.quantile(emb.unfamiliarity(emb.test, emb.test_resid), PASS_RATE))
    return emb


def reference_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to `per_class` training photos of each class, drawn with the seed, in their split order."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.array([], int)
