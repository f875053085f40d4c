"""Evaluation sets inside the bundle (issue 29): `python -m food101_core.sets add` scores a set with the shipped ONNX
model and adds it atomically; its numbers are /predict's photo by photo and scikit-learn's on the same answers; the
app's analysis endpoints show it; a second add of the same name is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, local_client, start_app
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from food101_core.bundle import TEST, load_bundle
from food101_core.serving.predictor import Predictor

DEMO = ROOT / "assets" / "demo-bundle"
ORDER = "by confusion"


@pytest.fixture(scope="module")
def demo_with_set(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the demo bundle with a set added from 60 of its own test thumbnails in dish folders (the folder
    spelt two ways), one photo of a dish it does not know and a file that is no photo."""
    if not (DEMO / "bundle.json").is_file():
        pytest.skip("no demo bundle in assets/")
    base = tmp_path_factory.mktemp("sets")
    run, photos = base / "demo", base / "canteen"
    shutil.copytree(DEMO, run)
    b = load_bundle(run)
    kept = [i for i in range(len(b.test_ids)) if b.has_thumb(i)][::5][:60]
    for n, i in enumerate(kept):
        dish = b.name_of[b.evaluation().predictions["true"].iloc[i]]
        folder = photos / (dish if n % 2 else dish.lower().replace(" ", "_"))
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(b.thumb(i), folder / f"{n}.jpg")
    (photos / "Pizza Margherita").mkdir()
    shutil.copyfile(b.thumb(kept[0]), photos / "Pizza Margherita" / "p.jpg")
    (photos / "notes.txt").write_text("our canteen")
    done = add(run, photos, "canteen")
    assert done.returncode == 0, done.stderr
    assert "added the set 'canteen'" in done.stdout and "top-1" in done.stdout
    return run, photos


def add(run: Path, photos: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "food101_core.sets", "add", str(run), str(photos), "--name", name,
                           *extra], cwd=ROOT, capture_output=True, text=True)  # fmt: skip


def test_a_set_added_is_listed_verified_and_scored_as_predict_scores_each_photo(demo_with_set):
    run, photos = demo_with_set
    manifest = json.loads((run / "bundle.json").read_text())
    assert manifest["version"] == 3 and manifest["sets"] == ["canteen"]
    b = load_bundle(run)  # verifies every file's size and hash
    key = b.set_key("canteen")
    ev, s, files = b.evaluation(key), b.set_summary("canteen"), b.set_files("canteen")
    assert s["n_files"] == 62 and s["scored"] == 60 == len(ev.predictions) == ev.probs.shape[0]
    assert s["unknown_labels"] == {"Pizza Margherita": 1} and [r["file"] for r in s["refused"]] == ["notes.txt"]
    assert len(files) == 62 and set(files["status"]) == {"scored", "predicted only", "refused"}
    # each photo answered one at a time, as /predict answers it
    predictor = Predictor.from_bundle(b, b.final_stage)
    scored = files[files["status"] == "scored"]
    answers = [b.id_of[predictor.predict(predictor.read(photos / f)).top[0][1]] for f in scored["file"]]
    right = np.array(answers) == scored["true"].to_numpy()
    assert s["top1"] == pytest.approx(right.mean()) == pytest.approx(ev.metrics["top1"])
    # per dish and confusion against scikit-learn on the same answers
    ids = b.class_ids
    y, p = [ids.index(t) for t in ev.predictions["true"]], [ids.index(t) for t in ev.predictions["pred"]]
    prec, rec, _, _ = precision_recall_fscore_support(y, p, labels=range(len(ids)), zero_division=0)
    np.testing.assert_allclose(ev.per_class["recall"], rec, atol=1e-5)
    np.testing.assert_allclose(ev.per_class["precision"], prec, atol=1e-5)
    np.testing.assert_array_equal(ev.confusion, confusion_matrix(y, p, labels=range(len(ids))))
    # calibrated with the bundle's temperature, not refitted
    assert ev.temperature == pytest.approx(b.evaluation().temperature) and "ece_raw" in ev.metrics


def test_a_set_has_properties_slices_a_place_on_the_map_and_its_mistakes_pictured(demo_with_set):
    run, _ = demo_with_set
    b = load_bundle(run)
    key = b.set_key("canteen")
    ev, emb, props = b.evaluation(key), b.embedding(key), b.properties(key)
    assert len(props) == len(ev.predictions) and list(props["id"]) == list(ev.predictions["id"].astype(str))
    assert b.slices(key) is not None and b.slices(key)["tested"] > 0
    test = b.embedding()
    assert emb.xy.shape == (60, 2) and emb.ref.shape == test.ref.shape  # its rows, the stage's reference photos
    lo, hi = test.xy.min(0), test.xy.max(0)
    assert ((emb.xy >= lo - 1e-3) & (emb.xy <= hi + 1e-3)).all()  # placed among the test photos, not refitted
    wrong = ev.predictions[~ev.predictions["correct"].astype(bool)]
    assert all(b.has_source_photo(key, i) for i in wrong["index"])  # every mistake pictured (under 40 per dish)
    assert Path(b.source_photo(key, int(ev.predictions["index"].iloc[0]))).read_bytes()[:2] == b"\xff\xd8"
    index = pd.read_csv(run / "photos" / "index.csv")
    assert set(index.loc[index["split"] == key, "shard"]) == {"photos/set-canteen-00.zip"}
    assert not index.duplicated(["split", "id"]).any()


def test_a_second_set_of_the_same_name_is_refused_unless_replaced(demo_with_set, tmp_path):
    run, photos = demo_with_set
    before = (run / "bundle.json").read_bytes()
    again = add(run, photos, "canteen")
    assert again.returncode == 2 and "already" in again.stderr and (run / "bundle.json").read_bytes() == before
    bad = add(run, photos, "../evil")
    assert bad.returncode == 2 and "not a usable set name" in bad.stderr and not (run.parent / "evil").exists()
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(photos / "Pizza Margherita")
    assert add(copy, photos, "canteen", "--replace").returncode == 0
    b = load_bundle(copy)
    assert b.sets == ["canteen"] and b.set_summary("canteen")["n_files"] == 61 and TEST not in b.sets


def test_the_apps_analysis_endpoints_show_a_set_of_the_bundle(demo_with_set):
    """Per-class, confusion, mistakes and map answer for the set as its own files say (the Photos selector's key)."""
    run, _ = demo_with_set
    b = load_bundle(run)
    key = b.set_key("canteen")
    ev = b.evaluation(key)
    proc, url = start_app(["--run", str(run)])
    try:
        c = local_client(url)
        rows = c.predict(key, api_name="/per_class")
        assert sum(r["support"] for r in rows) == 60 and all("f1 change vs test split" in r for r in rows)
        pairs = c.predict(key, False, True, ORDER, api_name="/confusion")["pairs"]
        cm, names = ev.confusion, b.class_names
        assert pairs and all(p["images"] == cm[names.index(p["true"]), names.index(p["predicted"])] for p in pairs)
        mistakes = c.predict(key, None, None, 0.0, api_name="/mistakes")
        assert len(mistakes) == int((~ev.predictions["correct"].astype(bool)).sum())
        assert c.predict(key, api_name="/metrics")["top1"] == pytest.approx(ev.metrics["top1"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_set_scored_in_the_app_is_downloaded_and_added_by_the_command_line_as_it_was(demo_with_set, tmp_path):
    """/evaluate_set's session keeps the set as the download does; `sets add RUN SET.zip` adds it unchanged (the
    same numbers, no scoring again), and refuses it for a bundle whose shipped model is another."""
    import zipfile

    from food101_core.bundle import read_set_archive, served_model_sha, standalone_set
    from food101_core.sets.scoring import score_set
    from food101_core.sets.uploads import collect

    run, photos = demo_with_set
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    b = load_bundle(copy)
    found = collect(photos, tmp_path / "work")
    s = score_set(b, Predictor.from_bundle(b, b.final_stage), found, name="visitor-0123abcd")
    archive = tmp_path / "visitor.set.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for rel, data in standalone_set(s, b.class_ids, served_model_sha(b.manifest)).items():
            z.writestr(rel, data)
    done = add(copy, archive, "lunch")
    assert done.returncode == 0, done.stderr
    b = load_bundle(copy)
    assert b.sets == ["canteen", "lunch"]
    lunch, canteen = b.evaluation(b.set_key("lunch")), b.evaluation(b.set_key("canteen"))
    assert lunch.metrics["top1"] == pytest.approx(canteen.metrics["top1"]) == pytest.approx(s.summary["top1"])
    assert all(b.has_source_photo(b.set_key("lunch"), i) for i in lunch.predictions["index"][~lunch.predictions[
        "correct"].astype(bool)])  # fmt: skip
    # the same archive refused by a bundle that serves another model (its ONNX changed), and a tampered one
    manifest = json.loads((copy / "bundle.json").read_text())
    onnx = f"models/{b.final_stage}.onnx"
    manifest["files"][onnx]["sha256"] = "0" * 64
    other = tmp_path / "other"
    shutil.copytree(copy, other)
    (other / "bundle.json").write_text(json.dumps(manifest))
    refused = add(other, archive, "again")
    assert refused.returncode == 2 and "another model" in refused.stderr
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(evil, "w") as z:
        for i in src.infolist():
            z.writestr(i, src.read(i))
        z.writestr("sets/visitor-0123abcd/../../../escape.txt", b"x")
    with pytest.raises(Exception, match="outside a set"):
        read_set_archive(evil)
