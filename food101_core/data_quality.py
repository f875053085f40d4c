"""Data quality: training photos whose label is probably wrong, and near-duplicate photos across the splits.

Food-101's training labels were deliberately not cleaned. Confident learning (cleanlab) finds the suspects from
out-of-sample predicted probabilities; here those come from K-fold cross-validation of a logistic regression on
the frozen backbone's pooled features, which stage 1 computes once anyway, so the whole analysis costs minutes on a
CPU rather than K more trainings. Near-duplicates are pairs whose features (same frozen backbone) have a cosine
similarity above a threshold measured on re-encoded, resized and cropped copies (docs/data-quality.md).
This module is what the bundle stores and the app reads; the analysis itself is the training side's
(`training/quality.py`: numpy, scikit-learn and cleanlab).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MAX_PAIRS = 5000  # near-duplicate pairs kept per kind in the bundle (the summary counts all found)


@dataclass
class DataQuality:
    """What the bundle's `quality/` folder holds; `suspects` and `duplicates` are in the order the app shows them."""

    suspects: pd.DataFrame  # index (position in the analysed training set), id, given, suggested, quality
    duplicates: pd.DataFrame  # kind, a_split, a_index, a_id, b_split, b_index, b_id, similarity
    summary: dict  # method, folds, cv_top1, n_train, threshold, counts...
    image_checks: pd.DataFrame | None = None  # training photos flagged dark, blurry, ...: index, id, given, flags
