"""Where the analyses' time goes, and what each cut costs in quality, on one run's own features (issue 30, item 1).

    python bench/analyses_parts.py RUN [--data PATH] [--features /tmp/food101-analyses-features.npz]

Computes the features once (the shipped stage's pooled features of the test split and the reference photos, the
frozen backbone's of the training and test splits; kept in --features for the next run), then times each part of
the analyses, the earlier way and the current way side by side on the same features, and prints:
- the map: UMAP over its own approximate k-NN (NN-descent) against UMAP over the exact k-NN graph
  (`feature_space.knn_graph`), each with its seconds and scikit-learn's `trustworthiness` (k = 10, on a seeded
  sample of 5,000 photos: the whole matrix of 25,250 would need 10 GB);
- the data quality: the K-fold probabilities at 5 folds and at the run's setting, with the top-k overlap of their
  suspect lists (k = 100 and the number of suspects); the near-duplicate search comparing every pair in full
  against the projected filter first (`quality.similar_pairs`), with whether they found the same pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT

sys.path.insert(0, str(ROOT))


def features(run: Path, data_path: str | None, cache: Path) -> dict[str, np.ndarray]:
    """The four feature arrays the analyses start from (computed once, then read from `cache`)."""
    if cache.is_file():
        return dict(np.load(cache))
    from food101_core.bundle import load_bundle
    from food101_core.training.analyses import backbone_features
    from food101_core.training.data import load_data
    from food101_core.training.feature_space import reference_indices
    from food101_core.training.model import load_stage_model
    from food101_core.training.predictions import predict_with_features

    b = load_bundle(run)
    cfg = b.train_config
    cfg.data = data_path or cfg.data
    data = load_data(cfg)
    final, stage1 = load_stage_model(b, b.final_stage), load_stage_model(b, "stage1")
    ref = data.train.subset(reference_indices(data.train.labels, cfg.reference_per_class, cfg.seed))
    out = {
        "test": predict_with_features(final, data.test, data.num_classes, cfg)[1],
        "ref": predict_with_features(final, ref, data.num_classes, cfg)[1],
        "ref_labels": ref.labels,
        "frozen_train": backbone_features(stage1, data.train, data.num_classes, cfg),
        "frozen_test": backbone_features(stage1, data.test, data.num_classes, cfg),
        "train_labels": data.train.labels,
    }
    np.savez(cache, **out)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def map_parts(f: dict[str, np.ndarray], seed: int = 42) -> None:
    import umap
    from sklearn.manifold import trustworthiness

    from food101_core.training.feature_space import fit_pca, umap_2d

    mean, comps = fit_pca(np.concatenate([f["test"], f["ref"]]))
    y = ((f["test"] / np.linalg.norm(f["test"], axis=1, keepdims=True) - mean) @ comps.T).astype(np.float32)
    sample = np.random.default_rng(0).choice(len(y), min(5000, len(y)), replace=False)

    def trust(xy: np.ndarray) -> float:
        return trustworthiness(y[sample], xy[sample], n_neighbors=10, metric="cosine")

    umap_2d(y[:500], seed)  # numba's compilation, once, outside both timings
    old = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1)
    before, t_before = timed(lambda: old.fit_transform(y))
    after, t_after = timed(lambda: umap_2d(y, seed))
    print(f"| map: UMAP, NN-descent k-NN (before) | {t_before:.1f} | trustworthiness {trust(before):.3f} |")
    print(f"| map: UMAP, exact k-NN graph (now) | {t_after:.1f} | trustworthiness {trust(after):.3f} |")


def quality_parts(f: dict[str, np.ndarray], folds_now: int) -> None:
    from food101_core.training import quality as dq

    labels, classes = f["train_labels"], int(f["train_labels"].max()) + 1
    ranked = {}
    for folds in sorted({5, folds_now}, reverse=True):
        (probs, _), seconds = timed(lambda: dq.cross_val_probs(f["frozen_train"], labels, classes, folds))
        (ranked[folds], _), t_find = timed(lambda: dq.find_suspects(probs, labels))
        print(f"| data quality: {folds}-fold probabilities + cleanlab | {seconds + t_find:.1f} | "
              f"{len(ranked[folds])} suspects |")  # fmt: skip
    if folds_now != 5:
        a, b = ranked[5], ranked[folds_now]
        for k in (100, len(a)):
            print(f"|   top-{k} suspects shared with 5 folds | | {len(set(a[:k]) & set(b[:k])) / max(k, 1):.1%} |")
    ids_train = [str(i) for i in range(len(labels))]
    ids_test = [str(i) for i in range(len(f["frozen_test"]))]
    train, test = (f["frozen_train"], ids_train), (f["frozen_test"], ids_test)
    (full, n_full), t_full = timed(lambda: dq.duplicates_table(train, test, dq.DUPLICATE_SIMILARITY, dims=0))
    (now, n_now), t_now = timed(lambda: dq.duplicates_table(train, test, dq.DUPLICATE_SIMILARITY))
    pairs = [set(zip(t["kind"], t["a_index"], t["b_index"])) for t in (full, now)]
    same = pairs[0] == pairs[1] and n_full == n_now  # as sets: ties may list in another order (float rounding)
    print(f"| data quality: near-duplicates, every pair in full (before) | {t_full:.1f} | {n_full} |")
    print(
        f"| data quality: near-duplicates, {dq.FILTER_DIMS}-dim filter first (now) | {t_now:.1f} | {n_now}, "
        f"{'the same pairs' if same else 'DIFFERENT pairs'} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", help="where its data set is now")
    ap.add_argument("--features", type=Path, default=Path("/tmp/food101-analyses-features.npz"))
    args = ap.parse_args()
    from food101_core.bundle import load_bundle

    f = features(args.run, args.data, args.features)
    print(f"{len(f['test']):,} test, {len(f['ref']):,} reference, {len(f['frozen_train']):,} training photos")
    print("| part | seconds | quality |\n| --- | ---: | --- |")
    map_parts(f)
    quality_parts(f, load_bundle(args.run).train_config.quality_folds)


if __name__ == "__main__":
    main()
