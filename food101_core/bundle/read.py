"""Reading a bundle: `Bundle`, a verified bundle whose files load on first use (from disk, or from the Hub for one
opened by repo id), one reader per artifact."""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..data_quality import DataQuality
from ..embedding import Embedding
from ..hub import HubError
from ..metrics import Evaluation
from ..photos import INDEX as PHOTO_INDEX
from ..photos import PhotoStore, member
from .layout import (
    ADD_ONNX,
    EMBEDDING_ARRAYS,
    FORMAT,
    HEAD_FILE,
    ONNX_FILE,
    READABLE,
    SET_EMBEDDING_ARRAYS,
    SET_MANIFEST,
    SLICES_FILE,
    STAGES,
    TEST,
    VERSION,
    BundleError,
    check_file,
    check_set_name,
    read_json,
    served_model_sha,
    set_dir,
    set_split,
)


def log_fetch(rel: str, size: int) -> None:
    """What a Hub bundle says before it downloads a file on first use (the app also says it on the page)."""
    print(f"downloading {rel} ({size / 1e6:.1f} MB) from the Hub, on first use", file=sys.stderr)


class Bundle:
    """A verified bundle. Models and evaluations load on first use and are shared afterwards.

    Every file is read through `file(rel)`: on disk for a local bundle; for one opened from the Hub (`fetch`), it
    is downloaded the first time it is read and checked against bundle.json then.
    """

    def __init__(self, path: Path, verify: bool = True, fetch: Callable[[str], Path] | None = None):
        self.path = Path(path)
        self._fetch = fetch
        self.on_fetch: Callable[[str, int], None] = log_fetch  # (bundle path, bytes): before each download
        self._lock = threading.RLock()
        self.manifest = read_json(self.path, "bundle.json")
        if self.manifest.get("format") != FORMAT:
            raise BundleError(f"{self.path}: bundle.json is not a {FORMAT} manifest")
        version = self.manifest.get("version", 0)
        if version > VERSION:
            raise BundleError(
                f"{self.path}: bundle format {version} is newer than this code reads ({VERSION}); update food101_core"
            )
        if version not in READABLE:
            raise BundleError(
                f"{self.path}: bundle format {version} keeps its thumbnails as loose files; convert it (in place) "
                f"with: python -m food101_core.bundle upgrade {self.path}"
            )
        self.files: dict[str, dict] = self.manifest.get("files", {})
        if verify:
            self.verify()
        self._read_run()
        self._evals: dict[str, Evaluation] = {}
        self._embeddings: dict[str, Embedding] = {}
        self._reference: pd.DataFrame | None = None
        self._photos: PhotoStore | None = None
        self._attached: dict[str, Path] = {}  # standalone sets read beside the bundle (a visitor's): name -> folder

    def _read_run(self) -> None:
        self.config = self.json("config.json")
        try:
            self.train_config = TrainConfig.from_dict(self.config["train"])
        except (KeyError, TypeError) as e:
            raise BundleError(f"{self.path}: config.json has no usable training settings: {e}") from e
        classes = self.json("classes.json")
        self.class_ids = [c["id"] for c in classes]
        self.class_names = [c["name"] for c in classes]
        self.name_of = dict(zip(self.class_ids, self.class_names))  # class id -> display name
        self.id_of = dict(zip(self.class_names, self.class_ids))  # display name -> class id
        test = self._csv("test_set.csv")
        self.test_ids = test["id"].astype(str).tolist()
        self.test_labels = test["label"].to_numpy()
        self.history = self._csv("history.csv")
        self.stages = [s for s in self.manifest.get("stages", []) if s in STAGES]
        self.sets: list[str] = list(self.manifest.get("sets", []))  # evaluation sets added to it (format 3)
        if not self.stages:
            raise BundleError(f"{self.path}: bundle.json lists no stages")
        if len(self.test_labels) and self.test_labels.max() >= len(self.class_ids):
            raise BundleError(f"{self.path}: test_set.csv has labels beyond the {len(self.class_ids)} classes")

    @property
    def final_stage(self) -> str:
        """The stage the app serves and the analyses describe: the last one trained."""
        return self.stages[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def image_size(self) -> int:
        return int(self.train_config.image_size)

    @property
    def tta_flip(self) -> bool:
        """Whether the evaluation averaged each photo with its mirror image (the app then does the same)."""
        return bool(self.train_config.tta_flip)

    @property
    def data_source(self) -> dict:
        """The data set's identity as recorded at training: kind, location, counts."""
        return self.config.get("data", {})

    @property
    def remote(self) -> bool:
        """Whether files not yet here are downloaded on first use (a bundle opened by Hub repo id)."""
        return self._fetch is not None

    def has(self, rel: str) -> bool:
        """Whether the bundle lists the file (a complete write: an unlisted file is never read), or an attached set
        holds it."""
        return rel in self.files or self._attached_file(rel) is not None

    def _attached_file(self, rel: str) -> Path | None:
        parts = rel.split("/")
        folder = self._attached.get(parts[1]) if len(parts) > 2 and parts[0] == "sets" else None
        return folder / rel if folder is not None and (folder / rel).is_file() else None

    def attach_set(self, folder: Path) -> str:
        """Read a standalone set (bundle.standalone_set, unpacked in `folder`) beside the bundle, as its own sets are
        read, without adding it: a visitor's set in the app. It is listed nowhere (not in `sets`, not in
        bundle.json), so only whoever holds its key sees it. Returns its key."""
        about = read_json(Path(folder), SET_MANIFEST)
        name = check_set_name(about.get("name", ""))
        if about.get("model_sha256") != served_model_sha(self.manifest) or about.get("classes") != self.class_ids:
            raise BundleError(f"{folder}: the set {name!r} was scored by another model than this bundle's")
        if name in self.sets:
            raise BundleError(f"{self.path}: it has a set named {name!r} already")
        with self._lock:
            self._attached[name] = Path(folder)
        return set_split(name)

    def detach_set(self, source: str) -> None:
        """Forget an attached set (its folder is the caller's to delete)."""
        with self._lock:
            self._attached.pop(self.set_name(source), None)
            self._evals.pop(source, None)
            self._embeddings.pop(source, None)

    def file(self, rel: str) -> Path:
        """The local path of a listed file, downloaded and checked first if it is not here yet."""
        attached = self._attached_file(rel)
        if attached is not None:
            return attached
        p = self.path / rel
        if p.is_file() or self._fetch is None:
            if not p.is_file():
                raise BundleError(f"{self.path}: missing {rel}")
            return p
        if rel not in self.files:
            raise BundleError(f"{self.path}: missing {rel} (not listed in bundle.json)")
        with self._lock:
            if p.is_file():  # fetched by another thread meanwhile
                return p
            self.on_fetch(rel, int(self.files[rel]["bytes"]))
            try:
                p = self._fetch(rel)
            except HubError as e:
                raise BundleError(str(e)) from e
            self._check(rel, p)
        return p

    def _check(self, rel: str, p: Path) -> None:
        if rel in self.files:
            check_file(self.path, rel, self.files[rel], p)

    def verify(self) -> None:
        """Every listed file is there, with its size and hash (for a Hub bundle: those downloaded so far)."""
        for rel in self.files:
            if self._fetch is None or (self.path / rel).is_file():
                self._check(rel, self.path / rel)

    def json(self, rel: str):
        return read_json(self.path, rel, self.file)

    def _csv(self, rel: str, **kwargs) -> pd.DataFrame:
        try:
            return pd.read_csv(self.file(rel), **kwargs)
        except BundleError:
            raise
        except Exception as e:
            raise BundleError(f"{self.path}: {rel} is unreadable: {e}") from e

    def has_onnx(self, stage: str | None = None) -> bool:
        """Whether the stage's serving graph is in the bundle (and listed in bundle.json: a complete write)."""
        return self.has(ONNX_FILE.format(stage=stage or self.final_stage))

    def onnx_file(self, stage: str | None = None) -> Path:
        """The stage's ONNX model, which the app serves; a bundle written before them is told how to add them."""
        stage = stage or self.final_stage
        if not self.has_onnx(stage):
            raise BundleError(
                f"{self.path}: no ONNX model for {stage} (the bundle was written before the app served ONNX). "
                f"Add them where TensorFlow is installed (requirements-train.txt): "
                f"{ADD_ONNX.replace('RUN', str(self.path))}"
            )
        return self.file(ONNX_FILE.format(stage=stage))

    def head(self, stage: str | None = None) -> dict[str, np.ndarray] | None:
        """The stage's head folded into one linear map (weights, bias) for Grad-CAM; None if the head is not linear."""
        rel = HEAD_FILE.format(stage=stage or self.final_stage)
        if not self.has(rel):
            return None
        with self._npz(rel) as z:
            head = {"weights": z["weights"].astype(np.float32), "bias": z["bias"].astype(np.float32)}
        if head["weights"].shape[1] != self.num_classes:
            raise BundleError(f"{self.path}: {rel} has {head['weights'].shape[1]} classes, not {self.num_classes}")
        return head

    def _npz(self, rel: str):
        try:
            return np.load(self.file(rel))
        except BundleError:
            raise
        except Exception as e:
            raise BundleError(f"{self.path}: {rel} is unreadable: {e}") from e

    def evaluation(self, source: str | None = None) -> Evaluation:
        """A stage's evaluation on the test split, or a set's (`source`: a stage, or a set's key: `set_key(name)`)."""
        source = source or self.final_stage
        with self._lock:
            if source not in self._evals:
                self._evals[source] = self._read_evaluation(source)
            return self._evals[source]

    def _read_evaluation(self, source: str) -> Evaluation:
        d = self.folder_of(source)
        predictions = self._csv(d + "predictions.csv", dtype={"id": str})
        with self._npz(d + "probs.npz") as z:
            probs = z["probs"].astype(np.float32)
        rows = len(self.test_ids) if source in STAGES else len(predictions)
        if probs.shape != (rows, self.num_classes) or len(predictions) != rows:
            raise BundleError(f"{self.path}: {d}probs.npz has shape {probs.shape}, expected {(rows, self.num_classes)}")
        confusion = self._csv(d + "confusion.csv").iloc[:, 1:]  # first column: the true class ids
        return Evaluation(
            probs=probs,
            predictions=predictions,
            per_class=self._csv(d + "per_class.csv"),
            confusion=confusion.to_numpy(),
            metrics=self.json(d + "metrics.json"),
        )

    # Sources: what the analysis views show. A stage on the test split ("stage2"), or an evaluation set scored by the
    # shipped stage, keyed by its photo split ("set-canteen"): the same readers serve both.
    def set_key(self, name: str) -> str:
        if name not in self.sets and name not in self._attached:
            raise BundleError(f"{self.path}: no set named {name!r} (its sets: {', '.join(self.sets) or 'none'})")
        return set_split(name)

    def is_set(self, source: str | None) -> bool:
        return bool(source) and source.startswith("set-")

    def set_name(self, source: str) -> str:
        return source.removeprefix("set-")

    def folder_of(self, source: str) -> str:
        if self.is_set(source):
            return set_dir(self.set_name(source))
        if source not in self.stages:
            raise BundleError(f"{self.path}: unknown stage {source!r}: this bundle has {', '.join(self.stages)}")
        return f"{source}/"

    def stage_of(self, source: str | None) -> str:
        """The model behind a source: the stage itself, or the shipped stage that scored a set."""
        return self.final_stage if not source or self.is_set(source) else source

    def split_of(self, source: str | None) -> str:
        """Where a source's photos are kept (photos/index.csv): the test split's, or the set's own."""
        return source if self.is_set(source) else TEST

    def photo_id(self, source: str | None, index: int) -> str:
        """The id of a source's photo `index` (a test id, or a set's file name)."""
        if self.is_set(source):
            return str(self.evaluation(source).predictions["id"].iloc[int(index)])
        return self.test_ids[int(index)]

    def source_photo(self, source: str | None, index: int) -> Path | None:
        """The thumbnail of a source's photo `index`, if the bundle keeps one."""
        return self.photo(self.split_of(source), self.photo_id(source, index))

    def has_source_photo(self, source: str | None, index: int) -> bool:
        return self.has_photo(self.split_of(source), self.photo_id(source, index))

    def source_index(self, source: str | None, image_id: str) -> int:
        """The row of a source's photo by its id (the inverse of `photo_id`)."""
        if self.is_set(source):
            ids = self.evaluation(source).predictions["id"].astype(str)
            return int(np.flatnonzero(ids.to_numpy() == image_id)[0])
        return self.test_ids.index(image_id)

    def set_summary(self, name: str) -> dict:
        """The set against the test split, as `/evaluate_set` answers it."""
        return self.json(set_dir(name) + "summary.json")

    def set_files(self, name: str) -> pd.DataFrame:
        """Every file given for the set and what became of it: scored, predicted only (why), refused (why)."""
        return self._csv(set_dir(name) + "files.csv", dtype={"file": str, "label": str, "true": str},
                         keep_default_na=False)  # fmt: skip

    @property
    def has_feature_space(self) -> bool:
        """Whether this bundle carries the map, the reference photos and the unfamiliar-photo statistics (of its
        shipped, last stage: the one the app serves)."""
        return self.has("reference.csv") and self.has(f"{self.final_stage}/embedding.npz")

    def embedding(self, source: str | None = None) -> Embedding | None:
        """The feature space of a stage (or of a set: its photos placed in the shipped stage's), or None for a bundle
        without it (the analyses step adds it)."""
        source = source or self.final_stage
        rel = self.folder_of(source) + "embedding.npz"
        if not self.has(rel):
            return None
        with self._lock:
            if source not in self._embeddings:
                if self.is_set(source):
                    self._embeddings[source] = self._read_set_embedding(source, rel)
                else:
                    self._embeddings[source] = self._read_embedding(rel)
            return self._embeddings[source]

    def _read_set_embedding(self, source: str, rel: str) -> Embedding | None:
        stage = self.embedding(self.final_stage)
        if stage is None:
            return None
        with self._npz(rel) as z:
            own = {k: z[k].astype(np.float32) for k in SET_EMBEDDING_ARRAYS}
        if len(own["xy"]) != len(self.evaluation(source).predictions):
            raise BundleError(f"{self.path}: {rel} does not have one row per scored photo of the set")
        return dataclasses.replace(stage, **own)

    def _read_embedding(self, rel: str) -> Embedding:
        try:
            with self._npz(rel) as z:
                arrays = {k: z[k].astype(np.float32) for k in EMBEDDING_ARRAYS}
                emb = Embedding(**arrays, ref_labels=z["ref_labels"], threshold=float(z["threshold"]), k=int(z["k"]))
        except BundleError:
            raise
        except Exception as e:
            raise BundleError(f"{self.path}: {rel} is unreadable: {e}") from e
        if emb.test.shape[0] != len(self.test_ids) or emb.xy.shape != (len(self.test_ids), 2):
            raise BundleError(f"{self.path}: {rel} does not have one row per test image")
        return emb

    @property
    def reference(self) -> pd.DataFrame:
        """The reference training photos (id, label), in the order of every embedding's `ref` rows."""
        if self._reference is None:
            self._reference = self._csv("reference.csv", dtype={"id": str})
        return self._reference

    @property
    def has_data_quality(self) -> bool:
        """Whether this bundle carries the suspect-label and duplicate analysis (the analyses step adds it)."""
        return self.has("quality/summary.json")

    def data_quality(self) -> DataQuality | None:
        """The data-quality analysis, or None for a bundle without it."""
        if not self.has_data_quality:
            return None
        checks = "quality/image_checks.csv"
        return DataQuality(
            suspects=self._csv("quality/suspects.csv", dtype={"id": str}),
            duplicates=self._csv("quality/duplicates.csv", dtype={"a_id": str, "b_id": str}),
            summary=self.json("quality/summary.json"),
            image_checks=self._csv(checks, dtype={"id": str}) if self.has(checks) else None,
        )

    def properties(self, source: str | None = None) -> pd.DataFrame | None:
        """Every test photo's readable properties (and, with the analyses, unfamiliar score and map region); of a
        set's scored photos for a set's source."""
        rel = set_dir(self.set_name(source)) + "properties.csv" if self.is_set(source) else "properties.csv"
        return self._csv(rel, dtype={"id": str}) if self.has(rel) else None

    def slices(self, source: str | None = None) -> dict | None:
        """The failure slices of a stage or a set ({"slices": [{name, conditions, n, accuracy, overall, p_value, ...}],
        "tested", "correction", ...}), or None where they were not found (a bundle written before them)."""
        source = source or self.final_stage
        rel = self.folder_of(source) + "slices.json" if self.is_set(source) else SLICES_FILE.format(stage=source)
        return self.json(rel) if self.has(rel) else None

    @property
    def photos(self) -> PhotoStore:
        """Every thumbnail the bundle keeps, by (split, id); shards are read (or downloaded) on first use."""
        with self._lock:
            if self._photos is None:
                index = (
                    self._csv(PHOTO_INDEX, dtype=str)
                    if self.has(PHOTO_INDEX)
                    else pd.DataFrame(columns=["split", "id", "shard"])
                )
                self._photos = PhotoStore(index, self.file, self.photo_cache)
            return self._photos

    @property
    def photo_cache(self) -> Path:
        """Where photos are extracted for the app to serve: one folder per user and bundle content (its manifest's
        hash), so two copies of one bundle share it and no other user's files are served."""
        digest = hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"food101-photos-{getpass.getuser()}" / digest

    def photo(self, split: str, image_id: str) -> Path | None:
        """A photo's thumbnail as a file, if the bundle (or an attached set) keeps one."""
        folder = self._attached.get(self.set_name(split)) if self.is_set(split) else None
        if folder is not None:
            p = folder / "photos" / member(split, str(image_id))
            return p if p.is_file() and folder.resolve() in p.resolve().parents else None
        return self.photos.path(split, str(image_id))

    def has_photo(self, split: str, image_id: str) -> bool:
        if self.is_set(split) and self.set_name(split) in self._attached:
            return self.photo(split, image_id) is not None
        return (split, str(image_id)) in self.photos

    def thumb(self, index: int) -> Path | None:
        """The thumbnail of test image `index`, if the bundle keeps one."""
        return self.photo("test", self.test_ids[int(index)])

    def has_thumb(self, index: int) -> bool:
        return self.has_photo("test", self.test_ids[int(index)])

    def reference_thumb(self, row: int) -> Path | None:
        return self.photo("train", self.reference["id"].iloc[int(row)])

    def original_image(self, index: int) -> Path | None:
        """The full-size test image, when the data set the bundle was evaluated on is on this machine."""
        data = self.data_source
        root, image_id = Path(data.get("location", "")), self.test_ids[int(index)]
        if data.get("kind") == "food101-folder":
            p = root / "images" / f"{image_id}.jpg"
            return p if p.is_file() else None
        if data.get("kind") == "class-folders" and (root / image_id).parent.is_dir():
            return next((root / image_id).parent.glob(Path(image_id).name + ".*"), None)
        return None


def find_newest_bundle(root: Path) -> Path | None:
    """The most recently written complete bundle under `root` (hidden and partial folders ignored)."""
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if not p.name.startswith(".") and (p / "bundle.json").is_file()]
    return max(found, key=lambda p: (p / "bundle.json").stat().st_mtime, default=None)
