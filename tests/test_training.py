"""Two-stage training: what stage 2 may and may not change, resuming, NaN, feature caching, tf.distribute."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import ROOT, TINY_RECIPE, tiny_args, tiny_config

from food101_core.app.run_summary import recipe_extras
from food101_core.bundle import load_bundle
from food101_core.config import CHOICES, TrainConfig
from food101_core.training.data import make_dataset
from food101_core.training.fit import TrainingError, read_history, train
from food101_core.training.model import backbone_blocks, block_of, load_model, load_stage_model


def _weights_by_layer(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}


class OptimizerSeen(keras.callbacks.Callback):
    """Records the gradient clipping of the optimizer each stage's fit runs with."""

    def __init__(self):
        super().__init__()
        self.clipnorms = []

    def on_train_begin(self, logs=None):
        self.clipnorms.append(self.model.optimizer.global_clipnorm)


def test_stage2_trains_unfrozen_blocks_and_never_touches_batchnorm(tiny_food101, tmp_path):
    cfg = tiny_config(tiny_food101, tmp_path, unfreeze_blocks=3, clipnorm=1.0)
    seen = OptimizerSeen()
    models, _, _ = train(cfg, tmp_path / "work", extra_callbacks=[seen])
    assert seen.clipnorms == [1.0, 1.0]  # --clipnorm: both stages clip the gradients' global norm
    before, after = _weights_by_layer(models["stage1"]), _weights_by_layer(models["stage2"])
    opened = backbone_blocks(models["stage2"], TINY_RECIPE["backbone"])[-3:]
    bn = [layer.name for layer in models["stage2"].layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert "head_bn" in bn and len(bn) > 20  # the backbone's every BatchNormalization, and the head's
    for name in bn:  # gamma, beta and the moving statistics are exactly those of stage 1
        for w0, w1 in zip(before[name], after[name]):
            np.testing.assert_array_equal(w0, w1, err_msg=name)
    for name, ws in after.items():
        if name in bn:
            continue
        changed = any(not np.array_equal(w0, w1) for w0, w1 in zip(before[name], ws))
        block = block_of(TINY_RECIPE["backbone"], name)
        if block in opened or name == "predictions":
            assert changed, f"{name} (block {block}) should have trained in stage 2"
        elif block is not None:
            assert not changed, f"{name} (block {block}) should have stayed frozen"
    hist = read_history(tmp_path / "work")
    assert hist["epoch"].tolist() == [0, 1, 2, 3] and hist["stage"].tolist() == [1, 1, 2, 2]


class Interrupt(keras.callbacks.Callback):
    """Kills training at the end of a chosen epoch, as a crash or a pre-empted machine would."""

    def __init__(self, at_epoch: int):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt(f"simulated interruption after epoch {epoch}")


@pytest.mark.parametrize("cached", [False, True])
def test_interrupted_run_resumes_from_last_finished_epoch(tiny_food101, tmp_path, cached):
    work = tmp_path / "work"
    cfg = tiny_config(tiny_food101, tmp_path, cache_features=cached)  # 2 + 2 epochs
    with pytest.raises(KeyboardInterrupt):
        train(cfg, work, extra_callbacks=[Interrupt(0)])  # dies in stage 1 after its first epoch
    assert read_history(work)["epoch"].tolist() == [0]
    with pytest.raises(KeyboardInterrupt):
        train(cfg, work, extra_callbacks=[Interrupt(2)])  # resumes stage 1, dies in stage 2's first epoch
    assert (work / "stage1.keras").exists() and not (work / "stage2.keras").exists()
    models, _, _ = train(cfg, work)
    hist = read_history(work)
    assert hist["epoch"].tolist() == [0, 1, 2, 3]  # every epoch once: nothing redone from scratch
    assert hist["stage"].tolist() == [1, 1, 2, 2]
    best2 = hist[hist.stage == 2]["val_accuracy"].max()
    assert models["stage2"] is not None and best2 > 0


def test_polish_is_a_third_stage_at_its_own_size_that_resumes_inside(tiny_food101, tmp_path):
    """The polish goes on from stage 2's model at 48 px with its own constant rate, BatchNorm still frozen (its
    statistics are stage 2's to the bit) and the backbone's weights moving; killed inside, it resumes there."""
    work = tmp_path / "work"
    cfg = tiny_config(
        tiny_food101, tmp_path, stage1_epochs=1, stage2_epochs=1, polish_epochs=2, polish_size=48, polish_lr=5e-4
    )
    with pytest.raises(KeyboardInterrupt):
        train(cfg, work, extra_callbacks=[Interrupt(2)])  # dies after the polish's first epoch
    assert (work / "stage2.keras").exists() and not (work / "stage3.keras").exists()
    rates = LearningRates()
    models, _, _ = train(cfg, work, extra_callbacks=[rates])
    hist = read_history(work)
    assert hist["epoch"].tolist() == [0, 1, 2, 3] and hist["stage"].tolist() == [1, 2, 3, 3]
    assert list(rates.by_epoch) == [3] and np.allclose(rates.by_epoch[3], 5e-4)  # only the unfinished epoch
    s2, s3 = models["stage2"], models["stage3"]
    assert s2.input_shape[1:] == (32, 32, 3) and s3.input_shape[1:] == (48, 48, 3)
    moved = 0
    for a, b in zip(s2.layers, s3.layers):
        assert a.name == b.name
        if isinstance(a, keras.layers.BatchNormalization):
            for wa, wb in zip(a.get_weights(), b.get_weights()):
                np.testing.assert_array_equal(wa, wb, err_msg=a.name)
        elif a.get_weights() and block_of(TINY_RECIPE["backbone"], a.name) is not None:
            moved += not np.array_equal(a.get_weights()[0], b.get_weights()[0])
    assert moved > 10  # the unfrozen blocks trained on at the new size


def test_resnet50_writes_a_complete_bundle(tiny_food101, tmp_path):
    """train.py end to end with ResNet50 (random weights), its top residual stage unfrozen: a verified bundle whose
    models load in safe mode with the caffe preprocessing inside. (Which stages each setting unfreezes is
    `tests/test_model.py`'s, on the model alone: three here cost a quarter more; the polish at its own size is
    `test_polish_is_a_third_stage_at_its_own_size_that_resumes_inside`'s, ResNet50 through it cost a minute more.)"""
    import train as train_script

    args = tiny_args(tiny_food101, tmp_path / "runs", "resnet", backbone="resnet50", unfreeze_blocks=1,
                     stage1_epochs=1, stage2_epochs=1, reference_per_class=0, suspect_thumbs=0)  # fmt: skip
    assert train_script.main(args) == 0
    b = load_bundle(tmp_path / "runs" / "resnet")  # verifies every file against bundle.json
    assert b.stages == ["stage1", "stage2"] and b.train_config.backbone == "resnet50"
    assert [load_stage_model(b, s).input_shape[1] for s in b.stages] == [32, 32]
    assert load_stage_model(b).get_layer("preprocess").get_config()["trainable"] is False  # caffe preprocessing inside
    assert set(b.history["stage"]) == {1, 2} and b.evaluation().metrics["n"] == len(b.test_ids)


class LearningRates(keras.callbacks.Callback):
    """The optimizer's learning rate at every training step, by epoch."""

    def __init__(self):
        super().__init__()
        self.by_epoch: dict[int, list[float]] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.by_epoch[epoch] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.by_epoch[self.epoch].append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def test_cosine_stage2_warms_up_then_decays_and_resumes_where_it_stopped(tiny_food101, tmp_path):
    """Stage 2's rate at every step, across a run killed after stage 2's second epoch and resumed, is the schedule's,
    computed here independently: a linear warm-up over the first epoch to the peak, then a cosine down towards 0.
    The resumed run runs only the unfinished epoch, at the rates it would have had."""
    cfg = tiny_config(
        tiny_food101, tmp_path, stage1_epochs=1, stage2_epochs=3, stage2_schedule="cosine", stage2_lr=2e-3
    )
    first, resumed = LearningRates(), LearningRates()
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "work", extra_callbacks=[first, Interrupt(2)])  # dies after stage 2's second epoch
    _, data, _ = train(cfg, tmp_path / "work", extra_callbacks=[resumed])
    assert list(resumed.by_epoch) == [3]  # only the unfinished epoch runs again
    assert np.allclose(first.by_epoch[0], 1e-2)  # stage 1 stays constant

    steps = -(-len(data.train) // cfg.batch_size)  # an epoch's steps
    warmup, total = steps, 3 * steps
    step = np.arange(total)
    cosine = 0.5 * (1 + np.cos(np.pi * (step - warmup) / (total - warmup)))
    expected = np.where(step < warmup, 2e-3 * step / warmup, 2e-3 * cosine)
    seen = np.concatenate([first.by_epoch[1], first.by_epoch[2], resumed.by_epoch[3]])  # stage 2 is epochs 1-3
    np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-12)
    warm, decay = seen[:warmup], seen[warmup:]  # the shape said above, as seen
    assert warm[0] == 0 and np.all(np.diff(warm) > 0)
    assert decay[0] == pytest.approx(2e-3, rel=1e-5) and np.all(np.diff(decay) < 0) and decay[-1] < 0.05 * 2e-3


class RawWeights(keras.callbacks.Callback):
    """The trainable weights after every training step, by variable path: what the optimizer produced."""

    def __init__(self):
        super().__init__()
        self.steps: list[dict[str, np.ndarray]] = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append({w.path: w.numpy().copy() for w in self.model.trainable_weights})


def test_ema_keeps_the_moving_average_of_stage2_weights_across_a_resume(tiny_food101, tmp_path):
    work = tmp_path / "work"
    cfg = tiny_config(tiny_food101, tmp_path, stage1_epochs=0, stage2_epochs=2, ema_momentum=0.8)  # stage 2 only
    first, second = RawWeights(), RawWeights()
    with pytest.raises(KeyboardInterrupt):
        train(cfg, work, extra_callbacks=[first, Interrupt(0)])  # dies after stage 2's first epoch
    models, _, _ = train(cfg, work, extra_callbacks=[second])
    steps = first.steps + second.steps  # one uninterrupted sequence of raw weights (5 steps an epoch)
    assert len(steps) == 10

    # Keras's EMA, computed here independently: the first step copies, then avg = m * avg + (1 - m) * w
    ema, by_epoch = dict(steps[0]), []
    for i, w in enumerate(steps[1:], start=2):
        ema = {k: 0.8 * ema[k] + 0.2 * w[k] for k in ema}
        if i in (5, 10):
            by_epoch.append(ema)
    hist = read_history(work)
    val = hist[hist.stage == 2]["val_accuracy"].tolist()
    best = by_epoch[int(np.argmax(val))]  # the checkpoint keeps the first best epoch
    shipped = {w.path: w.numpy() for w in models["stage2"].weights}
    for path, expected in best.items():
        np.testing.assert_allclose(shipped[path], expected, rtol=1e-4, atol=1e-6, err_msg=path)
    raw = steps[4 if int(np.argmax(val)) == 0 else 9]
    assert any(not np.allclose(shipped[p], raw[p], atol=1e-6) for p in raw)  # the average, not the raw weights


class EpochWeights(keras.callbacks.Callback):
    """The weights at the end of every epoch, in order."""

    def __init__(self):
        super().__init__()
        self.epochs: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append([w.numpy().copy() for w in self.model.weights])


class InvertLastBatch(keras.callbacks.Callback):
    """After the last training batch of the last epoch, before its validation, flips the sign of the classifier's
    weights: the model then answers its least likely dish, so that epoch's validation accuracy falls below the
    first's whatever the data and the machine (a trajectory left to chance once rose instead)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.last = epoch == self.params["epochs"] - 1

    def on_train_batch_end(self, batch, logs=None):
        if self.last and batch == self.params["steps"] - 1:
            dense = [layer for layer in self.model.layers if isinstance(layer, keras.layers.Dense)][-1]
            for w in dense.weights:
                w.assign(-w)


def test_keep_last_ships_each_stage_s_last_epoch_even_when_validation_peaked_earlier(tiny_food101, tmp_path):
    work = tmp_path / "work"
    cfg = tiny_config(tiny_food101, tmp_path, stage1_epochs=0, stage2_epochs=2, keep_epoch="last", deterministic=True)
    seen = EpochWeights()
    models, _, _ = train(cfg, work, extra_callbacks=[InvertLastBatch(), seen])
    val = read_history(work).query("stage == 2")["val_accuracy"].tolist()
    # The premise that makes this a test: "best" would keep an earlier epoch (a tie keeps the first).
    assert val[-1] <= max(val[:-1]), val
    shipped = [w.numpy() for w in models["stage2"].weights]
    for got, want in zip(shipped, seen.epochs[-1]):
        np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(got, first) for got, first in zip(shipped, seen.epochs[0]))
    assert "last epoch of each stage kept" in recipe_extras(cfg)


def test_a_changed_recipe_never_resumes_the_old_checkpoints(tiny_food101, tmp_path, capsys):

    import train as train_cli

    cfg = tiny_config(tiny_food101, tmp_path, stage1_epochs=0, stage2_epochs=1)  # stage 1: saved, not fitted
    work = tmp_path / ".work" / "tiny"  # where train.py keeps the checkpoints of --name tiny
    with pytest.raises(KeyboardInterrupt):
        train(cfg, work, extra_callbacks=[Interrupt(0)])  # dies at stage 2's end, before saving it
    changed = dataclasses.replace(cfg, image_size=40, stage2_lr=5e-4, cache="none")  # cache: not the recipe
    with pytest.raises(TrainingError, match=r"another recipe \(image_size: 32 there, 40 now, stage2_lr: 0.001"):
        train(changed, work)

    args = ["--image-size", "40", "--stage2-lr", "5e-4", "--stage1-epochs", "0", "--stage2-epochs", "1"]
    assert train_cli.main([*tiny_args(tiny_food101, tmp_path), *args]) == 2  # refused, said why
    assert "holds an unfinished run of another recipe" in capsys.readouterr().err
    assert train_cli.main([*tiny_args(tiny_food101, tmp_path), *args, "--force"]) == 0
    b = load_bundle(tmp_path / "tiny")
    assert load_stage_model(b, "stage1").input_shape == (None, 40, 40, 3)  # stage 1 made anew, not resumed
    assert b.config["train"]["stage2_lr"] == 5e-4


def test_impossible_settings_are_refused_before_any_data_is_read(tmp_path, capsys):
    import train as train_cli

    with pytest.raises(SystemExit):
        train_cli.parse_args(["--stage2-schedule", "linear"])
    assert "invalid choice: 'linear'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # out of range: the same exit 2, every problem named with its flag
        train_cli.parse_args(["--val-fraction", "1.5", "--image-size", "16", "--stage2-epochs", "-1"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    for said in ("--val-fraction 1.5: must be in [0, 1)", "--image-size 16: must be at least 32", "--stage2-epochs -1"):
        assert said in err

    # The Python API: every text setting, and a backbone, checked before the data (a folder that is not there).
    cfg = TrainConfig(data=str(tmp_path / "no-such-folder"), out=str(tmp_path))
    assert cfg.problems() == {}
    for name in CHOICES:  # the backbone among them
        bad = dataclasses.replace(cfg, **{name: "linear"})
        assert list(bad.problems()) == [name]
        with pytest.raises(ValueError, match=f"invalid settings: {name} 'linear' not one of"):
            train(bad, tmp_path / "work")
    assert not (tmp_path / "work").exists()  # refused before anything was written
    nan_lr = dataclasses.replace(cfg, stage1_lr=float("nan"))
    assert nan_lr.problems() == {}  # left to the NaN guard, which says more


@pytest.mark.parametrize(
    ("stage", "settings"),
    [(1, {"stage1_lr": float("nan"), "cache_features": False}), (1, {"stage1_lr": float("nan")}),
     (2, {"stage1_epochs": 0, "stage2_lr": float("nan")}),
     (3, {"stage1_epochs": 0, "stage2_epochs": 0, "polish_lr": float("nan"), "polish_epochs": 1, "polish_size": 40})],
    ids=["stage 1", "stage 1 on cached features", "stage 2", "polish"],
)  # fmt: skip
def test_a_nan_loss_stops_any_stage_with_a_message(tiny_food101, tmp_path, stage, settings):
    """Every stage of the table gets the same checks: a learning rate of NaN in any one stops the run there. (The
    stages before the one that diverges train no epoch: they are still run and saved, and nothing is slower to
    make than a fit.)"""
    cfg = tiny_config(tiny_food101, tmp_path, **{"stage1_epochs": 1, "stage2_epochs": 1, **settings})
    with pytest.raises(TrainingError, match=f"stage {stage}: the loss became nan"):
        train(cfg, tmp_path / "work")
    assert (tmp_path / "work" / f"stage{stage - 1}.keras").exists() or stage == 1  # the stages before it were kept
    assert not (tmp_path / "work" / f"stage{stage}.keras").exists()


def test_feature_cached_stage1_is_the_same_stage1(tiny_food101, tmp_path):
    """Stage 1 on cached pooled features follows the very same trajectory as stage 1 through the frozen backbone.

    One full batch per epoch (order cannot differ) and no dropout (no randomness): the two must agree.
    """
    histories, probs = {}, {}
    for cached in (True, False):
        cfg = tiny_config(
            tiny_food101,
            tmp_path,
            stage1_epochs=5,
            stage2_epochs=0,
            dropout=0.0,
            batch_size=64,
            cache_features=cached,
            name=f"c{cached}",
        )
        models, data, _ = train(cfg, tmp_path / f"work{cached}")
        histories[cached] = read_history(tmp_path / f"work{cached}")
        x = next(iter(make_dataset(data.test, 3, cfg, training=False, with_labels=False)))
        probs[cached] = models["stage1"].predict(x, verbose=0)
        assert (tmp_path / f"work{cached}" / "features_train.npy").exists() == cached
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(histories[True][key], histories[False][key], rtol=1e-4, err_msg=key)
    assert histories[True]["loss"].iloc[-1] < histories[True]["loss"].iloc[0] / 10  # it did learn
    np.testing.assert_allclose(probs[True], probs[False], atol=1e-4)


def test_mirrored_strategy_trains_on_two_logical_cpus(tiny_food101, tmp_path):
    """tf.distribute's MirroredStrategy, with the CPU split in two, runs both stages (in a fresh process,
    since logical devices must be set before TensorFlow starts)."""
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
import logging
import tensorflow as tf
from helpers import tiny_config
logging.basicConfig(level=logging.INFO)
from food101_core.training.fit import train
cfg = tiny_config({str(tiny_food101)!r}, {str(tmp_path)!r}, strategy="mirrored", cpu_devices=2, stage1_epochs=1,
                  stage2_epochs=1)
models, data, _ = train(cfg, __import__("pathlib").Path({str(tmp_path / "work")!r}))
print(json.dumps({{"cpus": len(tf.config.list_logical_devices("CPU")),
                   "out": models["stage2"].output_shape[-1]}}))
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cpus"] == 2 and result["out"] == 3
    assert "MirroredStrategy with 2 replicas" in out.stderr
    hist = read_history(tmp_path / "work")
    assert hist["stage"].tolist() == [1, 2]


def test_two_workers_train_one_run_and_only_the_chief_writes_the_bundle(tiny_food101, tmp_path):
    """--strategy multiworker on two processes of this machine, as on two machines: TF_CONFIG with two
    127.0.0.1 ports, each worker with its own --out (its own disk). Both train in step to the end; worker 0 (the
    chief) writes one complete bundle, worker 1 writes none."""
    from helpers import free_port

    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    procs = []
    for i in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": i}}
        args = tiny_args(tiny_food101, tmp_path / f"machine{i}", "multi", strategy="multiworker", stage1_epochs=1,
                         stage2_epochs=1, reference_per_class=0, suspect_thumbs=0)  # fmt: skip
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "train.py"), *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        logs = [p.communicate(timeout=480)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"worker {i}:\n{log[-3000:]}"
        assert "CollectiveAllReduceStrategy with 2 replicas" in log, log[-3000:]  # MultiWorkerMirroredStrategy
    chief = load_bundle(tmp_path / "machine0" / "multi")  # verified against its manifest
    assert chief.stages == ["stage1", "stage2"] and set(chief.history["stage"]) == {1, 2}
    assert not list((tmp_path / "machine1").rglob("bundle.json"))  # the other worker wrote no bundle
    assert not (tmp_path / "machine1" / "multi").exists()
    # They trained in step: worker 1's own stage-2 checkpoint has exactly the chief's trained weights (each keeps
    # its own BatchNorm statistics of stage 1's head, which are not synchronised and not trained).
    theirs = load_model(tmp_path / "machine1" / ".work" / "multi" / "stage2.keras")
    ours = load_stage_model(chief, "stage2")
    assert len(ours.trainable_weights) > 10
    for a, b in zip(ours.trainable_weights, theirs.trainable_weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
