"""Serving without TensorFlow, measured side by side in one run against the app as it was before (a git worktree
of BEFORE, served from the full environment with TensorFlow):

- the app's environment: a fresh venv from requirements.txt, against the old requirements.txt;
- cold start: `python app.py` to the first answered /predict (median of 3, alternating);
- /predict in-process: ONNX Runtime against the Keras model (TensorFlow resize and model in one graph, as the old
  Predictor ran it), same photos, photo and mirror averaged as the demo was evaluated;
- the running app's memory (RSS) after its first answer and after the load test;
- the load test: 50 clients at once, 4 predictions each, p50 and p95 of the request latency.

    python bench/serving.py [--before COMMIT] [--python PYTHON] [--skip-envs]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import DEMO_BUNDLE, MINI, ROOT

sys.path.insert(0, str(ROOT / "tests"))
from helpers import free_port

BEFORE = "0c5b641"  # the last commit whose app served the Keras model with TensorFlow
WORK = Path("/tmp/food101-bench/serving")


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def fresh_env(name: str, requirements: Path, python: str) -> tuple[Path, float, float]:
    """A new venv with `pip install -r requirements` (from pip's cache where it has the wheels): (venv, MB, s)."""
    venv = WORK / name
    shutil.rmtree(venv, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True, stderr=subprocess.DEVNULL)
    return venv, du_mb(venv), time.perf_counter() - t0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class App:
    """One `python app.py` on the demo bundle: started, timed to its first answer, loaded, stopped."""

    def __init__(self, python: Path, tree: Path, photo: Path):
        self.python, self.tree, self.photo = python, tree, photo

    def start(self) -> float:
        """Seconds from launch to the first answered /predict."""
        from gradio_client import Client, handle_file

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        t0 = time.perf_counter()
        bundle = self.tree / "assets" / "demo-bundle"
        args = [str(self.python), "app.py", "--run", str(bundle), "--port", str(self.port)]
        self.proc = subprocess.Popen(args, cwd=self.tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                client = Client(self.url, verbose=False)
                client.predict(handle_file(str(self.photo)), False, "stage2", api_name="/predict")
                return time.perf_counter() - t0
            except Exception:
                if self.proc.poll() is not None or time.perf_counter() - t0 > 300:
                    raise RuntimeError(f"{self.tree}: the app did not start") from None
                time.sleep(0.05)

    def load(self, photos: list[Path], clients: int = 50, each: int = 4) -> list[float]:
        """Latency of every request when `clients` clients send `each` predictions at once."""
        from gradio_client import Client, handle_file

        local = threading.local()

        def one(i: int) -> float:
            if not hasattr(local, "client"):
                local.client = Client(self.url, verbose=False)
            t0 = time.perf_counter()
            local.client.predict(handle_file(str(photos[i % len(photos)])), False, "stage2", api_name="/predict")
            return time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=clients) as pool:
            return list(pool.map(one, range(clients * each)))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def keras_predict(photos: list[Path]):
    """The old Predictor's path: TensorFlow's resize and the mirror-averaged Keras model in one tf.function."""
    import numpy as np
    import tensorflow as tf

    from food101_core.bundle import load_bundle
    from food101_core.serving.images import read_image
    from food101_core.training.data import resize_uint8
    from food101_core.training.model import load_stage_model, mirror_averaged, with_features

    b = load_bundle(DEMO_BUNDLE)
    served = mirror_averaged(with_features(load_stage_model(b)))
    spec = tf.TensorSpec([None, None, 3], tf.uint8)
    fn = tf.function(
        lambda img: served(tf.cast(resize_uint8(img, b.image_size), tf.float32)[None]), input_signature=[spec]
    )
    images = [np.asarray(read_image(p, decode_hint=2 * b.image_size)) for p in photos]
    fn(images[0])
    return lambda i: fn(images[i])


def onnx_predict(photos: list[Path]):
    from food101_core.bundle import load_bundle
    from food101_core.serving.predictor import Predictor

    p = Predictor.from_bundle(load_bundle(DEMO_BUNDLE))
    images = [p.read(photo) for photo in photos]
    p.predict(images[0])
    return lambda i: p.predict(images[i])


def latency_ms(predict, n: int, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        for i in range(n):
            t0 = time.perf_counter()
            predict(i)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def measure_predict(photos: list[Path]) -> None:
    onnx, keras = onnx_predict(photos), keras_predict(photos)
    a, b = [], []
    for _ in range(4):  # interleaved, so that both see the same machine
        a += latency_ms(onnx, len(photos), 1)
        b += latency_ms(keras, len(photos), 1)
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"/predict in-process, {len(photos)} photos x 4: ONNX Runtime {ma:.1f} ms, Keras {mb:.1f} ms "
          f"(median); Keras / ONNX = {mb / ma:.2f}")  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def measure_apps(new_python: Path, old_python: Path, old_tree: Path, photos: list[Path]) -> None:
    apps = {
        "new (ONNX Runtime)": App(new_python, ROOT, photos[0]),
        "old (TensorFlow)": App(old_python, old_tree, photos[0]),
    }
    starts: dict[str, list[float]] = {k: [] for k in apps}
    for _ in range(3):
        for name, app in apps.items():
            starts[name].append(app.start())
            app.stop()
    for name, app in apps.items():
        app.start()
        first = rss_mb(app.proc.pid)
        lat = app.load(photos)
        runs = ", ".join(f"{s:.1f}" for s in starts[name])
        print(f"{name}: cold start {statistics.median(starts[name]):.1f} s (runs {runs}); "
              f"memory {first:.0f} MB after the first answer, {rss_mb(app.proc.pid):.0f} MB after the load; "
              f"50 clients x 4: p50 {percentile(lat, 50):.2f} s, p95 {percentile(lat, 95):.2f} s")  # fmt: skip
        app.stop()
    new, old = (statistics.median(v) for v in starts.values())
    print(f"cold start: new / old = {new / old:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--python", default=sys.executable, help="interpreter for both fresh environments")
    ap.add_argument("--skip-envs", action="store_true", help="reuse the environments of an earlier run")
    args = ap.parse_args()
    if not MINI.is_dir():
        sys.exit(f"needs {MINI}")
    WORK.mkdir(parents=True, exist_ok=True)
    old_tree = WORK / "before"
    if not old_tree.is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree), args.before], check=True)
    if args.skip_envs:
        new_env, old_env = WORK / "env-new", WORK / "env-old"
    else:
        new_env, new_mb, new_s = fresh_env("env-new", ROOT / "requirements.txt", args.python)
        old_env, old_mb, old_s = fresh_env("env-old", old_tree / "requirements.txt", args.python)
        print(f"app environment: new {new_mb:.0f} MB ({new_s:.0f} s to install), old {old_mb:.0f} MB ({old_s:.0f} s); "
              f"new / old = {new_mb / old_mb:.2f}")  # fmt: skip
    photos = sorted((MINI / "images").glob("*/*.jpg"))[::130][:20]
    measure_predict(photos)
    measure_apps(new_env / "bin" / "python", old_env / "bin" / "python", old_tree, photos)


if __name__ == "__main__":
    main()
