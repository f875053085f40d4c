"""The serving side against the training side: the ONNX models answer what the Keras models answer, the numpy resize
is TensorFlow's, Grad-CAM in closed form is the gradient's, and the app serves with TensorFlow unimportable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    DEMO_BUNDLE,
    MINI,
    NO_TENSORFLOW,
    ROOT,
    local_client,
    lopsided_model,
    needs_mini,
    onnx_predictor,
    start_app,
)
from PIL import Image

from food101_core.bundle import Bundle, BundleError, load_bundle, write_manifest
from food101_core.serving.gradcam import GradCamUnavailable
from food101_core.serving.predictor import Predictor, resize_uint8
from food101_core.training.export import HeadError, fold_head, serving_model
from food101_core.training.model import load_stage_model

ADD_COMMAND = "python -m food101_core.training.export"


def test_resize_is_tensorflows_to_the_bit():
    """Shrinking, enlarging and odd shapes, on noise (every rounding case) and on smooth pictures."""
    import tensorflow as tf

    from food101_core.training.data import resize_uint8 as tf_resize

    rng = np.random.default_rng(0)
    for h, w, size in [(40, 56, 40), (37, 23, 32), (512, 384, 224), (300, 301, 256), (16, 900, 64), (100, 100, 100)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(resize_uint8(img, size), tf_resize(tf.constant(img), size).numpy())


def assert_onnx_is_keras(bundle: Bundle, stage: str, x: np.ndarray, probs_atol: float, rel: float = 1e-4) -> None:
    """All three outputs: probabilities within `probs_atol`; the features and the feature map within `rel` of their
    largest value (ReLU6 activations run to 6; ONNX Runtime and TensorFlow sum convolutions in other orders)."""
    want = {k: np.asarray(v) for k, v in serving_model(load_stage_model(bundle, stage)).predict(x, verbose=0).items()}
    got = Predictor.from_bundle(bundle, stage).forward(x.astype(np.float32))
    assert set(got) == {"probs", "features", "feature_map"}
    np.testing.assert_allclose(got["probs"], want["probs"], atol=probs_atol, err_msg=stage)
    assert (got["probs"].argmax(1) == want["probs"].argmax(1)).all()
    for name in ("features", "feature_map"):
        assert got[name].shape == want[name].shape
        assert np.abs(got[name] - want[name]).max() <= rel * max(np.abs(want[name]).max(), 1.0), (stage, name)


def test_onnx_models_answer_what_the_keras_models_answer_on_the_test_split(tiny_bundle):
    """Every stage of the tiny bundle (the polish at its own 40 px) on every test photo as evaluation feeds them.

    Its backbone keeps random weights through 50 layers, which amplify rounding (features 2.6e-4 apart, relative),
    and its head makes probabilities as sharp as 1e-25: 1e-3 here on both; 1e-4 on the demo's real model below."""
    from food101_core.config import TrainConfig
    from food101_core.training.data import load_data, make_dataset

    b = load_bundle(tiny_bundle)
    data = load_data(TrainConfig.from_dict(b.config["train"]))
    for stage in b.stages:
        size = load_stage_model(b, stage).input_shape[1]
        cfg = TrainConfig.from_dict({**b.config["train"], "image_size": size})
        batches = make_dataset(data.test, b.num_classes, cfg, training=False, with_labels=False)
        x = np.concatenate(list(batches))
        assert len(x) == len(b.test_ids) == 18
        assert_onnx_is_keras(b, stage, x, probs_atol=1e-3, rel=1e-3)


@needs_mini
def test_the_demos_onnx_models_answer_what_its_keras_models_answer_on_real_photos():
    """Both stages of the demo (MobileNet at 256 px) on every 25th photo of its test split (50), within 1e-4."""
    import tensorflow as tf

    from food101_core.training.data import resize_uint8 as tf_resize

    b = load_bundle(DEMO_BUNDLE)
    photos = [MINI / "images" / f"{i}.jpg" for i in b.test_ids[::25]]
    x = np.stack([tf_resize(tf.io.decode_jpeg(p.read_bytes(), channels=3), b.image_size).numpy() for p in photos])
    for stage in b.stages:
        assert_onnx_is_keras(b, stage, x.astype(np.float32), probs_atol=1e-4)


def tensorflow_gradcam(model, x: np.ndarray, class_index: int, size: int) -> np.ndarray:
    """The gradient-based Grad-CAM the app ran before it served ONNX (d softmax / d last feature map)."""
    import keras
    import tensorflow as tf

    cam_model = keras.Model(model.inputs, [model.get_layer("avg_pool").input, model.output])
    with tf.GradientTape() as tape:
        fmap, probs = cam_model(tf.constant(x), training=False)
        score = probs[:, class_index]
    grads = tape.gradient(score, fmap)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(fmap, tf.float32), axis=-1))[0].numpy()
    cam = cam / cam.max() if cam.max() > 0 else cam
    heat = Image.fromarray((cam * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(heat, np.float32) / 255.0


def assert_gradcam_matches(bundle_path: Path, photos: list[Path]) -> None:
    """Closed form against gradients, for the predicted and the runner-up dish: at most one 8-bit grey level apart
    (both round the map to 8 bits; float differences can move a pixel across a rounding edge)."""
    b = load_bundle(bundle_path)
    predictor, model = Predictor.from_bundle(b), load_stage_model(b)
    hot = 0
    for photo in photos:
        image = predictor.read(photo)
        pred = predictor.predict(image)
        for class_index in np.argsort(-pred.raw_probs)[:2]:
            want = tensorflow_gradcam(model, predictor.preprocess(image), int(class_index), predictor.size)
            got = predictor.gradcam(pred, int(class_index))
            assert np.abs(got - want).max() <= 1 / 255 + 1e-6, photo
            hot += want.max() > 0  # a map can be empty (no channel speaks for the class), not all of them
    assert hot >= len(photos)


def test_gradcam_without_gradients_is_the_gradients_one(tiny_bundle):
    b = load_bundle(tiny_bundle)
    assert_gradcam_matches(tiny_bundle, [b.original_image(i) for i in (0, 5, 11, 17)])


@needs_mini
def test_gradcam_without_gradients_on_the_demo_and_real_photos():
    b = load_bundle(DEMO_BUNDLE)
    assert_gradcam_matches(DEMO_BUNDLE, [MINI / "images" / f"{b.test_ids[i]}.jpg" for i in range(0, 1250, 210)])


def test_folded_head_is_the_head(tiny_bundle):
    """softmax(features @ W + b) is the Keras head's answer, BN's statistics and scale folded in."""
    import keras

    model = load_stage_model(load_bundle(tiny_bundle), "stage2")
    head = fold_head(model)
    pooled = model.get_layer("avg_pool").output
    head_model = keras.Model(pooled, model.output)
    f = np.random.default_rng(1).uniform(0, 6, (16, pooled.shape[-1])).astype(np.float32)
    logits = f @ head["weights"] + head["bias"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), head_model(f).numpy(), atol=1e-5)


def test_a_head_that_is_not_linear_is_refused_and_prediction_still_works(tmp_path):
    import keras

    base = lopsided_model()
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(base.get_layer("avg_pool").output)
    model = keras.Model(base.inputs, keras.layers.Dense(4, activation="softmax", name="out")(hidden))
    with pytest.raises(HeadError, match=r"Dense layer \(hidden\).*only BatchNormalization, Dropout"):
        fold_head(model)
    predictor = onnx_predictor(model, tmp_path, list("abcd"))
    assert predictor.head is None
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8))
    assert predictor.predict(photo).top[0][0] in "abcd"
    with pytest.raises(GradCamUnavailable, match="head after pooling to be linear"):
        predictor.gradcam(photo, 0)


def without_onnx(bundle: Path) -> None:
    """The bundle as written before the ONNX files existed."""
    for f in (bundle / "models").glob("*.onnx"):
        f.unlink()
    for f in (bundle / "models").glob("*.head.npz"):
        f.unlink()
    stages = json.loads((bundle / "bundle.json").read_text())["stages"]
    (bundle / "bundle.json").unlink()
    write_manifest(bundle, stages)


def test_a_bundle_without_onnx_names_the_command_that_adds_them(bundle_copy, tiny_bundle):
    without_onnx(bundle_copy)
    with pytest.raises(BundleError, match=f"no ONNX model for stage3.*{ADD_COMMAND} {bundle_copy}"):
        Predictor.from_bundle(load_bundle(bundle_copy))
    proc, url = start_app(["--run", str(bundle_copy)])
    try:
        config = urllib.request.urlopen(url + "config", timeout=10).read().decode()
        assert "No run bundle could be loaded" in config and ADD_COMMAND in config
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    done = subprocess.run([sys.executable, "-m", "food101_core.training.export", str(bundle_copy)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ONNX models added for stage1, stage2, stage3" in done.stdout
    b, original = load_bundle(bundle_copy), load_bundle(tiny_bundle)  # verified: listed in bundle.json
    photo = original.original_image(2)
    for stage in b.stages:
        p, q = Predictor.from_bundle(b, stage), Predictor.from_bundle(original, stage)
        np.testing.assert_allclose(p.predict(p.read(photo)).probs, q.predict(q.read(photo)).probs, atol=1e-6)
        assert b.head(stage) is not None


def test_every_endpoint_answers_with_tensorflow_unimportable(tiny_bundle, tmp_path):
    from gradio_client import handle_file

    blocked = subprocess.run([sys.executable, "-c", "import tensorflow"], env={"PYTHONPATH": str(NO_TENSORFLOW)},
                             capture_output=True, text=True)  # fmt: skip
    assert blocked.returncode != 0 and "blocked in this test" in blocked.stderr
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    b = load_bundle(tiny_bundle)
    photo = handle_file(str(b.original_image(4)))
    proc, url = start_app(["--run", str(tiny_bundle), "--compare", str(other)])
    try:
        c = local_client(url)
        label, _, cam = c.predict(photo, True, "stage3", api_name="/predict")
        assert label["label"] in b.class_names and Image.open(cam).size == Image.open(b.original_image(4)).size
        assert c.predict(photo, "stage3", api_name="/explain")["similar"]
        assert len(c.predict("stage3", api_name="/embedding_map")) == len(b.test_ids)
        pairs = c.predict("stage3", False, False, "alphabetical", api_name="/confusion")
        assert pairs is not None
        first = b.class_names[0]
        assert "→" in c.predict("stage3", first, b.class_names[1], api_name="/pair")[0]
        assert len(c.predict("stage3", api_name="/per_class")) == b.num_classes
        assert c.predict("stage3", None, None, 0.0, api_name="/mistakes") is not None
        assert c.predict(api_name="/training")["data"]
        assert c.predict("stage1", api_name="/metrics")["top1"] == b.evaluation("stage1").metrics["top1"]
        assert c.predict(api_name="/compare")["top1_a"] == pytest.approx(b.evaluation().metrics["top1"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_photos_answered_together_are_answered_as_one_at_a_time(tmp_path):
    """/predict is batched: requests queued together (two models, a refused file, an empty box among them) get the
    answers each would get alone, in their order."""
    import re

    from food101_core.app.context import AppContext
    from food101_core.app.predict_tab import START, predict_photo, predict_photos
    from food101_core.serving.kept import KeptPredictions

    b = load_bundle(DEMO_BUNDLE)  # a context that keeps no answers: each is the model's, alone or together
    ctx = AppContext(bundle=b, blocks=None, stage=None, photos=None, view=None, kept=KeptPredictions(0))
    (notes := tmp_path / "notes.jpg").write_text("not a photo")
    photos = [str(b.thumb(i)) for i in range(5)]
    first, final = b.stages[0], b.final_stage
    asks = [(photos[0], False, final), (photos[1], True, first), (None, False, final), (str(notes), False, final),
            (photos[2], False, first), (photos[3], True, final), (photos[4], False, final)]  # fmt: skip
    together = predict_photos(ctx, asks)
    assert len(together) == len(asks)
    untimed = re.compile(r"predicted in \d+ ms")
    for ask, got in zip(asks, together):
        alone = predict_photo(ctx, *ask)
        assert untimed.sub("", got["verdict"]) == untimed.sub("", alone["verdict"]), ask
        assert got["found"] == alone["found"]
        if alone["top5"] is None:
            assert got["top5"] is None
            continue
        assert list(got["top5"]) == list(alone["top5"])
        assert np.allclose(list(got["top5"].values()), list(alone["top5"].values()), atol=1e-5)
        assert (got["cam"] is None) == (alone["cam"] is None) == (not ask[1])
        if ask[1]:
            assert np.abs(np.asarray(got["cam"], float) - np.asarray(alone["cam"], float)).max() <= 1
    assert together[3]["found"] == {"refused": True} and together[2]["verdict"] == START


def test_a_batch_alone_runs_on_every_core_and_batches_side_by_side_on_a_core_each():
    """One visitor's photo gets the whole machine; while a batch runs, the next gets a one-core session (two side by
    side, not four threads on two cores). Either way the answer is the same, to the bit."""
    from food101_core.app.context import AppContext

    b = load_bundle(DEMO_BUNDLE)
    ctx = AppContext(bundle=b, blocks=None, stage=None, photos=None, view=None, concurrency=2)
    photo = ctx.predictor(b.final_stage).read(str(b.thumb(0)))
    with ctx.serving(b.final_stage) as alone, ctx.serving(b.final_stage) as beside:
        assert beside is ctx.predictor(b.final_stage) and beside is not alone  # the visitors' share of the cores
        assert beside.session.get_session_options().intra_op_num_threads == max(1, (os.cpu_count() or 1) // 2)
        assert np.array_equal(beside.predict(photo).probs, alone.predict(photo).probs)
    assert alone is ctx.predictor(b.final_stage, bulk=True)  # every core: ONNX Runtime's default
    assert alone.session.get_session_options().intra_op_num_threads == 0
    with ctx.serving(b.final_stage) as again:  # both batches done: alone again
        assert again is alone


def test_a_photo_asked_again_is_answered_without_the_model_and_the_same(tmp_path, monkeypatch):
    """The same bytes for the same model: the kept answer, to the bit, with no decoding or forward pass; another
    model or other bytes run the model; memory stays within its bound, least recently used out first."""
    from food101_core.app.context import AppContext
    from food101_core.app.predict_tab import predict_photos
    from food101_core.serving.kept import KeptPredictions
    from food101_core.serving.predictor import Predictor

    b = load_bundle(DEMO_BUNDLE)
    ctx = AppContext(bundle=b, blocks=None, stage=None, photos=None, view=None)
    fresh = AppContext(bundle=b, blocks=None, stage=None, photos=None, view=None, kept=KeptPredictions(0))
    calls = []
    run = Predictor.predict_many  # the photos each model pass runs (a model's warm-up on loading is not counted)
    monkeypatch.setattr(
        Predictor, "predict_many", lambda self, images, k=5: calls.append(len(images)) or run(self, images, k)
    )
    photo, final, first = b.thumb(0), b.final_stage, b.stages[0]
    (again := tmp_path / "another-name.jpg").write_bytes(photo.read_bytes())  # the same bytes under another name
    (other := tmp_path / "re-encoded.jpg").write_bytes(b"")
    Image.open(photo).save(other, quality=70)

    asked = predict_photos(ctx, [(str(photo), False, final)])[0]
    assert calls == [1]
    kept = predict_photos(ctx, [(str(again), True, final)])[0]  # Grad-CAM ticked on the photo in the box
    assert calls == [1], "a repeat ran the model"
    assert "its answer was kept" in kept["verdict"] and "kept" not in asked["verdict"]
    alone = predict_photos(fresh, [(str(again), True, final)])[0]  # a context that keeps nothing
    assert list(kept["top5"].items()) == list(alone["top5"].items()) == list(asked["top5"].items())
    assert np.array_equal(np.asarray(kept["cam"]), np.asarray(alone["cam"]))
    assert kept["found"] == alone["found"]
    calls.clear()
    predict_photos(ctx, [(str(photo), False, first), (str(other), False, final)])
    assert sorted(calls) == [1, 1], "another model or other bytes must run the model"  # (the final model's
    assert ctx.kept.hits == 2 and len(ctx.kept) == 3  # features for the first model's answer: the kept ones)

    entries = list(ctx.kept._entries.items())  # oldest first
    sizes = [size for _, (_, _, size) in entries]
    assert ctx.kept.bytes == sum(sizes) and all(size > 0 for size in sizes)
    small = KeptPredictions(max_mb=(sizes[1] + sizes[2] + 1) / 2**20)  # room for the two newest only
    for key, (image, pred, _) in entries:
        small.put(key, image, pred)
    assert len(small) == 2 and small.bytes == sizes[1] + sizes[2] <= small.max_bytes
    assert small.get(entries[0][0]) is None and small.get(entries[2][0]) is not None  # the oldest went first
