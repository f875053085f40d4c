"""The backbone registry: which `keras.applications` builder, its input scaling, and how to cut it into blocks.

A plain table that loads neither Keras nor TensorFlow, so the config can check a backbone name cheaply. A
backbone's "blocks" are its repeated units (EfficientNet's MBConv blocks, MobileNet's depthwise-separable
blocks, ...), found from layer names; stage 2 unfreezes whole ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    """How to build one `keras.applications` backbone and cut it into whole blocks."""

    builder: str  # attribute of keras.applications
    block_pattern: str  # regex whose first group names the block a layer belongs to
    rescale: tuple[float, float] | None = None  # (scale, offset) for the input; None = done inside the backbone
    kwargs: tuple = ()
    stage2_lr: float = 1e-4  # the reference's 1e-4 suits EfficientNet; MobileNet's weights need a gentler 1e-5
    caffe: bool = False  # ResNet v1's input: BGR with ImageNet's mean subtracted (keras.applications.resnet)


_EFFNET = r"^(stem|block\d+[a-z]|top)_"
_EFFNET_V2 = r"^(stem|block\d+[a-z]|top)_"
_MOBILENET = r"^(conv1|conv_(?:dw|pw|pad)_(\d+))"
_MOBILENET_V2 = r"^(Conv1|bn_Conv1|Conv1_relu|expanded_conv|block_\d+|Conv_1|Conv_1_bn|out_relu)"
_RESNET = r"^(conv\d|pool1|post)_"  # whole residual stages conv2..conv5 (torchvision's layer1..layer4)

BACKBONES: dict[str, Backbone] = {
    **{f"efficientnetb{i}": Backbone(f"EfficientNetB{i}", _EFFNET) for i in range(8)},
    **{f"efficientnetv2b{i}": Backbone(f"EfficientNetV2B{i}", _EFFNET_V2) for i in range(4)},
    "mobilenet": Backbone("MobileNet", _MOBILENET, (1 / 127.5, -1.0), (("alpha", 0.75),), 1e-5),
    "mobilenetv2": Backbone("MobileNetV2", _MOBILENET_V2, (1 / 127.5, -1.0), (("alpha", 0.35),), 1e-5),
    "resnet50": Backbone("ResNet50", _RESNET, caffe=True),
    "resnet50v2": Backbone("ResNet50V2", _RESNET, (1 / 127.5, -1.0)),
}
# Names of blocks that are one unit although their layer names differ.
_BLOCK_ALIASES = {
    "bn_Conv1": "Conv1",
    "Conv1_relu": "Conv1",
    "Conv_1_bn": "Conv_1",
    "out_relu": "Conv_1",
    "pool1": "conv1",  # ResNet's stem pooling belongs to the stem
    "post": "conv5",  # ResNet50V2's final BatchNormalization belongs to the last stage
}


def block_of(backbone: str, layer_name: str) -> str | None:
    """The block a backbone layer belongs to, or None for weightless plumbing (input, rescaling)."""
    m = re.match(BACKBONES[backbone].block_pattern, layer_name)
    if not m:
        return None
    if backbone == "mobilenet":
        return "conv1" if m.group(1) == "conv1" else f"block_{m.group(2)}"
    return _BLOCK_ALIASES.get(m.group(1), m.group(1))
