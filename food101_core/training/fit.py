"""Two-stage fine-tuning with Keras `fit` and callbacks; resumable, distributable, NaN-safe.

Stage 1 trains the new head on a frozen backbone (optionally on pooled features computed once);
stage 2 unfreezes whole blocks with every BatchNormalization frozen and a lower learning rate; an optional stage 3
("polish", the ResNet study's two-phase resolution) goes on for a few epochs at a larger image size.
Each stage keeps its best epoch by validation accuracy, or its last (`keep_epoch="last"`: a final fit on all the
training images for a number of epochs chosen earlier on validation); `BackupAndRestore` lets the same command
resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..backbones import BACKBONES
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


def read_history(work: Path) -> pd.DataFrame:
    """Every stage's per-epoch log; a resumed epoch appears once (the last run of it)."""
    frames = []
    for stage in (1, 2, 3):
        path = work / f"history{stage}.csv"
        if path.exists() and path.stat().st_size:
            frames.append(pd.read_csv(path).assign(stage=stage))
    if not frames:
        return pd.DataFrame(columns=["epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy"])
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(["stage", "epoch"], keep="last").sort_values("epoch").reset_index(drop=True)


def stage1_on_features(
    model: keras.Model, data: FoodData, cfg: TrainConfig, work: Path, xla: bool, extra: list
) -> keras.callbacks.History:
    """Stage 1 on pooled features computed once: the frozen backbone gives the same ones every epoch."""
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
    compile_model(head, cfg.stage1_lr, 0.0, xla, cfg.ema_momentum, cfg.clipnorm)
    hist = head.fit(
        train.prefetch(tf.data.AUTOTUNE),
        validation_data=val.batch(cfg.batch_size, drop_remainder=whole),
        epochs=cfg.stage1_epochs,
        callbacks=_callbacks(work, 1, read_history(work), cfg) + extra,
        verbose=2,
    )
    _check_finite(hist, 1, work)
    head.load_weights(work / "stage1.kept.weights.h5")  # the head's layers are the model's


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
    fit = FitInputs(
        train=make_dataset(data.train, data.num_classes, cfg, training=True, augment=cfg.augment, mixup=cfg.mixup),
        val=make_dataset(data.monitored, data.num_classes, cfg, training=False),
        xla=xla,
        callbacks=list(extra_callbacks or []),
    )
    timings: dict[str, float] = {}
    if not (work / "stage1.keras").exists():
        timings["stage1_s"] = run_stage1(model, cfg, data, work, strategy, fit)
    stage1 = load_model(work / "stage1.keras")
    with strategy.scope():  # a fresh object: Keras keeps a resumed fit's start epoch on the model it restored
        model = load_model(work / "stage1.keras")
    if not (work / "stage2.keras").exists():
        timings["stage2_s"] = run_stage2(model, cfg, data, work, strategy, fit)
    models = {"stage1": stage1, "stage2": load_model(work / "stage2.keras")}
    if cfg.polish_epochs > 0:
        if not (work / "stage3.keras").exists():
            with strategy.scope():
                model = load_model(work / "stage2.keras")
            timings["stage3_s"] = run_stage3(model, cfg, data, work, strategy, fit)
        models["stage3"] = load_model(work / "stage3.keras")
    return models, data, timings


@dataclass
class FitInputs:
    """What both stages' `fit` calls share: the two pipelines, XLA on or off, and the caller's callbacks."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    xla: bool
    callbacks: list


def run_stage1(
    model: keras.Model, cfg: TrainConfig, data: FoodData, work: Path, strategy: tf.distribute.Strategy, fit: FitInputs
) -> float:
    """Stage 1: frozen backbone, head only; saves `stage1.keras` and returns the seconds it took."""
    t0 = time.perf_counter()
    if cfg.weights.lower() == "none":
        log.info("random weights: BatchNorm statistics set from a batch of training images")
        calibrate_batchnorm(model, next(iter(fit.train))[0])  # one batch: an eager pass is memory-hungry
    with strategy.scope():
        freeze_backbone(model, cfg.backbone)
        if cfg.stage1_epochs > 0 and cfg.cache_features:
            if cfg.augment:
                log.info(
                    "stage 1 trains on cached, un-augmented features; augmentation starts in stage 2 "
                    "(--no-cache-features augments stage 1 too, at the cost of a backbone pass per epoch)"
                )
            stage1_on_features(model, data, cfg, work, fit.xla, fit.callbacks)
        elif cfg.stage1_epochs > 0:
            compile_model(model, cfg.stage1_lr, 0.0, fit.xla, cfg.ema_momentum, cfg.clipnorm)
            hist = model.fit(
                fit.train,
                validation_data=fit.val,
                epochs=cfg.stage1_epochs,
                callbacks=_callbacks(work, 1, read_history(work), cfg) + fit.callbacks,
            )
            _check_finite(hist, 1, work)
            model.load_weights(work / "stage1.kept.weights.h5")
    save_model(model, work / "stage1.keras")
    return time.perf_counter() - t0


def run_stage2(
    model: keras.Model, cfg: TrainConfig, data: FoodData, work: Path, strategy: tf.distribute.Strategy, fit: FitInputs
) -> float:
    """Stage 2: whole blocks unfrozen, BatchNormalization frozen, lower learning rate; saves `stage2.keras`."""
    t0 = time.perf_counter()
    with strategy.scope():
        blocks = unfreeze_for_stage2(model, cfg.backbone, cfg.unfreeze_blocks)
        log.info("stage 2 unfreezes %d blocks: %s … %s", len(blocks), blocks[0], blocks[-1])
        steps = math.ceil(len(data.train) / cfg.batch_size)
        compile_model(
            model, stage2_learning_rate(cfg, steps), cfg.label_smoothing, fit.xla, cfg.ema_momentum, cfg.clipnorm
        )
        hist = model.fit(
            fit.train,
            validation_data=fit.val,
            initial_epoch=cfg.stage1_epochs,
            epochs=cfg.stage1_epochs + cfg.stage2_epochs,
            callbacks=_callbacks(work, 2, read_history(work), cfg) + fit.callbacks,
        )
    if cfg.stage2_epochs > 0:
        _check_finite(hist, 2, work)
        model.load_weights(work / "stage2.kept.weights.h5")
    save_model(model, work / "stage2.keras")
    return time.perf_counter() - t0


def run_stage3(
    stage2: keras.Model, cfg: TrainConfig, data: FoodData, work: Path, strategy: tf.distribute.Strategy, fit: FitInputs
) -> float:
    """Polish: the stage-2 model at --polish-size for --polish-epochs more epochs, the same blocks unfrozen and
    BatchNorm frozen, at its own constant rate; saves `stage3.keras`. Its pipelines are made at the new size."""
    t0 = time.perf_counter()
    size = cfg.final_size
    at = dataclasses.replace(cfg, image_size=size)
    train_ds = make_dataset(data.train, data.num_classes, at, training=True, augment=cfg.augment, mixup=cfg.mixup)
    val_ds = make_dataset(data.monitored, data.num_classes, at, training=False)
    start = cfg.stage1_epochs + cfg.stage2_epochs
    with strategy.scope():
        model = at_size(stage2, size)
        unfreeze_for_stage2(model, cfg.backbone, cfg.unfreeze_blocks)
        log.info("stage 3 (polish): %d epochs at %d px, learning rate %g", cfg.polish_epochs, size,
                 polish_learning_rate(cfg))  # fmt: skip
        compile_model(model, polish_learning_rate(cfg), cfg.label_smoothing, fit.xla, cfg.ema_momentum, cfg.clipnorm)
        hist = model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=start,
            epochs=start + cfg.polish_epochs,
            callbacks=_callbacks(work, 3, read_history(work), cfg) + fit.callbacks,
        )
    _check_finite(hist, 3, work)
    model.load_weights(work / "stage3.kept.weights.h5")
    save_model(model, work / "stage3.keras")
    return time.perf_counter() - t0


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
