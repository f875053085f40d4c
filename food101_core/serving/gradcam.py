"""Grad-CAM (Selvaraju et al. 2017) without gradients, and the heat map drawn over the photo.

After global average pooling the head is linear at inference (BN -> dropout -> dense folds into one matrix W,
`training.export.fold_head`). So for the softmax probability p_c, the gradient with respect to the last feature
map A is the same at every position: (1 / HW) * p_c * (W[:, c] - W p). Grad-CAM's channel weights are its spatial
mean, so the map needs only A, W and p, all of which the ONNX model answers in its one forward pass.

The score is the softmax probability, as the TensorFlow Grad-CAM this replaces differentiated (and so the same
maps, exactly): it shows what makes the photo this dish *rather than the other likely ones*, since a channel that
raises every likely dish alike gets no weight. (For the logit, y^c of the paper, the weights would be W[:, c].)
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class GradCamUnavailable(RuntimeError):
    """The stage has no folded head (its head is not linear after pooling), so no closed-form Grad-CAM."""


def channel_weights(weights: np.ndarray, probs: np.ndarray, class_index: int) -> np.ndarray:
    """d p_c / d pooled features, which is Grad-CAM's channel weights up to the positive constant 1 / HW."""
    w = np.asarray(weights, np.float64)
    p = np.asarray(probs, np.float64)
    return p[class_index] * (w[:, class_index] - w @ p)


def gradcam(feature_map: np.ndarray, weights: np.ndarray, probs: np.ndarray, class_index: int, size: int) -> np.ndarray:
    """size x size heat in [0, 1]: ReLU of the channel-weighted feature map, scaled to its maximum, 8-bit, resized
    bilinearly (as the gradient-based version did, so the two agree after rounding)."""
    fmap = np.asarray(feature_map, np.float64)  # h x w x channels
    cam = np.maximum(fmap @ channel_weights(weights, probs, class_index), 0.0)
    if cam.max() > 0:
        cam = cam / cam.max()
    heat = Image.fromarray((cam * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(heat, np.float32) / 255.0


# The overlay's colours, from where the model looked a little to where it looked most: violet, blue, cyan, near
# white. Food is mostly yellow, brown, red and green, on which a yellow-to-red map vanished; these stay visible on
# it (the app draws the same key beside the image, `HEAT_KEY`).
HEAT_COLOURS = np.array([[48, 18, 140], [30, 110, 230], [40, 220, 240], [235, 255, 255]], np.float32)
HEAT_KEY = (
    '<div class="heat-key">Grad-CAM: where the model looked <span>little</span><span class="bar"></span>'
    "<span>most</span> (no tint: not at all)</div>"
)


def heat_colour(h: np.ndarray) -> np.ndarray:
    """RGB (0-255) of heat values in [0, 1] along `HEAT_COLOURS`."""
    stops = np.linspace(0, 1, len(HEAT_COLOURS))
    return np.stack([np.interp(h, stops, HEAT_COLOURS[:, c]) for c in range(3)], axis=-1)


def overlay_heatmap(image: Image.Image, heat: np.ndarray, alpha: float = 0.65) -> Image.Image:
    """The photo with the heat map on top: untouched where cold, violet to cyan-white where the model looked."""
    h = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR), np.float32)
    h = h / 255.0
    a = (alpha * np.sqrt(h))[..., None]  # faint attention still tints
    out = np.asarray(image.convert("RGB"), np.float32) * (1 - a) + heat_colour(h) * a
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
