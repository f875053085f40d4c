"""Evaluation of a run's models on the test split, written into its bundle: everything the app shows, computed once.

`python -m food101_core.training.evaluate RUN [--data PATH]` re-evaluates an existing bundle (e.g. after moving the
data, or to add files a newer version writes) and rewrites it atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from ..bundle import BundleError, Results, load_bundle, write_bundle
from ..calibration import NOT_CALIBRATED, fit_report
from ..data_quality import DataQuality
from ..metrics import Evaluation, evaluate_probs
from .data import DataError, load_data
from .export import export_stage
from .feature_space import fit_embedding, reference_indices
from .model import load_stage_model
from .quality import analyse

if TYPE_CHECKING:
    import keras

    from ..config import TrainConfig
    from .data import FoodData, Split

THUMB_SIZE = 128


def at_model_size(model: keras.Model, cfg: TrainConfig) -> TrainConfig:
    """The settings with the image size the model takes: a polished stage is evaluated at its own, larger size."""
    return dataclasses.replace(cfg, image_size=int(model.input_shape[1]))


def predict(model: keras.Model, split: Split, num_classes: int, cfg: TrainConfig) -> np.ndarray:
    """Class probabilities for a split, in order; with `tta_flip`, averaged with the mirrored image."""
    from .data import make_dataset
    from .model import mirror_averaged

    ds = make_dataset(split, num_classes, at_model_size(model, cfg), training=False, with_labels=False)
    served = mirror_averaged(model) if cfg.tta_flip else model
    return served.predict(ds, verbose=1).astype(np.float32)


def predict_with_features(
    model: keras.Model, split: Split, num_classes: int, cfg: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and pooled features for a split in one pass (both averaged with the mirror under `tta_flip`)."""
    from .data import make_dataset
    from .model import mirror_averaged, with_features

    ds = make_dataset(split, num_classes, at_model_size(model, cfg), training=False, with_labels=False)
    served = mirror_averaged(with_features(model)) if cfg.tta_flip else with_features(model)
    probs, pooled = served.predict(ds, verbose=1)
    return probs.astype(np.float32), pooled.astype(np.float32)


def backbone_features(model: keras.Model, split: Split, num_classes: int, cfg: TrainConfig) -> np.ndarray:
    """Pooled features of a split in one plain pass (no mirror); the stage-1 model's are the frozen backbone's."""
    import keras

    from .data import make_dataset

    ds = make_dataset(split, num_classes, at_model_size(model, cfg), training=False, with_labels=False)
    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output, name="pooled")
    return pooled.predict(ds, verbose=1).astype(np.float32)


def thumbnail_jpeg(data: bytes, size: int = THUMB_SIZE, quality: int = 85) -> bytes:
    """A small JPEG (longer side <= size), upright and RGB, from any image PIL reads."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality, optimize=True)
        return out.getvalue()


def thumbnail_indices(evals: dict[str, Evaluation], labels: np.ndarray, per_class: int) -> list[int]:
    """Every image some stage gets wrong, and the first `per_class` that the last stage gets right."""
    wrong = set()
    for ev in evals.values():
        wrong |= set(np.flatnonzero(~ev.predictions["correct"].to_numpy()).tolist())
    last = list(evals.values())[-1].predictions["correct"].to_numpy()
    right = []
    for c in np.unique(labels):
        right += np.flatnonzero((labels == c) & last)[:per_class].tolist()
    return sorted(wrong | set(right))


def make_thumbnails(split: Split, indices: list[int], size: int = THUMB_SIZE, quality: int = 85) -> dict[int, bytes]:
    """Thumbnails of a split's images at `indices`, read from files or from the TFDS split."""
    from tqdm.auto import tqdm

    wanted = set(indices)
    out: dict[int, bytes] = {}
    if split.paths is not None:
        source = ((i, Path(split.paths[i]).read_bytes()) for i in sorted(wanted))
    else:
        source = ((i, b) for i, b in enumerate(split.encoded().as_numpy_iterator()) if i in wanted)
    for i, data in tqdm(source, total=len(wanted), desc="thumbnails", leave=False):
        try:
            out[i] = thumbnail_jpeg(data, size, quality)
        except Exception as e:  # one bad image must not lose the bundle
            logging.getLogger(__name__).warning("no thumbnail for test image %d: %s", i, e)
    return out


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


def evaluate_models(models: dict[str, keras.Model], data: FoodData, cfg: TrainConfig, run: Results,
                    feature_cache: Path | None = None) -> Results:  # fmt: skip
    """Evaluate every stage's model on the test split and fill `run` (which holds the training's part: config,
    history, model files) with all the app shows: metrics, thumbnails, ONNX models, the feature space and the
    data-quality analysis (`feature_cache`: the training run's folder, whose stage-1 features are reused)."""
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
    idx = thumbnail_indices(run.evals, data.test.labels, cfg.thumbs_correct_per_class)
    run.thumbs = make_thumbnails(data.test, idx)
    if cfg.onnx:
        t0 = time.perf_counter()
        add_onnx_models(run, models)
        timings["export_s"] = time.perf_counter() - t0
    if cfg.reference_per_class > 0:
        t0 = time.perf_counter()
        add_feature_space(run, models, pooled, data, cfg)
        timings["embedding_s"] = time.perf_counter() - t0
    if cfg.suspect_thumbs > 0 and "stage1" in models:
        t0 = time.perf_counter()
        plain_test = None if cfg.tta_flip else pooled["stage1"]  # without the mirror, evaluation's pass is it
        run.quality = data_quality(models["stage1"], data, cfg, feature_cache, plain_test)
        timings["data_quality_s"] = time.perf_counter() - t0
    return run


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


def frozen_features(model: keras.Model, split: Split, data: FoodData, cfg: TrainConfig, cached: Path | None):
    """The frozen backbone's pooled features of a split: stage 1's cache when it has one row per image."""
    if cached is not None and cached.is_file():
        features = np.load(cached)
        if len(features) == len(split):
            return features
    return backbone_features(model, split, data.num_classes, cfg)


def data_quality(
    stage1: keras.Model, data: FoodData, cfg: TrainConfig, cache: Path | None, test: np.ndarray | None = None
) -> DataQuality:
    """Suspected label errors of the training split and near-duplicate pairs, with the thumbnails the app shows.

    The stage-1 model's backbone is the frozen ImageNet one, so its features are those stage 1 cached (`cache /
    features_train.npy`; with no validation split, `features_val.npy` holds the test split's). `test`: the test
    split's plain (not mirror-averaged) stage-1 features, when evaluation has them already.
    """
    cache = Path(cache) if cache else None
    train = frozen_features(stage1, data.train, data, cfg, cache and cache / "features_train.npy")
    if test is None:
        test_cache = cache / "features_val.npy" if cache and data.val is None else None
        test = frozen_features(stage1, data.test, data, cfg, test_cache)
    dq = analyse((train, data.train.labels, data.train.ids), (test, data.test.ids), data.class_ids, cfg.quality_folds,
                 cfg.seed)  # fmt: skip
    wanted = {"train": set(dq.suspects["index"][: cfg.suspect_thumbs]), "test": set()}
    for row in dq.duplicates.itertuples():
        wanted[row.a_split].add(row.a_index)
        wanted[row.b_split].add(row.b_index)
    for name, split in (("train", data.train), ("test", data.test)):
        thumbs = make_thumbnails(split, sorted(int(i) for i in wanted[name]))
        dq.thumbs.update({(name, i): jpeg for i, jpeg in thumbs.items()})
    s = dq.summary
    print(f"data quality: {s['suspects']} suspect labels of {s['n_train']}, duplicates {s['duplicates']}")
    return dq


def add_feature_space(
    run: Results, models: dict[str, keras.Model], pooled: dict[str, np.ndarray], data: FoodData, cfg: TrainConfig
) -> None:
    """The reference training photos (features and thumbnails) and the final stage's embedding of the test set."""
    keep = reference_indices(data.train.labels, cfg.reference_per_class, cfg.seed)
    ref = data.train.subset(keep)
    run.reference = pd.DataFrame({"id": ref.ids, "label": ref.labels})
    # 96 px at quality 80: about 4 KB a photo, so 20 a class stay within the 15 MB that Food-101's bundle may grow
    run.reference_thumbs = make_thumbnails(ref, list(range(len(ref))), size=96, quality=80)
    last = list(models)[-1]  # the shipped model's; both stages' would double the bundle's growth (docs/benchmarks.md)
    _, ref_pooled = predict_with_features(models[last], ref, data.num_classes, cfg)
    run.embeddings[last] = fit_embedding(pooled[last], ref_pooled, ref.labels, seed=cfg.seed)


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

    Evaluation time (and, within it, each analysis's) is added to the timings, so a bundle says what each phase
    cost.
    """
    t0 = time.perf_counter()
    config = {"train": cfg.to_dict(), "data": data.source, "versions": library_versions(), "timings": dict(timings)}
    run = Results(config, data.class_ids, data.class_names, data.test.ids, data.test.labels, history, model_files)
    try:
        evaluate_models(models, data, cfg, run, feature_cache)
        run.config["timings"]["evaluate_s"] = time.perf_counter() - t0
        write_bundle(dest, run, overwrite=overwrite)
    finally:
        for folder in {f.parent for f in run.onnx_files.values()}:  # add_onnx_models' one temporary folder
            shutil.rmtree(folder, ignore_errors=True)
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
