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


def overlay_heatmap(image: Image.Image, heat: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """The photo with the heat map on top: transparent where cold, yellow to red where the model looked."""
    h = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR), np.float32)
    h = h[..., None] / 255.0
    colour = np.concatenate([np.ones_like(h), 1.0 - 0.85 * h, np.zeros_like(h)], axis=-1) * 255.0  # yellow→red
    base = np.asarray(image, np.float32)
    out = base * (1 - alpha * h) + colour * (alpha * h)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
