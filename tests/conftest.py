"""Shared fixtures: tiny generated data sets, the real food101-mini when present, one tiny trained bundle."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached here; tests must not wait on it

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MINI = SHARED / "data" / "food101-mini"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_075_imagenet_notop.weights.h5"
TINY_CLASSES = ["red_soup", "green_salad", "blue_cheese"]
COLOURS = [(200, 40, 40), (40, 170, 60), (50, 70, 200)]

needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason=f"needs {MINI} (the shared food101-mini data set)")
needs_weights = pytest.mark.skipif(not MOBILENET_WEIGHTS.is_file(), reason=f"needs {MOBILENET_WEIGHTS}")


def food_image(colour: tuple[int, int, int], rng: np.random.Generator, size=(40, 56)) -> Image.Image:
    """A noisy image dominated by one colour: classes that a tiny network separates in a few steps."""
    base = np.array(colour, np.float32) + rng.normal(0, 25, (*size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def make_food101_layout(root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> Path:
    """A Food-101-layout folder of 3 colour classes, with display names in meta/labels.txt."""
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True)
    train, test = [], []
    for c, colour in zip(TINY_CLASSES, COLOURS):
        (root / "images" / c).mkdir(parents=True)
        for i in range(n_train + n_test):
            food_image(colour, rng).save(root / "images" / c / f"{i}.jpg", quality=92)
            (train if i < n_train else test).append(f"{c}/{i}")
    (root / "meta" / "classes.txt").write_text("\n".join(TINY_CLASSES) + "\n")
    (root / "meta" / "labels.txt").write_text("Red soup\nGreen salad\nBlue cheese\n")
    (root / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "meta" / "test.txt").write_text("\n".join(test) + "\n")
    return root


@pytest.fixture
def tiny_food101(tmp_path: Path) -> Path:
    return make_food101_layout(tmp_path / "food")


TINY_RECIPE = dict(
    backbone="mobilenetv2",
    weights="none",
    image_size=32,
    batch_size=8,
    stage1_epochs=2,
    stage2_epochs=2,
    stage1_lr=1e-2,
    stage2_lr=1e-3,
    val_fraction=0.0,
    thumbs_correct_per_class=2,
)


def tiny_config(data: Path, out: Path, **overrides):
    """A recipe that trains in seconds: MobileNetV2 0.35 from scratch on 32 px images."""
    from food101_core.config import TrainConfig

    return TrainConfig(**{**TINY_RECIPE, "data": str(data), "out": str(out), "name": "tiny", **overrides})


def lopsided_model(size: int = 32, classes: int = 4):
    """A small image model that is far from mirror-symmetric: its answers for a photo and its mirror differ."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(classes, "softmax", kernel_initializer=keras.initializers.RandomNormal(stddev=0.1)),
        ]
    )


def tiny_args(data: Path, out: Path, name: str = "tiny", **overrides) -> list[str]:
    """The same tiny recipe as train.py's flags."""
    args = []
    for key, value in {**TINY_RECIPE, **overrides, "data": data, "out": out, "name": name}.items():
        flag = "--" + key.replace("_", "-")
        args += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return args


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """One bundle trained through train.py's own code path on tiny data; shared read-only by many tests."""
    import train

    base = tmp_path_factory.mktemp("bundle")
    data = make_food101_layout(base / "food")
    args = tiny_args(data, base / "runs")
    assert train.main(args) == 0
    return base / "runs" / "tiny"


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle, for tests that damage it."""
    dest = tmp_path / "copy"
    shutil.copytree(tiny_bundle, dest)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str], env: dict | None = None, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
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


@pytest.fixture(scope="session")
def app_process(tiny_bundle):
    """`python app.py` on the tiny bundle, started once for all the app tests."""
    proc, url = start_app(["--run", str(tiny_bundle)])
    yield proc, url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def app(app_process) -> str:
    return app_process[1]


@pytest.fixture(scope="session")
def client(app):
    from gradio_client import Client

    return Client(app, verbose=False)
