"""Writing a bundle: `write_bundle` for a whole run (training side), `add_files` and `add_set` for what is added to a
complete one later (analyses, ONNX export, an evaluation set). One writer per artifact; every write lands by a
rename and bundle.json is written last, so a crash leaves the bundle as it was."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data_quality import DataQuality
from ..embedding import Embedding
from ..metrics import Evaluation
from ..photos import INDEX as PHOTO_INDEX
from ..photos import Key, member, pack
from .layout import (
    FORMAT,
    HEAD_FILE,
    MAX_SET_BYTES,
    ONNX_FILE,
    SET_FORMAT,
    SET_MANIFEST,
    SLICES_FILE,
    VERSION,
    BundleError,
    check_set_name,
    read_json,
    served_model_sha,
    set_dir,
    set_split,
    sha256,
)


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
        put_files(folder, evaluation_files(f"{stage}/", ev, r.class_ids))


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


def add_files(folder: Path, files: dict[str, Path | bytes], remove: tuple[str, ...] = ()) -> None:
    """Add files to a complete bundle in place (bundle path -> source file or bytes), then list them in bundle.json.

    Each file lands by an atomic rename and the manifest is rewritten last, so a crash leaves the bundle as it was
    (an unlisted file is never read). `remove`: files the new manifest leaves out, deleted once it is written.
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
    gone = set(remove) - set(files)
    write_manifest(folder, read_json(folder, "bundle.json")["stages"], skip=gone)
    for rel in gone:
        (folder / rel).unlink(missing_ok=True)


def evaluation_files(prefix: str, ev: Evaluation, class_ids: list[str]) -> dict[str, bytes]:
    """One evaluation (a stage's on the test split, or a set's): predictions, probabilities (float16), metrics,
    per-class table, confusion matrix, by bundle path under `prefix`."""
    probs = io.BytesIO()
    np.savez_compressed(probs, probs=ev.probs.astype(np.float16))
    confusion = pd.DataFrame(ev.confusion, index=class_ids, columns=class_ids)
    return {
        prefix + "predictions.csv": ev.predictions.to_csv(index=False, float_format="%.6g").encode(),
        prefix + "probs.npz": probs.getvalue(),
        prefix + "metrics.json": json.dumps(ev.metrics, indent=1).encode(),
        prefix + "per_class.csv": ev.per_class.to_csv(index=False, float_format="%.6g").encode(),
        prefix + "confusion.csv": confusion.to_csv().encode(),
    }


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


def write_manifest(folder: Path, stages: list[str], skip: set[str] = frozenset()) -> None:
    """bundle.json: the format, its version, and the size and sha256 of every other file in `folder` (but `skip`)."""
    files = {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.relative_to(folder).as_posix() not in {"bundle.json", *skip}  # a rewrite must not list itself
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)  # partial writes, tool caches
    }
    sets = sorted({rel.split("/")[1] for rel in files if rel.startswith("sets/") and rel.endswith("/summary.json")})
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stages": stages,
        "sets": sets,
        "files": files,
    }
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=1))


@dataclass
class SetResults:
    """An evaluation set as the bundle keeps it (sets.scoring makes it; `add_set` writes it)."""

    name: str
    files: pd.DataFrame  # every file given: file, label, true, status, reason, the answer and its top 5
    evaluation: Evaluation  # over the scored photos (a known dish), in `files`' order: index, id (the file), ...
    summary: dict  # the set against the test split, as /evaluate_set answers it
    properties: pd.DataFrame | None = None  # the scored photos' properties (what its slices are made of)
    slices: pd.DataFrame | None = None
    embedding: Embedding | None = None  # the scored photos placed in the shipped stage's feature space
    photos: dict[Key, bytes] = field(default_factory=dict)  # thumbnails of its mistakes (and a few right answers)


def set_files(s: SetResults, class_ids: list[str]) -> dict[str, bytes]:
    """Every file of a set by bundle path (under sets/<name>/); its photos go through `photo_files`."""
    d = set_dir(s.name)
    files = {d + "files.csv": s.files.to_csv(index=False, float_format="%.6g").encode()}
    files.update(evaluation_files(d, s.evaluation, class_ids))
    files[d + "summary.json"] = json.dumps(s.summary, indent=1).encode()
    if s.properties is not None:
        files[d + "properties.csv"] = s.properties.to_csv(index=False, float_format="%.5g").encode()
    if s.slices is not None:
        files[d + "slices.json"] = json.dumps({**s.slices.attrs, "slices": s.slices.to_dict("records")}).encode()
    if s.embedding is not None:
        buf = io.BytesIO()
        e = s.embedding
        np.savez_compressed(buf, test=e.test.astype(np.float16), test_resid=e.test_resid.astype(np.float16),
                            xy=e.xy.astype(np.float32))  # fmt: skip
        files[d + "embedding.npz"] = buf.getvalue()
    return files


def standalone_set(s: SetResults, class_ids: list[str], model_sha: str) -> dict[str, bytes]:
    """A set on its own (layout.SET_MANIFEST): what a visitor's set is in the app, what it downloads, and what
    `add_set` adds to a bundle."""
    files = set_files(s, class_ids)
    files.update({f"photos/{member(*key)}": data for key, data in s.photos.items()})
    about = {"format": SET_FORMAT, "version": 1, "name": s.name, "model_sha256": model_sha, "classes": class_ids}
    files[SET_MANIFEST] = json.dumps(about, indent=1).encode()
    return files


def renamed_set(files: dict[str, bytes], name: str) -> dict[str, bytes]:
    """A standalone set under another name (its folder and its photos' split follow)."""
    about = json.loads(files[SET_MANIFEST])
    old, new = about["name"], check_set_name(name)
    moves = ((set_dir(old), set_dir(new)), (f"photos/{set_split(old)}/", f"photos/{set_split(new)}/"))
    out = {}
    for rel, data in files.items():
        for a, b in moves:
            if rel.startswith(a):
                rel = b + rel[len(a) :]
                break
        out[rel] = data
    out[SET_MANIFEST] = json.dumps({**about, "name": new}, indent=1).encode()
    return out


def read_set_archive(path: Path) -> dict[str, bytes]:
    """A set downloaded from the app (a zip of a standalone set), every member checked: only set.json, sets/NAME/
    and photos/set-NAME/ paths, nothing that climbs out, at most MAX_SET_BYTES inflated."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            if sum(i.file_size for i in infos) > MAX_SET_BYTES:
                raise BundleError(f"{path}: a set archive inflating past {MAX_SET_BYTES / 1e6:.0f} MB")
            files = {i.filename: z.read(i) for i in infos}
    except zipfile.BadZipFile as e:
        raise BundleError(f"{path}: not a zip ({e})") from None
    if SET_MANIFEST not in files:
        raise BundleError(f"{path}: no {SET_MANIFEST}: not a set downloaded from the app")
    name = check_set_name(json.loads(files[SET_MANIFEST]).get("name", ""))
    allowed = (SET_MANIFEST, set_dir(name), f"photos/{set_split(name)}/")
    bad = [rel for rel in files if not rel.startswith(allowed) or ".." in rel.split("/") or rel.startswith("/")]
    if bad:
        raise BundleError(f"{path}: entries outside a set's folders: {', '.join(bad[:5])}")
    return files


def add_set(folder: Path, files: dict[str, bytes], replace: bool = False) -> str:
    """Add a standalone set (`standalone_set`, or a downloaded one) to a complete bundle in place: its files and
    photo shards land first, bundle.json last. Refused if it was scored by another model or over other dishes, and
    if its name is taken unless `replace` (the old files are then unlisted; its old photos stay in their shards, as
    a shard is never rewritten). Returns the set's name."""
    folder = Path(folder)
    manifest = read_json(folder, "bundle.json")
    about = json.loads(files[SET_MANIFEST])
    name = check_set_name(about.get("name", ""))
    if about.get("format") != SET_FORMAT or about.get("model_sha256") != served_model_sha(manifest):
        raise BundleError(f"{folder}: the set {name!r} was scored by another model than this bundle's shipped one")
    if about.get("classes") != [c["id"] for c in read_json(folder, "classes.json")]:
        raise BundleError(f"{folder}: the set {name!r} was scored over other dishes than this bundle's")
    d, split = set_dir(name), set_split(name)
    if name in manifest.get("sets", []) and not replace:
        raise BundleError(f"{folder}: it has a set named {name!r} already (choose another --name, or --replace)")
    old = tuple(rel for rel in manifest["files"] if rel.startswith(d))  # a replaced set's files that it lacks now
    prefix = f"photos/{split}/"
    photos = {(split, rel[len(prefix) : -len(".jpg")]): data for rel, data in files.items() if rel.startswith(prefix)}
    own = {rel: data for rel, data in files.items() if rel.startswith(d)}
    add_files(folder, {**own, **photo_files(folder, photos, set())}, remove=old)
    return name
