"""Single-photo prediction through the app's path (read file, decode, resize, model) against the bare model's
forward pass on a ready tensor. Target: overhead <= 15 %.

    python bench/predict_overhead.py
"""

from __future__ import annotations

import numpy as np
from common import BACKBONES, MINI, config, interleaved, median


def main() -> None:
    import keras

    from food101_core.inference import Predictor, read_image
    from food101_core.model import build_model

    photos = sorted((MINI / "images").glob("*/*.jpg"))[:50]
    print("| backbone | app predict (ms) | bare forward (ms) | overhead |")
    print("| --- | --- | --- | --- |")
    for backbone in BACKBONES:
        cfg = config(backbone)
        model = build_model(cfg, 10)
        names = [f"c{i}" for i in range(10)]
        predictor = Predictor(model, names, names)
        ready = predictor.preprocess(read_image(photos[0]))
        it = iter(photos * 100)

        def app():
            predictor.predict(read_image(next(it), decode_hint=2 * cfg.image_size))

        def bare():
            predictor.forward(ready)

        interleaved(app, bare, 5)  # warm up
        ta, tb = interleaved(app, bare, 40)
        a, b = median(ta) * 1000, median(tb) * 1000
        print(f"| {backbone} | {a:.1f} | {b:.1f} | {100 * (a / b - 1):+.1f} % |")
        keras.backend.clear_session()
    print("(medians of 40 interleaved runs; photos: food101-mini test JPEGs, 256 px)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
