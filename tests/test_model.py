"""Backbone registry, whole-block grouping, local weights and the stage-2 freezing rule."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import MOBILENET_WEIGHTS, needs_weights, tiny_config

from food101_core.training.model import BACKBONES, backbone_blocks, block_of, build_model, unfreeze_for_stage2

EXPECTED_BLOCKS = {  # stem + repeated units + top conv, as the architectures define them
    "efficientnetb0": 1 + 16 + 1,
    "efficientnetv2b0": 1 + 21 + 1,  # stages of 1, 2, 2, 3, 5 and 8 blocks
    "mobilenet": 1 + 13,
    "mobilenetv2": 1 + 17 + 1,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_BLOCKS))
def test_every_weighted_backbone_layer_belongs_to_a_block(name, tmp_path):
    model = build_model(tiny_config(".", tmp_path, backbone=name, image_size=32), 5)
    blocks = backbone_blocks(model, name)
    assert len(blocks) == EXPECTED_BLOCKS[name], blocks
    head = {"avg_pool", "head_bn", "head_dropout", "predictions"}
    for layer in model.layers:
        if layer.weights and layer.name not in head and not isinstance(layer, keras.layers.Normalization):
            assert block_of(name, layer.name) is not None, f"{name}: {layer.name} is in no block"
    assert model.output_shape == (None, 5)
    assert all(not layer.trainable for layer in model.layers if block_of(name, layer.name))  # stage 1: frozen


def test_registry_covers_the_required_backbones():
    for name in [f"efficientnetb{i}" for i in range(8)] + [f"efficientnetv2b{i}" for i in range(4)]:
        assert name in BACKBONES
    assert {"mobilenet", "mobilenetv2"} <= set(BACKBONES)


@pytest.mark.parametrize("top", [0, 3])
def test_stage2_unfreezes_whole_blocks_and_keeps_every_batchnorm_frozen(top, tmp_path):
    model = build_model(tiny_config(".", tmp_path, backbone="efficientnetb0", image_size=32), 4)
    blocks = backbone_blocks(model, "efficientnetb0")
    opened = unfreeze_for_stage2(model, "efficientnetb0", top)
    assert opened == (blocks if top == 0 else blocks[-top:])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        elif block_of("efficientnetb0", layer.name) in opened:
            assert layer.trainable, layer.name
        elif block_of("efficientnetb0", layer.name) is not None:
            assert not layer.trainable, layer.name
    assert model.get_layer("predictions").trainable


@needs_weights
def test_local_weights_file_is_loaded_into_the_backbone(tmp_path):
    cfg = tiny_config(".", tmp_path, backbone="mobilenet", weights=str(MOBILENET_WEIGHTS), image_size=96)
    model = build_model(cfg, 3)
    ref = keras.applications.MobileNet(alpha=0.75, include_top=False, weights=None, input_shape=(96, 96, 3))
    ref.load_weights(MOBILENET_WEIGHTS)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    expected = ref.predict(keras.applications.mobilenet.preprocess_input(x.copy()), verbose=0).mean(axis=(1, 2))
    np.testing.assert_allclose(features.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_missing_or_mismatched_weights_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_model(tiny_config(".", tmp_path, weights=str(tmp_path / "missing.weights.h5")), 3)
    other = keras.applications.MobileNet(alpha=0.5, include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="does not fit"):
        build_model(tiny_config(".", tmp_path, backbone="mobilenet", weights=str(path)), 3)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model(tiny_config(".", tmp_path, backbone="resnet9000"), 3)


@pytest.mark.parametrize("backbone", ["resnet50", "resnet50v2"])
def test_resnet_backbones_preprocess_like_keras_and_unfreeze_whole_stages(backbone):
    """ResNet's input preprocessing equals keras.applications' own; its blocks are the residual stages, so
    `--unfreeze-blocks 3` opens conv3-conv5 (torchvision's layer2-layer4, as in the ResNet-18 study)."""
    from food101_core.config import TrainConfig

    cfg = TrainConfig(backbone=backbone, weights="none", image_size=32)
    model = build_model(cfg, 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    pre = keras.Model(model.input, model.get_layer("preprocess").output)(x)
    module = keras.applications.resnet if backbone == "resnet50" else keras.applications.resnet_v2
    np.testing.assert_allclose(np.asarray(pre), np.asarray(module.preprocess_input(x.copy())), atol=1e-4)
    assert backbone_blocks(model, backbone) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert unfreeze_for_stage2(model, backbone, 3) == ["conv3", "conv4", "conv5"]
    assert not model.get_layer("preprocess").trainable
    assert all(not layer.trainable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    trainable = {layer.name.split("_")[0] for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"conv3", "conv4", "conv5", "predictions"}
