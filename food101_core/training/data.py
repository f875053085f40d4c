"""Data sources (TFDS, a Food-101-layout folder, a folder of class folders) and one tf.data pipeline.

Every source is reduced to the same thing: class ids and display names in output order, and for each
split the ordered encoded image bytes, labels and stable image ids. The test split keeps its order,
because the analysis refers to test images by position and id.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .. import marks
from ..labels import LabelMatcher

if TYPE_CHECKING:
    import tensorflow as tf

    from ..config import TrainConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}  # what tf.io.decode_image reads
TFDS_OFFLINE_HELP = (
    "Download the Food-101 archive (food-101.tar.gz, 5 GB, from the ETH Zurich Food-101 page) on a machine "
    "with internet, extract it and pass the folder instead: --data /path/to/food-101 "
    "(the folder that holds images/ and meta/)."
)


class DataError(ValueError):
    """A data source that cannot be used, with a message that says what to do."""


@dataclass
class Split:
    """One split: ordered ids and labels, and where the encoded bytes come from (files or a TFDS split)."""

    ids: list[str]
    labels: np.ndarray
    paths: list[str] | None = None
    tfds_bytes: Any = None  # tf.data.Dataset of encoded images, for the TFDS source

    def __len__(self) -> int:
        return len(self.ids)

    def encoded(self) -> tf.data.Dataset:
        """The encoded image bytes, in split order."""
        import tensorflow as tf

        if self.paths is not None:
            return tf.data.Dataset.from_tensor_slices(self.paths).map(
                tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        return self.tfds_bytes

    def photo_bytes(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, bytes]]:
        """(position, encoded bytes) of the photos at `indices` (all by default), in split order: read straight
        from the files, or streamed once through the TFDS split."""
        wanted = None if indices is None else set(indices)
        if self.paths is not None:
            for i in range(len(self)) if wanted is None else sorted(wanted):
                yield i, Path(self.paths[i]).read_bytes()
            return
        for i, data in enumerate(self.tfds_bytes.as_numpy_iterator()):
            if wanted is None or i in wanted:
                yield i, bytes(data)

    def subset(self, keep: np.ndarray) -> Split:
        """The images at the sorted positions `keep`, in order."""
        keep = np.asarray(keep, dtype=np.int64)
        if self.paths is not None:
            return Split([self.ids[i] for i in keep], self.labels[keep], [self.paths[i] for i in keep])
        import tensorflow as tf

        mask = np.zeros(len(self), bool)
        mask[keep] = True
        mask_t = tf.constant(mask)
        ds = self.tfds_bytes.enumerate().filter(lambda i, _: mask_t[i]).map(lambda _, b: b)
        return Split([self.ids[i] for i in keep], self.labels[keep], None, ds)


@dataclass
class FoodData:
    """A data set reduced to what training and evaluation need."""

    class_ids: list[str]
    class_names: list[str]
    train: Split
    val: Split | None
    test: Split
    source: dict = field(default_factory=dict)  # identity: kind, location, counts, skipped files
    calibration: Split | None = None  # held-out photos the temperature is fitted on: val, or a hold-out of its own

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def monitored(self) -> Split:
        """The split each training epoch is validated on: the validation split, else the test split."""
        return self.val if self.val is not None else self.test


def display_name(class_id: str) -> str:
    """Food-101's own convention: 'apple_pie' is shown as 'Apple pie'."""
    return class_id.replace("_", " ").strip().capitalize()


# ---------------------------------------------------------------------------------------------- sources


def load_data(cfg: TrainConfig) -> FoodData:
    """Open the source named by `cfg.data`, select classes and fractions, hold out validation."""
    cfg.check()  # the fractions among every other setting, for callers that do not come through `train`
    if cfg.data.startswith("tfds:"):
        class_ids, class_names, train, test, source = _from_tfds(cfg.data[5:])
    else:
        root = Path(cfg.data).expanduser()
        if not root.is_dir():
            raise DataError(f"--data {cfg.data!r}: no such folder (and not 'tfds:NAME')")
        if (root / "meta" / "classes.txt").is_file():
            class_ids, class_names, train, test, source = _from_food101_folder(root)
        else:
            class_ids, class_names, train, test, source = _from_class_folders(root, cfg.seed)

    # before anything is picked, so the split and the validation hold-out see the cleaner set
    train = apply_marks(cfg, train, class_ids, class_names, source)
    keep = _select_classes(class_ids, cfg.classes, cfg.num_classes)
    remap = np.full(len(class_ids), -1)
    remap[keep] = np.arange(len(keep))
    class_ids = [class_ids[i] for i in keep]
    class_names = [class_names[i] for i in keep]
    train = _relabel(train, remap)
    test = _relabel(test, remap)

    rng = np.random.default_rng(cfg.seed)
    if cfg.train_fraction < 1.0:
        train = train.subset(_per_class_pick(train.labels, cfg.train_fraction, rng))
    val = None
    if cfg.val_fraction > 0:
        val_pos = _per_class_pick(train.labels, cfg.val_fraction, rng)
        val = train.subset(val_pos)
        train = train.subset(np.setdiff1d(np.arange(len(train)), val_pos))
    calibration = None
    if val is None and cfg.calibration_fraction > 0:  # a final fit on all photos still leaves these untrained on
        cal_pos = _per_class_pick(train.labels, cfg.calibration_fraction, rng)
        calibration = train.subset(cal_pos)
        train = train.subset(np.setdiff1d(np.arange(len(train)), cal_pos))

    if train.paths is not None:  # files: find unreadable ones now rather than hours into training
        train, bad_train = _drop_unreadable(train, "train")
        test, bad_test = _drop_unreadable(test, "test")
        bad_val: list = []
        if val is not None:
            val, bad_val = _drop_unreadable(val, "val")
        if calibration is not None:
            calibration, bad_cal = _drop_unreadable(calibration, "calibration")
            bad_val += bad_cal
        source["skipped"] = bad_train + bad_val + bad_test
    source.update(classes=len(class_ids), train=len(train), val=len(val) if val is not None else 0, test=len(test))
    if calibration is not None:
        source["calibration"] = len(calibration)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{cfg.data}: no usable training or test images after selection ({source})")
    return FoodData(class_ids, class_names, train, val, test, source, calibration if val is None else val)


def _from_food101_folder(root: Path):
    """Food-101's own layout: images/<class>/<id>.jpg and meta/{classes,train,test,labels}.txt."""
    meta = root / "meta"
    class_ids = _read_lines(meta / "classes.txt")
    labels_file = meta / "labels.txt"
    class_names = _read_lines(labels_file) if labels_file.is_file() else [display_name(c) for c in class_ids]
    if len(class_names) != len(class_ids):
        raise DataError(f"{labels_file}: {len(class_names)} names for {len(class_ids)} classes")
    index = {c: i for i, c in enumerate(class_ids)}

    def split(name: str) -> Split:
        ids = _read_lines(meta / f"{name}.txt")
        try:
            labels = np.array([index[i.split("/")[0]] for i in ids], dtype=np.int64)
        except KeyError as e:
            raise DataError(f"{meta / name}.txt names class {e} which is not in classes.txt") from None
        return Split(ids, labels, [str(root / "images" / f"{i}.jpg") for i in ids])

    source = {"kind": "food101-folder", "location": str(root.resolve())}
    return class_ids, class_names, split("train"), split("test"), source


def _from_class_folders(root: Path, seed: int):
    """A plain folder of class sub-folders, split 75/25 per class with a fixed seed."""
    class_ids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_ids:
        raise DataError(f"{root}: no class sub-folders (expected <root>/<class>/*.jpg or Food-101's meta/)")
    train_ids, test_ids, train_paths, test_paths, train_y, test_y = [], [], [], [], [], []
    rng = random.Random(seed)
    for label, c in enumerate(class_ids):
        files = sorted(
            p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        rng.shuffle(files)
        n_test = len(files) // 4
        for part, (ids, paths, ys) in (
            (files[n_test:], (train_ids, train_paths, train_y)),
            (sorted(files[:n_test]), (test_ids, test_paths, test_y)),
        ):
            ids += [f"{c}/{p.stem}" for p in part]
            paths += [str(p) for p in part]
            ys += [label] * len(part)
    source = {"kind": "class-folders", "location": str(root.resolve()), "split": f"75/25 per class, seed {seed}"}
    train = Split(train_ids, np.array(train_y, np.int64), train_paths)
    test = Split(test_ids, np.array(test_y, np.int64), test_paths)
    return class_ids, [display_name(c) for c in class_ids], train, test, source


def _from_tfds(name: str):
    """A TFDS data set (Food-101's official split); images stay encoded and are decoded like files."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name)
    try:
        builder.download_and_prepare()
    except Exception as e:  # network errors come in many types, from several libraries
        raise DataError(f"could not download the TFDS data set {name!r}: {e}\n{TFDS_OFFLINE_HELP}") from e
    class_ids = list(builder.info.features["label"].names)
    decoders = {"image": tfds.decode.SkipDecoding()}

    def split(which: str) -> Split:
        ds = builder.as_dataset(split=which, shuffle_files=False, decoders=decoders)
        labels = np.fromiter((int(y) for y in ds.map(lambda ex: ex["label"]).as_numpy_iterator()), np.int64)
        ids = [f"{which}/{i:05d}" for i in range(len(labels))]
        return Split(ids, labels, None, ds.map(lambda ex: ex["image"]))

    source = {"kind": "tfds", "location": f"tfds:{name}", "version": str(builder.info.version)}
    return class_ids, [display_name(c) for c in class_ids], split("train"), split("test"), source


# ----------------------------------------------------------------------------------------- selection


def read_id_list(path: str | Path) -> list[str]:
    """Image ids from the app's marks CSV (its training photos marked `exclude`), a CSV with an `id` column (the
    Data-quality tab's download) or a text file, one id a line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"--exclude {path}: no such file")
    if marks.is_marks_file(path):
        return marks.excluded(read_marks(path, "--exclude"))
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines and "," in lines[0]:
        import pandas as pd

        table = pd.read_csv(path, dtype=str)
        if "id" not in table.columns:
            raise DataError(f"--exclude {path}: a CSV needs an 'id' column (it has {', '.join(table.columns)})")
        return table["id"].dropna().str.strip().tolist()
    return lines


def apply_marks(cfg: TrainConfig, train: Split, class_ids: list[str], class_names: list[str], source: dict) -> Split:
    """The training split without the photos `--exclude` lists and with `--relabel`'s new labels, each recorded in
    `source`; test photos' marks are recorded and said, never applied to the split every run shares."""
    if cfg.exclude:
        train, source["excluded"] = exclude_ids(train, read_id_list(cfg.exclude))
    if cfg.relabel:
        train, source["relabelled"] = relabel_ids(train, read_relabels(cfg.relabel), class_ids, class_names)
    reported = [m for path in dict.fromkeys(filter(None, [cfg.exclude, cfg.relabel])) for m in test_marks_of(path)]
    if reported:
        source["test_marks"] = reported
        print(f"{len(reported)} test photos are marked ({', '.join(sorted({m['decision'] for m in reported}))}): "
              "recorded in the bundle's config.json, not applied (the test split stays as published)",
              file=sys.stderr)  # fmt: skip
    return train


def read_marks(path: str | Path, flag: str):
    try:
        return marks.read(path)
    except marks.MarksError as e:
        raise DataError(f"{flag} {e}") from None


def read_relabels(path: str | Path) -> dict[str, str]:
    """Training photo id -> new label, from the app's marks CSV (`--relabel`)."""
    if not Path(path).expanduser().is_file():
        raise DataError(f"--relabel {path}: no such file")
    if not marks.is_marks_file(path):
        raise DataError(f"--relabel {path}: not a marks file (the app's 'Download my marks': "
                        f"{', '.join(marks.COLUMNS)})")  # fmt: skip
    return marks.relabelled(read_marks(path, "--relabel"))


def test_marks_of(path: str | Path) -> list[dict]:
    return marks.test_marks(read_marks(path, "--exclude")) if marks.is_marks_file(path) else []


def relabel_ids(train: Split, new: dict[str, str], class_ids: list[str], class_names: list[str]):
    """The training split with the marked photos' labels changed, and what changed ({id, from, to} by class id);
    an id the split lacks or a label the data set does not have is refused, named."""
    where = {x: i for i, x in enumerate(train.ids)}
    unknown = [i for i in new if i not in where]
    if unknown:
        raise DataError(f"--relabel names {len(unknown)} ids that are not training images of this data set, e.g. "
                        f"{', '.join(unknown[:5])}")  # fmt: skip
    match = LabelMatcher(class_ids, class_names)
    bad = {i: label for i, label in new.items() if match(label) is None}
    if bad:
        raise DataError(f"--relabel: {len(bad)} new labels are not classes of this data set, e.g. "
                        f"{', '.join(f'{i} -> {label}' for i, label in list(bad.items())[:5])}")  # fmt: skip
    labels, changed = train.labels.copy(), []
    for image_id, label in new.items():
        to = class_ids.index(match(label))
        if labels[where[image_id]] != to:
            changed.append({"id": image_id, "from": class_ids[labels[where[image_id]]], "to": class_ids[to]})
            labels[where[image_id]] = to
    out = train.subset(np.arange(len(train)))
    out.labels = labels
    return out, changed


def exclude_ids(train: Split, ids: list[str]) -> tuple[Split, list[str]]:
    """The training split without `ids`, and the ids it left out; ids the split lacks are refused, named."""
    known = set(train.ids)
    unknown = [i for i in dict.fromkeys(ids) if i not in known]
    if unknown:
        raise DataError(
            f"--exclude names {len(unknown)} ids that are not training images of this data set, e.g. "
            + ", ".join(unknown[:5])
            + " (ids look like "
            + (train.ids[0] if train.ids else "class/image")
            + ")"
        )
    drop = set(ids)
    keep = np.array([i for i, x in enumerate(train.ids) if x not in drop], dtype=np.int64)
    return train.subset(keep), sorted(drop)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _select_classes(class_ids: list[str], names: Sequence[str], first_n: int) -> list[int]:
    if names:
        unknown = [n for n in names if n not in class_ids]
        if unknown:
            raise DataError(f"unknown classes {unknown}; known: {', '.join(class_ids[:10])}, …")
        return [class_ids.index(n) for n in names]
    n = first_n or len(class_ids)
    if not 1 <= n <= len(class_ids):
        raise DataError(f"asked for {n} classes, the data has {len(class_ids)}")
    return list(range(n))


def _relabel(split: Split, remap: np.ndarray) -> Split:
    kept = np.flatnonzero(remap[split.labels] >= 0)
    out = split.subset(kept)
    out.labels = remap[out.labels]
    return out


def _per_class_pick(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of a random `fraction` of each class (at least one image per class)."""
    picked = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        k = max(1, round(fraction * len(pos)))
        picked.append(rng.choice(pos, size=min(k, len(pos)), replace=False))
    return np.sort(np.concatenate(picked))


# ------------------------------------------------------------------------------------------ scanning


def check_image_file(path: str) -> str | None:
    """None if TensorFlow's decoder will read the file, else why not. Reads the whole file, cheaply.

    JPEGs are decoded at 1/8 scale (libjpeg's DCT scaling still parses every byte, so truncation shows).
    """
    try:
        with Image.open(path) as im:
            fmt = im.format
            if fmt not in {"JPEG", "PNG", "BMP", "GIF", "WEBP"}:
                return f"unsupported format {fmt}"
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except FileNotFoundError:
        return "file not found"
    except Exception as e:  # PIL raises many types for bad files
        return f"unreadable ({type(e).__name__}: {e})"
    return None


def scan_images(paths: Sequence[str], desc: str = "checking images") -> list[tuple[str, str]]:
    """(path, reason) for every file that cannot be decoded; a progress bar on long scans."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        reasons = list(
            tqdm(
                pool.map(check_image_file, paths, chunksize=64),
                total=len(paths),
                desc=desc,
                leave=False,
                disable=len(paths) < 2000,
            )
        )
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def _drop_unreadable(split: Split, name: str) -> tuple[Split, list[dict]]:
    bad = scan_images(split.paths, f"checking {name} images")
    for path, reason in bad:
        log.warning("skipping %s image %s: %s", name, path, reason)
    if not bad:
        return split, []
    bad_paths = {p for p, _ in bad}
    keep = np.array([i for i, p in enumerate(split.paths) if p not in bad_paths], dtype=np.int64)
    return split.subset(keep), [{"split": name, "path": p, "reason": r} for p, r in bad]


# ------------------------------------------------------------------------------------------ pipeline


def decode_and_resize(data: tf.Tensor, size: int) -> tf.Tensor:
    """Encoded bytes -> size x size x 3 uint8. Grayscale, CMYK, alpha, palette and 16-bit all come out RGB."""
    import tensorflow as tf

    # JPEGs with the accurate integer IDCT: the pixels PIL (and so the app) decodes, to the last bit;
    # TensorFlow's default fast IDCT is about one grey level off, a skew between training and serving.
    img = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    img.set_shape([None, None, 3])
    return resize_uint8(img, size)


def resize_uint8(img: tf.Tensor, size: int) -> tf.Tensor:
    """The one resize used in training, evaluation and the app (square, antialiased, as in the reference)."""
    import tensorflow as tf

    out = tf.image.resize(img, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def augmenter(seed: int):
    """Flip, zoom (a random crop, rescaled) and a small rotation; off in the reference recipe."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomZoom((-0.25, 0.0), fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 2),
        ],
        name="augment",
    )


def cache_fits(n_images: int, size: int, budget_fraction: float = 0.3) -> bool:
    """Whether n resized uint8 images fit in a fraction of the machine's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return False
    return n_images * size * size * 3 < budget_fraction * total


def whole_batches(cfg: TrainConfig) -> bool:
    """Whether training and validation keep whole batches only: a distribution strategy splits each batch between
    its replicas, and a final batch shorter than their number leaves one with an empty share, on which TensorFlow's
    CPU kernels fail (a batch of 1 on 2 replicas; see multiworker.py)."""
    return cfg.strategy != "default"


def make_dataset(
    split: Split,
    num_classes: int,
    cfg: TrainConfig,
    *,
    training: bool,
    augment: bool = False,
    mixup: float = 0.0,
    with_labels: bool = True,
) -> tf.data.Dataset:
    """Batches of (float32 images in 0-255, one-hot labels). Only training data is shuffled.

    `mixup` > 0 blends each image and its label with another of the batch (Beta(mixup, mixup) weights): soft
    targets that keep a small dataset from being memorised.
    """
    import tensorflow as tf

    size = cfg.image_size
    images = split.encoded().map(
        lambda b: decode_and_resize(b, size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    ds = tf.data.Dataset.zip(images, tf.data.Dataset.from_tensor_slices(split.labels))  # bad files: see load_data
    if cfg.cache == "memory" or (cfg.cache == "auto" and cache_fits(len(split), size)):
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(split), 10_000), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size, drop_remainder=whole_batches(cfg) and with_labels)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, num_classes)), tf.data.AUTOTUNE)
    if augment:
        aug = augmenter(cfg.seed)
        ds = ds.map(lambda x, y: (aug(x, training=True), y))  # sequential: the random state is used in order
    if mixup > 0:
        import keras

        mix = keras.layers.MixUp(alpha=mixup, seed=cfg.seed + 3)
        ds = ds.map(lambda x, y: tuple(mix({"images": x, "labels": y}, training=True).values()))
    if not with_labels:
        ds = ds.map(lambda x, y: x)
    if not cfg.data_autotune:  # fixed parallelism: no wait on the autotuner when a call ends
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)
