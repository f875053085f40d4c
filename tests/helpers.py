"""Helpers for tests and benchmarks: the tiny recipe, food101-mini's whereabouts, starting the app.

A module of its own (not conftest) so that benchmarks and any test can import it; fixtures stay in conftest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from food101_core.training.synthetic import TINY_CLASSES, make_food101_layout, noisy_image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MINI = SHARED / "data" / "food101-mini"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_075_imagenet_notop.weights.h5"
DEMO_BUNDLE = ROOT / "assets" / "demo-bundle"

needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason=f"needs {MINI} (the shared food101-mini data set)")
needs_weights = pytest.mark.skipif(not MOBILENET_WEIGHTS.is_file(), reason=f"needs {MOBILENET_WEIGHTS}")
food_image = noisy_image
__all__ = ["TINY_CLASSES", "food_image", "make_food101_layout"]

TINY_RECIPE = dict(
    backbone="mobilenet",  # MobileNet v1: half the graph of v2 to trace, so each tiny training takes far less
    weights="none",
    image_size=32,
    batch_size=8,
    stage1_epochs=2,
    stage2_epochs=2,
    stage1_lr=1e-2,
    stage2_lr=1e-3,
    val_fraction=0.0,
    thumbs_correct_per_class=2,
    onnx=False,  # 3-5 s a stage: only the bundles the app or the serving tests open export (conftest's fixtures)
    analyses=False,  # the map and data quality: only the bundles whose tests read them (conftest's fixtures)
    data_autotune=False,  # no wait on tf.data's autotuner at the end of each of a run's many short calls
)


def made_once(tmp_path_factory, name: str, make: Callable[[Path], Path]) -> Path:
    """What `make(folder)` returns, made once per test run however many pytest-xdist workers ask for it.

    pytest-xdist's own recipe: the first worker makes it under a file lock in the run's shared temporary folder;
    the others wait for the lock, then find it done. Without workers, it is made as a plain session fixture.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return make(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent / name
    with FileLock(f"{root}.lock"):
        done = root / ".made"
        if not done.is_file():  # first asked, or the first try failed: (re)make it
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            done.write_text(str(make(root).relative_to(root)))
        return root / done.read_text()


def tiny_config(data: Path, out: Path, **overrides):
    """A recipe that trains in seconds: MobileNetV2 0.35 from scratch on 32 px images."""
    from food101_core.config import TrainConfig

    return TrainConfig(**{**TINY_RECIPE, "data": str(data), "out": str(out), "name": "tiny", **overrides})


def lopsided_model(size: int = 32, classes: int = 4):
    """A small image model shaped like ours (convolution, `avg_pool`, softmax head) that is far from
    mirror-symmetric: its answers for a photo and its mirror differ."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(image)
    x = keras.layers.Conv2D(8, 5, strides=2, activation="relu", kernel_initializer="he_normal", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    init = keras.initializers.RandomNormal(stddev=2.0)
    return keras.Model(image, keras.layers.Dense(classes, "softmax", kernel_initializer=init, name="predictions")(x))


def onnx_predictor(model, folder: Path, class_ids: list[str], **kwargs):
    """The serving side's Predictor over `model`, exported to ONNX as evaluation exports a stage."""
    from food101_core.serving.predictor import Predictor
    from food101_core.training.export import export_stage

    exported = export_stage(model, folder, "stage1")
    return Predictor(exported.onnx, class_ids, [c.upper() for c in class_ids], head=exported.head, **kwargs)


def tiny_args(data: Path, out: Path, name: str = "tiny", **overrides) -> list[str]:
    """The same tiny recipe as train.py's flags."""
    args = []
    for key, value in {**TINY_RECIPE, **overrides, "data": data, "out": out, "name": name}.items():
        flag = "--" + key.replace("_", "-")
        args += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return args


def local_client(url: str, **kwargs):
    """gradio_client's `Client` for an app on this machine, over plain HTTP. `ssl_verify=False` because httpx builds
    an SSL context for every request gradio_client sends, and the verifying kind loads certifi's CA bundle each
    time (about 30 ms of CPU); over plain HTTP nothing is verified either way. One `/predict` of the demo app took
    0.16 s of the test's CPU and 0.20 s in all with it, 0.013 s and 0.068 s without.
    """
    from gradio_client import Client

    return Client(url, verbose=False, ssl_verify=False, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# On PYTHONPATH, packages named tensorflow, keras and tf2onnx whose import fails: every app a test starts runs with
# them, so each test of the app also checks that serving never needs TensorFlow (a Space does not install it).
NO_TENSORFLOW = ROOT / "tests" / "blocked"


def start_app(args: list[str], env: dict | None = None, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """`python app.py ARGS` on a free port, with TensorFlow unimportable; returns once it answers HTTP."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(NO_TENSORFLOW), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    log = tempfile.NamedTemporaryFile("w+", prefix="food101-app-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), *args, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {Path(log.name).read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"app did not answer on {url} within {timeout} s")
