"""Shared fixtures: tiny generated data sets, one tiny trained bundle, the app running on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import make_food101_layout, start_app, tiny_args

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached here; tests must not wait on it


@pytest.fixture
def tiny_food101(tmp_path: Path) -> Path:
    return make_food101_layout(tmp_path / "food")


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A read-only fixture built once for the whole run: the test workers (pytest-xdist) share one folder and take
    turns on a file lock, so the first builds it and the others wait and reuse it (each used to train its own)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the workers' common parent
    dest = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (dest / "runs" / "tiny" / "bundle.json").is_file():
            shutil.rmtree(dest, ignore_errors=True)
            build(dest)
    return dest / "runs" / "tiny"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """One bundle trained through train.py's own code path on tiny data, with a polish stage at 40 px (so the
    app's final model is stage 3, at another size than stages 1 and 2); shared read-only by many tests."""
    import train

    def build(base: Path) -> None:
        data = make_food101_layout(base / "food")
        assert train.main(tiny_args(data, base / "runs", polish_epochs=1, polish_size=40, onnx=True)) == 0

    return built_once(tmp_path_factory, "tiny-bundle", build)


@pytest.fixture(scope="session")
def scale_bundle(tmp_path_factory) -> Path:
    """A bundle at Food-101's class count: 101 generated classes, 4 training and 30 test photos each."""
    import train

    def build(base: Path) -> None:
        data = make_food101_layout(base / "food", n_train=4, n_test=30, classes=101)
        assert train.main(tiny_args(data, base / "runs", stage1_epochs=1, stage2_epochs=1, onnx=True)) == 0

    return built_once(tmp_path_factory, "scale-bundle", build)


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
