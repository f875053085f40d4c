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
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..bundle import BundleError, add_files, encode_embedding, load_bundle, photo_files, quality_files, slice_files
from ..data_quality import DataQuality
from .data import DataError, load_data
from .failures import CHECKS, add_model_columns, image_checks, split_properties, stage_slices
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
    """
    pooled = pooled or {}
    files: dict[str, bytes] = {}
    photos: dict[tuple[str, str], bytes] = {}
    timings: dict[str, float] = {}
    first: set[tuple[str, str]] = set()
    if "map" in kinds and cfg.reference_per_class > 0:
        t0 = time.perf_counter()
        last = list(models)[-1]  # the shipped model's: both stages' would double the bundle's growth
        print(f"analyses: the feature space of {last} (map, reference photos, unfamiliar-photo threshold)")
        reference, ref_photos, emb = feature_space(models[last], data, cfg, pooled.get(last))
        files[f"{last}/embedding.npz"] = encode_embedding(emb)
        files["reference.csv"] = reference.rename_axis("index").to_csv().encode()
        photos.update(ref_photos)
        first = {("train", i) for i in reference["id"]}
        timings["embedding_s"] = time.perf_counter() - t0
        files.update(slices_again(dest, emb, data, cfg, last))
    if "quality" in kinds and cfg.suspect_thumbs > 0 and "stage1" in models:
        t0 = time.perf_counter()
        print("analyses: data quality (suspect labels, near-duplicates)")
        plain_test = None if cfg.tta_flip else pooled.get("stage1")  # without the mirror, evaluation's pass is it
        dq, dq_photos = data_quality(models["stage1"], data, cfg, feature_cache, plain_test)
        files.update(quality_files(dq))
        photos.update({k: v for k, v in dq_photos.items() if k not in photos})
        timings["data_quality_s"] = time.perf_counter() - t0
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


def data_quality(
    stage1: keras.Model, data: FoodData, cfg: TrainConfig, cache: Path | None, test: np.ndarray | None = None
) -> tuple[DataQuality, dict[tuple[str, str], bytes]]:
    """Suspected label errors of the training split and near-duplicate pairs, with the photos the app shows: the
    `suspect_thumbs` most suspect training photos and both photos of the `pair_thumbs` closest pairs of each kind.

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
    pictured = dq.duplicates.groupby("kind", sort=False).head(cfg.pair_thumbs)  # the closest first within a kind
    for row in pictured.itertuples():
        wanted[row.a_split].add(row.a_index)
        wanted[row.b_split].add(row.b_index)
    dq.summary["pair_thumbs"] = int(cfg.pair_thumbs)
    dq.image_checks = image_checks(split_properties(data.train, data.class_ids))
    dq.summary["image_checks"] = {c: int(dq.image_checks[c].sum()) for c in CHECKS}
    wanted["train"] |= set(dq.image_checks["index"][: cfg.suspect_thumbs])  # pictures of the most flagged
    photos = {}
    for name, split in (("train", data.train), ("test", data.test)):
        thumbs = make_thumbnails(split, sorted(int(i) for i in wanted[name]))
        photos.update({(name, split.ids[i]): jpeg for i, jpeg in thumbs.items()})
    s = dq.summary
    print(f"data quality: {s['suspects']} suspect labels of {s['n_train']}, duplicates {s['duplicates']}")
    return dq, photos


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
