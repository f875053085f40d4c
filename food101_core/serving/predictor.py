"""Prediction on one photo with ONNX Runtime: the training resize, the exported model, test-time flip, Grad-CAM.

The serving side: numpy, Pillow and onnxruntime, never TensorFlow. A bundle's stage is served from its ONNX file
(`training/export.py` writes it) exactly as the evaluation ran it: the same resize, the photo averaged with its
mirror when the run used test-time flip, the bundle's temperature. One forward pass answers the probabilities,
the pooled features (similar photos, the unfamiliar score) and the last feature map (Grad-CAM in closed form).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..calibration import LOW_CONFIDENCE, temper
from .gradcam import GradCamUnavailable, gradcam
from .images import read_image

if TYPE_CHECKING:
    from ..bundle import Bundle

__all__ = ["LOW_CONFIDENCE", "Prediction", "Predictor", "resize_uint8"]


@dataclass
class Prediction:
    top: list[tuple[str, str, float]]  # (class id, display name, probability), best first
    seconds: float
    probs: np.ndarray  # calibrated, mirror-averaged: what the app shows
    features: np.ndarray | None = None  # the pooled features (mirror-averaged): the head's input
    feature_map: np.ndarray | None = None  # the photo's last feature map, h x w x channels (not mirrored)
    raw_probs: np.ndarray | None = None  # the photo's own softmax (not mirrored, no temperature): Grad-CAM's p
    kept: bool = False  # answered from an earlier identical request (`kept.KeptPredictions`); `seconds` is that one's

    @property
    def low_confidence(self) -> bool:
        return self.top[0][2] < LOW_CONFIDENCE


@functools.lru_cache(maxsize=64)
def resize_spans(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Antialiased bilinear resampling along one axis, as TensorFlow's `resize(..., antialias=True)` computes it:
    for each output pixel, the input pixels it reads (n_out x span) and their weights (a triangle filter stretched
    by the scale when shrinking, half-pixel centres), in float32, normalised by multiplying with the reciprocal
    of their sum, as TensorFlow does."""
    f = np.float32
    inv_scale = f(1) / (f(n_out) / f(n_in))
    one_over_support = f(1) / max(inv_scale, f(1))
    centres = (np.arange(n_out, dtype=f) + f(0.5)) * inv_scale
    x = (np.arange(n_in, dtype=f)[None, :] + f(0.5) - centres[:, None]) * one_over_support
    w = np.maximum(f(0), f(1) - np.abs(x))
    total = np.zeros(n_out, f)
    for j in range(n_in):  # summed in input order, in float32
        total += w[:, j]
    w *= (f(1) / total)[:, None]
    span = int((w > 0).sum(axis=1).max())
    start = np.minimum((w > 0).argmax(axis=1), n_in - span)
    index = start[:, None] + np.arange(span)[None]
    return index, np.take_along_axis(w, index, axis=1)


def resample_rows(x: np.ndarray, n_out: int) -> np.ndarray:
    """Resample axis 0 of a float32 array, accumulating each output in input order (TensorFlow's `GatherRows`)."""
    index, weights = resize_spans(x.shape[0], n_out)
    out = np.zeros((n_out, *x.shape[1:]), np.float32)
    for k in range(index.shape[1]):
        out += weights[:, k, None, None] * x[index[:, k]]
    return out


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """The training resize (`training.data.resize_uint8`) in numpy: square, antialiased bilinear, rounded to uint8.

    Rows first, then columns, in float32 in TensorFlow's order of operations, so the pixels are TensorFlow's to the
    bit (tests/test_serving.py): the app's answers are the evaluation's, even for a model that amplifies a grey level.
    """
    x = resample_rows(np.asarray(image, np.float32), size)
    x = resample_rows(x.transpose(1, 0, 2), size).transpose(1, 0, 2)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def session(path: Path, threads: int | None = None):
    """An ONNX Runtime session on the CPU (thread-safe: all requests share it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between runs: the web server shares the cores (bench/app_load.py)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Predictor:
    """A stage's model that answers photos, loaded once and shared by all requests."""

    def __init__(
        self,
        onnx_path: Path,
        class_ids: list[str],
        class_names: list[str],
        tta_flip: bool = False,
        temperature: float = 1.0,
        head: dict[str, np.ndarray] | None = None,
        threads: int | None = None,
    ):
        self.session = session(onnx_path, threads)  # threads: ONNX Runtime's default (every core) when None
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        shape = self.session.get_inputs()[0].shape
        self.size = int(shape[1])
        self.class_ids, self.class_names = class_ids, class_names
        self.tta_flip = tta_flip
        self.temperature = temperature  # the bundle's calibration: the app's confidences are the metrics' ones
        self.head = head
        self.has_features = "features" in self.outputs
        self.forward(np.zeros((1, self.size, self.size, 3), np.float32))  # the first run allocates; not a visitor's

    @classmethod
    def from_bundle(cls, bundle: Bundle, stage: str | None = None, threads: int | None = None) -> Predictor:
        """The bundle's stage served as its evaluation ran (`tta_flip`, the fitted temperature)."""
        stage = stage or bundle.final_stage
        temperature = bundle.evaluation(stage).temperature
        return cls(
            bundle.onnx_file(stage),
            bundle.class_ids,
            bundle.class_names,
            bundle.tta_flip,
            temperature,
            bundle.head(stage),
            threads,
        )

    def read(self, src: str | os.PathLike | bytes) -> Image.Image:
        """An upload read for this model: a JPEG decodes at a reduced scale still twice the model's input size."""
        return read_image(src, decode_hint=2 * self.size)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """A 1 x size x size x 3 float32 batch, resized exactly as in training."""
        return resize_uint8(np.asarray(image.convert("RGB")), self.size)[None].astype(np.float32)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model's outputs by name (`probs`, `features`, `feature_map`) for a batch of 0-255 RGB images."""
        return dict(zip(self.outputs, self.session.run(None, {self.input_name: batch})))

    def predict(self, image: Image.Image, k: int = 5) -> Prediction:
        return self.predict_many([image], k)[0]

    def predict_many(self, images: list[Image.Image], k: int = 5) -> list[Prediction]:
        """`predict` for several photos in one forward pass (the app's /predict takes the requests queued together):
        the same answers, the per-run cost paid once. Each prediction's `seconds` is the whole batch's."""
        t0 = time.perf_counter()
        x = np.concatenate([self.preprocess(image) for image in images])
        out = self.forward(np.concatenate([x, x[:, :, ::-1]]) if self.tta_flip else x)
        seconds = time.perf_counter() - t0
        return [self._prediction(out, i, len(images), seconds, k) for i in range(len(images))]

    def _prediction(self, out: dict[str, np.ndarray], i: int, n: int, seconds: float, k: int) -> Prediction:
        """Photo i's prediction from a batch's outputs (with `tta_flip`, its mirror is row n + i)."""
        probs, features = out["probs"].astype(np.float32), out.get("features")
        rows = [i, n + i] if self.tta_flip else [i]  # the evaluation's test-time flip: photo and mirror averaged
        calibrated = temper(probs[rows].mean(axis=0), self.temperature)
        order = np.argsort(-calibrated)[:k]
        top = [(self.class_ids[j], self.class_names[j], float(calibrated[j])) for j in order]
        fmap = out["feature_map"][i].astype(np.float32) if "feature_map" in out else None
        pooled = features[rows].mean(axis=0).astype(np.float32) if features is not None else None
        return Prediction(top, seconds, calibrated, pooled, fmap, probs[i])

    def predict_batch(self, batch: np.ndarray, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and pooled features of a batch already resized (n x size x size x 3, 0-255), as
        `predict` computes them one photo at a time (mirror averaged with `tta_flip`, the temperature applied unless
        `calibrated` is False: a set's evaluation applies it itself, and keeps the raw ECE beside)."""
        batch = batch.astype(np.float32, copy=False)
        out = self.forward(np.concatenate([batch, batch[:, :, ::-1]]) if self.tta_flip else batch)
        probs, features = out["probs"].astype(np.float32), out.get("features")
        if self.tta_flip:
            n = len(batch)
            probs = (probs[:n] + probs[n:]) / 2
            features = (features[:n] + features[n:]) / 2 if features is not None else None
        probs = temper(probs, self.temperature) if calibrated else probs  # row by row (axis -1)
        return probs, (features.astype(np.float32) if features is not None else None)

    def gradcam(self, image: Image.Image | Prediction, class_index: int) -> np.ndarray:
        """Grad-CAM of one class on a photo (or on a prediction already made): size x size heat in [0, 1]."""
        if self.head is None:
            raise GradCamUnavailable(
                "Grad-CAM needs the head after pooling to be linear (BatchNormalization, dropout, a softmax Dense); "
                "this model's is not, or the bundle has no folded head: re-export it with "
                "python -m food101_core.training.export RUN"
            )
        pred = image if isinstance(image, Prediction) else self.predict(image)
        return gradcam(pred.feature_map, self.head["weights"], pred.raw_probs, class_index, self.size)
