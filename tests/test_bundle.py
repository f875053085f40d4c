"""The run bundle: complete, round-trips, atomic, and refuses broken parts by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import MINI, ROOT, TINY_CLASSES, TINY_RECIPE, make_food101_layout, needs_mini, tiny_args

from food101_core.bundle import BundleError, Results, find_newest_bundle, load_bundle, write_bundle
from food101_core.bundle import write as bundle_write
from food101_core.config import TrainConfig
from food101_core.training.data import load_data, make_dataset
from food101_core.training.model import load_stage_model


def test_bundle_is_complete_and_documented_parts_exist(tiny_bundle):
    b = load_bundle(tiny_bundle)
    assert b.class_ids == TINY_CLASSES and b.class_names[0] == "Red soup"
    assert b.stages == ["stage1", "stage2", "stage3"]  # stage 3: the polish at 40 px
    cfg = b.config["train"]
    assert cfg["backbone"] == TINY_RECIPE["backbone"] and cfg["seed"] == 42 and cfg["image_size"] == 32
    assert [load_stage_model(b, s).input_shape[1] for s in b.stages] == [32, 32, 40]
    assert b.config["data"]["kind"] == "food101-folder" and b.config["data"]["test"] == 18
    assert {"tensorflow", "keras", "numpy"} <= set(b.config["versions"])
    assert b.history.groupby("stage")["epoch"].apply(list).to_dict() == {1: [0, 1], 2: [2, 3], 3: [4]}
    for stage in b.stages:
        ev = b.evaluation(stage)
        assert ev.probs.shape == (18, 3) and len(ev.predictions) == 18
        assert ev.confusion.shape == (3, 3) and ev.confusion.sum() == 18
        assert 0 <= ev.metrics["top1"] <= 1 and len(ev.metrics["reliability"]) == 15
    wrong = set(np.flatnonzero(~b.evaluation("stage3").predictions["correct"].to_numpy()))
    for i in wrong:
        assert b.thumb(i) is not None, f"no thumbnail for mistake {i}"
    from PIL import Image

    index = pd.read_csv(tiny_bundle / "photos" / "index.csv", dtype=str)
    assert not index.duplicated(["split", "id"]).any()  # each photo stored once
    for split, image_id in zip(index["split"], index["id"]):
        assert max(Image.open(b.photo(split, image_id)).size) <= 128


def test_training_curves_name_what_was_validated_on(tiny_bundle):
    from food101_core.app.run_summary import training_figure

    b = load_bundle(tiny_bundle)  # trained with --val-fraction 0: Keras validated on the test split
    curves = {(t.name, t.xaxis): list(t.y) for t in training_figure(b).data}
    assert curves[("test photos (validation: best epoch chosen on them)", "x2")] == b.history["val_accuracy"].tolist()
    assert curves[("train", "x")] == b.history["loss"].tolist()
    b.train_config.val_fraction = 0.1
    assert {t.name for t in training_figure(b).data} == {"train", "held-out 10 % of training photos (validation)"}


def test_reloaded_models_predict_what_the_bundle_recorded(tiny_bundle):
    """The bundle's .keras files, loaded in safe mode, reproduce the stored probabilities on the test images, each
    stage at its own size (the polish's 40 px), once its fitted temperature is applied."""
    from food101_core.calibration import temper

    b = load_bundle(tiny_bundle)
    cfg = TrainConfig.from_dict(b.config["train"])
    data = load_data(cfg)
    assert data.test.ids == b.test_ids
    for stage in b.stages:
        at = TrainConfig.from_dict({**b.config["train"], "image_size": load_stage_model(b, stage).input_shape[1]})
        x = np.concatenate([xb for xb in make_dataset(data.test, 3, at, training=False, with_labels=False)])
        ev = b.evaluation(stage)
        assert ev.temperature != 1.0 and ev.metrics["calibration"]["fitted_on"] == "calibration hold-out"
        probs = temper(load_stage_model(b, stage).predict(x, verbose=0), ev.temperature)
        np.testing.assert_allclose(probs, ev.probs, atol=2e-3)  # stored as float16
        assert (probs.argmax(1) == ev.probs.argmax(1)).all()


def test_re_evaluation_reproduces_the_metrics(tiny_bundle, tmp_path):
    from food101_core.training.evaluate import main

    out = tmp_path / "re"
    assert main([str(tiny_bundle), "--out", str(out)]) == 0
    a, b = load_bundle(tiny_bundle), load_bundle(out)
    for stage in a.stages:
        assert a.evaluation(stage).metrics["top1"] == b.evaluation(stage).metrics["top1"]
        np.testing.assert_array_equal(a.evaluation(stage).confusion, b.evaluation(stage).confusion)
        assert b.has_onnx(stage) and b.head(stage) is not None  # re-evaluation exports every stage again


def test_interrupted_write_leaves_no_bundle(bundle_copy, tmp_path, monkeypatch):
    b = load_bundle(bundle_copy)
    cfg = TrainConfig.from_dict(b.config["train"])
    data = load_data(cfg)
    evals = {s: b.evaluation(s) for s in b.stages}
    runs = tmp_path / "runs"
    models = {s: bundle_copy / f"models/{s}.keras" for s in b.stages}

    def write():
        run = Results(b.config, data.class_ids, data.class_names, data.test.ids, data.test.labels, b.history, models)
        run.evals = evals
        write_bundle(runs / "r", run)

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(bundle_write.np, "savez_compressed", die)  # dies halfway, after the models were copied
    with pytest.raises(KeyboardInterrupt):
        write()
    assert not (runs / "r").exists()
    assert find_newest_bundle(runs) is None  # the partial folder is hidden and never picked up
    monkeypatch.undo()
    write()  # the next write clears the stale partial folder and succeeds
    assert find_newest_bundle(runs) == runs / "r"
    assert not list(runs.glob(".r.partial-*"))
    load_bundle(runs / "r")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda p: (p / "models" / "stage2.keras").unlink(), "missing models/stage2.keras"),
        (lambda p: (p / "stage1" / "predictions.csv").write_text("index\n0\n"), "stage1/predictions.csv is corrupt"),
        (lambda p: (p / "bundle.json").unlink(), "missing bundle.json"),
        (lambda p: (p / "classes.json").write_text("[{"), "classes.json is corrupt"),
    ],
)
def test_broken_bundle_names_the_broken_part(bundle_copy, damage, named):
    damage(bundle_copy)
    with pytest.raises(BundleError, match=named):
        load_bundle(bundle_copy)


def test_model_that_does_not_match_its_classes_is_refused(bundle_copy):
    classes = json.loads((bundle_copy / "classes.json").read_text())
    (bundle_copy / "classes.json").write_text(json.dumps([*classes, {"id": "extra", "name": "Extra"}]))
    b = load_bundle(bundle_copy, verify=False)  # the checksum would catch it first; test the deeper check
    with pytest.raises(BundleError, match=r"predicts 3 classes, classes\.json lists 4"):
        load_stage_model(b, "stage3")


def test_hub_id_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BundleError, match=r"could not download bundle\.json of 'someone/food101-run'"):
        load_bundle("someone/food101-run")
    with pytest.raises(BundleError, match="not a Hugging Face Hub repo id"):
        load_bundle("/no/such/folder")


def test_train_cli_skips_a_finished_bundle_and_fails_early_on_bad_output(tiny_bundle, tmp_path, capsys):
    import train

    args = ["--data", "unused", "--out", str(tiny_bundle.parent), "--name", "tiny"]
    assert train.main(args) == 0
    assert "already trained" in capsys.readouterr().out
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="cannot write to --out"):
        train.main(["--data", "unused", "--out", str(blocker / "runs")])


def test_class_folder_run_writes_ids_the_app_can_use(tmp_path):
    """A bundle's test_set.csv and predictions agree on ids and order."""
    src = make_food101_layout(tmp_path / "food", n_train=4, n_test=2)
    shutil.rmtree(src / "meta")
    import train

    assert (
        train.main(
            tiny_args(src / "images", tmp_path / "runs", "folders", batch_size=4, stage1_epochs=0, stage2_epochs=0)
        )
        == 0
    )
    b = load_bundle(tmp_path / "runs" / "folders")
    test = pd.read_csv(tmp_path / "runs" / "folders" / "test_set.csv")
    assert b.evaluation().predictions["id"].tolist() == test["id"].tolist()
    assert b.config["data"]["kind"] == "class-folders" and len(test) == 3  # 6 per class, 25% held out


@needs_mini
@pytest.mark.skipif(not (ROOT / "assets" / "demo-bundle" / "bundle.json").is_file(), reason="no demo bundle")
def test_demo_bundle_numbers_are_its_models_answers_on_the_real_photos():
    """The shipped metrics come from the shipped predictions, and those from the shipped model on the real photos."""
    from sklearn.metrics import accuracy_score

    from food101_core.serving.images import read_image
    from food101_core.serving.predictor import Predictor

    b = load_bundle(ROOT / "assets" / "demo-bundle")
    ev = b.evaluation()
    true = [i.split("/")[0] for i in b.test_ids]  # the label is the photo's folder in Food-101's layout
    rows = ev.predictions
    pred_ids = rows["pred"].tolist()
    assert ev.metrics["top1"] == pytest.approx(accuracy_score(true, pred_ids), abs=1e-4)
    top5 = rows[[f"top{k}" for k in range(1, 6)]].to_numpy()
    in_top5 = [t in row for t, row in zip(true, top5)]
    assert ev.metrics["top5"] == pytest.approx(np.mean(in_top5), abs=1e-4)
    # probs.npz is float16: the stored prediction has the highest stored probability, ties included
    picked = ev.probs[np.arange(len(rows)), [b.class_ids.index(i) for i in pred_ids]]
    np.testing.assert_array_equal(picked, ev.probs.max(1))
    predictor = Predictor.from_bundle(b)  # the app's path: PIL decode, the training resize, photo and mirror averaged
    for i in range(0, len(b.test_ids), 125):  # ten photos, one of each class
        probs = predictor.predict(read_image(MINI / "images" / f"{b.test_ids[i]}.jpg")).probs
        np.testing.assert_allclose(probs, ev.probs[i], atol=1e-3, err_msg=b.test_ids[i])  # float16 storage
