"""Shared fixtures: tiny generated data sets, one tiny trained bundle, the app running on it."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import MINI, MOBILENET_WEIGHTS, ROOT, local_client, made_once, make_food101_layout, start_app, tiny_args

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached here; tests must not wait on it
# One thread per TensorFlow op pool in every test process and the train.py runs they start (the variables pass to
# subprocesses): two workers on two cores each ran two pools of two threads, and the tiny models gain nothing from
# them; two tiny trainings side by side took 10 % less wall time this way (19.2 s against 21.3 s).
for _pool in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_pool, "1")


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


@pytest.fixture(scope="session")
def scale_app(scale_bundle):
    """`python app.py` on the 101-class bundle, started once for the browser tests at that scale."""
    proc, url = start_app(["--run", str(scale_bundle)])
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def onnx_features(model, cfg, folder: Path):
    """A function giving a split's pooled features from ONNX Runtime on the model's ONNX export (`export_onnx`, as
    the app serves it), fed the batches `backbone_features` predicts on: the same numbers, and on this CPU MobileNet
    at 224 px runs about 3 x faster in ONNX Runtime than in Keras's predict (320 photos on one thread: 4.4 s against
    14.6 s)."""
    import onnxruntime as ort

    from food101_core.training.data import make_dataset
    from food101_core.training.export import export_onnx
    from food101_core.training.predictions import at_model_size

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one core a test worker, as TensorFlow here
    session = ort.InferenceSession(str(export_onnx(model, folder / "model.onnx")), options,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    name = session.get_inputs()[0].name

    def features(split) -> np.ndarray:
        batches = make_dataset(split, model.output_shape[-1], at_model_size(model, cfg), training=False,
                               with_labels=False)  # fmt: skip
        return np.concatenate([session.run(["features"], {name: np.asarray(x, np.float32)})[0] for x in batches])

    return features


@pytest.fixture(scope="session")
def tampered_analysis(tmp_path_factory):
    """food101-mini with 5 % of the training labels moved to another class and 10 test photos copied (re-encoded,
    resized or cropped) into the training split, analysed on MobileNet's ImageNet features at 224 px (once per
    run, whichever worker asks first: `made_once`); the test side is the copied photos and a quarter of the rest.
    The features come from ONNX Runtime (`onnx_features`), checked here against Keras's on the first batch."""

    def make(base: Path) -> Path:
        from food101_core.config import TrainConfig
        from food101_core.training.analyses import backbone_features
        from food101_core.training.data import load_data
        from food101_core.training.model import build_model
        from food101_core.training.synthetic import tampered_copy

        t = tampered_copy(MINI, base / "food", flip_fraction=0.05, leaks=10)
        cfg = TrainConfig(data=str(t.root), backbone="mobilenet", weights=str(MOBILENET_WEIGHTS), image_size=224,
                          val_fraction=0.0, batch_size=64, cache="none")  # fmt: skip
        data = load_data(cfg)
        model = build_model(cfg, data.num_classes)
        features = onnx_features(model, cfg, base)
        train = features(data.train)
        # the copied test photos and every 4th of the rest: the duplicates' test side needs no more, and the suspects
        # (a training-side search) none of it
        leaked = {data.test.ids.index(i) for i in t.leaked.values()}
        tested = data.test.subset(np.array(sorted(leaked | set(range(0, len(data.test), 4)))))
        test = features(tested)
        keras_side = backbone_features(model, tested.subset(np.arange(cfg.batch_size)), data.num_classes, cfg)
        np.testing.assert_allclose(test[: cfg.batch_size], keras_side, rtol=1e-3, atol=1e-4)
        from food101_core.training import quality as dq

        result = dq.analyse((train, data.train.labels, data.train.ids), (test, tested.ids), data.class_ids)
        (base / "analysis.pkl").write_bytes(pickle.dumps((t, result)))
        return base / "analysis.pkl"

    if not (MINI.is_dir() and MOBILENET_WEIGHTS.is_file()):
        pytest.skip("needs food101-mini and MobileNet's weights")
    return pickle.loads(made_once(tmp_path_factory, "tampered", make).read_bytes())


# What each pytest-xdist worker builds before its first test, so that neither waits idle for the other's build
# (`made_once` makes a worker that needs a bundle being built wait for it): the tiny bundle on one (about 3 min on
# a slow machine), the tampered food101-mini analysis (tests/test_data_quality.py) and the 101-class bundle on the
# other.
PREBUILT = {"gw0": ("tiny_bundle",), "gw1": ("tampered_analysis", "scale_bundle")}
SHARED_BUILDS = {"tiny_bundle", "scale_bundle", "tampered_analysis"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that need none of the shared builds first, then the rest; in each, those marked slow first, else in
    their usual order. pytest-xdist hands tests out in this order, so the worker that is not building the tiny bundle
    has work of its own meanwhile instead of waiting for it (a fresh clone on a slow machine: a test's set-up waited
    111 s), and the long tests start early rather than leaving one worker alone at the end."""
    items.sort(key=lambda item: (bool(SHARED_BUILDS & builds_used(item)), item.get_closest_marker("slow") is None))


def builds_used(item: pytest.Item) -> set[str]:
    """The fixtures a test uses, with those it asks for by name as it runs (marked `builds`)."""
    marked = {name for mark in item.iter_markers("builds") for name in mark.args}
    return set(getattr(item, "fixturenames", ())) | marked


@pytest.fixture(scope="session", autouse=True)
def prebuilt(request, worker_id: str) -> None:
    used = {name for item in request.session.items for name in builds_used(item)}
    for name in set(PREBUILT.get(worker_id, ())) & used:  # only what the tests chosen (-k, a file) will use
        with contextlib.suppress(pytest.skip.Exception):  # e.g. no food101-mini here: its tests say so themselves
            request.getfixturevalue(name)


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
def demo_app_process(tmp_path_factory):
    """`python app.py --mcp` on the shipped demo bundle (10 real dishes, its analyses), for the browser tests and the
    agents' tools (the MCP server beside the page, as a Space with GRADIO_MCP_SERVER=True serves it): its URL and
    its temporary folder (TMPDIR, where it keeps the visitors' uploads and sets)."""
    demo = ROOT / "assets" / "demo-bundle"
    if not (demo / "bundle.json").is_file():
        pytest.skip("no demo bundle in assets/")
    tmp = tmp_path_factory.mktemp("demo-app-tmp")
    proc, url = start_app(["--run", str(demo), "--mcp"], env={"TMPDIR": str(tmp)})
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def demo_app(demo_app_process) -> str:
    return demo_app_process[0]


@pytest.fixture(scope="session")
def client(app):
    return local_client(app)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what tests measured (`record_property("timings", line)`): it travels in the test reports, so the
    lines show under pytest-xdist too, where a test's own print is swallowed."""
    lines = [value for report in terminalreporter.stats.get("passed", [])
             for key, value in getattr(report, "user_properties", []) if key == "timings"]  # fmt: skip
    if lines:
        terminalreporter.section("timings")
        for line in lines:
            terminalreporter.write_line(line)
