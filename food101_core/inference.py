"""Prediction on one photo: the model's forward pass (preprocessed exactly as in training), Grad-CAM, test-time flip.

Photos are read by `images.read_image`; this module starts where a decoded RGB picture exists.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .calibration import LOW_CONFIDENCE, temper
from .images import read_image

if TYPE_CHECKING:
    import keras

    from .bundle import Bundle


@dataclass
class Prediction:
    top: list[tuple[str, str, float]]  # (class id, display name, probability), best first
    seconds: float
    probs: np.ndarray
    features: np.ndarray | None = None  # the pooled features: the head's input

    @property
    def low_confidence(self) -> bool:
        return self.top[0][2] < LOW_CONFIDENCE


class Predictor:
    """A model that answers photos, loaded once and shared by all requests (calls are thread-safe).

    Built from a bundle's stage (`from_bundle`) in the app; from any square-input Keras image model in benchmarks
    and tests.
    """

    def __init__(
        self,
        model: keras.Model,
        class_ids: list[str],
        class_names: list[str],
        tta_flip: bool = False,
        temperature: float = 1.0,
    ):
        import tensorflow as tf

        from .data import resize_uint8

        self.model = model
        self.class_ids, self.class_names = class_ids, class_names
        self.size = int(model.input_shape[1])
        batch = tf.TensorSpec([None, self.size, self.size, 3], tf.float32)
        image = tf.TensorSpec([None, None, 3], tf.uint8)  # any photo size: one trace
        self._forward = tf.function(lambda x: self.model(x, training=False), input_signature=[batch])
        self._resize = tf.function(lambda img: resize_uint8(img, self.size), input_signature=[image])
        self.tta_flip = tta_flip
        self.temperature = temperature  # the bundle's calibration: the app's confidences are the metrics' ones
        self.has_features = has_features(model)

        # The same model as the evaluation ran (mirror or not), so that the app's answers are those its metrics show;
        # it also gives the pooled features, which place the photo in the bundle's feature space.
        if self.has_features:
            served = mirror_averaged(with_features(model)) if tta_flip else with_features(model)
        else:  # a test's toy model: its probabilities stand in for the features, which are reported as None
            plain = mirror_averaged(model) if tta_flip else model

            def served(x, training=False):
                probs = plain(x, training=training)
                return probs, probs

        def predict_image(img: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            probs, pooled = served(tf.cast(resize_uint8(img, self.size), tf.float32)[None], training=False)
            return probs[0], tf.cast(pooled[0], tf.float32)

        # Resize and model in one graph: eager resizing alone cost 3.7 ms a photo (bench/predict_overhead.py).
        self._predict_image = tf.function(predict_image, input_signature=[image])
        # Trace the prediction graph now, not during the first request; the others trace on first use.
        self._predict_image(np.zeros((self.size + 1, self.size + 2, 3), np.uint8))
        self._cam_model = None

    @classmethod
    def from_bundle(cls, bundle: Bundle, stage: str | None = None) -> Predictor:
        """The bundle's model of one stage, served as its evaluation ran (`tta_flip`, the fitted temperature)."""
        stage = stage or bundle.stages[-1]
        temperature = bundle.evaluation(stage).temperature
        return cls(bundle.model(stage), bundle.class_ids, bundle.class_names, bundle.tta_flip, temperature)

    def read(self, src: str | os.PathLike | bytes) -> Image.Image:
        """An upload read for this model: a JPEG decodes at a reduced scale still twice the model's input size."""
        return read_image(src, decode_hint=2 * self.size)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """A 1 x size x size x 3 float32 batch, resized exactly as in training."""
        return self._resize(np.asarray(image)).numpy()[None].astype(np.float32)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).numpy()

    def predict(self, image: Image.Image, k: int = 5) -> Prediction:
        t0 = time.perf_counter()
        probs, pooled = (t.numpy() for t in self._predict_image(np.asarray(image)))
        probs = temper(probs, self.temperature)
        seconds = time.perf_counter() - t0
        order = np.argsort(-probs)[:k]
        top = [(self.class_ids[i], self.class_names[i], float(probs[i])) for i in order]
        return Prediction(top, seconds, probs, pooled if self.has_features else None)

    def gradcam(self, image: Image.Image, class_index: int) -> np.ndarray:
        """Grad-CAM (Selvaraju et al. 2017) on the backbone's last feature map: size x size heat in [0, 1]."""
        import keras
        import tensorflow as tf

        if self._cam_model is None:
            feature_map = self.model.get_layer("avg_pool").input
            self._cam_model = keras.Model(self.model.inputs, [feature_map, self.model.output])
        x = tf.convert_to_tensor(self.preprocess(image))
        with tf.GradientTape() as tape:
            fmap, probs = self._cam_model(x, training=False)
            score = probs[:, class_index]
        grads = tape.gradient(score, fmap)
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(fmap, tf.float32), axis=-1))[0].numpy()
        if cam.max() > 0:
            cam = cam / cam.max()
        heat = Image.fromarray((cam * 255).astype(np.uint8)).resize((self.size, self.size), Image.BILINEAR)
        return np.asarray(heat, np.float32) / 255.0


def mirror_averaged(model: keras.Model) -> keras.Model:
    """The model averaged over each image and its mirror (test-time flip), in one batch of twice the size.

    One definition for the evaluation and the app, so the two cannot drift apart; the evaluation reads and decodes
    each test photo once instead of once per view.
    """
    import keras

    class MirrorMean(keras.layers.Layer):
        def __init__(self, inner: keras.Model, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, x):
            n = keras.ops.shape(x)[0]
            y = self.inner(keras.ops.concatenate([x, keras.ops.flip(x, axis=2)], axis=0), training=False)
            if isinstance(y, list | tuple):  # several outputs (probabilities and features): each averaged
                return [(t[:n] + t[n:]) / 2 for t in y]
            return (y[:n] + y[n:]) / 2

    image = keras.Input(model.input_shape[1:], name="image")
    return keras.Model(image, MirrorMean(model, name="mirror_mean")(image), name=f"{model.name}_mirror")


def with_features(model: keras.Model) -> keras.Model:
    """The same model answering [probabilities, pooled features] in one pass.

    The features are the pooled backbone output (`avg_pool`, the head's input), which every model `build_model`
    makes has (see `has_features`).
    """
    import keras

    return keras.Model(model.inputs, [model.output, model.get_layer("avg_pool").output], name=f"{model.name}_features")


def has_features(model: keras.Model) -> bool:
    """Whether the model has the pooled layer the feature space is made of (every model `build_model` makes)."""
    return any(layer.name == "avg_pool" for layer in model.layers)


def overlay_heatmap(image: Image.Image, heat: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """The photo with the heat map on top: transparent where cold, yellow to red where the model looked."""
    h = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR), np.float32)
    h = h[..., None] / 255.0
    colour = np.concatenate([np.ones_like(h), 1.0 - 0.85 * h, np.zeros_like(h)], axis=-1) * 255.0  # yellow→red
    base = np.asarray(image, np.float32)
    out = base * (1 - alpha * h) + colour * (alpha * h)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
