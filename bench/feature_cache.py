"""Stage 1 at the reference 15 epochs, on cached pooled features against through the frozen backbone every
epoch: time and test accuracy, on 30 % of food101-mini's training photos and its whole test split.

    python bench/feature_cache.py
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from common import BACKBONES, config


def main() -> None:
    import keras

    from food101_core.training.data import load_data
    from food101_core.training.fit import train
    from food101_core.training.predictions import predict

    print("| backbone | weights | cached: time, top-1 | uncached: time, top-1 | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for backbone, weights in BACKBONES.items():
        row = {}
        for cached in (True, False):
            cfg = config(
                backbone, train_fraction=0.3, val_fraction=0.1, stage1_epochs=15, stage2_epochs=0, cache_features=cached
            )
            work = Path(f"/tmp/food101-bench/cache-{backbone}-{cached}")
            shutil.rmtree(work, ignore_errors=True)
            data = load_data(cfg)
            t0 = time.perf_counter()
            models, _, _ = train(cfg, work, data=data)
            seconds = time.perf_counter() - t0
            probs = predict(models["stage1"], data.test, data.num_classes, cfg)
            row[cached] = (seconds, float((probs.argmax(1) == data.test.labels).mean()))
            keras.backend.clear_session()
        (tc, ac), (tu, au) = row[True], row[False]
        label = "ImageNet" if weights != "none" else "random"
        print(f"| {backbone} | {label} | {tc:.0f} s, {ac:.1%} | {tu:.0f} s, {au:.1%} | {tu / tc:.1f}× |")
    print("(time: the whole stage 1 including model building and the one feature pass; 15 epochs each)")
    np.random.seed(0)


if __name__ == "__main__":
    main()
