"""Evaluation of the food101-mini test split (1,250 photos) through the project's pipeline (read, decode,
resize, batch, prefetch) against the bare model on the same images already in memory. Target: >= 90 %.

    python bench/eval_throughput.py
"""

from __future__ import annotations

import numpy as np
from common import BACKBONES, config, interleaved, median


def main() -> None:
    import keras

    from food101_core.data import load_data, make_dataset
    from food101_core.evaluate import predict
    from food101_core.model import build_model

    print("| backbone | pipeline (img/s) | in memory (img/s) | ratio |")
    print("| --- | --- | --- | --- |")
    for backbone in BACKBONES:
        cfg = config(backbone, cache="none")  # evaluation reads every photo once: nothing to cache
        data = load_data(cfg)
        model = build_model(cfg, data.num_classes)
        x = np.concatenate(list(make_dataset(data.test, 10, cfg, training=False, with_labels=False)))
        n = len(x)

        def pipeline():
            predict(model, data.test, data.num_classes, cfg)

        def memory():
            model.predict(x, batch_size=cfg.batch_size, verbose=0)

        interleaved(pipeline, memory, 1)  # warm up (tracing)
        ta, tb = interleaved(pipeline, memory, 3)
        a, b = n / median(ta), n / median(tb)
        print(f"| {backbone} | {a:.0f} | {b:.0f} | {a / b:.0%} |")
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
