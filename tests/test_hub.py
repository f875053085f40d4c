"""A bundle the Hub can hold: photos packed once in a few shards, format-1 bundles upgraded, published in commits of
at most 100 files with the manifest last, and opened by repo id downloading only what the first screen needs
(against a local stand-in for the Hub's file endpoint: no network)."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import DEMO_BUNDLE, local_client, start_app
from hub_server import HubServer
from PIL import Image

from food101_core import photos as fphotos
from food101_core.bundle import (
    BundleError,
    add_files,
    load_bundle,
    publish_bundle,
    upgrade_bundle,
    write_manifest,
)
from food101_core.photos import PhotoStore, pack

needs_demo = pytest.mark.skipif(not (DEMO_BUNDLE / "bundle.json").is_file(), reason="needs assets/demo-bundle")


def jpeg(seed: int, side: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_photos_are_packed_once_in_bounded_shards_by_group(tmp_path, monkeypatch):
    monkeypatch.setattr(fphotos, "MAX_SHARD_PHOTOS", 1000)
    photos = {("test", f"dish/{i}"): jpeg(i) for i in range(2500)}
    photos |= {("train", f"dish/t{i}"): jpeg(10_000 + i) for i in range(300)}
    first = {("train", f"dish/t{i}") for i in range(50)} | {("test", "dish/7")}
    files = pack(photos, lambda k: "first" if k in first else k[0])
    index = pd.read_csv(io.BytesIO(files[fphotos.INDEX]), dtype=str)
    assert len(index) == len(photos) and not index.duplicated(["split", "id"]).any()
    counts = index["shard"].value_counts()
    assert counts.max() <= 1000 and set(counts.index) == set(files) - {fphotos.INDEX}
    assert set(index[index["shard"].str.startswith("photos/first-")].apply(tuple, axis=1).map(lambda r: r[:2])) == first
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
        if rel.endswith(".zip"):  # a plain zip any tool opens, JPEGs stored as they are
            assert {i.compress_type for i in zipfile.ZipFile(tmp_path / rel).infolist()} == {zipfile.ZIP_STORED}
    fetched = []
    store = PhotoStore(index, lambda rel: fetched.append(rel) or tmp_path / rel, tmp_path / "cache")
    assert store.read("test", "dish/2400") == photos[("test", "dish/2400")]
    assert store.path("train", "dish/t3").read_bytes() == photos[("train", "dish/t3")]
    assert store.path("test", "nope") is None and ("test", "nope") not in store
    assert store.on_first_screen("test", "dish/7") and not store.on_first_screen("test", "dish/8")
    assert len(fetched) == 2  # a shard is opened when a photo of it is first read, and once
    # adding photos writes new shards only, and no photo twice
    more = pack({**photos, ("test", "dish/new"): jpeg(99_999)}, lambda k: k[0], index)
    assert set(more) == {fphotos.INDEX, "photos/test-03.zip"}
    assert len(pd.read_csv(io.BytesIO(more[fphotos.INDEX]))) == len(photos) + 1


def format1_copy(src: Path, dest: Path) -> Path:
    """The bundle as format 1 stored it: every thumbnail a loose file (thumbs/, reference/, quality/<split>/)."""
    shutil.copytree(src, dest)
    b = load_bundle(dest)
    index = pd.read_csv(dest / fphotos.INDEX, dtype=str)
    pos = {("test", i): n for n, i in enumerate(b.test_ids)}
    ref = {("train", i): n for n, i in enumerate(b.reference["id"])} if b.has_feature_space else {}
    dq = b.data_quality()
    train_pos = dict(zip(dq.suspects["id"], dq.suspects["index"])) if dq is not None else {}
    for split, image_id in zip(index["split"], index["id"]):
        data = b.photos.read(split, image_id)
        targets = []
        if split == "test":
            targets += [f"thumbs/{pos[(split, image_id)]}.jpg", f"quality/test/{pos[(split, image_id)]}.jpg"]
        if (split, image_id) in ref:
            targets.append(f"reference/{ref[(split, image_id)]}.jpg")
        if split == "train" and image_id in train_pos:
            targets.append(f"quality/train/{train_pos[image_id]}.jpg")
        for t in targets:
            (dest / t).parent.mkdir(parents=True, exist_ok=True)
            (dest / t).write_bytes(data)
    shutil.rmtree(dest / "photos")
    write_manifest(dest, b.stages)
    manifest = json.loads((dest / "bundle.json").read_text())
    (dest / "bundle.json").write_text(json.dumps({**manifest, "version": 1}))
    return dest


@needs_demo
def test_a_format1_bundle_is_refused_with_the_command_and_upgraded_by_it(tmp_path):
    old = format1_copy(DEMO_BUNDLE, tmp_path / "old")
    loose = sum(1 for p in old.rglob("*.jpg"))
    assert loose > 500
    with pytest.raises(BundleError, match=r"python -m food101_core\.bundle upgrade"):
        load_bundle(old)
    upgrade_bundle(old)
    b, demo = load_bundle(old), load_bundle(DEMO_BUNDLE)
    assert not list(old.rglob("*.jpg")) and len(b.files) < 40
    for i in range(len(demo.test_ids)):
        assert b.has_thumb(i) == demo.has_thumb(i)
        if demo.has_thumb(i):
            assert b.thumb(i).read_bytes() == demo.thumb(i).read_bytes()
    for row in range(len(demo.reference)):
        assert b.reference_thumb(row).read_bytes() == demo.reference_thumb(row).read_bytes()
    for r in demo.data_quality().suspects.head(50).itertuples():
        assert b.photo("train", r.id).read_bytes() == demo.photo("train", r.id).read_bytes()


class RecordingApi:
    """What `publish` asks of the Hub's client, recorded; with `repo`, every committed file is written there too (the
    repo as the Hub would then hold it, for `HubServer` to serve)."""

    def __init__(self, repo: Path | None = None):
        self.commits: list[list[str]] = []
        self.repo = repo

    def create_repo(self, repo_id, **kwargs):
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        for op in operations:
            data = op.path_or_fileobj
            data = data if isinstance(data, bytes) else Path(data).read_bytes()
            if self.repo:
                (self.repo / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
                (self.repo / op.path_in_repo).write_bytes(data)
        self.commits.append([op.path_in_repo for op in operations])


@needs_demo
def test_publish_sends_every_file_once_in_commits_of_at_most_100_manifest_last(tmp_path):
    api = RecordingApi()
    assert publish_bundle(DEMO_BUNDLE, "me/demo", api=api) == "https://huggingface.co/me/demo"
    assert len(api.commits) == 1 and api.commits[0][-1] == "bundle.json"
    assert sorted(api.commits[0]) == sorted([*load_bundle(DEMO_BUNDLE).files, "bundle.json", "README.md"])
    big = tmp_path / "big"
    shutil.copytree(DEMO_BUNDLE, big)
    add_files(big, {f"extra/{i}.txt": str(i).encode() for i in range(230)})
    api = RecordingApi()
    publish_bundle(big, "me/big", api=api)
    sent = [f for c in api.commits for f in c]
    assert max(len(c) for c in api.commits) <= 100 and len(api.commits) == 3
    assert sent[-1] == "bundle.json" and "bundle.json" not in sent[:-1]
    assert sorted(sent) == sorted([*load_bundle(big).files, "bundle.json", "README.md"])
    with pytest.raises(BundleError):  # a broken bundle is never published
        (big / "extra" / "3.txt").write_text("changed")
        publish_bundle(big, "me/big", api=RecordingApi())


@needs_demo
def test_publish_writes_a_model_card_the_hub_reads_back(tmp_path):
    """The published repo's README.md, downloaded from the Hub stand-in by huggingface_hub itself (`ModelCard.load`
    by repo id, in a process whose HF_ENDPOINT is the stand-in), carries the Hub's metadata: license, library, the
    dataset, and a model-index whose top-1 and top-5 are the bundle's own; its text names the failure slices and the
    data issues the analyses found, and how to open the repo in the app."""
    import subprocess
    import sys

    from huggingface_hub import metadata_load

    b = load_bundle(DEMO_BUNDLE)
    repo = tmp_path / "repo"
    publish_bundle(DEMO_BUNDLE, "food/demo", api=RecordingApi(repo), space="food/explorer", license="mit")
    meta = metadata_load(repo / "README.md")
    assert meta["license"] == "mit" and meta["library_name"] == "onnx" and "ethz/food101" in meta["datasets"]
    final = b.evaluation(b.final_stage).metrics
    script = (
        "import json, sys; from huggingface_hub import ModelCard; c = ModelCard.load('food/demo'); "
        "print(json.dumps({'results': [[r.metric_type, r.metric_value, r.dataset_type, r.task_type] "
        "for r in c.data.eval_results], 'text': c.text}))"
    )
    with HubServer(repo, "food/demo") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        assert "README.md" in hub.files()
    card = json.loads(out.stdout)
    assert sorted(card["results"]) == sorted([
        ["accuracy", round(final["top1"], 4), "ethz/food101", "image-classification"],
        ["top_5_accuracy", round(final["top5"], 4), "ethz/food101", "image-classification"],
    ])  # fmt: skip
    text = card["text"]
    for stage in b.stages:
        assert f"{b.evaluation(stage).metrics['top1']:.2%}" in text  # results per stage
    assert b.slices(b.final_stage)["slices"][0]["name"] in text
    assert f"{b.data_quality().summary['suspects']:,} of" in text
    assert "python app.py --run food/demo" in text and "spaces/food/explorer" in text


@needs_demo
def test_the_app_opens_a_hub_repo_fetching_only_the_first_screen_before_it_answers(tmp_path):
    """`app.py --run OWNER/NAME` with HF_ENDPOINT at a local stand-in of the Hub: before the first /predict answer
    it has fetched no Keras model, no other stage's ONNX graph and no photo beyond the first screen's shard; a
    confusion cell's photos then fetch their shard, once."""
    from gradio_client import handle_file

    b = load_bundle(DEMO_BUNDLE)
    total = sum(f["bytes"] for f in b.files.values())
    with HubServer(DEMO_BUNDLE, "food/demo") as hub:
        (tmp_path / "tmp").mkdir()  # its own photo cache: none extracted from the local copy before
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "0",
            "TMPDIR": str(tmp_path / "tmp"),
        }
        proc, url = start_app(["--run", "food/demo"], env=env)
        try:
            client = local_client(url)
            photo = b.thumb(next(i for i in range(len(b.test_ids)) if b.has_thumb(i)))
            label, _, _ = client.predict(handle_file(str(photo)), True, b.final_stage, api_name="/predict")
            assert label["label"] in b.class_names
            first = hub.files()
            sent = hub.bytes_sent()
            print(f"first answer after {len(first)} files, {sent / 1e6:.1f} of {total / 1e6:.1f} MB")
            assert first[0] == "bundle.json" and len(first) == len(set(first))
            assert f"models/{b.final_stage}.onnx" in first
            assert not [f for f in first if f.endswith(".keras") or f.startswith("models/stage1")]
            assert not [
                f for f in first if f.startswith("photos/") and not f.startswith(("photos/first-", "photos/index"))
            ]
            assert sent < 0.45 * total
            true, pred = b.class_names[0], b.class_names[1]
            _, items = client.predict(b.final_stage, true, pred, api_name="/pair")
            client.predict(b.final_stage, true, pred, api_name="/pair")
            later = hub.files()[len(first) :]  # the cell's shard, fetched by the first call only
            assert items and later and len(later) == len(set(later))
            assert all(f.startswith("photos/test-") for f in later)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_an_unreachable_hub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(BundleError, match=r"could not download bundle\.json of .nobody/nothing.*Offline"):
        load_bundle("nobody/nothing")


def test_the_test_thumbnails_are_bounded_per_dish_whatever_the_test_split_size():
    """Food-101's size with a model that gets most photos wrong: the kept thumbnails stay under the cap, and are the
    most confident mistakes of each dish (what the Mistakes gallery shows first)."""
    from food101_core.metrics import evaluate_probs
    from food101_core.training.thumbnails import thumbnail_indices

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(101), 250)
    ids = [f"c{c}/{i}" for i, c in enumerate(labels)]
    classes = [f"c{c}" for c in range(101)]
    evals = {s: evaluate_probs(rng.dirichlet(np.ones(101) * 0.3, len(labels)).astype(np.float32), labels, ids, classes)
             for s in ("stage1", "stage2")}  # fmt: skip
    kept, first = thumbnail_indices(evals, mistakes_per_class=40, right_per_class=3)
    assert len(kept) <= 101 * (2 * 40 + 3) and first <= set(kept)
    p = evals["stage2"].predictions
    wrong = p[~p["correct"]]
    for c in ("c0", "c57"):
        top = wrong[wrong["true"] == c].nlargest(40, "confidence")
        assert set(top["index"]) <= set(kept)
    assert len(first) <= 101 * 4


def test_a_101_class_bundle_is_few_files_and_stores_each_photo_once(scale_bundle):
    b = load_bundle(scale_bundle)
    files = [*b.files, "bundle.json"]
    assert len(files) <= 100 and b.num_classes == 101 and b.has_feature_space and b.has_data_quality
    folders = pd.Series([str(Path(f).parent) for f in files]).value_counts()
    assert folders.max() < 10_000
    index = pd.read_csv(scale_bundle / "photos" / "index.csv", dtype=str)
    assert not index.duplicated(["split", "id"]).any()
    assert set(b.reference["id"]) <= set(index.loc[index["split"] == "train", "id"])
    on_disk = sorted(p.relative_to(scale_bundle).as_posix() for p in scale_bundle.rglob("*") if p.is_file())
    assert on_disk == sorted(files)  # nothing written beside the manifest's list
