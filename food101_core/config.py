"""Every setting of a run, as one dataclass that is saved into the bundle."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

# The values a text setting may take: train.py's flag choices and `TrainConfig.problems` read this one table.
CHOICES = {
    "cache": ["auto", "memory", "none"],
    "stage2_schedule": ["constant", "cosine"],
    "keep_epoch": ["best", "last"],
    "mixed_precision": ["auto", "on", "off"],
    "xla": ["auto", "on", "off"],
    "strategy": ["default", "mirrored", "multiworker"],
}


@dataclass
class TrainConfig:
    """The whole recipe. Defaults are the reference recipe: EfficientNetB0 on Food-101, 15 + 10 epochs."""

    # data
    data: str = "tfds:food101"  # "tfds:NAME", a Food-101-layout folder, or a folder of class sub-folders
    classes: list[str] = field(default_factory=list)  # class ids to keep; empty = all
    num_classes: int = 0  # keep only the first N classes (0 = all)
    train_fraction: float = 1.0  # fraction of the training images of each class
    val_fraction: float = 0.05  # held out of train, per class, to pick the best epoch; 0 = monitor the test split
    keep_epoch: str = "best"  # "best" (by validation accuracy) or "last": a final fit on all of train, epochs fixed
    image_size: int = 224
    cache: str = "auto"  # "auto" (in memory if it fits), "memory", "none"
    # model
    backbone: str = "efficientnetb0"
    weights: str = "imagenet"  # "imagenet", "none" or a path to a local .weights.h5 file of the backbone
    dropout: float = 0.2
    # stage 1: backbone frozen, head only
    stage1_epochs: int = 15
    stage1_lr: float = 1e-3
    cache_features: bool = True  # stage-1 head on pooled features computed once (un-augmented, even with augment)
    # stage 2: whole blocks unfrozen, every BatchNormalization frozen
    stage2_epochs: int = 10
    stage2_lr: float = 0.0  # 0 = the backbone's default: 1e-4 for EfficientNet (the reference), 1e-5 for MobileNet
    stage2_schedule: str = "constant"  # "constant" (the reference) or "cosine": a one-epoch warm-up, then decay to 0
    unfreeze_blocks: int = 0  # top N blocks of the backbone; 0 = all
    label_smoothing: float = 0.0  # stage 2 only
    ema_momentum: float = 0.0  # > 0: validate, keep and ship the moving average of the weights (e.g. 0.998); 0 = off
    augment: bool = False  # random flip, crop/zoom and rotation on images that pass through the backbone
    mixup: float = 0.0  # blend pairs of images through the backbone and their labels, Beta(a, a) weights; 0 = off
    tta_flip: bool = False  # average the predictions of the image and its mirror at evaluation
    # engine
    batch_size: int = 32
    seed: int = 42
    mixed_precision: str = "auto"  # "auto" (on with a GPU), "on", "off"
    xla: str = "auto"  # "auto" (on with a GPU), "on", "off"
    strategy: str = "default"  # "default", "mirrored", "multiworker" (TF_CONFIG)
    cpu_devices: int = 0  # split the CPU into N logical devices (to exercise tf.distribute without GPUs)
    deterministic: bool = False  # TensorFlow's op determinism: bit-identical reruns, somewhat slower
    # output
    out: str = "runs"
    name: str = ""  # bundle folder name; empty = derived from the recipe, so a re-run finds its own checkpoints
    thumbs_correct_per_class: int = 3

    def problems(self) -> dict[str, str]:
        """{setting: what is wrong with it} for every setting that cannot work, before any data is read.

        One check up front instead of one where each setting is used: on full Food-101 a typo in a late setting
        would otherwise surface after the data had been listed and stage 1 trained. NaN passes (the NaN guard's job).
        """
        from .model import BACKBONES  # a plain table: importing it loads neither Keras nor TensorFlow

        found = {k: f"not one of {', '.join(v)}" for k, v in CHOICES.items() if getattr(self, k) not in v}
        if self.backbone not in BACKBONES:
            found["backbone"] = f"not one of {', '.join(BACKBONES)}"
        rules = {  # setting: (holds, what it must be)
            "train_fraction": (0 < self.train_fraction <= 1, "must be in (0, 1]"),
            "val_fraction": (0 <= self.val_fraction < 1, "must be in [0, 1)"),
            "dropout": (0 <= self.dropout < 1, "must be in [0, 1)"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            "ema_momentum": (0 <= self.ema_momentum < 1, "must be in [0, 1)"),
            "image_size": (self.image_size >= 32, "must be at least 32 (the backbones' smallest input)"),
            "batch_size": (self.batch_size >= 1, "must be at least 1"),
        }
        for k in (
            "num_classes",
            "stage1_epochs",
            "stage2_epochs",
            "unfreeze_blocks",
            "cpu_devices",
            "mixup",
            "stage1_lr",
            "stage2_lr",
            "thumbs_correct_per_class",
        ):
            rules[k] = (not getattr(self, k) < 0, "must not be negative")  # `not <`: NaN passes
        found.update({k: why for k, (holds, why) in rules.items() if not holds})
        return found

    def check(self) -> None:
        """Raise ValueError naming every setting that cannot work (see `problems`)."""
        if found := self.problems():
            said = "; ".join(f"{k} {getattr(self, k)!r} {why}" for k, why in found.items())
            raise ValueError(f"invalid settings: {said}")

    def recipe(self) -> dict:
        """The settings that change the result: not where it is written, the memory cache, the last-bit rounding."""
        return {k: v for k, v in self.to_dict().items() if k not in {"out", "name", "cache", "deterministic"}}

    def recipe_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()[:8]

    def recipe_changes(self, other: TrainConfig) -> dict[str, tuple]:
        """{setting: (other's value, this one's)} for each recipe setting in which the two differ."""
        mine, theirs = self.recipe(), other.recipe()
        return {k: (theirs[k], v) for k, v in mine.items() if theirs[k] != v}

    def run_name(self) -> str:
        if self.name:
            return self.name
        data = self.data.rstrip("/").split("/")[-1].replace(":", "-")
        return f"{self.backbone}-{data}-{self.recipe_hash()}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a saved dict; unknown keys (from a newer version) are ignored, missing ones defaulted."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
