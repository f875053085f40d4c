"""Each stage's model as ONNX, so that the app serves it with ONNX Runtime and never imports TensorFlow.

The exported graph takes a batch of RGB photos (0-255, the stage's size) and answers three outputs:
`probs` (the softmax, before the bundle's temperature), `features` (the pooled backbone output: similar photos and
the unfamiliar score) and `feature_map` (the last convolutional map, for Grad-CAM). Beside it, the head's weights
folded into one linear map (`fold_head`) let the serving side compute Grad-CAM in closed form, without gradients.

    python -m food101_core.training.export RUN    # adds the ONNX files to a bundle written before they existed
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..bundle import Bundle, BundleError, add_files, load_bundle, serving_files

if TYPE_CHECKING:
    import keras

OUTPUTS = ("probs", "features", "feature_map")


class HeadError(ValueError):
    """A model whose head is not linear after pooling: Grad-CAM has no closed form for it."""


@dataclass
class Exported:
    """One stage's serving files: the ONNX graph and the folded head (None when the head is not linear)."""

    onnx: Path
    head: dict[str, np.ndarray] | None


def serving_model(model: keras.Model) -> keras.Model:
    """The same network answering every output the app needs, by name, in one pass."""
    import keras

    pool = model.get_layer("avg_pool")
    outputs = {"probs": model.output, "features": pool.output, "feature_map": pool.input}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_serving")


def export_onnx(model: keras.Model, path: Path) -> Path:
    """Write `model`'s serving graph as ONNX (Keras's own exporter, tf2onnx underneath), atomically."""
    served = serving_model(model)
    served(np.zeros((1, *model.input_shape[1:]), np.float32))  # Keras exports only a model that has been called
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    served.export(str(tmp), format="onnx", verbose=False)
    os.replace(tmp, path)
    return path


def fold_head(model: keras.Model) -> dict[str, np.ndarray]:
    """The head after pooling as one linear map, logits = features @ weights + bias, at inference.

    BatchNormalization is an affine map per channel and dropout the identity, so BN -> dropout -> dense folds into
    the dense layer's weights scaled by BN's gamma / sigma. Anything else after pooling is refused (`HeadError`).
    """
    import keras

    layers = model.layers
    head = layers[[layer.name for layer in layers].index("avg_pool") + 1 :]
    kinds = [type(layer).__name__ for layer in head]
    dense = head[-1] if head else None
    if not isinstance(dense, keras.layers.Dense) or dense.get_config()["activation"] not in ("softmax", "linear"):
        raise HeadError(f"the head after pooling ends in {kinds[-1:] or 'nothing'}, not a softmax Dense layer")
    weights, bias = (np.asarray(w, np.float64) for w in dense.get_weights())
    scale, shift = np.ones(weights.shape[0]), np.zeros(weights.shape[0])
    for layer in head[:-1]:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = batchnorm_weights(layer)
            s = gamma / np.sqrt(var + layer.epsilon)
            scale, shift = scale * s, shift * s + beta - mean * s
        elif not isinstance(layer, keras.layers.Dropout):
            raise HeadError(
                f"the head after pooling has a {type(layer).__name__} layer ({layer.name}): only BatchNormalization, "
                f"Dropout and a final softmax Dense fold into a linear map (head: {' -> '.join(kinds)})"
            )
    return {
        "weights": (scale[:, None] * weights).astype(np.float32),
        "bias": (shift @ weights + bias).astype(np.float32),
    }


def batchnorm_weights(layer) -> tuple[np.ndarray, ...]:
    """gamma, beta, moving mean, moving variance of a BatchNormalization layer (1 and 0 where it has none)."""
    values = [np.asarray(w, np.float64) for w in layer.get_weights()]
    gamma = values.pop(0) if layer.scale else 1.0
    beta = values.pop(0) if layer.center else 0.0
    mean, var = values
    return np.broadcast_to(gamma, mean.shape), np.broadcast_to(beta, mean.shape), mean, var


def export_stage(model: keras.Model, folder: Path, stage: str) -> Exported:
    """`folder/<stage>.onnx`, and the folded head when the head is linear (else Grad-CAM is off for this stage)."""
    path = export_onnx(model, Path(folder) / f"{stage}.onnx")
    try:
        head = fold_head(model)
    except HeadError as e:
        print(f"{stage}: no Grad-CAM in the app: {e}", file=sys.stderr)
        head = None
    return Exported(path, head)


def add_onnx(ref: str) -> Bundle:
    """Export every stage of a bundle written before the ONNX files existed, and add them to it in place."""
    from .model import load_stage_model

    bundle = load_bundle(ref)
    if not bundle.path.is_dir() or not os.access(bundle.path, os.W_OK):
        raise BundleError(f"{bundle.path}: not writable; copy the bundle first")
    with tempfile.TemporaryDirectory(dir=bundle.path.parent, prefix=f".{bundle.path.name}.export-") as tmp:
        exported = {stage: export_stage(load_stage_model(bundle, stage), Path(tmp), stage) for stage in bundle.stages}
        onnx = {stage: e.onnx for stage, e in exported.items()}
        heads = {stage: e.head for stage, e in exported.items() if e.head is not None}
        add_files(bundle.path, serving_files(onnx, heads))
    return bundle


def main(argv: list[str] | None = None) -> int:
    """Add ONNX models (for the TensorFlow-free app) to a bundle written before they existed."""
    ap = argparse.ArgumentParser(prog="python -m food101_core.training.export", description=main.__doc__)
    ap.add_argument("run", help="bundle folder")
    args = ap.parse_args(argv)
    try:
        bundle = add_onnx(args.run)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{bundle.path}: ONNX models added for {', '.join(bundle.stages)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
