"""Evaluation of a run's models on the test split, written into its bundle: what the app shows, computed once (the
feature space and the data-quality analysis are a step of their own: `analyses.py`).

`python -m food101_core.training.evaluate RUN [--data PATH]` re-evaluates an existing bundle (e.g. after moving the
data, or to add files a newer version writes) and rewrites it atomically.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..bundle import BundleError, Results, load_bundle, write_bundle
from ..calibration import NOT_CALIBRATED, fit_report
from ..metrics import Evaluation, evaluate_probs
from .analyses import add_analyses
from .data import DataError, load_data
from .export import export_stage
from .failures import split_properties, stage_slices
from .model import load_stage_model
from .predictions import predict, predict_with_features
from .thumbnails import make_thumbnails, thumbnail_indices

if TYPE_CHECKING:
    import keras

    from ..config import TrainConfig
    from .data import FoodData


def library_versions() -> dict:
    import keras
    import sklearn
    import tensorflow as tf

    from .. import __version__

    return {
        "python": platform.python_version(),
        "food101_core": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
    }


def evaluate_models(
    models: dict[str, keras.Model], data: FoodData, cfg: TrainConfig, run: Results
) -> dict[str, np.ndarray]:
    """Evaluate every stage's model on the test split and fill `run` (which holds the training's part: config,
    history, model files) with what the app shows of it: metrics, thumbnails, ONNX models. Returns each stage's
    pooled test features (the analyses reuse the shipped stage's)."""
    pooled, timings = {}, run.config.setdefault("timings", {})
    for stage, model in models.items():
        probs, pooled[stage] = predict_with_features(model, data.test, data.num_classes, cfg)
        calibrated = fit_calibration(model, data, cfg)
        run.evals[stage] = evaluate_probs(probs, data.test.labels, data.test.ids, data.class_ids, calibrated)
        m = run.evals[stage].metrics
        print(
            f"{stage}: top-1 {m['top1']:.2%}  top-5 {m['top5']:.2%}  ECE {m['ece']:.3f} (raw {m['ece_raw']:.3f}, "
            f"T {calibrated['temperature']:.3f})  low-confidence {m['warning_rate']:.1%} (raw "
            f"{m['warning_rate_raw']:.1%})  (n={m['n']})"
        )
    idx, first = thumbnail_indices(run.evals, cfg.mistake_thumbs_per_class, cfg.thumbs_correct_per_class)
    run.photos = {("test", data.test.ids[i]): jpeg for i, jpeg in make_thumbnails(data.test, idx).items()}
    run.first_photos = {("test", data.test.ids[i]) for i in first}
    add_slices(run, data, timings)
    if cfg.onnx:
        t0 = time.perf_counter()
        add_onnx_models(run, models)
        timings["export_s"] = time.perf_counter() - t0
    return pooled


def add_slices(run: Results, data: FoodData, timings: dict) -> None:
    """Every test photo's readable properties, and the shipped stage's failure slices over them (the analyses add
    the unfamiliar score and the map region, and find the slices again)."""
    t0 = time.perf_counter()
    run.properties = split_properties(data.test, data.class_ids)
    timings["properties_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    last = list(run.evals)[-1]
    run.slices[last] = stage_slices(run.properties, run.evals[last])
    timings["slices_s"] = time.perf_counter() - t0
    found = run.slices[last]
    print(f"{last}: {len(found)} failure slices" + (f", first: {found['name'].iloc[0]}" if len(found) else ""))


def add_onnx_models(run: Results, models: dict[str, keras.Model]) -> None:
    """Each stage exported for the TensorFlow-free app: its ONNX graph and its folded head."""
    folder = Path(tempfile.mkdtemp(prefix="food101-onnx-"))  # removed by `evaluate_and_write` once written
    for stage, model in models.items():
        exported = export_stage(model, folder, stage)
        run.onnx_files[stage] = exported.onnx
        if exported.head is not None:
            run.heads[stage] = exported.head


def fit_calibration(model: keras.Model, data: FoodData, cfg: TrainConfig) -> dict:
    """The temperature fitted on the held-out photos (validation split, or the calibration hold-out), predicted
    exactly as the test split is (`tta_flip`); none without held-out photos (`NOT_CALIBRATED`)."""
    split = data.calibration
    if split is None or len(split) == 0:
        return dict(NOT_CALIBRATED)
    probs = predict(model, split, data.num_classes, cfg)
    return fit_report(probs, split.labels, "validation split" if data.val is not None else "calibration hold-out")


def evaluate_and_write(
    dest: Path,
    *,
    cfg: TrainConfig,
    data: FoodData,
    models: dict[str, keras.Model],
    model_files: dict[str, Path],
    history: pd.DataFrame,
    timings: dict,
    overwrite: bool,
    feature_cache: Path | None = None,
) -> dict[str, Evaluation]:
    """The one "evaluate and write the bundle" step of both training and re-evaluation.

    Evaluation time (and each analysis's, with `analyses`) is added to the timings, so a bundle says what each
    phase cost.
    """
    t0 = time.perf_counter()
    config = {"train": cfg.to_dict(), "data": data.source, "versions": library_versions(), "timings": dict(timings)}
    run = Results(config, data.class_ids, data.class_names, data.test.ids, data.test.labels, history, model_files)
    try:
        pooled = evaluate_models(models, data, cfg, run)
        run.config["timings"]["evaluate_s"] = time.perf_counter() - t0
        write_bundle(dest, run, overwrite=overwrite)
    finally:
        for folder in {f.parent for f in run.onnx_files.values()}:  # add_onnx_models' one temporary folder
            shutil.rmtree(folder, ignore_errors=True)
    if cfg.analyses:  # a step of its own, on the written bundle: a crash in it loses no evaluation
        add_analyses(dest, models, data, cfg, feature_cache, pooled)
    return run.evals


def reevaluate(ref: str, data_path: str | None = None, out: str | None = None) -> Path:
    """Evaluate a bundle's models again on its test split and rewrite it (in place, or at `out`)."""
    bundle = load_bundle(ref)
    cfg = bundle.train_config
    if data_path:
        cfg.data = data_path
    data = load_data(cfg)
    if data.test.ids != bundle.test_ids:
        raise DataError(
            f"{cfg.data}: its test split is not the one this bundle was evaluated on "
            f"({len(data.test.ids)} vs {len(bundle.test_ids)} images, or other ids)"
        )
    dest = Path(out) if out else bundle.path
    if bundle.has_feature_space or bundle.has_data_quality:  # rewritten whole: the analyses it had are redone
        cfg.analyses = True
    evaluate_and_write(
        dest,
        cfg=cfg,
        data=data,
        models={stage: load_stage_model(bundle, stage) for stage in bundle.stages},
        model_files={s: bundle.path / f"models/{s}.keras" for s in bundle.stages},
        history=bundle.history,
        timings=bundle.config.get("timings", {}),
        overwrite=True,
    )
    return dest


def main(argv: list[str] | None = None) -> int:
    """Re-evaluate an existing bundle's models on its test split and rewrite the bundle atomically."""
    ap = argparse.ArgumentParser(prog="python -m food101_core.training.evaluate", description=main.__doc__)
    ap.add_argument("run", help="bundle folder or Hugging Face Hub repo id")
    ap.add_argument("--data", help="where the data set is now (default: where it was at training)")
    ap.add_argument("--out", help="write the re-evaluated bundle here (default: in place)")
    args = ap.parse_args(argv)
    try:
        dest = reevaluate(args.run, args.data, args.out)
    except (BundleError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"re-evaluated bundle written to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
