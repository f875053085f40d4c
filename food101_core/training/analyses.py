"""The analyses a bundle may carry beyond its evaluation: the feature space (the map, similar training photos, the
unfamiliar-photo warning) and the data-quality analysis (suspect labels, near-duplicates).

train.py runs them by default right after the bundle is written, reusing the evaluation's test features and stage
1's cached training features (`--no-analyses` leaves them out; their cost: docs/benchmarks.md), and

    python -m food101_core.training.analyses RUN [--data PATH] [--only map|quality]

adds them to any bundle later, in place (each file renamed into place, bundle.json rewritten last: a crash leaves
the bundle as it was). The app opens without them and says how to add them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..bundle import BundleError, add_files, encode_embedding, load_bundle, photo_files, quality_files, slice_files
from ..data_quality import DataQuality
from .data import DataError, load_data
from .failures import CHECKS, QualityData, add_model_columns, image_checks, stage_slices
from .feature_space import fit_embedding, reference_indices
from .model import load_stage_model
from .quality import analyse
from .thumbnails import make_thumbnails

if TYPE_CHECKING:
    import keras

    from ..config import TrainConfig
    from .data import FoodData, Split

KINDS = ("map", "quality")


def add_analyses(dest: Path, models: dict[str, keras.Model], data: FoodData, cfg: TrainConfig,
                 feature_cache: Path | None = None, pooled: dict[str, np.ndarray] | None = None,
                 kinds: tuple[str, ...] = KINDS) -> dict[str, float]:  # fmt: skip
    """Compute the chosen analyses and add their files and photos to the bundle at `dest`; returns their seconds.

    `pooled`: each stage's test features when the evaluation has them already (the shipped stage's for the map;
    stage 1's, when not mirror-averaged, are the frozen backbone's the data-quality analysis needs), else one more
    pass each; `feature_cache`: the training run's folder, whose stage-1 features the data-quality analysis reuses.
    The data-quality analysis runs in a process of its own while this one makes the map: each is mostly one core's
    work (UMAP is seeded, so single-threaded), and the machine has two or more.
    """
    pooled = pooled or {}
    files: dict[str, bytes] = {}
    photos: dict[tuple[str, str], bytes] = {}
    timings: dict[str, float] = {}
    first: set[tuple[str, str]] = set()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        job = None
        if "quality" in kinds and cfg.suspect_thumbs > 0 and "stage1" in models:
            print("analyses: data quality (suspect labels, near-duplicates, image checks), beside the map")
            plain_test = None if cfg.tta_flip else pooled.get("stage1")  # without the mirror, evaluation's pass
            train, test = quality_inputs(models["stage1"], data, cfg, feature_cache, plain_test)
            job = pool.submit(quality_job, train, test, QualityData.of(data), cfg.quality_folds, cfg.seed)
        if "map" in kinds and cfg.reference_per_class > 0:
            last = list(models)[-1]  # the shipped model's: both stages' would double the bundle's growth
            print(f"analyses: the feature space of {last} (map, reference photos, unfamiliar-photo threshold)")
            reference, ref_photos, emb = feature_space(models[last], data, cfg, pooled.get(last))
            files[f"{last}/embedding.npz"] = encode_embedding(emb)
            files["reference.csv"] = reference.rename_axis("index").to_csv().encode()
            photos.update(ref_photos)
            first = {("train", i) for i in reference["id"]}
            files.update(slices_again(dest, emb, data, cfg, last))
            timings["embedding_s"] = time.perf_counter() - t0
        if job is not None:
            dq = job.result()
            photos.update({k: v for k, v in quality_photos(dq, data, cfg).items() if k not in photos})
            files.update(quality_files(dq))
            timings["data_quality_s"] = time.perf_counter() - t0  # from the same start: the two overlap
    files.update(photo_files(dest, photos, first))
    config = json.loads((dest / "config.json").read_text())
    config.setdefault("timings", {}).update(timings)
    files["config.json"] = json.dumps(config, indent=2).encode()
    add_files(dest, files)
    return timings


def feature_space(model: keras.Model, data: FoodData, cfg: TrainConfig, pooled_test: np.ndarray | None):
    """The reference training photos (table and thumbnails) and the shipped model's embedding of the test set."""
    from .predictions import predict_with_features

    keep = reference_indices(data.train.labels, cfg.reference_per_class, cfg.seed)
    ref = data.train.subset(keep)
    reference = pd.DataFrame({"id": ref.ids, "label": ref.labels})
    # 96 px at quality 80: about 4 KB a photo, so 20 a class stay within the 15 MB that Food-101's bundle may grow
    thumbs = make_thumbnails(ref, list(range(len(ref))), size=96, quality=80)
    photos = {("train", ref.ids[i]): jpeg for i, jpeg in thumbs.items()}
    if pooled_test is None:
        _, pooled_test = predict_with_features(model, data.test, data.num_classes, cfg)
    _, ref_pooled = predict_with_features(model, ref, data.num_classes, cfg)
    return reference, photos, fit_embedding(pooled_test, ref_pooled, ref.labels, seed=cfg.seed)


def slices_again(dest: Path, emb, data: FoodData, cfg: TrainConfig, stage: str) -> dict[str, bytes]:
    """properties.csv with the unfamiliar score and the map region added, and the stage's slices found again over
    them (nothing for a bundle evaluated before the slices existed: re-evaluate it)."""
    from ..bundle import Bundle

    b = Bundle(dest, verify=False)
    props = b.properties()
    if props is None:
        return {}
    props = add_model_columns(props.drop(columns=["unfamiliar", "region"], errors="ignore"), emb, data.class_names,
                              data.test.labels, cfg.seed)  # fmt: skip
    return slice_files(props, {stage: stage_slices(props, b.evaluation(stage))})


def backbone_features(model: keras.Model, split: Split, num_classes: int, cfg: TrainConfig) -> np.ndarray:
    """Pooled features of a split in one plain pass (no mirror); the stage-1 model's are the frozen backbone's."""
    import keras

    from .data import make_dataset
    from .predictions import at_model_size

    ds = make_dataset(split, num_classes, at_model_size(model, cfg), training=False, with_labels=False)
    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output, name="pooled")
    return pooled.predict(ds, verbose=1).astype(np.float32)


def frozen_features(model: keras.Model, split: Split, data: FoodData, cfg: TrainConfig, cached: Path | None):
    """The frozen backbone's pooled features of a split: stage 1's cache when it has one row per image."""
    if cached is not None and cached.is_file():
        features = np.load(cached)
        if len(features) == len(split):
            return features
    return backbone_features(model, split, data.num_classes, cfg)


def quality_inputs(
    stage1: keras.Model, data: FoodData, cfg: TrainConfig, cache: Path | None, test: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The frozen backbone's features of the training and test splits: what the data-quality analysis reads.

    The stage-1 model's backbone is the frozen ImageNet one, so its features are those stage 1 cached (`cache /
    features_train.npy`; with no validation split, `features_val.npy` holds the test split's). `test`: the test
    split's plain (not mirror-averaged) stage-1 features, when evaluation has them already.
    """
    cache = Path(cache) if cache else None
    train = frozen_features(stage1, data.train, data, cfg, cache and cache / "features_train.npy")
    if test is None:
        test_cache = cache / "features_val.npy" if cache and data.val is None else None
        test = frozen_features(stage1, data.test, data, cfg, test_cache)
    return train, test


def quality_job(train: np.ndarray, test: np.ndarray, data: QualityData, folds: int, seed: int) -> DataQuality:
    """Suspected label errors, near-duplicate pairs and the training photos' image checks: numpy, scikit-learn,
    cleanlab and Pillow only, so that it runs in a process of its own beside the map (`add_analyses`)."""
    dq = analyse((train, data.labels, data.ids), (test, data.test_ids), data.class_ids, folds, seed)
    dq.image_checks = image_checks(data.properties())
    dq.summary["image_checks"] = {c: int(dq.image_checks[c].sum()) for c in CHECKS}
    return dq


def quality_photos(dq: DataQuality, data: FoodData, cfg: TrainConfig) -> dict[tuple[str, str], bytes]:
    """The photos the app shows of the analysis: the `suspect_thumbs` most suspect and most flagged training photos,
    and both photos of the `pair_thumbs` closest pairs of each kind."""
    wanted = {"train": set(dq.suspects["index"][: cfg.suspect_thumbs]), "test": set()}
    pictured = dq.duplicates.groupby("kind", sort=False).head(cfg.pair_thumbs)  # the closest first within a kind
    for row in pictured.itertuples():
        wanted[row.a_split].add(row.a_index)
        wanted[row.b_split].add(row.b_index)
    dq.summary["pair_thumbs"] = int(cfg.pair_thumbs)
    wanted["train"] |= set(dq.image_checks["index"][: cfg.suspect_thumbs])  # pictures of the most flagged
    photos = {}
    for name, split in (("train", data.train), ("test", data.test)):
        thumbs = make_thumbnails(split, sorted(int(i) for i in wanted[name]))
        photos.update({(name, split.ids[i]): jpeg for i, jpeg in thumbs.items()})
    s = dq.summary
    print(f"data quality: {s['suspects']} suspect labels of {s['n_train']}, duplicates {s['duplicates']}")
    return photos


def run(ref: str, data_path: str | None = None, kinds: tuple[str, ...] = KINDS) -> dict[str, float]:
    """Add the analyses to an existing bundle (where its data set is at hand)."""
    bundle = load_bundle(ref)
    if bundle.remote:
        raise BundleError(f"{ref}: add the analyses to a local bundle folder (hf download, then publish again)")
    cfg = bundle.train_config
    if data_path:
        cfg.data = data_path
    data = load_data(cfg)
    if data.test.ids != bundle.test_ids:
        raise DataError(f"{cfg.data}: its test split is not the one this bundle was evaluated on")
    wanted = {bundle.final_stage, "stage1"} if "quality" in kinds else {bundle.final_stage}
    models = {s: load_stage_model(bundle, s) for s in bundle.stages if s in wanted}
    return add_analyses(bundle.path, models, data, cfg, kinds=kinds)


def main(argv: list[str] | None = None) -> int:
    """Add the feature space and the data-quality analysis to a bundle, in place."""
    ap = argparse.ArgumentParser(prog="python -m food101_core.training.analyses", description=main.__doc__)
    ap.add_argument("run", help="bundle folder")
    ap.add_argument("--data", help="where the data set is now (default: where it was at training)")
    ap.add_argument("--only", choices=KINDS, help="one analysis only (default: both)")
    args = ap.parse_args(argv)
    try:
        timings = run(args.run, args.data, (args.only,) if args.only else KINDS)
    except (BundleError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    said = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.0f} s" for k, v in timings.items())
    print(f"analyses added to {args.run}: {said or 'nothing (both are off in its settings)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
