"""Every setting of a run, as one dataclass that is saved into the bundle.

Each setting carries its help text and, for text settings, its allowed values (`setting(...)`): train.py's flags,
`TrainConfig.problems` and the README's flag list all read them from here, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .backbones import BACKBONES


def setting(default, help: str, choices: list[str] | None = None):
    """A dataclass field with its help text and allowed values beside it (a list default is copied per instance)."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """The whole recipe. Defaults are the reference recipe: EfficientNetB0 on Food-101, 15 + 10 epochs."""

    # data
    data: str = setting(
        "tfds:food101",
        "tfds:food101 (download), a Food-101-layout folder (images/ + meta/), or a folder of class folders",
    )
    classes: list[str] = setting([], "comma-separated class ids to keep (default: all)")
    num_classes: int = setting(0, "keep only the first N classes (0 = all)")
    train_fraction: float = setting(1.0, "fraction of each class's training images to use")
    val_fraction: float = setting(
        0.05, "fraction of training images held out to pick each stage's best epoch (0 = monitor the test split)"
    )
    calibration_fraction: float = setting(
        0.05,
        "with --val-fraction 0: fraction of training images held out (never trained on) to fit the temperature "
        "that calibrates the confidences; with a validation split, that split is used (0 = no calibration)",
    )
    keep_epoch: str = setting(
        "best",
        "best (by validation accuracy) or last: for a final fit on all training images (--val-fraction 0) "
        "with epoch counts chosen earlier on validation",
        ["best", "last"],
    )
    exclude: str = setting(
        "",
        "a file of training image ids to leave out: the app's marks CSV (photos marked 'exclude'), a CSV with an "
        "'id' column (the Data-quality tab's suspect list) or one id a line; the ids left out are recorded in the "
        "bundle",
    )
    relabel: str = setting(
        "",
        "the app's marks CSV ('Download my marks'): its training photos marked 'relabel as ...' take that label "
        "(test photos' marks are reported, never applied); what changed is recorded in the bundle",
    )
    image_size: int = setting(224, "square input size in pixels")
    cache: str = setting(
        "auto", "decoded images in memory: auto (if they fit), memory, none", ["auto", "memory", "none"]
    )
    # model
    backbone: str = setting("efficientnetb0", "keras.applications backbone", list(BACKBONES))
    weights: str = setting(
        "imagenet", "imagenet, none, or a local .weights.h5 file of the bare backbone (include_top=False)"
    )
    dropout: float = setting(0.2, "dropout before the new softmax layer")
    # stage 1: backbone frozen, head only
    stage1_epochs: int = setting(15, "epochs of stage 1 (backbone frozen, new head only)")
    stage1_lr: float = setting(1e-3, "Adam learning rate of stage 1")
    cache_features: bool = setting(
        True, "stage 1 on pooled features computed once, un-augmented (--no-cache-features to augment it)"
    )
    # stage 2: whole blocks unfrozen, every BatchNormalization frozen
    stage2_epochs: int = setting(10, "epochs of stage 2 (whole blocks unfrozen, BatchNorm frozen)")
    stage2_lr: float = setting(
        0.0, "stage-2 learning rate; 0 = the backbone's default (1e-4 EfficientNet, 1e-5 MobileNet)"
    )
    stage2_schedule: str = setting(
        "constant",
        "constant (the reference) or cosine (one-epoch warm-up to --stage2-lr, then decay to 0)",
        ["constant", "cosine"],
    )
    unfreeze_blocks: int = setting(0, "stage 2 unfreezes the top N whole blocks of the backbone (0 = all)")
    label_smoothing: float = setting(0.0, "label smoothing of stage 2's loss (0 = off)")
    ema_momentum: float = setting(
        0.0, "validate, keep and ship the exponential moving average of the weights (e.g. 0.998; 0 = off)"
    )
    polish_epochs: int = setting(
        0, "a third stage after stage 2: N more epochs at --polish-size, same blocks unfrozen (0 = no polish)"
    )
    polish_size: int = setting(0, "image size of the polish stage (0 = 1.25 x --image-size, a multiple of 16)")
    polish_lr: float = setting(0.0, "constant learning rate of the polish stage (0 = a tenth of stage 2's)")
    clipnorm: float = setting(0.0, "clip the gradients' global norm to this in both stages (e.g. 1.0; 0 = off)")
    augment: bool = setting(False, "random flip, crop/zoom and rotation on images that pass through the backbone")
    mixup: float = setting(
        0.0,
        "blend pairs of training images and their labels, like --augment (stage 2, or both with "
        "--no-cache-features); Beta(a, a) weights, e.g. 0.2 (0 = off)",
    )
    tta_flip: bool = setting(False, "average the predictions of each test photo and its mirror (the app does the same)")
    # engine
    batch_size: int = setting(32, "images per step")
    seed: int = setting(42, "seed of the split, the shuffles and the weights")
    mixed_precision: str = setting("auto", "float16 compute: auto (on with a GPU), on, off", ["auto", "on", "off"])
    xla: str = setting("auto", "XLA compilation: auto (on with a GPU), on, off", ["auto", "on", "off"])
    strategy: str = setting(
        "default",
        "default, mirrored (all local GPUs) or multiworker (TF_CONFIG)",
        ["default", "mirrored", "multiworker"],
    )
    cpu_devices: int = setting(0, "split the CPU into N logical devices (to try tf.distribute without GPUs)")
    deterministic: bool = setting(
        False, "TensorFlow op determinism: bit-identical reruns on one machine, somewhat slower"
    )
    data_autotune: bool = setting(
        True,
        "tf.data's autotuner sizes the input pipeline's parallelism and prefetch; a fit or predict call can then "
        "wait seconds for it as it ends (docs/benchmarks.md): off suits many short calls (the tests)",
    )
    # output
    out: str = setting("runs", "folder the bundle is written under")
    name: str = setting("", "bundle folder name under --out (default: backbone-data-recipehash)")
    thumbs_correct_per_class: int = setting(3, "thumbnails of correctly classified test photos kept per class")
    mistake_thumbs_per_class: int = setting(
        40,
        "thumbnails of each stage's most confident mistakes kept per true dish (the Mistakes gallery; all mistakes "
        "stay listed, the app says how many have no picture)",
    )
    analyses: bool = setting(
        True,
        "after writing the bundle, add the feature space (map, similar photos, unfamiliar-photo warning) and the "
        "data-quality analysis (suspect labels, near-duplicates, image checks): the Map and Data-quality tabs; "
        "--no-analyses leaves them out, to add later with `python -m food101_core.training.analyses RUN`",
    )
    onnx: bool = setting(
        True,
        "write each stage also as ONNX, which the app serves without TensorFlow (off: the app refuses the bundle "
        "until `python -m food101_core.training.export RUN` adds them; 3-5 s a stage)",
    )
    reference_per_class: int = setting(
        20,
        "training photos per class kept in the bundle (features and thumbnails) for the map, 'similar training "
        "photos' and the unfamiliar-photo warning (0 = no feature-space analysis)",
    )
    suspect_thumbs: int = setting(
        300,
        "data-quality analysis: thumbnails of the N most suspect training labels kept in the bundle (the whole "
        "list is kept as CSV; 0 = no data-quality analysis)",
    )
    pair_thumbs: int = setting(
        300, "data-quality analysis: near-duplicate pairs of each kind whose photos the bundle keeps (the closest)"
    )
    quality_folds: int = setting(5, "folds of the cross-validation that finds suspect training labels (2 or more)")

    def problems(self) -> dict[str, str]:
        """{setting: what is wrong with it} for every setting that cannot work, before any data is read.

        One check up front instead of one where each setting is used: on full Food-101 a typo in a late setting
        would otherwise surface after the data had been listed and stage 1 trained. NaN passes (the NaN guard's job).
        """
        found = {k: f"not one of {', '.join(v)}" for k, v in CHOICES.items() if getattr(self, k) not in v}
        rules = {  # setting: (holds, what it must be)
            "train_fraction": (0 < self.train_fraction <= 1, "must be in (0, 1]"),
            "val_fraction": (0 <= self.val_fraction < 1, "must be in [0, 1)"),
            "calibration_fraction": (0 <= self.calibration_fraction < 1, "must be in [0, 1)"),
            "polish_size": (
                self.polish_size == 0 or self.polish_size >= 32,
                "must be 0 (1.25 x --image-size) or at least 32",
            ),
            "dropout": (0 <= self.dropout < 1, "must be in [0, 1)"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            "ema_momentum": (0 <= self.ema_momentum < 1, "must be in [0, 1)"),
            "image_size": (self.image_size >= 32, "must be at least 32 (the backbones' smallest input)"),
            "batch_size": (self.batch_size >= 1, "must be at least 1"),
            "quality_folds": (self.quality_folds >= 2, "must be at least 2"),
        }
        for k in NON_NEGATIVE:
            rules[k] = (not getattr(self, k) < 0, "must not be negative")  # `not <`: NaN passes
        found.update({k: why for k, (holds, why) in rules.items() if not holds})
        return found

    def check(self) -> None:
        """Raise ValueError naming every setting that cannot work (see `problems`)."""
        if found := self.problems():
            said = "; ".join(f"{k} {getattr(self, k)!r} {why}" for k, why in found.items())
            raise ValueError(f"invalid settings: {said}")

    @property
    def final_size(self) -> int:
        """The image size of the shipped model: the polish stage's when there is one."""
        if self.polish_epochs <= 0:
            return self.image_size
        return self.polish_size or int(round(self.image_size * 1.25 / 16) * 16)

    def recipe(self) -> dict:
        """The settings that change the trained model: not where it is written, the memory cache, the last-bit
        rounding, or what the evaluation keeps (so adding an evaluation setting renames no run). The calibration
        hold-out only matters without a validation split, and the polish's size and rate only with a polish."""
        unused = set()
        if self.val_fraction > 0:
            unused.add("calibration_fraction")
        if self.polish_epochs <= 0:
            unused |= {"polish_size", "polish_lr"}
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in NOT_RECIPE | unused and (k, v) not in LATER_SETTINGS_OFF.items()
        }

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
        """Build from a saved dict; unknown keys (from a newer version) are ignored, missing ones defaulted.

        A bundle written before a setting existed gets that setting's "off" value (`LATER_SETTINGS_OFF`), else its
        default: a run trained on every training photo must not, re-evaluated, fit a temperature on some of them.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**LATER_SETTINGS_OFF, **{k: v for k, v in d.items() if k in names}})


SETTINGS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# The values a text setting may take, read from the settings themselves.
CHOICES = {k: f.metadata["choices"] for k, f in SETTINGS.items() if f.metadata.get("choices")}
NON_NEGATIVE = (
    "num_classes",
    "stage1_epochs",
    "stage2_epochs",
    "unfreeze_blocks",
    "cpu_devices",
    "mixup",
    "clipnorm",
    "polish_epochs",
    "polish_lr",
    "stage1_lr",
    "stage2_lr",
    "thumbs_correct_per_class",
    "mistake_thumbs_per_class",
    "pair_thumbs",
    "reference_per_class",
    "suspect_thumbs",
)
# Recipe settings added after runs were named: left out of the recipe while off, so those runs keep their names.
LATER_SETTINGS_OFF = {
    "exclude": "",
    "relabel": "",
    "clipnorm": 0.0,
    "calibration_fraction": 0.0,
    "polish_epochs": 0,
    "polish_size": 0,
    "polish_lr": 0.0,
}
NOT_RECIPE = {"out", "name", "cache", "deterministic", "data_autotune", "reference_per_class", "suspect_thumbs",
              "quality_folds", "onnx", "analyses", "mistake_thumbs_per_class", "pair_thumbs"}  # fmt: skip
