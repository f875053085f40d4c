"""Stage-2 training throughput (whole backbone unfrozen, BatchNorm frozen) with the real input pipeline against
the same batches already in memory. Target: >= 90 %. Epoch 1 of the pipeline decodes and caches; later epochs
read the cache, which is the steady state of a run.

    python bench/train_throughput.py

Each epoch is timed from Keras's `on_epoch_begin` to `on_epoch_end`, not as a whole `fit` call: tearing down an
autotuned tf.data iterator at the end of `fit` sometimes waits for tf.data's autotuner (about 4.5 s here, ending
10.2 s after the call began), once per call and so once per stage in a real run, and never with autotuning off.
Timing one-epoch `fit` calls made this machine look as if it ran at two speeds.
"""

from __future__ import annotations

import numpy as np
from common import BACKBONES, config, loop_seconds, median


def main() -> None:
    import keras
    import tensorflow as tf

    from food101_core.training.data import load_data, make_dataset
    from food101_core.training.fit import compile_model
    from food101_core.training.model import build_model, unfreeze_for_stage2

    print("| backbone | pipeline, 1st epoch (img/s) | pipeline, cached (img/s) | in memory (img/s) | cached / memory |")
    print("| --- | --- | --- | --- | --- |")
    for backbone in BACKBONES:
        cfg = config(backbone, train_fraction=0.1)  # 325 photos: 11 steps of 32
        data = load_data(cfg)
        model = build_model(cfg, data.num_classes)
        unfreeze_for_stage2(model, backbone)
        compile_model(model, 1e-5, 0.0, xla=False)
        n = len(data.train)
        ds = make_dataset(data.train, data.num_classes, cfg, training=True)
        x = np.concatenate([b[0] for b in make_dataset(data.train, 10, cfg, training=False)])
        y = tf.one_hot(data.train.labels, data.num_classes).numpy()
        mem = tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg.batch_size).prefetch(2)
        model.fit(mem.take(2), epochs=1, verbose=0)  # trace once
        first = loop_seconds(model.fit, ds, epochs=1)
        cached, memory = [], []
        for _ in range(6):  # interleaved pairs, so that both see the same machine
            cached.append(loop_seconds(model.fit, ds, epochs=1))
            memory.append(loop_seconds(model.fit, mem, epochs=1))
        c, m = n / median(cached), n / median(memory)
        paired = median([tm / tc for tc, tm in zip(cached, memory)])
        best = min(memory) / min(cached)  # each at its fastest epoch
        print(f"| {backbone} | {n / first:.1f} | {c:.1f} | {m:.1f} | {paired:.0%} (fastest epochs: {best:.0%}) |")
        print(f"<!-- {backbone} img/s per pair (pipeline, memory): ", end="")
        print(", ".join(f"({n / tc:.0f}, {n / tm:.0f})" for tc, tm in zip(cached, memory)), "-->")
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
