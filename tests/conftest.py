"""Shared fixtures: tiny generated data sets, one tiny trained bundle, the app running on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, made_once, make_food101_layout, start_app, tiny_args

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached here; tests must not wait on it


@pytest.fixture
def tiny_food101(tmp_path: Path) -> Path:
    return make_food101_layout(tmp_path / "food")


def _train_tiny(base: Path, data: Path, **overrides) -> Path:
    """train.py's tiny recipe on `data`, into `base/runs/tiny`."""
    import train

    assert train.main(tiny_args(data, base / "runs", **overrides)) == 0
    return base / "runs" / "tiny"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """One bundle trained through train.py's own code path on tiny data, with a polish stage at 40 px (so the
    app's final model is stage 3, at another size than stages 1 and 2); shared read-only by many tests (and by
    both workers: `made_once`)."""

    def make(base: Path) -> Path:
        data = make_food101_layout(base / "food")
        return _train_tiny(base, data=data, polish_epochs=1, polish_size=40, onnx=True, analyses=True)

    return made_once(tmp_path_factory, "bundle", make)


@pytest.fixture(scope="session")
def scale_bundle(tmp_path_factory) -> Path:
    """A bundle at Food-101's class count: 101 generated classes, 4 training and 30 test photos each."""

    def make(base: Path) -> Path:
        data = make_food101_layout(base / "food", n_train=4, n_test=30, classes=101)
        return _train_tiny(base, data=data, stage1_epochs=1, stage2_epochs=1, onnx=True, analyses=True)

    return made_once(tmp_path_factory, "scale", make)


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle, for tests that damage it."""
    dest = tmp_path / "copy"
    shutil.copytree(tiny_bundle, dest)
    return dest


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
def demo_app():
    """`python app.py` on the shipped demo bundle (10 real dishes, its analyses), for the browser tests."""
    demo = ROOT / "assets" / "demo-bundle"
    if not (demo / "bundle.json").is_file():
        pytest.skip("no demo bundle in assets/")
    proc, url = start_app(["--run", str(demo)])
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def client(app):
    from gradio_client import Client

    return Client(app, verbose=False)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what tests measured (`record_property("timings", line)`): it travels in the test reports, so the
    lines show under pytest-xdist too, where a test's own print is swallowed."""
    lines = [value for report in terminalreporter.stats.get("passed", [])
             for key, value in getattr(report, "user_properties", []) if key == "timings"]  # fmt: skip
    if lines:
        terminalreporter.section("timings")
        for line in lines:
            terminalreporter.write_line(line)
