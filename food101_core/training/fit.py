"""Two-stage fine-tuning with Keras `fit` and callbacks; resumable, distributable, NaN-safe.

Stage 1 trains the new head on a frozen backbone (optionally on pooled features computed once);
stage 2 unfreezes whole blocks with every BatchNormalization frozen and a lower learning rate; an optional stage 3
("polish", the ResNet study's two-phase resolution) goes on for a few epochs at a larger image size.
The stages are one table (`STAGES`: what each trains, its epochs, rate and image size) and one function runs any
row (`run_stage`), so every stage gets the same checks. Each keeps its best epoch by validation accuracy, or its last
(`keep_epoch="last"`: a final fit on all the training images for a number of epochs chosen earlier on validation);
`BackupAndRestore` lets the same command resume; a non-finite loss stops the run with what to do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..backbones import BACKBONES
from ..bundle.layout import STAGES as STAGE_NAMES
from ..config import TrainConfig
from .data import FoodData, load_data, make_dataset, whole_batches
from .model import (
    at_size,
    build_model,
    calibrate_batchnorm,
    freeze_backbone,
    load_model,
    save_model,
    unfreeze_for_stage2,
)

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on (NaN loss, no usable checkpoint)."""


def setup_engine(cfg: TrainConfig) -> tf.distribute.Strategy:
    """Seeds, logical CPU devices, mixed precision and the distribution strategy, before any model exists."""
    import keras
    import tensorflow as tf

    if cfg.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cfg.cpu_devices)
    gpus = tf.config.list_physical_devices("GPU")
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:  # multi-threaded sums otherwise differ in the last bits from run to run
        tf.config.experimental.enable_op_determinism()
    if _switch(cfg.mixed_precision, bool(gpus)):
        keras.mixed_precision.set_global_policy("mixed_float16")
    if cfg.strategy == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if cfg.strategy == "multiworker":
        from .multiworker import patch_keras

        patch_keras()  # Keras 3's trainer needs two fixes under this strategy (see multiworker.py)
        return tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    return tf.distribute.get_strategy()


def _switch(value: str, auto: bool) -> bool:
    """auto, on or off (checked by `TrainConfig.problems`) for --xla and --mixed-precision."""
    return auto if value == "auto" else value == "on"


def is_chief() -> bool:
    """True on the one worker that writes the bundle (always, without TF_CONFIG)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    if not task:
        return True
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


def stage2_learning_rate(
    cfg: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Stage 2's rate: constant (the reference), or warmed up over one epoch and cosine-decayed to 0.

    The warm-up lets a higher rate be used without the first steps wrecking the pretrained features (Adam's first
    updates are full-sized whatever the gradient), and the decay ends stage 2 at a quiet minimum.
    """
    import keras

    lr = cfg.stage2_lr or BACKBONES[cfg.backbone].stage2_lr
    if cfg.stage2_schedule == "constant":
        return lr
    total = max(1, cfg.stage2_epochs * steps_per_epoch)
    warmup = min(steps_per_epoch, total - 1)
    return keras.optimizers.schedules.CosineDecay(0.0, total - warmup, alpha=0.0, warmup_target=lr, warmup_steps=warmup)


def polish_learning_rate(cfg: TrainConfig) -> float:
    """The polish stage's constant rate: --polish-lr, or a tenth of stage 2's base rate."""
    return cfg.polish_lr or (cfg.stage2_lr or BACKBONES[cfg.backbone].stage2_lr) / 10


def compile_model(
    model: keras.Model, lr, label_smoothing: float, xla: bool, ema_momentum: float = 0.0, clipnorm: float = 0.0
) -> None:
    """Adam, cross-entropy (optionally smoothed), accuracy and top-5; weight EMA when a momentum is given; the
    gradients' global norm clipped when `clipnorm` is set (the ResNet study's gradient clipping)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(
            lr, use_ema=ema_momentum > 0, ema_momentum=ema_momentum, global_clipnorm=clipnorm or None
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
        ],
        jit_compile=xla,
    )
    # The optimizer's slots now rather than inside the first traced step: under the default strategy Keras builds
    # them there, and tf.function traces a step that creates variables twice (a whole second trace per stage).
    model.optimizer.build(model.trainable_variables)


def _callbacks(work: Path, stage: int, history: pd.DataFrame, cfg: TrainConfig) -> list:
    """Resume, kept-epoch checkpoint, per-epoch log and NaN guard for one stage.

    With weight EMA, validation and the checkpoint see the moving average of the weights; the backup, saved
    before the swap, keeps the raw weights and the average apart, so a resumed run goes on with both.
    """
    import keras

    kept = keras.callbacks.ModelCheckpoint(
        str(work / f"stage{stage}.kept.weights.h5"),
        monitor="val_accuracy",
        mode="max",
        save_best_only=cfg.keep_epoch == "best",  # "last": overwritten every epoch
        save_weights_only=True,
    )
    done = history[history["stage"] == stage]
    if len(done) and (work / f"stage{stage}.kept.weights.h5").exists():
        kept.best = float(done["val_accuracy"].max())  # a resumed run keeps the best it had before the crash
    return [
        keras.callbacks.BackupAndRestore(str(work / f"backup{stage}")),
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.ema_momentum > 0 else []),
        kept,
        keras.callbacks.CSVLogger(str(work / f"history{stage}.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),
    ]


def _check_finite(fit_history: keras.callbacks.History, stage: int, work: Path) -> None:
    losses = fit_history.history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise TrainingError(
            f"stage {stage}: the loss became {losses[-1]} at epoch {fit_history.epoch[-1] + 1}; training stopped. "
            "Lower the learning rate or turn mixed precision off (--mixed-precision off) and run again with --force: "
            f"the checkpoints in {work} end in the diverged weights."
        )


@dataclass(frozen=True)
class Stage:
    """One stage of the recipe, described once: what it trains, for how long, at what rate and image size.

    `epochs`, `rate` and `size` read the run's settings (`TrainConfig`); `run_stage` runs any row, with the same
    checks for every one (resume, kept epoch, per-epoch log, non-finite loss).
    """

    number: int
    name: str  # the bundle's name for it
    trains: str  # "head": the new head on the frozen backbone; "blocks": whole blocks unfrozen, BatchNorm frozen
    epochs: Callable[[TrainConfig], int]
    rate: Callable[[TrainConfig, int], object]  # (settings, steps per epoch) -> learning rate or schedule
    size: Callable[[TrainConfig], int]
    smoothing: bool  # label smoothing applies (not to the head's first fit)


STAGES = (
    Stage(1, STAGE_NAMES[0], "head", lambda c: c.stage1_epochs, lambda c, steps: c.stage1_lr, lambda c: c.image_size,
          smoothing=False),
    Stage(2, STAGE_NAMES[1], "blocks", lambda c: c.stage2_epochs, lambda c, steps: stage2_learning_rate(c, steps),
          lambda c: c.image_size, smoothing=True),
    Stage(3, STAGE_NAMES[2], "blocks", lambda c: c.polish_epochs, lambda c, steps: polish_learning_rate(c),
          lambda c: c.final_size, smoothing=True),  # the polish: the ResNet study's two-phase resolution
)  # fmt: skip


def stages_of(cfg: TrainConfig) -> tuple[Stage, ...]:
    """The stages a run trains: the two of the recipe, and the polish when it has epochs."""
    return STAGES if cfg.polish_epochs > 0 else STAGES[:2]


def final_stage(cfg: TrainConfig) -> str:
    """The name of the stage a run ships (the app serves it; the analyses describe it)."""
    return stages_of(cfg)[-1].name


def read_history(work: Path) -> pd.DataFrame:
    """Every stage's per-epoch log; a resumed epoch appears once (the last run of it)."""
    frames = []
    for stage in STAGES:
        path = work / f"history{stage.number}.csv"
        if path.exists() and path.stat().st_size:
            frames.append(pd.read_csv(path).assign(stage=stage.number))
    if not frames:
        return pd.DataFrame(columns=["epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy"])
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(["stage", "epoch"], keep="last").sort_values("epoch").reset_index(drop=True)


def stage1_on_features(
    model: keras.Model, data: FoodData, cfg: TrainConfig, work: Path, fit: FitInputs
) -> tuple[keras.Model, keras.callbacks.History]:
    """Stage 1 on pooled features computed once: the frozen backbone gives the same ones every epoch. Returns the
    head it fitted (its layers are the model's) and the fit's history."""
    import keras
    import tensorflow as tf

    features = keras.Model(model.input, model.get_layer("avg_pool").output, name="features")
    head_in = keras.Input(features.output.shape[1:], name="pooled")
    h = model.get_layer("head_bn")(head_in)
    h = model.get_layer("head_dropout")(h)
    head = keras.Model(head_in, model.get_layer("predictions")(h), name="head")  # shares the model's layers

    def pooled(name: str, split) -> np.ndarray:
        path = work / f"features_{name}.npy"
        if not path.exists():  # saved, so a resumed run does not pay for them again
            ds = make_dataset(split, data.num_classes, cfg, training=False, with_labels=False)
            if whole_batches(cfg):  # distributed: each worker its own whole pass, no empty shares (multiworker.py)
                from .multiworker import local_predict

                np.save(path, local_predict(features, ds).astype(np.float32))
            else:
                np.save(path, features.predict(ds, verbose=1).astype(np.float32))
        return np.load(path)

    n, whole = data.num_classes, whole_batches(cfg)
    train = tf.data.Dataset.from_tensor_slices((pooled("train", data.train), tf.one_hot(data.train.labels, n)))
    train = train.shuffle(len(data.train), seed=cfg.seed).batch(cfg.batch_size, drop_remainder=whole)
    val = tf.data.Dataset.from_tensor_slices((pooled("val", data.monitored), tf.one_hot(data.monitored.labels, n)))
    compile_model(head, cfg.stage1_lr, 0.0, fit.xla, cfg.ema_momentum, cfg.clipnorm)
    hist = head.fit(
        train.prefetch(tf.data.AUTOTUNE),
        validation_data=val.batch(cfg.batch_size, drop_remainder=whole),
        epochs=cfg.stage1_epochs,
        callbacks=_callbacks(work, 1, read_history(work), cfg) + fit.callbacks,
        verbose=2,
    )
    return head, hist


def train(
    cfg: TrainConfig, work: Path, data: FoodData | None = None, extra_callbacks: list | None = None
) -> tuple[dict[str, keras.Model], FoodData, dict]:
    """Run every stage (resuming from `work`); return the kept model of each stage, the data and timings."""
    import tensorflow as tf

    cfg.check()  # every setting, before the data is read
    if changes := stale_recipe(cfg, work):
        raise TrainingError(
            f"{work} holds an unfinished run of another recipe ("
            + ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in changes.items())
            + "); resuming would mix the two. Run with --force to discard it and start over, or choose another --name."
        )
    strategy = setup_engine(cfg)
    xla = _switch(cfg.xla, bool(tf.config.list_physical_devices("GPU")))
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    data = data or load_data(cfg)
    log.info("%s with %d replicas", type(strategy).__name__, strategy.num_replicas_in_sync)
    log.info("data: %s", {k: v for k, v in data.source.items() if k != "skipped"})
    with strategy.scope():
        model = build_model(cfg, data.num_classes)
    fit = FitInputs(strategy=strategy, xla=xla, callbacks=list(extra_callbacks or []))
    timings: dict[str, float] = {}
    models: dict[str, keras.Model] = {}
    for stage in stages_of(cfg):
        if (work / f"{stage.name}.keras").exists():  # finished before a crash: not trained again
            models[stage.name] = load_model(work / f"{stage.name}.keras")
            continue
        if models:  # a fresh object: Keras keeps a resumed fit's start epoch on the model it restored
            with strategy.scope():
                model = load_model(work / f"{list(models)[-1]}.keras")
        t0 = time.perf_counter()
        models[stage.name] = run_stage(stage, model, cfg, data, work, fit)
        timings[f"{stage.name}_s"] = time.perf_counter() - t0
    return models, data, timings


@dataclass
class FitInputs:
    """What every stage's `fit` shares: the distribution strategy, XLA on or off, and the caller's callbacks."""

    strategy: tf.distribute.Strategy
    xla: bool
    callbacks: list
    pipelines: dict[int, tuple] = field(default_factory=dict)

    def datasets(self, cfg: TrainConfig, data: FoodData) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """The training and validation pipelines at `cfg.image_size`, made once a size: stages at the same size
        share them, so an in-memory cache is filled once."""
        if cfg.image_size not in self.pipelines:
            n = data.num_classes
            self.pipelines[cfg.image_size] = (
                make_dataset(data.train, n, cfg, training=True, augment=cfg.augment, mixup=cfg.mixup),
                make_dataset(data.monitored, n, cfg, training=False),
            )
        return self.pipelines[cfg.image_size]


def prepare(stage: Stage, model: keras.Model, cfg: TrainConfig, data: FoodData, fit: FitInputs) -> keras.Model:
    """The model as `stage` trains it: the backbone frozen (stage 1), or whole blocks unfrozen with BatchNorm
    frozen, at the stage's image size."""
    if stage.trains == "head":
        if cfg.weights.lower() == "none":
            log.info("random weights: BatchNorm statistics set from a batch of training images")
            first = next(iter(fit.datasets(cfg, data)[0]))[0]  # one batch: an eager pass is memory-hungry
            calibrate_batchnorm(model, first)
        with fit.strategy.scope():
            freeze_backbone(model, cfg.backbone)
        return model
    with fit.strategy.scope():
        if stage.size(cfg) != model.input_shape[1]:
            model = at_size(model, stage.size(cfg))
        blocks = unfreeze_for_stage2(model, cfg.backbone, cfg.unfreeze_blocks)
    log.info("%s unfreezes %d blocks: %s … %s", stage.name, len(blocks), blocks[0], blocks[-1])
    return model


def run_stage(
    stage: Stage, model: keras.Model, cfg: TrainConfig, data: FoodData, work: Path, fit: FitInputs
) -> keras.Model:
    """Train one stage from `model` (the previous stage's, or a new one) and save `<name>.keras`; the model saved.

    Every stage resumes from its backup, keeps its best (or last) epoch, logs each epoch and stops on a non-finite
    loss; its epochs are numbered after the earlier stages', so the history reads as one run.
    """
    model = prepare(stage, model, cfg, data, fit)
    epochs, start = stage.epochs(cfg), sum(s.epochs(cfg) for s in STAGES[: stage.number - 1])
    at = dataclasses.replace(cfg, image_size=stage.size(cfg))
    log.info("%s: %d epochs at %d px", stage.name, epochs, at.image_size)
    trained, hist = model, None
    with fit.strategy.scope():
        if epochs > 0 and stage.trains == "head" and cfg.cache_features:
            if cfg.augment:
                log.info(
                    "stage 1 trains on cached, un-augmented features; augmentation starts in stage 2 "
                    "(--no-cache-features augments stage 1 too, at the cost of a backbone pass per epoch)"
                )
            trained, hist = stage1_on_features(model, data, cfg, work, fit)
        elif epochs > 0:
            steps = math.ceil(len(data.train) / cfg.batch_size)
            smoothing = cfg.label_smoothing if stage.smoothing else 0.0
            compile_model(model, stage.rate(cfg, steps), smoothing, fit.xla, cfg.ema_momentum, cfg.clipnorm)
            train_ds, val_ds = fit.datasets(at, data)
            hist = model.fit(
                train_ds,
                validation_data=val_ds,
                initial_epoch=start,
                epochs=start + epochs,
                callbacks=_callbacks(work, stage.number, read_history(work), cfg) + fit.callbacks,
            )
    if hist is not None:
        _check_finite(hist, stage.number, work)
        trained.load_weights(work / f"stage{stage.number}.kept.weights.h5")
    return save_model(model, work / f"{stage.name}.keras")


def stale_recipe(cfg: TrainConfig, work: Path) -> dict[str, tuple]:
    """How the checkpoints under `work` were made differently from `cfg` (empty: the same recipe, or none there).

    A run named with --name, interrupted, then started again with other settings would otherwise resume the old
    checkpoints under the new recipe. Settings a saved config lacks (an older version) count as their defaults.
    """
    path = work / "config.json"
    if not path.exists() or all(p.name == "config.json" for p in work.iterdir()):  # no checkpoint yet
        return {}
    return cfg.recipe_changes(TrainConfig.from_dict(json.loads(path.read_text())))


def clear_work(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
