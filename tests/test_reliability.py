"""Faults and load: many clients at once, files outside the bundle, tampered bundles, runs killed at any moment."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, local_client, make_food101_layout, tiny_args

from food101_core.bundle import BundleError, find_newest_bundle, load_bundle
from food101_core.training.model import load_stage_model


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_many_clients_at_once_each_get_their_own_answer(app_process, tiny_bundle, tmp_path):
    """20 concurrent clients, 150 predictions: every one answered, with the answer for its own photo. Half are
    photos asked before (kept answers), half new bytes of the same pictures (the model's batched passes)."""
    from gradio_client import handle_file

    proc, url = app_process
    b = load_bundle(tiny_bundle)
    photos = [Path(b.config["data"]["location"]) / "images" / f"{i}.jpg" for i in b.test_ids[:6]]
    # Each new client first reads the page's config (about 0.8 MB, most of it Gradio's own API schemas; 85 ms here
    # when idle): 20 at once beside another test worker's training took gradio_client's 5 s default on a slow
    # machine. What this test checks is the answers, so clients wait as long as the test's own limit.
    wait = {"timeout": 120}
    solo = local_client(url, httpx_kwargs=wait)
    expected = [solo.predict(handle_file(str(p)), False, "stage3", api_name="/predict")[0] for p in photos]
    assert len({json.dumps(e, sort_keys=True) for e in expected}) > 1  # the photos are told apart
    for _ in range(10):  # warm up before measuring memory
        solo.predict(handle_file(str(photos[0])), False, "stage3", api_name="/predict")
    before = rss_mib(proc.pid)
    local = threading.local()

    def one(i: int):
        if not hasattr(local, "client"):
            local.client = local_client(url, httpx_kwargs=wait)
        k = i % len(photos)
        photo = photos[k]
        if i % 2:  # the same picture, bytes the app has not seen (after the JPEG's end): no kept answer
            photo = tmp_path / f"{i}.jpg"
            photo.write_bytes(photos[k].read_bytes() + i.to_bytes(4, "big"))
        label, _, _ = local.client.predict(handle_file(str(photo)), False, "stage3", api_name="/predict")
        return k, label

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(150)))
    elapsed = time.perf_counter() - t0
    wrong = [(k, label["label"]) for k, label in results if label != expected[k]]
    assert not wrong, wrong[:5]
    growth = rss_mib(proc.pid) - before
    print(f"150 requests from 20 clients in {elapsed:.1f} s; app memory {before:.0f} MiB, {growth:+.0f} MiB after")
    assert growth < 150, f"memory grew by {growth:.0f} MiB"
    assert elapsed < 300


def test_no_file_outside_the_bundle_is_served(app, tiny_bundle):
    b = load_bundle(tiny_bundle)
    thumb = b.thumb(next(i for i in range(len(b.test_ids)) if b.has_thumb(i)))  # as a gallery serves it
    assert urllib.request.urlopen(f"{app}gradio_api/file={thumb}", timeout=10).status == 200
    secrets = [
        "/etc/passwd",
        f"{tiny_bundle}/../../../../../../etc/passwd",
        f"{tiny_bundle}/photos/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{thumb.parent}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        str(ROOT / "app.py"),
        str(tiny_bundle.parent / ".work"),
    ]
    for path in secrets:
        try:
            with urllib.request.urlopen(f"{app}gradio_api/file={path}", timeout=10) as r:
                body = r.read()
            assert b"root:" not in body and b"import" not in body, path
            pytest.fail(f"{path} was served ({r.status})")
        except urllib.error.HTTPError as e:
            assert e.code in (403, 404), (path, e.code)


def _rewrite_manifest(bundle: Path, rel: str) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    data = (bundle / rel).read_bytes()
    manifest["files"][rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (bundle / "bundle.json").write_text(json.dumps(manifest))


def test_a_model_with_code_in_it_is_refused_without_running_the_code(bundle_copy, tmp_path):
    """A tampered bundle whose .keras carries a Lambda layer (arbitrary code) is refused in safe mode."""
    import keras

    marker = tmp_path / "pwned"
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t, p=str(marker): t + 0 * float(__import__("pathlib").Path(p).write_text("x")))(
        inputs
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    evil = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    evil.save(bundle_copy / "models" / "stage2.keras")
    marker.unlink(missing_ok=True)  # building it ran the lambda once; loading must not
    _rewrite_manifest(bundle_copy, "models/stage2.keras")
    b = load_bundle(bundle_copy)
    with pytest.raises(BundleError, match=r"models/stage2\.keras cannot be loaded safely"):
        load_stage_model(b, "stage2")
    assert not marker.exists()


def test_tampered_class_list_is_refused(bundle_copy):
    classes = json.loads((bundle_copy / "classes.json").read_text())[:2]
    (bundle_copy / "classes.json").write_text(json.dumps(classes))
    with pytest.raises(BundleError, match=r"classes\.json is corrupt"):
        load_bundle(bundle_copy)
    _rewrite_manifest(bundle_copy, "classes.json")  # a consistent-looking tampering: caught by the deeper checks
    with pytest.raises(BundleError, match="labels beyond the 2 classes"):
        load_bundle(bundle_copy)


def _run_until(args: list[str], env: dict, when, timeout: float = 300) -> int | None:
    """Run train.py; kill -9 it as soon as `when(output_so_far)` is true. Returns its exit code, None if killed."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    out: list[str] = []
    for line in proc.stdout:
        out.append(line)
        if when("".join(out)):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
    return proc.wait(timeout=timeout)


@pytest.mark.slow
def test_a_run_killed_at_any_moment_finishes_with_a_complete_bundle(tmp_path):
    data = make_food101_layout(tmp_path / "food")
    out = tmp_path / "runs"
    args = tiny_args(data, out, "killed", stage1_epochs=3, stage2_epochs=3, cache_features=False,
                     reference_per_class=0, suspect_thumbs=0)  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    phases = {
        "mid stage 1": lambda o: "Epoch 2/3" in o,
        "mid stage 2": lambda o: "Epoch 5/6" in o,
        "during evaluation": lambda o: "stage1: top-1" in o,
    }
    for phase, when in phases.items():
        assert _run_until(args, env, when) is None, f"the run ended before the kill {phase}"
        assert find_newest_bundle(out) is None, f"a bundle appeared after a kill {phase}"
    assert _run_until(args, env, lambda o: False) == 0
    b = load_bundle(out / "killed")
    assert b.history["epoch"].tolist() == list(range(6)) and b.history["stage"].tolist() == [1, 1, 1, 2, 2, 2]
    assert not (out / ".work" / "killed").exists()  # checkpoints cleared once the bundle is written
    assert not list(out.glob(".killed.partial-*"))


def test_a_nearly_full_disk_fails_before_training(tmp_path, monkeypatch, capsys):
    import shutil

    import train

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - 10**8, 10**8))
    with pytest.raises(SystemExit, match=r"only 0\.09 GiB free"):
        train.main(["--data", "unused", "--out", str(tmp_path / "runs")])


@pytest.mark.slow
def test_same_command_same_seed_same_metrics(tmp_path):
    """--deterministic: two runs of one command give the same bits (without it, threaded sums may not)."""
    data = make_food101_layout(tmp_path / "food")
    metrics = []
    for i in range(2):
        args = tiny_args(
            data,
            tmp_path / f"runs{i}",
            "same",
            augment=True,
            deterministic=True,
            stage1_epochs=1,  # stage 1 on cached features, stage 2 on augmented batches: an epoch each is enough
            stage2_epochs=1,
            reference_per_class=0,
            suspect_thumbs=0,
        )  # the analyses (UMAP compiles in each new process) are not what is compared
        done = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        b = load_bundle(tmp_path / f"runs{i}" / "same")
        metrics.append((b.evaluation().probs, b.history))
    (p1, h1), (p2, h2) = metrics
    print(
        f"largest difference: probabilities {np.abs(p1 - p2).max():.2e}, "
        f"losses {np.abs(h1['loss'] - h2['loss']).max():.2e}"
    )
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(h1["loss"].to_numpy(), h2["loss"].to_numpy())
