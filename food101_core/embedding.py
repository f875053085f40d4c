"""The model's feature space: what the Map tab, "similar training photos" and the unfamiliar-photo warning use.

The pooled features (the classification head's input) of the final model are made unit length and compressed with
PCA (keeping each photo's residual), so that a 25,250-photo test set fits in about 3 MB (float16). A reference set of
training photos (up to N per class) lives in the same space: a photo's nearest reference photos explain its
prediction by example, and its mean cosine distance to the k nearest is its "unfamiliarity", with a threshold that
about 99 % of the test photos pass. The 2-D map is UMAP of the compressed test features, seeded. This module is
what the bundle stores and the app reads (numpy only); the fitting is the training side's
(`training/feature_space.py`).
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

    def nearest_of(self, y: np.ndarray, r: np.ndarray, label: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest reference photos of one class to one photo: indices into `ref`, distances, nearest first."""
        of = np.flatnonzero(self.ref_labels == label)
        dist = self.distances(y, r)[0, of]
        order = np.argsort(dist, kind="stable")[:k]
        return of[order], dist[order]

    def unfamiliarity(self, y: np.ndarray, r: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """Mean distance to the k nearest reference photos (higher: less like anything trained on). A mean needs the
        k smallest distances, not their order: a partial sort, in chunks of photos (25,250 test photos against
        2,020 reference ones: under a second, where sorting every row took about five)."""
        y, r = np.atleast_2d(y), np.atleast_1d(r)
        k = min(self.k, len(self.ref))
        out = np.empty(len(y), np.float32)
        for start in range(0, len(y), chunk):
            dist = self.distances(y[start : start + chunk], r[start : start + chunk])
            out[start : start + chunk] = np.sort(np.partition(dist, k - 1, axis=1)[:, :k], axis=1).mean(axis=1)
        return out
