"""Shared set-up for the benchmarks: the two backbones measured, food101-mini, timing helpers."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MINI = ROOT.parent / "shared" / "data" / "food101-mini"
DEMO_BUNDLE = ROOT / "assets" / "demo-bundle"
MOBILENET_WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_075_imagenet_notop.weights.h5"
# EfficientNetB0 with random weights (speed does not depend on them); the demo's MobileNet with its real ones.
BACKBONES = {"efficientnetb0": "none", "mobilenet": str(MOBILENET_WEIGHTS) if MOBILENET_WEIGHTS.exists() else "none"}


def config(backbone: str, **overrides):
    from food101_core.config import TrainConfig

    if not MINI.is_dir():
        sys.exit(f"the benchmarks need {MINI}")
    settings = dict(
        data=str(MINI),
        backbone=backbone,
        weights=BACKBONES[backbone],
        val_fraction=0.0,
        batch_size=32,
        out="/tmp/food101-bench",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def interleaved(a, b, rounds: int) -> tuple[list[float], list[float]]:
    """Time two functions alternately, so that both see the same machine load."""
    ta, tb = [], []
    for _ in range(rounds):
        ta += timed(a, 1)
        tb += timed(b, 1)
    return ta, tb


def loop_seconds(run, inputs, **kwargs) -> float:
    """Seconds of the one loop of `run` (`model.fit` for one epoch, or `model.predict`), from first step to last.

    What `fit` and `predict` do after the loop is left out: returning sometimes waits about 4.5 s for tf.data's
    autotuner, once per call, which timing whole calls mistakes for a slow machine (README, Benchmarks).
    """
    import keras

    class LoopTimer(keras.callbacks.Callback):
        def _begin(self, *args):
            self.t0 = time.perf_counter()

        def _end(self, *args):
            self.seconds = time.perf_counter() - self.t0

        on_epoch_begin = on_predict_begin = _begin
        on_epoch_end = on_predict_end = _end

    timer = LoopTimer()
    run(inputs, verbose=0, callbacks=[timer], **kwargs)
    return timer.seconds
