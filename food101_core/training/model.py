"""The classifier (backbone -> pooling -> BN -> dropout -> softmax), its freezing rules, and its `.keras` files.

A model takes RGB pixels in 0-255: each backbone's input preprocessing is a layer inside the model, so a
saved `.keras` file is all the app needs. The backbones themselves are listed in `backbones.py`.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backbones import BACKBONES, Backbone, block_of

if TYPE_CHECKING:
    import keras

    from ..bundle import Bundle
    from ..config import TrainConfig


def build_model(cfg: TrainConfig, num_classes: int) -> keras.Model:
    """Backbone with the configured weights + a new head; the backbone starts frozen (stage 1)."""
    import keras

    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; choose from {', '.join(BACKBONES)}")
    spec = BACKBONES[cfg.backbone]
    weights = cfg.weights.lower() if cfg.weights.lower() in {"imagenet", "none"} else cfg.weights
    if weights not in {"imagenet", "none"} and not Path(weights).is_file():
        raise FileNotFoundError(f"--weights {cfg.weights}: no such file (use imagenet, none or a .weights.h5 path)")

    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = inputs
    if spec.rescale:
        x = keras.layers.Rescaling(spec.rescale[0], offset=spec.rescale[1], name="preprocess")(x)
    elif spec.caffe:
        x = caffe_preprocess(x)
    build = getattr(keras.applications, spec.builder)
    try:
        base = build(
            include_top=False,
            weights="imagenet" if weights == "imagenet" else None,
            input_tensor=x,
            **dict(spec.kwargs),
        )
    except Exception as e:
        if weights == "imagenet" and _looks_offline(e):
            raise RuntimeError(
                f"could not download ImageNet weights for {spec.builder} (offline?): {e}\n"
                "Pass a local weights file instead: --weights /path/to/backbone_notop.weights.h5"
            ) from e
        raise
    if weights not in {"imagenet", "none"}:
        _load_backbone_weights(base, weights, cfg, spec)
    base.trainable = False
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    # float32 softmax: stable under mixed precision
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{cfg.backbone}_food")


IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def caffe_preprocess(x):
    """`keras.applications.resnet.preprocess_input` as a frozen 1x1 convolution (RGB to BGR, ImageNet's mean
    subtracted): a standard layer, so the saved model still loads in Keras safe mode (no Lambda)."""
    import keras

    layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False, dtype="float32")
    y = layer(x)
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for out_channel, in_channel in enumerate((2, 1, 0)):
        kernel[0, 0, in_channel, out_channel] = 1.0
    layer.set_weights([kernel, -np.array(IMAGENET_MEAN_BGR, np.float32)])
    return y


def _load_backbone_weights(base: keras.Model, path: str, cfg: TrainConfig, spec: Backbone) -> None:
    """Load a `model.save_weights` file of the bare backbone (include_top=False) into `base`."""
    import keras

    # `base` shares its input with our preprocessing layer; load into a twin of the same shape, then copy.
    twin = getattr(keras.applications, spec.builder)(
        include_top=False, weights=None, input_shape=(cfg.image_size, cfg.image_size, 3), **dict(spec.kwargs)
    )
    try:
        twin.load_weights(path)
    except Exception as e:
        raise ValueError(f"--weights {path}: does not fit {spec.builder} {dict(spec.kwargs)}: {e}") from e
    base.set_weights(twin.get_weights())
    if spec.builder.startswith("EfficientNetB"):
        # Keras adds a per-channel 1/sqrt(std) Rescaling after the input Normalization only when
        # weights="imagenet"; fold it into the Normalization variance so a local ImageNet file sees the
        # inputs it was trained on.
        norm = next(layer for layer in base.layers if isinstance(layer, keras.layers.Normalization))
        norm.adapt_variance.assign(norm.adapt_variance * keras.ops.convert_to_tensor([0.229, 0.224, 0.225]))
        norm.finalize_state()


def _looks_offline(e: Exception) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(w in text for w in ("url", "urlopen", "connection", "resolve", "network", "http", "fetch"))


def backbone_layers(model: keras.Model, backbone: str) -> list:
    """The backbone's layers that belong to a block, in model order."""
    return [layer for layer in model.layers if block_of(backbone, layer.name) is not None]


def backbone_blocks(model: keras.Model, backbone: str) -> list[str]:
    """Block names from input to output."""
    seen: dict[str, None] = {}
    for layer in backbone_layers(model, backbone):
        seen.setdefault(block_of(backbone, layer.name))
    return list(seen)


def freeze_backbone(model: keras.Model, backbone: str) -> None:
    """Stage 1: only the head trains."""
    for layer in backbone_layers(model, backbone):
        layer.trainable = False


def unfreeze_for_stage2(model: keras.Model, backbone: str, top_blocks: int = 0) -> list[str]:
    """Stage 2: unfreeze the top N whole blocks (0 = all) and keep every BatchNormalization frozen.

    A frozen BatchNormalization layer in Keras 3 also runs in inference mode, so its moving statistics,
    learnt on ImageNet, are neither updated nor replaced by small-batch statistics. Returns the blocks
    unfrozen.
    """
    import keras

    blocks = backbone_blocks(model, backbone)
    chosen = set(blocks if top_blocks <= 0 else blocks[-top_blocks:])
    for layer in model.layers:
        block = block_of(backbone, layer.name)
        if block is not None:
            layer.trainable = block in chosen
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return [b for b in blocks if b in chosen]


def calibrate_batchnorm(model: keras.Model, images) -> None:
    """Set every BatchNormalization layer's moving statistics from one batch of images.

    Random weights (`--weights none`) have no ImageNet statistics: frozen BatchNorm layers would then normalise
    with mean 0 and variance 1, and activations vanish through the depth of the network. One forward pass in
    training mode with momentum 0 gives each layer the statistics of its real inputs (a data-dependent
    initialisation), after which freezing BatchNorm is as meaningful as with pretrained weights.
    """
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.trainable, layer.momentum) for layer in bns]
    for layer in bns:
        layer.trainable, layer.momentum = True, 0.0
    model(images, training=True)
    for layer, (trainable, momentum) in zip(bns, saved):
        layer.trainable, layer.momentum = trainable, momentum


def save_model(model: keras.Model, path: Path) -> keras.Model:
    """Save for inference: architecture and weights, without the optimizer's state (a third of the size). Returns
    the uncompiled copy it saved, what `load_model(path)` would give, without reading the file back."""
    import keras

    tmp = path.with_name(path.stem + ".tmp.keras")
    clean = keras.Model.from_config(model.get_config())  # uncompiled (clone_model would copy the optimizer)
    clean.set_weights(model.get_weights())
    clean.save(tmp)
    os.replace(tmp, path)
    return clean


def load_model(path: Path) -> keras.Model:
    """Load a `.keras` file in safe mode: no code from the file runs."""
    import keras

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def load_stage_model(bundle: Bundle, stage: str | None = None) -> keras.Model:
    """A bundle stage's Keras model (default: the shipped, last one), checked against the bundle's class list."""
    from ..bundle import BundleError

    stage = stage or bundle.final_stage
    rel = f"models/{stage}.keras"
    try:
        model = load_model(bundle.path / rel)
    except Exception as e:
        raise BundleError(f"{bundle.path}: {rel} cannot be loaded safely: {e}") from e
    if model.output_shape[-1] != bundle.num_classes:
        raise BundleError(
            f"{bundle.path}: {rel} predicts {model.output_shape[-1]} classes, classes.json lists {bundle.num_classes}"
        )
    return model


def at_size(model: keras.Model, size: int) -> keras.Model:
    """The same network taking `size` x `size` images, with the same weights: the polish stage's model.

    A convolutional backbone ending in global pooling has no weight that depends on the input size, so only the
    input layer's shape changes; trainable flags are set again by the caller (`unfreeze_for_stage2`).
    """
    import keras

    config = model.get_config()
    inputs = [layer for layer in config["layers"] if layer["class_name"] == "InputLayer"]
    if len(inputs) != 1:
        raise ValueError(f"{model.name}: expected one input layer, found {len(inputs)}")
    inputs[0]["config"]["batch_shape"] = [None, size, size, 3]
    resized = keras.Model.from_config(config)
    resized.set_weights(model.get_weights())
    return resized


def mirror_averaged(model: keras.Model) -> keras.Model:
    """The model averaged over each image and its mirror (test-time flip), in one batch of twice the size.

    The evaluation's definition; the serving side does the same with the exported model (a batch of the photo
    and its mirror, averaged), which tests/test_export.py holds equal to this.
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


_WITH_FEATURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def with_features(model: keras.Model) -> keras.Model:
    """The same model answering [probabilities, pooled features] in one pass (`avg_pool`: the head's input).

    One per model: the evaluation's pass over the test split and the analyses' over the reference photos then share
    its traced `predict` (a new wrapper would trace the whole network again, seconds each time)."""
    import keras

    if model not in _WITH_FEATURES:
        outputs = [model.output, model.get_layer("avg_pool").output]
        _WITH_FEATURES[model] = keras.Model(model.inputs, outputs, name=f"{model.name}_features")
    return _WITH_FEATURES[model]


def has_features(model: keras.Model) -> bool:
    """Whether the model has the pooled layer the feature space is made of (every model `build_model` makes)."""
    return any(layer.name == "avg_pool" for layer in model.layers)
