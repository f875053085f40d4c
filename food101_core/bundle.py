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
    thumbs/<index>.jpg   <=128 px thumbnails: every misclassified test image and a few correct ones per class
    reference.csv        index, id, label: up to N training photos per class, the "similar photos" of the app
    reference/<i>.jpg    their <=128 px thumbnails
    stage2/embedding.npz the final stage's feature space: test and reference features (PCA coordinates and
                         residuals, float16), the 2-D UMAP map, the PCA to place a new photo, and the
                         unfamiliar-photo threshold (optional: a bundle without them opens; re-evaluation adds them)
    quality/             data quality (optional, like the feature space): suspects.csv (suspected label errors of
                         the training split, most suspect first), duplicates.csv (near-duplicate pairs test-train
                         and test-test), summary.json, and <=128 px thumbnails train/<index>.jpg, test/<index>.jpg
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import TrainConfig
from .data_quality import DataQuality
from .embedding import Embedding
from .metrics import Evaluation

FORMAT = "food101-explorer-bundle"
VERSION = 1
STAGES = ("stage1", "stage2", "stage3")  # stage3: the optional resolution polish
HEAD_FILE = "models/{stage}.head.npz"  # the folded head: Grad-CAM without gradients
ONNX_FILE = "models/{stage}.onnx"  # the serving graph: probabilities, pooled features, last feature map
ADD_ONNX = "python -m food101_core.training.export RUN"  # adds both to a bundle written before them
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
    thumbs: dict[int, bytes] = field(default_factory=dict)  # test index -> JPEG
    onnx_files: dict[str, Path] = field(default_factory=dict)  # stage -> its serving graph (ONNX)
    heads: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # stage -> folded head (Grad-CAM)
    embeddings: dict[str, Embedding] = field(default_factory=dict)
    reference: pd.DataFrame | None = None  # the reference training photos: id, label
    reference_thumbs: dict[int, bytes] = field(default_factory=dict)  # reference row -> JPEG
    quality: DataQuality | None = None


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
    for writer in (write_run, write_models, write_evaluations, write_feature_space, write_quality, write_thumbs):
        writer(tmp, results)
    write_manifest(tmp, list(results.evals))
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    return dest


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
    for rel, src in serving_files(r.onnx_files, r.heads).items():
        if isinstance(src, bytes):
            (folder / rel).write_bytes(src)
        else:
            shutil.copyfile(src, folder / rel)


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
    """stageN/embedding.npz, reference.csv and reference/ (optional: none with --reference-per-class 0)."""
    for stage, emb in r.embeddings.items():
        write_embedding(folder / stage / "embedding.npz", emb)
    if r.reference is not None:
        r.reference.rename_axis("index").to_csv(folder / "reference.csv")
        (folder / "reference").mkdir()
        for i, jpeg in r.reference_thumbs.items():
            (folder / "reference" / f"{i}.jpg").write_bytes(jpeg)


def write_thumbs(folder: Path, r: Results) -> None:
    (folder / "thumbs").mkdir()
    for i, jpeg in r.thumbs.items():
        (folder / "thumbs" / f"{i}.jpg").write_bytes(jpeg)


def add_files(folder: Path, files: dict[str, Path | bytes]) -> None:
    """Add files to a complete bundle in place (bundle path -> source file or bytes), then list them in bundle.json.

    Each file lands by an atomic rename and the manifest is rewritten last, so a crash leaves the bundle as it was
    (an unlisted file is never read).
    """
    folder = Path(folder)
    for rel, src in files.items():
        target = folder / rel
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
    """The feature space: coordinates and residuals in float16 (distances stay within about 1e-3), the rest exact."""
    np.savez_compressed(
        path,
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


def write_quality(folder: Path, r: Results) -> None:
    """quality/: the data-quality analysis: two tables, a summary and the thumbnails the app shows (optional)."""
    if r.quality is None:
        return
    folder, dq = folder / "quality", r.quality
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
    dq.suspects.to_csv(folder / "suspects.csv", index=False)
    dq.duplicates.to_csv(folder / "duplicates.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(dq.summary, indent=1))
    for (split, i), jpeg in dq.thumbs.items():
        (folder / split / f"{int(i)}.jpg").write_bytes(jpeg)


def write_manifest(folder: Path, stages: list[str]) -> None:
    """bundle.json: the format, its version, and the size and sha256 of every other file in `folder`."""
    files = {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() != "bundle.json"  # a rewrite must not list itself
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
    """A verified bundle on disk. Models and evaluations load on first use and are shared afterwards."""

    def __init__(self, path: Path, verify: bool = True):
        self.path = Path(path)
        self.manifest = _read_json(self.path, "bundle.json")
        if self.manifest.get("format") != FORMAT:
            raise BundleError(f"{self.path}: bundle.json is not a {FORMAT} manifest")
        if self.manifest.get("version", 0) > VERSION:
            raise BundleError(
                f"{self.path}: bundle format {self.manifest['version']} is newer than this code "
                f"reads ({VERSION}); update food101_core"
            )
        if verify:
            self.verify()
        self.config = _read_json(self.path, "config.json")
        try:
            self.train_config = TrainConfig.from_dict(self.config["train"])
        except (KeyError, TypeError) as e:
            raise BundleError(f"{self.path}: config.json has no usable training settings: {e}") from e
        classes = _read_json(self.path, "classes.json")
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
        self._evals: dict[str, Evaluation] = {}
        self._embeddings: dict[str, Embedding] = {}
        self._reference: pd.DataFrame | None = None
        self._lock = threading.Lock()

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

    def verify(self) -> None:
        """Every file the manifest lists is there, with its size and hash."""
        for rel, meta in self.manifest.get("files", {}).items():
            p = self.path / rel
            if not p.is_file():
                raise BundleError(f"{self.path}: missing {rel}")
            if p.stat().st_size != meta["bytes"] or _sha256(p) != meta["sha256"]:
                raise BundleError(f"{self.path}: {rel} is corrupt (its size or checksum differs from bundle.json)")

    def _csv(self, rel: str) -> pd.DataFrame:
        try:
            return pd.read_csv(self.path / rel)
        except FileNotFoundError:
            raise BundleError(f"{self.path}: missing {rel}") from None
        except Exception as e:
            raise BundleError(f"{self.path}: {rel} is unreadable: {e}") from e

    def has_onnx(self, stage: str | None = None) -> bool:
        """Whether the stage's serving graph is in the bundle (and listed in bundle.json: a complete write)."""
        return ONNX_FILE.format(stage=stage or self.stages[-1]) in self.manifest.get("files", {})

    def onnx_file(self, stage: str | None = None) -> Path:
        """The stage's ONNX model, which the app serves; a bundle written before them is told how to add them."""
        stage = stage or self.stages[-1]
        if not self.has_onnx(stage):
            raise BundleError(
                f"{self.path}: no ONNX model for {stage} (the bundle was written before the app served ONNX). "
                f"Add them where TensorFlow is installed (requirements-train.txt): "
                f"{ADD_ONNX.replace('RUN', str(self.path))}"
            )
        return self.path / ONNX_FILE.format(stage=stage)

    def head(self, stage: str | None = None) -> dict[str, np.ndarray] | None:
        """The stage's head folded into one linear map (weights, bias) for Grad-CAM; None if the head is not linear."""
        rel = HEAD_FILE.format(stage=stage or self.stages[-1])
        if rel not in self.manifest.get("files", {}):
            return None
        try:
            with np.load(self.path / rel) as z:
                head = {"weights": z["weights"].astype(np.float32), "bias": z["bias"].astype(np.float32)}
        except Exception as e:
            raise BundleError(f"{self.path}: {rel} is unreadable: {e}") from e
        if head["weights"].shape[1] != self.num_classes:
            raise BundleError(f"{self.path}: {rel} has {head['weights'].shape[1]} classes, not {self.num_classes}")
        return head

    def evaluation(self, stage: str | None = None) -> Evaluation:
        stage = stage or self.stages[-1]
        with self._lock:
            if stage not in self._evals:
                d = f"{stage}/"
                try:
                    probs = np.load(self.path / d / "probs.npz")["probs"].astype(np.float32)
                except Exception as e:
                    raise BundleError(f"{self.path}: {d}probs.npz is unreadable: {e}") from e
                if probs.shape != (len(self.test_ids), self.num_classes):
                    raise BundleError(
                        f"{self.path}: {d}probs.npz has shape {probs.shape}, expected "
                        f"{(len(self.test_ids), self.num_classes)}"
                    )
                confusion = self._csv(d + "confusion.csv").iloc[:, 1:]  # first column: the true class ids
                self._evals[stage] = Evaluation(
                    probs=probs,
                    predictions=self._csv(d + "predictions.csv"),
                    per_class=self._csv(d + "per_class.csv"),
                    confusion=confusion.to_numpy(),
                    metrics=_read_json(self.path, d + "metrics.json"),
                )
            return self._evals[stage]

    @property
    def has_feature_space(self) -> bool:
        """Whether this bundle carries the map, the reference photos and the unfamiliar-photo statistics (of its
        shipped, last stage: the one the app serves)."""
        return (self.path / "reference.csv").is_file() and (self.path / self.stages[-1] / "embedding.npz").is_file()

    def embedding(self, stage: str | None = None) -> Embedding | None:
        """The stage's feature space, or None for a bundle written before it existed (re-evaluation adds it)."""
        stage = stage or self.stages[-1]
        rel = f"{stage}/embedding.npz"
        if not (self.path / rel).is_file():
            return None
        with self._lock:
            if stage not in self._embeddings:
                try:
                    with np.load(self.path / rel) as z:
                        arrays = {k: z[k].astype(np.float32) for k in EMBEDDING_ARRAYS}
                        emb = Embedding(
                            **arrays, ref_labels=z["ref_labels"], threshold=float(z["threshold"]), k=int(z["k"])
                        )
                except Exception as e:
                    raise BundleError(f"{self.path}: {rel} is unreadable: {e}") from e
                if emb.test.shape[0] != len(self.test_ids) or emb.xy.shape != (len(self.test_ids), 2):
                    raise BundleError(f"{self.path}: {rel} does not have one row per test image")
                self._embeddings[stage] = emb
            return self._embeddings[stage]

    @property
    def reference(self) -> pd.DataFrame:
        """The reference training photos (id, label), in the order of every embedding's `ref` rows."""
        if self._reference is None:
            self._reference = self._csv("reference.csv")
        return self._reference

    @property
    def has_data_quality(self) -> bool:
        """Whether this bundle carries the suspect-label and duplicate analysis (re-evaluation adds it)."""
        return (self.path / "quality" / "summary.json").is_file()

    def data_quality(self) -> DataQuality | None:
        """The data-quality analysis, or None for a bundle written before it existed."""
        if not self.has_data_quality:
            return None
        return DataQuality(
            suspects=self._csv("quality/suspects.csv"),
            duplicates=self._csv("quality/duplicates.csv"),
            summary=_read_json(self.path, "quality/summary.json"),
        )

    def quality_thumb(self, split: str, index: int) -> Path | None:
        """A data-quality thumbnail (split "train" or "test", position in that split), if the bundle has it."""
        p = self.path / "quality" / split / f"{int(index)}.jpg"
        return p if split in ("train", "test") and p.is_file() else None

    def reference_thumb(self, row: int) -> Path | None:
        p = self.path / "reference" / f"{int(row)}.jpg"
        return p if p.is_file() else None

    def thumb(self, index: int) -> Path | None:
        """The thumbnail of test image `index`, if the bundle has one (only the bundle's own files)."""
        p = self.path / "thumbs" / f"{int(index)}.jpg"
        return p if p.is_file() else None

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


def _read_json(root: Path, rel: str):
    try:
        return json.loads((root / rel).read_text())
    except FileNotFoundError:
        raise BundleError(f"{root}: missing {rel} (not a complete run bundle)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{root}: {rel} is corrupt: {e}") from e


def load_bundle(ref: str | os.PathLike, verify: bool = True) -> Bundle:
    """A bundle from a local folder, or from a Hugging Face Hub model repo ("owner/name")."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return Bundle(path, verify)
    if not _REPO_ID.match(str(ref)):
        raise BundleError(f"{ref}: no such folder, and not a Hugging Face Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(repo_id=str(ref), repo_type="model")
    except Exception as e:  # offline, unknown repo, auth: all end here
        raise BundleError(
            f"could not download the bundle {ref!r} from the Hugging Face Hub: {type(e).__name__}: {e}. "
            "Offline? Download it elsewhere (huggingface-cli download REPO --local-dir DIR) and pass the folder."
        ) from e
    return Bundle(Path(local), verify)


def find_newest_bundle(root: Path) -> Path | None:
    """The most recently written complete bundle under `root` (hidden and partial folders ignored)."""
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if not p.name.startswith(".") and (p / "bundle.json").is_file()]
    return max(found, key=lambda p: (p / "bundle.json").stat().st_mtime, default=None)


def publish_bundle(path: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a verified bundle to a Hub model repo; returns the repo URL."""
    from huggingface_hub import HfApi

    Bundle(path)  # refuse to publish a broken bundle
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(path), repo_id=repo_id, repo_type="model", commit_message="Upload Food-101 Explorer run bundle"
    )
    return str(url)


def main(argv: list[str] | None = None) -> int:
    """`python -m food101_core.bundle check RUN` verifies a bundle; `publish RUN OWNER/NAME` uploads it."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m food101_core.bundle", description=main.__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="verify every file of a bundle").add_argument("run")
    pub = sub.add_parser("publish", help="upload a bundle to a Hugging Face Hub model repo (needs HF_TOKEN)")
    pub.add_argument("run")
    pub.add_argument("repo_id")
    pub.add_argument("--private", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.command == "check":
            b = load_bundle(args.run)
            m = b.evaluation(b.stages[-1]).metrics
            print(f"{b.path}: complete; {b.num_classes} classes, {len(b.test_ids)} test images, top-1 {m['top1']:.2%}")
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
