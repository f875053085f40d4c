"""The run bundle: one self-contained folder with everything the app needs, written atomically.

The floor both sides stand on: training writes through `write_bundle`, the app reads through `Bundle`, and this
module imports neither. Layout (format version 1; docs/bundle-format.md has the details):

    bundle.json          format, version, creation time, and size + sha256 of every other file
    config.json          {"train": every TrainConfig setting, "data": the data set's identity,
                          "versions": library versions, "timings": seconds per phase}
    classes.json         [{"id": "apple_pie", "name": "Apple pie"}, ...] in model output order
    test_set.csv         index, id, label: the test images in the order every other file refers to
    history.csv          epoch, stage, loss, accuracy, top5, val_* (both stages)
    models/stage1.keras  kept model of each stage (inference only, loads in Keras safe mode); stage3 only for a
    models/stage2.keras  run with a resolution polish, evaluated at its own image size
    stage1/ stage2/      predictions.csv, probs.npz (float16 matrix, calibrated), metrics.json (with the fitted
                         temperature and the raw ECE), per_class.csv, confusion.csv
    photos/index.csv     split, id, shard: every thumbnail the app shows, stored once whichever views show it
    photos/<group>-NN.zip  the thumbnails, packed in a few uncompressed zips (photos.py): the test photos the
                         bundle keeps (each stage's most confident mistakes per dish, a few right ones), the
                         reference photos, the data-quality photos
    reference.csv        index, id, label: up to N training photos per class, the "similar photos" of the app
    stage2/embedding.npz the final stage's feature space: test and reference features (PCA coordinates and
                         residuals, float16), the 2-D UMAP map, the PCA to place a new photo, and the
                         unfamiliar-photo threshold (optional: a bundle without them opens; re-evaluation adds them)
    quality/             data quality (optional, like the feature space): suspects.csv (suspected label errors of
                         the training split, most suspect first), duplicates.csv (near-duplicate pairs test-train
                         and test-test), summary.json

Format 2 packed format 1's loose thumbnails (thumbs/, reference/, quality/train|test/) into photos/:
`python -m food101_core.bundle upgrade RUN` converts a format-1 bundle in place.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import TrainConfig
from .data_quality import DataQuality
from .embedding import Embedding
from .hub import HubError, HubRepo, upload
from .metrics import Evaluation, first_screen_photos
from .photos import INDEX as PHOTO_INDEX
from .photos import Key, PhotoStore, pack

FORMAT = "food101-explorer-bundle"
VERSION = 2  # 2: photos packed in shards (format 1 kept loose thumbnails; `upgrade` converts)
STAGES = ("stage1", "stage2", "stage3")  # stage3: the optional resolution polish
HEAD_FILE = "models/{stage}.head.npz"  # the folded head: Grad-CAM without gradients
ONNX_FILE = "models/{stage}.onnx"  # the serving graph: probabilities, pooled features, last feature map
ADD_ONNX = "python -m food101_core.training.export RUN"  # adds both to a bundle written before them
SLICES_FILE = "{stage}/slices.json"  # the stage's failure slices (properties.csv: what defines them)
EMBEDDING_ARRAYS = ("test", "test_resid", "xy", "mean", "components", "ref", "ref_resid")
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class BundleError(RuntimeError):
    """A bundle that cannot be used; the message names the part."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Results:
    """Everything a bundle holds, handed to `write_bundle` whole by the evaluation.

    One field per artifact; each has one writer below (`write_bundle` calls them in turn) and one reader in
    `Bundle`. Adding an artifact is a field, a writer and a reader (docs/developing.md).
    """

    config: dict  # {"train": TrainConfig.to_dict(), "data": the data set's identity, "versions", "timings"}
    class_ids: list[str]
    class_names: list[str]
    test_ids: list[str]
    test_labels: np.ndarray
    history: pd.DataFrame
    model_files: dict[str, Path]  # stage -> its .keras file
    evals: dict[str, Evaluation] = field(default_factory=dict)
    photos: dict[Key, bytes] = field(default_factory=dict)  # (split, id) -> JPEG thumbnail, whichever views show it
    first_photos: set[Key] = field(default_factory=set)  # those the first screen shows (packed first)
    onnx_files: dict[str, Path] = field(default_factory=dict)  # stage -> its serving graph (ONNX)
    heads: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # stage -> folded head (Grad-CAM)
    embeddings: dict[str, Embedding] = field(default_factory=dict)
    reference: pd.DataFrame | None = None  # the reference training photos: id, label
    quality: DataQuality | None = None
    properties: pd.DataFrame | None = None  # every test photo's readable properties (failures.py)
    slices: dict[str, pd.DataFrame] = field(default_factory=dict)  # stage -> its failure slices


def write_bundle(dest: Path, results: Results, overwrite: bool = False) -> Path:
    """Write into a hidden temporary folder beside `dest`, then rename it into place."""
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise BundleError(f"{dest} exists already")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):  # left by a write that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    tmp.mkdir()
    writers = (write_run, write_models, write_evaluations, write_feature_space, write_quality, write_slices,
               write_photos)  # fmt: skip
    for writer in writers:
        writer(tmp, results)
    write_manifest(tmp, list(results.evals))
    return swap_into_place(tmp, dest)


def swap_into_place(tmp: Path, dest: Path) -> Path:
    """Rename a complete folder to `dest`, replacing what was there with two renames (no moment without one)."""
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    return dest


def put_files(folder: Path, files: dict[str, Path | bytes]) -> None:
    """Write files into a bundle being built (bundle path -> source file or bytes), making their folders."""
    for rel, src in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            (folder / rel).write_bytes(src)
        else:
            shutil.copyfile(src, folder / rel)


def write_run(folder: Path, r: Results) -> None:
    """config.json, classes.json, test_set.csv, history.csv: what was trained, on what."""
    (folder / "config.json").write_text(json.dumps(r.config, indent=2))
    classes = [{"id": i, "name": n} for i, n in zip(r.class_ids, r.class_names)]
    (folder / "classes.json").write_text(json.dumps(classes, indent=1))
    test = pd.DataFrame({"index": np.arange(len(r.test_ids)), "id": r.test_ids, "label": r.test_labels})
    test.to_csv(folder / "test_set.csv", index=False)
    r.history.to_csv(folder / "history.csv", index=False)


def write_models(folder: Path, r: Results) -> None:
    """models/: each stage's .keras file (training side), ONNX graph and folded head (serving side)."""
    (folder / "models").mkdir()
    for stage, src in r.model_files.items():
        shutil.copyfile(src, folder / "models" / f"{stage}.keras")
    put_files(folder, serving_files(r.onnx_files, r.heads))


def serving_files(onnx_files: dict[str, Path], heads: dict[str, dict[str, np.ndarray]]) -> dict[str, Path | bytes]:
    """Each stage's serving files by bundle path: its ONNX graph (a file) and its folded head (.npz bytes)."""
    files: dict[str, Path | bytes] = {ONNX_FILE.format(stage=s): src for s, src in onnx_files.items()}
    files.update({HEAD_FILE.format(stage=s): encode_head(head) for s, head in heads.items()})
    return files


def encode_head(head: dict[str, np.ndarray]) -> bytes:
    """The folded head (weights: features x classes, bias: classes) as .npz bytes."""
    buf = io.BytesIO()
    np.savez(buf, weights=np.asarray(head["weights"], np.float32), bias=np.asarray(head["bias"], np.float32))
    return buf.getvalue()


def write_evaluations(folder: Path, r: Results) -> None:
    for stage, ev in r.evals.items():
        write_evaluation(folder / stage, ev, r.class_ids)


def write_feature_space(folder: Path, r: Results) -> None:
    """stageN/embedding.npz and reference.csv (optional: none with --reference-per-class 0)."""
    for stage, emb in r.embeddings.items():
        write_embedding(folder / stage / "embedding.npz", emb)
    if r.reference is not None:
        r.reference.rename_axis("index").to_csv(folder / "reference.csv")


def write_photos(folder: Path, r: Results) -> None:
    """photos/: every thumbnail once, in shards grouped by the view that first needs them."""
    first = set(r.first_photos)
    if r.reference is not None:
        first |= {("train", i) for i in r.reference["id"].astype(str)}
    put_files(folder, photo_files(folder, r.photos, first))


def photo_files(folder: Path, photos: dict[Key, bytes], first: set[Key]) -> dict[str, bytes]:
    """The shards and the index that add `photos` to the bundle at `folder` (new shards only; its own kept);
    `first`: the photos the first screen shows (Predict's examples and similar photos), packed apart."""
    index = pd.read_csv(folder / PHOTO_INDEX, dtype=str) if (folder / PHOTO_INDEX).is_file() else None
    return pack(photos, lambda key: "first" if key in first else key[0], index)


def add_files(folder: Path, files: dict[str, Path | bytes]) -> None:
    """Add files to a complete bundle in place (bundle path -> source file or bytes), then list them in bundle.json.

    Each file lands by an atomic rename and the manifest is rewritten last, so a crash leaves the bundle as it was
    (an unlisted file is never read).
    """
    folder = Path(folder)
    for rel, src in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.partial")
        if isinstance(src, bytes):
            tmp.write_bytes(src)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    manifest = _read_json(folder, "bundle.json")
    write_manifest(folder, manifest["stages"])


def write_evaluation(folder: Path, ev: Evaluation, class_ids: list[str]) -> None:
    """One stage's results: predictions, probabilities (float16), metrics, per-class table, confusion matrix."""
    folder.mkdir()
    ev.predictions.to_csv(folder / "predictions.csv", index=False, float_format="%.6g")
    np.savez_compressed(folder / "probs.npz", probs=ev.probs.astype(np.float16))
    (folder / "metrics.json").write_text(json.dumps(ev.metrics, indent=1))
    ev.per_class.to_csv(folder / "per_class.csv", index=False, float_format="%.6g")
    pd.DataFrame(ev.confusion, index=class_ids, columns=class_ids).to_csv(folder / "confusion.csv")


def write_embedding(path: Path, emb: Embedding) -> None:
    path.write_bytes(encode_embedding(emb))


def encode_embedding(emb: Embedding) -> bytes:
    """The feature space: coordinates and residuals in float16 (distances stay within about 1e-3), the rest exact."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        test=emb.test.astype(np.float16),
        test_resid=emb.test_resid.astype(np.float16),
        xy=emb.xy.astype(np.float32),
        mean=emb.mean.astype(np.float32),
        components=emb.components.astype(np.float32),
        ref=emb.ref.astype(np.float16),
        ref_resid=emb.ref_resid.astype(np.float16),
        ref_labels=emb.ref_labels.astype(np.int32),
        threshold=np.float64(emb.threshold),
        k=np.int32(emb.k),
    )
    return buf.getvalue()


def write_quality(folder: Path, r: Results) -> None:
    """quality/: the data-quality analysis: two tables and a summary (its photos are in photos/; optional)."""
    if r.quality is not None:
        put_files(folder, quality_files(r.quality))


def quality_files(dq: DataQuality) -> dict[str, bytes]:
    files = {
        "quality/suspects.csv": dq.suspects.to_csv(index=False).encode(),
        "quality/duplicates.csv": dq.duplicates.to_csv(index=False).encode(),
        "quality/summary.json": json.dumps(dq.summary, indent=1).encode(),
    }
    if dq.image_checks is not None:
        files["quality/image_checks.csv"] = dq.image_checks.to_csv(index=False).encode()
    return files


def write_slices(folder: Path, r: Results) -> None:
    """properties.csv and stageN/slices.json: the failure slices and the photo properties that define them."""
    put_files(folder, slice_files(r.properties, r.slices))


def slice_files(properties: pd.DataFrame | None, slices: dict[str, pd.DataFrame]) -> dict[str, bytes]:
    files = (
        {} if properties is None else {"properties.csv": properties.to_csv(index=False, float_format="%.5g").encode()}
    )
    for stage, found in slices.items():
        records = found.to_dict("records")
        files[SLICES_FILE.format(stage=stage)] = json.dumps({**found.attrs, "slices": records}, indent=1).encode()
    return files


def write_manifest(folder: Path, stages: list[str]) -> None:
    """bundle.json: the format, its version, and the size and sha256 of every other file in `folder`."""
    files = {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.relative_to(folder).as_posix() != "bundle.json"  # a rewrite must not list itself
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)  # partial writes, tool caches
    }
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stages": stages,
        "files": files,
    }
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=1))


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
        self.manifest = _read_json(self.path, "bundle.json")
        if self.manifest.get("format") != FORMAT:
            raise BundleError(f"{self.path}: bundle.json is not a {FORMAT} manifest")
        version = self.manifest.get("version", 0)
        if version > VERSION:
            raise BundleError(
                f"{self.path}: bundle format {version} is newer than this code reads ({VERSION}); update food101_core"
            )
        if version < VERSION:
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
        if not self.stages:
            raise BundleError(f"{self.path}: bundle.json lists no stages")
        if len(self.test_labels) and self.test_labels.max() >= len(self.class_ids):
            raise BundleError(f"{self.path}: test_set.csv has labels beyond the {len(self.class_ids)} classes")

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
        """Whether the bundle lists the file (a complete write: an unlisted file is never read)."""
        return rel in self.files

    def file(self, rel: str) -> Path:
        """The local path of a listed file, downloaded and checked first if it is not here yet."""
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
        return _read_json(self.path, rel, self.file)

    def _csv(self, rel: str, **kwargs) -> pd.DataFrame:
        try:
            return pd.read_csv(self.file(rel), **kwargs)
        except BundleError:
            raise
        except Exception as e:
            raise BundleError(f"{self.path}: {rel} is unreadable: {e}") from e

    def has_onnx(self, stage: str | None = None) -> bool:
        """Whether the stage's serving graph is in the bundle (and listed in bundle.json: a complete write)."""
        return self.has(ONNX_FILE.format(stage=stage or self.stages[-1]))

    def onnx_file(self, stage: str | None = None) -> Path:
        """The stage's ONNX model, which the app serves; a bundle written before them is told how to add them."""
        stage = stage or self.stages[-1]
        if not self.has_onnx(stage):
            raise BundleError(
                f"{self.path}: no ONNX model for {stage} (the bundle was written before the app served ONNX). "
                f"Add them where TensorFlow is installed (requirements-train.txt): "
                f"{ADD_ONNX.replace('RUN', str(self.path))}"
            )
        return self.file(ONNX_FILE.format(stage=stage))

    def head(self, stage: str | None = None) -> dict[str, np.ndarray] | None:
        """The stage's head folded into one linear map (weights, bias) for Grad-CAM; None if the head is not linear."""
        rel = HEAD_FILE.format(stage=stage or self.stages[-1])
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

    def evaluation(self, stage: str | None = None) -> Evaluation:
        stage = stage or self.stages[-1]
        with self._lock:
            if stage not in self._evals:
                self._evals[stage] = self._read_evaluation(stage)
            return self._evals[stage]

    def _read_evaluation(self, stage: str) -> Evaluation:
        d = f"{stage}/"
        with self._npz(d + "probs.npz") as z:
            probs = z["probs"].astype(np.float32)
        if probs.shape != (len(self.test_ids), self.num_classes):
            raise BundleError(
                f"{self.path}: {d}probs.npz has shape {probs.shape}, expected {(len(self.test_ids), self.num_classes)}"
            )
        confusion = self._csv(d + "confusion.csv").iloc[:, 1:]  # first column: the true class ids
        return Evaluation(
            probs=probs,
            predictions=self._csv(d + "predictions.csv"),
            per_class=self._csv(d + "per_class.csv"),
            confusion=confusion.to_numpy(),
            metrics=self.json(d + "metrics.json"),
        )

    @property
    def has_feature_space(self) -> bool:
        """Whether this bundle carries the map, the reference photos and the unfamiliar-photo statistics (of its
        shipped, last stage: the one the app serves)."""
        return self.has("reference.csv") and self.has(f"{self.stages[-1]}/embedding.npz")

    def embedding(self, stage: str | None = None) -> Embedding | None:
        """The stage's feature space, or None for a bundle without it (the analyses step adds it)."""
        stage = stage or self.stages[-1]
        rel = f"{stage}/embedding.npz"
        if not self.has(rel):
            return None
        with self._lock:
            if stage not in self._embeddings:
                self._embeddings[stage] = self._read_embedding(rel)
            return self._embeddings[stage]

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

    def properties(self) -> pd.DataFrame | None:
        """Every test photo's readable properties (and, with the analyses, unfamiliar score and map region)."""
        return self._csv("properties.csv", dtype={"id": str}) if self.has("properties.csv") else None

    def slices(self, stage: str | None = None) -> dict | None:
        """The stage's failure slices ({"slices": [{name, conditions, n, accuracy, overall, p_value, ...}], "tested",
        "correction", ...}), or None where evaluation did not find them (a bundle written before them)."""
        rel = SLICES_FILE.format(stage=stage or self.stages[-1])
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
        """A photo's thumbnail as a file, if the bundle keeps one."""
        return self.photos.path(split, str(image_id))

    def has_photo(self, split: str, image_id: str) -> bool:
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


def log_fetch(rel: str, size: int) -> None:
    """What a Hub bundle says before it downloads a file on first use (the app also says it on the page)."""
    print(f"downloading {rel} ({size / 1e6:.1f} MB) from the Hub, on first use", file=sys.stderr)


def check_file(root: Path, rel: str, meta: dict, p: Path | None = None) -> None:
    """The file is there with the size and sha256 bundle.json gives it."""
    p = p or root / rel
    if not p.is_file():
        raise BundleError(f"{root}: missing {rel}")
    if p.stat().st_size != meta["bytes"] or _sha256(p) != meta["sha256"]:
        raise BundleError(f"{root}: {rel} is corrupt (its size or checksum differs from bundle.json)")


def _read_json(root: Path, rel: str, file: Callable[[str], Path] | None = None):
    try:
        return json.loads((file(rel) if file else root / rel).read_text())
    except FileNotFoundError:
        raise BundleError(f"{root}: missing {rel} (not a complete run bundle)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{root}: {rel} is corrupt: {e}") from e


def load_bundle(ref: str | os.PathLike, verify: bool = True) -> Bundle:
    """A bundle from a local folder, or from a Hugging Face Hub model repo ("owner/name"), whose files are then
    downloaded when first read (bundle.json at once)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return Bundle(path, verify)
    if not _REPO_ID.match(str(ref)):
        raise BundleError(f"{ref}: no such folder, and not a Hugging Face Hub repo id (owner/name)")
    repo = HubRepo(str(ref))
    try:
        folder = repo.open("bundle.json")
    except HubError as e:
        raise BundleError(str(e)) from e
    return Bundle(folder, verify, fetch=repo.fetch)


def find_newest_bundle(root: Path) -> Path | None:
    """The most recently written complete bundle under `root` (hidden and partial folders ignored)."""
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if not p.name.startswith(".") and (p / "bundle.json").is_file()]
    return max(found, key=lambda p: (p / "bundle.json").stat().st_mtime, default=None)


def publish_bundle(path: Path, repo_id: str, private: bool = False, token: str | None = None, api=None) -> str:
    """Upload a verified bundle to a Hub model repo in commits of at most 100 files, bundle.json last; returns
    the repo URL."""
    b = Bundle(path)  # refuse to publish a broken or format-1 bundle
    return upload(b.path, sorted(b.files), repo_id, last="bundle.json", private=private, token=token, api=api)


def upgrade_bundle(path: Path) -> Path:
    """Convert a format-1 bundle (loose thumbnails) to format 2 (photos/ shards) in place, atomically."""
    path = Path(path)
    manifest = _read_json(path, "bundle.json")
    if manifest.get("version") != 1:
        raise BundleError(f"{path}: not a format-1 bundle (version {manifest.get('version')})")
    for rel, meta in manifest["files"].items():
        check_file(path, rel, meta)
    photos, loose = format1_photos(path, manifest["files"])
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    put_files(tmp, {rel: path / rel for rel in manifest["files"] if rel not in loose})
    put_files(tmp, photo_files(tmp, photos, format1_first_screen(path, manifest, set(photos))))
    write_manifest(tmp, manifest["stages"])
    return swap_into_place(tmp, path)


def format1_first_screen(path: Path, manifest: dict, kept: set[Key]) -> set[Key]:
    """What evaluation now packs first, for a format-1 bundle: the reference photos, and of each dish's kept test
    photos the last stage's most confident mistake and its first 3 right answers (Predict's examples)."""
    first: set[Key] = set()
    if "reference.csv" in manifest["files"]:
        first |= {("train", i) for i in pd.read_csv(path / "reference.csv", dtype=str)["id"]}
    p = pd.read_csv(path / manifest["stages"][-1] / "predictions.csv", dtype={"id": str})
    p = p[[("test", i) in kept for i in p["id"]]].set_index("index", drop=False)
    return first | {("test", p.at[i, "id"]) for i in first_screen_photos(p, right_per_class=3)}


def format1_photos(path: Path, files: dict) -> tuple[dict[Key, bytes], set[str]]:
    """A format-1 bundle's loose thumbnails by (split, id), and their file names."""
    test_ids = pd.read_csv(path / "test_set.csv", dtype={"id": str})["id"].tolist()
    train_ids: dict[int, str] = {}
    if "quality/suspects.csv" in files:
        s = pd.read_csv(path / "quality/suspects.csv", dtype={"id": str})
        train_ids.update(zip(s["index"], s["id"]))
        d = pd.read_csv(path / "quality/duplicates.csv", dtype={"a_id": str, "b_id": str})
        for side in ("a", "b"):
            rows = d[d[f"{side}_split"] == "train"]
            train_ids.update(zip(rows[f"{side}_index"], rows[f"{side}_id"]))
    ref = pd.read_csv(path / "reference.csv", dtype={"id": str})["id"].tolist() if "reference.csv" in files else []
    photos: dict[Key, bytes] = {}
    loose = set()
    for rel in files:
        parts = rel.split("/")
        if not rel.endswith(".jpg") or parts[0] not in ("thumbs", "reference", "quality"):
            continue
        i = int(parts[-1][:-4])
        key = {"thumbs": ("test", test_ids[i]) if i < len(test_ids) else None,
               "reference": ("train", ref[i]) if i < len(ref) else None,
               "quality": (parts[1], test_ids[i] if parts[1] == "test" else train_ids.get(i))}[parts[0]]  # fmt: skip
        loose.add(rel)
        if key is not None and key[1] is not None:
            photos[key] = (path / rel).read_bytes()
    return photos, loose


def main(argv: list[str] | None = None) -> int:
    """`check RUN` verifies a bundle; `publish RUN OWNER/NAME` uploads it; `upgrade RUN` converts format 1."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m food101_core.bundle", description=main.__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="verify every file of a bundle").add_argument("run")
    sub.add_parser("upgrade", help="convert a format-1 bundle (loose thumbnails) to format 2, in place").add_argument(
        "run"
    )
    pub = sub.add_parser("publish", help="upload a bundle to a Hugging Face Hub model repo (needs HF_TOKEN)")
    pub.add_argument("run")
    pub.add_argument("repo_id")
    pub.add_argument("--private", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.command == "check":
            b = load_bundle(args.run)
            m = b.evaluation(b.stages[-1]).metrics
            size = sum(f["bytes"] for f in b.files.values())
            print(f"{b.path}: complete; {b.num_classes} classes, {len(b.test_ids)} test images, top-1 {m['top1']:.2%}; "
                  f"{len(b.files) + 1} files, {size / 1e6:.1f} MB, {len(b.photos):,} photos")  # fmt: skip
        elif args.command == "upgrade":
            print(f"{upgrade_bundle(Path(args.run))}: upgraded to format {VERSION}")
        else:
            print(publish_bundle(Path(args.run), args.repo_id, private=args.private))
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # network and authentication errors from the Hub client
        print(f"error: could not publish to the Hub: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
