"""Upgrades: a format-1 bundle (loose thumbnails) converted in place to the current format, atomically. A format-2
bundle needs none: it opens as it is (it has no sets)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from ..metrics import first_screen_photos
from ..photos import Key
from .layout import BundleError, check_file, read_json
from .write import photo_files, put_files, swap_into_place, write_manifest


def upgrade_bundle(path: Path) -> Path:
    """Convert a format-1 bundle (loose thumbnails) to the current format (photos/ shards) in place, atomically."""
    path = Path(path)
    manifest = read_json(path, "bundle.json")
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
