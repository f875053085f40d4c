"""The data-quality analysis at Food-101's size: 75,750 training and 25,250 test feature vectors, 101 classes.

What the analysis adds to an evaluation once stage 1 has cached the frozen backbone's features: the K-fold
cross-validated probabilities, cleanlab's search, and the near-duplicate search (test x train and test x test).
The features are generated (EfficientNetB0's 1280 pooled dimensions, non-negative like its ReLU-pooled output,
101 class centres with enough spread that a linear probe gets about 70 %), since the cost depends on their number,
width and classes, not on where they come from. 1 % of the training labels are changed, and 50 test vectors are
copied into the training set (with a little noise), so that the printout also says what was found.

    python bench/data_quality_at_scale.py [--train 75750] [--test 25250] [--dims 1280]
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the project on the path)
import numpy as np


def features(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray, spread: float) -> np.ndarray:
    x = centres[labels] + rng.normal(0, spread, (len(labels), centres.shape[1])).astype(np.float32)
    return np.maximum(x, 0)


def main() -> None:
    from food101_core.training import quality as dq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=75_750)
    ap.add_argument("--test", type=int, default=25_250)
    ap.add_argument("--dims", type=int, default=1280)
    ap.add_argument("--classes", type=int, default=101)
    ap.add_argument("--spread", type=float, default=6.0, help="noise around the class centres (6: about 50 %% top-1)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.gamma(0.5, 1.0, (args.classes, args.dims)).astype(np.float32)
    y_train = rng.integers(0, args.classes, args.train)
    y_test = rng.integers(0, args.classes, args.test)
    x_train = features(rng, centres, y_train, args.spread)
    x_test = features(rng, centres, y_test, args.spread)
    leaked = rng.choice(args.test, 50, replace=False)
    x_train[:50] = x_test[leaked] + rng.normal(0, 0.05, (50, args.dims)).astype(np.float32)
    y_train[:50] = y_test[leaked]
    flipped = rng.choice(np.arange(50, args.train), args.train // 100, replace=False)
    given = y_train.copy()
    given[flipped] = (given[flipped] + rng.integers(1, args.classes, len(flipped))) % args.classes
    print(f"{args.train:,} training and {args.test:,} test vectors of {args.dims} dims, {args.classes} classes")

    t0 = time.perf_counter()
    probs, _ = dq.cross_val_probs(x_train, given, args.classes)
    t_cv = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranked, _ = dq.find_suspects(probs, given)
    t_cl = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids_train, ids_test = [f"tr{i}" for i in range(args.train)], [f"te{i}" for i in range(args.test)]
    pairs, _ = dq.duplicates_table((x_train, ids_train), (x_test, ids_test), dq.DUPLICATE_SIMILARITY)
    t_dup = time.perf_counter() - t0

    k = len(flipped)
    found = {(f"te{j}", f"tr{i}") for i, j in enumerate(leaked)}
    tt = pairs[pairs["kind"] == "train-test"]
    hits = len(found & set(zip(tt["a_id"], tt["b_id"])))
    print(f"{dq.FOLDS}-fold logistic regression (cross-validated top-1 {(probs.argmax(1) == given).mean():.1%}): "
          f"{t_cv:.1f} s")  # fmt: skip
    print(f"cleanlab find_label_issues: {t_cl:.1f} s; {len(ranked):,} suspects; of the {k:,} changed labels "
          f"{len(set(ranked[:k]) & set(flipped)) / k:.1%} are in the top {k:,}")  # fmt: skip
    print(f"near-duplicates (test x train, test x test): {t_dup:.1f} s; {hits} of 50 planted copies found, "
          f"{len(pairs):,} pairs in all")  # fmt: skip
    print(f"total: {t_cv + t_cl + t_dup:.1f} s")


if __name__ == "__main__":
    main()
