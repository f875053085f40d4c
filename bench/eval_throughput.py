"""Evaluation of the food101-mini test split (1,250 photos) through the project's pipeline (read, decode,
resize, batch, prefetch) against the bare model on the same images already in memory. Target: >= 90 %.

    python bench/eval_throughput.py

Each prediction loop is timed from its first batch to its last (`common.loop_seconds`).
"""

from __future__ import annotations

import time

import numpy as np
from common import BACKBONES, DEMO_BUNDLE, MINI, config, loop_seconds, median


def measure(label: str, cfg, model=None) -> None:
    """One table row: `model` (default: a new one of `cfg`) on the test split through the pipeline, and on the
    same images held in memory."""
    from food101_core.training.data import load_data, make_dataset
    from food101_core.training.model import build_model

    data = load_data(cfg)
    model = model or build_model(cfg, data.num_classes)

    def batches():  # the pipeline: read, decode, resize, batch, prefetch
        return make_dataset(data.test, data.num_classes, cfg, training=False, with_labels=False)

    x = np.concatenate(list(batches()))
    n = len(x)

    def pipeline() -> float:  # what evaluate.predict runs
        return loop_seconds(model.predict, batches())

    def memory() -> float:
        return loop_seconds(model.predict, x, batch_size=cfg.batch_size)

    def decoding() -> float:  # the pipeline with no model
        t0 = time.perf_counter()
        for _ in batches():
            pass
        return time.perf_counter() - t0

    pipeline(), memory()  # warm up (tracing)
    ta, tb, td = [], [], []
    for _ in range(3):  # interleaved, so that all see the same machine
        ta.append(pipeline())
        tb.append(memory())
        td.append(decoding())
    a, b = n / median(ta), n / median(tb)
    # With both cores busy in the model, decoding cannot overlap it: its time adds to the model's.
    additive = median(tb) / (median(tb) + median(td))
    print(f"| {label} | {a:.0f} | {b:.0f} | {a / b:.0%} | {n / median(td):.0f} | {additive:.0%} |")


def main() -> None:
    import keras

    from food101_core.bundle import load_bundle
    from food101_core.config import TrainConfig
    from food101_core.training.model import load_stage_model, mirror_averaged

    print("| model | pipeline (img/s) | in memory (img/s) | ratio | decoding alone (img/s) | if decoding adds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for backbone in BACKBONES:
        cfg = config(backbone, cache="none")  # evaluation reads every photo once: nothing to cache
        measure(f"{backbone}, {cfg.image_size} px", cfg)
        keras.backend.clear_session()
    demo = load_bundle(DEMO_BUNDLE)  # as its evaluation ran: its size, each photo with its mirror
    cfg = TrainConfig.from_dict({**demo.config["train"], "data": str(MINI), "cache": "none"})
    measure(
        f"the demo bundle as evaluated ({cfg.image_size} px, photo and mirror)",
        cfg,
        mirror_averaged(load_stage_model(demo)),
    )


if __name__ == "__main__":
    main()
