"""Single-photo prediction through the app's path (read file, decode, resize, ONNX model, features) against the
bare ONNX Runtime forward pass on a ready tensor. Target: overhead <= 15 %.

    python bench/predict_overhead.py
"""

from __future__ import annotations

import numpy as np
from common import BACKBONES, DEMO_BUNDLE, MINI, config, interleaved, median


def overhead(label: str, predictor, photos: list) -> None:
    """The app's predict (read, decode, resize, mirror if the bundle has it, model) against the bare forward pass
    of the same batch (one photo, or photo and mirror) ready in memory; medians of interleaved runs."""
    from food101_core.serving.images import read_image

    ready = predictor.preprocess(read_image(photos[0]))
    if predictor.tta_flip:
        ready = np.concatenate([ready, ready[:, :, ::-1, :]])
    it = iter(photos * 100)

    def app():
        predictor.predict(predictor.read(next(it)))  # what the app's predict event runs

    def bare():
        predictor.forward(ready)

    interleaved(app, bare, 5)  # warm up
    ta, tb = interleaved(app, bare, 40)
    a, b = median(ta) * 1000, median(tb) * 1000
    print(f"| {label} | {a:.1f} | {b:.1f} | {100 * (a / b - 1):+.1f} % |")


def main() -> None:
    import tempfile
    from pathlib import Path

    import keras

    from food101_core.bundle import load_bundle
    from food101_core.serving.predictor import Predictor
    from food101_core.training.export import export_stage
    from food101_core.training.model import build_model

    work = Path(tempfile.mkdtemp(prefix="food101-overhead-"))

    photos = sorted((MINI / "images").glob("*/*.jpg"))[:50]
    print("| model | app predict (ms) | bare forward (ms) | overhead |")
    print("| --- | --- | --- | --- |")
    for backbone in BACKBONES:
        cfg = config(backbone)
        names = [f"c{i}" for i in range(10)]
        exported = export_stage(build_model(cfg, 10), work, backbone)  # as evaluation exports a stage
        overhead(f"{backbone}, {cfg.image_size} px", Predictor(exported.onnx, names, names, head=exported.head), photos)
        keras.backend.clear_session()
    demo = Predictor.from_bundle(load_bundle(DEMO_BUNDLE))  # as the app serves it: its size, and the mirror
    overhead(f"the demo bundle as served ({demo.size} px, photo and mirror)", demo, photos)
    print("(medians of 40 interleaved runs; photos: food101-mini JPEGs, longer side 256 px)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
