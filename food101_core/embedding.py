"""The model's feature space: what the Map tab, "similar training photos" and the unfamiliar-photo warning use.

The pooled features (the classification head's input) of the final model are made unit length and compressed with
PCA (keeping each photo's residual), so that a 25,250-photo test set fits in about 3 MB (float16). A reference set of
training photos (up to N per class) lives in the same space: a photo's nearest reference photos explain its
prediction by example, and its mean cosine distance to the k nearest is its "unfamiliarity", with a threshold that
about 99 % of the test photos pass. The 2-D map is UMAP (umap-learn) of the compressed test features, seeded. Pure
numpy, scikit-learn and umap-learn: nothing here runs a model or reads a bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIMS = 64  # PCA dimensions kept for the map and the neighbours: 130 bytes a photo in float16, with the residual
NEIGHBOURS = 5  # k of the unfamiliarity score
PASS_RATE = 0.99  # share of test photos under the unfamiliarity threshold


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class Embedding:
    """The final stage's feature space, as the bundle stores it (`stageN/embedding.npz` + `reference.csv`).

    A photo is its PCA coordinates `y` and its residual `r` (the squared length of what the PCA leaves out), both of
    its unit, centred pooled features. The squared distance of two unit vectors is then close to
    |y1 - y2|² + r1 + r2 (the residuals taken as orthogonal), so half of it is their cosine distance in the full
    feature space. The residual is what tells a photo of no dish: re-normalising inside the PCA space would throw
    it away (measured on the demo: 0 % of generated non-food images flagged that way, 100 % this way).
    """

    test: np.ndarray  # (n, d) PCA coordinates of every test photo, in test_set.csv order
    test_resid: np.ndarray  # (n,)
    xy: np.ndarray  # (n, 2) the map
    mean: np.ndarray  # (D,) PCA centre of the unit pooled features
    components: np.ndarray  # (d, D) PCA axes
    ref: np.ndarray  # (m, d) the reference training photos
    ref_resid: np.ndarray  # (m,)
    ref_labels: np.ndarray  # (m,) class index of each reference photo
    threshold: float  # unfamiliarity above this: "does not look like the dishes the model was trained on"
    k: int = NEIGHBOURS

    def project(self, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features (a batch) -> (PCA coordinates, residuals), exactly as the stored ones were made."""
        c = unit(np.atleast_2d(pooled)) - self.mean
        y = c @ self.components.T
        return y, np.maximum((c * c).sum(axis=1) - (y * y).sum(axis=1), 0.0)

    def distances(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Cosine distance (approximately, see the class) of each photo to every reference photo."""
        y, r = np.atleast_2d(y).astype(np.float32), np.atleast_1d(r).astype(np.float32)
        d2 = (y * y).sum(1)[:, None] + (self.ref * self.ref).sum(1)[None] - 2 * y @ self.ref.T
        return np.maximum(d2 + r[:, None] + self.ref_resid[None], 0.0) / 2

    def nearest(self, y: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the k nearest reference photos to each photo, and their distances, nearest first."""
        dist = self.distances(y, r)
        idx = np.argsort(dist, axis=1, kind="stable")[:, : min(k, len(self.ref))]
        return idx, np.take_along_axis(dist, idx, axis=1)

    def unfamiliarity(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Mean distance to the k nearest reference photos (higher: less like anything trained on)."""
        return self.nearest(y, r, self.k)[1].mean(axis=1)


def fit_pca(features: np.ndarray, dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """PCA of unit features: (mean, components), at most `dims` axes (fewer for tiny data)."""
    from sklearn.decomposition import PCA

    x = unit(features)
    pca = PCA(n_components=min(dims, x.shape[0], x.shape[1]), svd_solver="auto", random_state=0).fit(x)
    return pca.mean_.astype(np.float32), pca.components_.astype(np.float32)


def umap_2d(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 2-D UMAP of PCA coordinates; the same input and seed give the same map."""
    import umap

    if len(y) < 4:  # UMAP needs a few neighbours; a toy test set gets its first two PCA axes
        return np.pad(y[:, :2], ((0, 0), (0, max(0, 2 - y.shape[1])))).astype(np.float32)
    reducer = umap.UMAP(
        n_components=2, n_neighbors=min(15, len(y) - 1), min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1
    )
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
