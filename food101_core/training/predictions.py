"""A model's answers on a split, as evaluation and the analyses compute them: probabilities, and pooled features.

One place for "how a split is predicted" (the stage's own image size, the mirror average under `tta_flip`), so
that the evaluation's numbers and the analyses' features come from the same pass.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

    from ..config import TrainConfig
    from .data import Split


def at_model_size(model: keras.Model, cfg: TrainConfig) -> TrainConfig:
    """The settings with the image size the model takes: a polished stage is evaluated at its own, larger size."""
    return dataclasses.replace(cfg, image_size=int(model.input_shape[1]))


def predict(model: keras.Model, split: Split, num_classes: int, cfg: TrainConfig) -> np.ndarray:
    """Class probabilities for a split, in order; with `tta_flip`, averaged with the mirrored image.

    Through the model's one features model (`with_features`), as the test split is predicted: without `tta_flip`
    the held-out photos then reuse its traced `predict` instead of tracing the whole network once more each stage
    (with it, each call still wraps the mirror anew and traces that wrapper)."""
    return predict_with_features(model, split, num_classes, cfg)[0]


def predict_with_features(
    model: keras.Model, split: Split, num_classes: int, cfg: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and pooled features for a split in one pass (both averaged with the mirror under `tta_flip`)."""
    from .data import make_dataset
    from .model import mirror_averaged, with_features

    ds = make_dataset(split, num_classes, at_model_size(model, cfg), training=False, with_labels=False)
    served = mirror_averaged(with_features(model)) if cfg.tta_flip else with_features(model)
    probs, pooled = served.predict(ds, verbose=1)
    return probs.astype(np.float32), pooled.astype(np.float32)
