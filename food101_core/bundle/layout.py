"""The bundle's format: its name and version, where each artifact lives, and the checks every file passes.

Layout (format 3; docs/bundle-format.md has the details):

    bundle.json          format, version, creation time, stages, sets, and size + sha256 of every other file
    config.json          {"train": every TrainConfig setting, "data": the data set's identity,
                          "versions": library versions, "timings": seconds per phase}
    classes.json         [{"id": "apple_pie", "name": "Apple pie"}, ...] in model output order
    test_set.csv         index, id, label: the test images in the order every other file refers to
    history.csv          epoch, stage, loss, accuracy, top5, val_* (every stage)
    models/stageN.keras  each stage's kept model (training side); models/stageN.onnx and .head.npz: what the app
                         serves (ONNX Runtime) and its head folded for Grad-CAM
    stage1/ stage2/      predictions.csv, probs.npz (float16 matrix, calibrated), metrics.json (with the fitted
                         temperature and the raw ECE), per_class.csv, confusion.csv, slices.json
    properties.csv       every test photo's properties (what the failure slices are made of)
    photos/index.csv     split, id, shard: every thumbnail the app shows, stored once whichever views show it
    photos/<group>-NN.zip  the thumbnails, packed in a few uncompressed zips (photos.py)
    reference.csv        index, id, label: up to N training photos per class, the "similar photos" of the app
    stageN/embedding.npz the shipped stage's feature space (optional: the analyses add it)
    quality/             data quality (optional, like the feature space)
    sets/<name>/         an evaluation set of the user's own photos, scored by the shipped stage (format 3):
                         files.csv (every file given and what became of it), the same evaluation files as a stage
                         (predictions.csv, probs.npz, metrics.json, per_class.csv, confusion.csv) over its scored
                         photos, summary.json (against the test split), properties.csv, slices.json and, with the
                         analyses, embedding.npz (its place on the map); its mistakes' photos in photos/set-<name>-NN

Format 2 packed format 1's loose thumbnails; format 3 added sets/ (a format-2 bundle opens as it is, with no sets).
`python -m food101_core.bundle upgrade RUN` converts a format-1 bundle in place.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

FORMAT = "food101-explorer-bundle"
VERSION = 3  # 3: evaluation sets (sets/); 2: photos packed in shards (format 1 kept loose thumbnails)
READABLE = (2, 3)  # format 2 has no sets and opens as it is; format 1 is upgraded by a command
STAGES = ("stage1", "stage2", "stage3")  # stage3: the optional resolution polish
HEAD_FILE = "models/{stage}.head.npz"  # the folded head: Grad-CAM without gradients
ONNX_FILE = "models/{stage}.onnx"  # the serving graph: probabilities, pooled features, last feature map
ADD_ONNX = "python -m food101_core.training.export RUN"  # adds both to a bundle written before them
SLICES_FILE = "{stage}/slices.json"  # the stage's failure slices (properties.csv: what defines them)
EMBEDDING_ARRAYS = ("test", "test_resid", "xy", "mean", "components", "ref", "ref_resid")
SET_EMBEDDING_ARRAYS = ("test", "test_resid", "xy")  # a set's own rows; the rest is its stage's
SET_DIR = "sets/{name}/"
SET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# A set on its own, outside any bundle (a visitor's in the app, its download, what `sets add` takes): set.json, its
# files at their bundle paths (sets/NAME/...) and its thumbnails as photos/set-NAME/ID.jpg
SET_FORMAT = "food101-explorer-set"
SET_MANIFEST = "set.json"
MAX_SET_BYTES = 200_000_000  # a set archive read into memory: its tables and thumbnails are far smaller
TEST = "test"  # the Photos selector's name for the test split


class BundleError(RuntimeError):
    """A bundle that cannot be used; the message names the part."""


def set_dir(name: str) -> str:
    """A set's folder in the bundle (its name checked: it becomes a path)."""
    check_set_name(name)
    return SET_DIR.format(name=name)


def set_split(name: str) -> str:
    """The photo split a set's thumbnails are kept under (photos/index.csv) and the group of their shards."""
    return f"set-{name}"


def served_model_sha(manifest: dict) -> str:
    """The sha256 of the model that scores sets: the shipped stage's ONNX graph (a set names it, so that it is only
    ever added to a bundle whose answers it holds)."""
    stage = [s for s in manifest.get("stages", []) if s in STAGES][-1]
    return manifest["files"].get(ONNX_FILE.format(stage=stage), {}).get("sha256", "")


def check_set_name(name: str) -> str:
    if name == TEST or not SET_NAME.match(name or ""):
        raise BundleError(
            f"{name!r} is not a usable set name: 1-40 lower-case letters, digits, '-' or '_', not {TEST!r}"
        )
    return name


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(root: Path, rel: str, meta: dict, p: Path | None = None) -> None:
    """The file is there with the size and sha256 bundle.json gives it."""
    p = p or root / rel
    if not p.is_file():
        raise BundleError(f"{root}: missing {rel}")
    if p.stat().st_size != meta["bytes"] or sha256(p) != meta["sha256"]:
        raise BundleError(f"{root}: {rel} is corrupt (its size or checksum differs from bundle.json)")


def read_json(root: Path, rel: str, file: Callable[[str], Path] | None = None):
    try:
        return json.loads((file(rel) if file else root / rel).read_text())
    except FileNotFoundError:
        raise BundleError(f"{root}: missing {rel} (not a complete run bundle)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{root}: {rel} is corrupt: {e}") from e
