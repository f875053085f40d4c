"""App cold start: process start to the first answered prediction (through gradio_client), and the bundle's
size on disk, for the demo bundle and an EfficientNetB0 bundle.

    python bench/cold_start.py [BUNDLE ...]     (default: assets/demo-bundle and a fresh EfficientNetB0 bundle)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import DEMO_BUNDLE, MINI, ROOT


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def efficientnet_bundle() -> Path:
    """A real bundle of EfficientNetB0 (random weights, 1 + 1 epochs on 5 % of food101-mini)."""
    out = Path("/tmp/food101-bench/runs")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--data",
            str(MINI),
            "--backbone",
            "efficientnetb0",
            "--weights",
            "none",
            "--train-fraction",
            "0.05",
            "--stage1-epochs",
            "1",
            "--stage2-epochs",
            "1",
            "--val-fraction",
            "0",
            "--out",
            str(out),
            "--name",
            "effnet-b0",
        ],
        check=True,
        capture_output=True,
    )
    return out / "effnet-b0"


def cold_start(bundle: Path, photo: Path) -> float:
    from gradio_client import Client, handle_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--run", str(bundle), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    try:
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                time.sleep(0.2)
        client.predict(handle_file(str(photo)), False, "stage2", api_name="/predict")
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    bundles = [Path(a) for a in sys.argv[1:]] or [DEMO_BUNDLE, efficientnet_bundle()]
    photo = next((MINI / "images").glob("*/*.jpg"))
    print("| bundle | cold start to first prediction | size on disk |")
    print("| --- | --- | --- |")
    for b in bundles:
        print(f"| {b.name} | {cold_start(b, photo):.1f} s | {size_mb(b):.1f} MB |")


if __name__ == "__main__":
    main()
