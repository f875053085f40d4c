"""The app's /predict under load against Gradio's own floor and the bare model (issue 30, item 2).

    python bench/app_load.py [--run BUNDLE] [--visitors 1 50] [--requests 100]

Measures, in one run on this machine:
(a) the bare ONNX forward pass per photo (`Predictor.forward` on a ready tensor: the model and nothing else);
(b) the floor: a minimal Gradio app with /predict's inputs and outputs (photo, Grad-CAM box, model → top 5, words,
    image) whose function only opens the photo, queued as app.py queues;
(c) the app's /predict (`python app.py`, TensorFlow unimportable, as a Space runs it).
Each at 1 visitor and at N concurrent visitors: every visitor uploads its photo (bytes the app has not seen, so no
kept answer flatters the app; a last row, for information, repeats photos asked before) and calls /predict over the
plain HTTP API (`/gradio_api/upload`, `/gradio_api/call/predict`, then the answer's event stream), all from one asyncio
client so that the client costs little. Each visitor keeps one session, as a browser tab or a gradio_client does,
and is timed twice: its first call (Gradio sets the session's state up then, at a cost that grows with the page's
components: about 45 ms for the app's, nothing for the floor's few), then --requests calls with the page open.
Prints median, p95 and throughput for each, and the issue's targets: at N visitors the app's p95 and throughput
within 1.5x of the floor's; at 1 visitor the app's median within the floor's plus 2x the forward pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from common import DEMO_BUNDLE, MINI, ROOT

sys.path.insert(0, str(ROOT / "tests"))


def floor_app(port: int, concurrency: int) -> None:
    """Gradio's floor for a request shaped like /predict: the function only opens the photo."""
    import gradio as gr
    from PIL import Image

    def predict(path: str | None, cam: bool, stage: str):
        with Image.open(path) as im:
            im.load()
        return {"a dish": 1.0}, "opened", None

    with gr.Blocks() as page:
        photo, cam = gr.Image(type="filepath"), gr.Checkbox()
        stage = gr.Dropdown(["stage1", "stage2"], value="stage2")
        outputs = [gr.Label(), gr.Markdown(), gr.Image()]
        gr.Button().click(predict, [photo, cam, stage], outputs, api_name="predict")
    page.queue(default_concurrency_limit=concurrency, max_size=64)
    page.launch(server_port=port, prevent_thread_lock=False)


async def one_visit(client, url: str, photo: Path, stage: str, session: str, unique: bool = True) -> float:
    """Upload the photo, call /predict in the visitor's session, read its answer: seconds from the upload's start to
    the answer. `unique`: bytes after the JPEG's end make every upload a photo the app has not seen (the same
    picture, other bytes: no kept answer), as visitors' own photos are."""
    t0 = time.perf_counter()
    data = photo.read_bytes() + (uuid.uuid4().bytes if unique else b"")
    up = await client.post(f"{url}gradio_api/upload", files={"files": (photo.name, data, "image/jpeg")})
    path = up.json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, False, stage]
    call = await client.post(f"{url}gradio_api/call/predict", json={"data": data, "session_hash": session})
    event_id = call.json()["event_id"]
    async with client.stream("GET", f"{url}gradio_api/call/predict/{event_id}") as answer:
        event = ""
        async for line in answer.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(f"/predict failed: {line}")
                json.loads(line[5:])
                break
    return time.perf_counter() - t0


async def load(url: str, photos: list[Path], visitors: int, requests: int, stage: str,
               unique: bool = True) -> dict[str, dict]:  # fmt: skip
    """Two phases from the same `visitors` sessions (each its own photos): "new", every visitor's first call, all at
    once (Gradio sets a session's state up on its first call, at a cost that grows with the page's components);
    then "open", `requests` more calls, `visitors` at a time (visitors with the page open). Latency percentiles and
    throughput of each. Not `unique`: the photos are the same bytes each time, each asked once before (an example
    photo many visitors click: the app's kept answers)."""
    import httpx

    limits = httpx.Limits(max_connections=visitors * 2 + 4)
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await one_visit(client, url, photos[0], stage, f"warm-{run}")  # the first call builds what later ones reuse
        if not unique:  # every photo asked once: the phases then find its answer kept
            for photo in photos:
                await one_visit(client, url, photo, stage, f"warm-{run}", unique=False)

        async def phase(calls: int) -> dict:
            queue, seconds = list(range(calls)), []

            async def visitor(v: int) -> None:
                while queue:
                    i = queue.pop()
                    photo = photos[(v + i) % len(photos)]
                    seconds.append(await one_visit(client, url, photo, stage, f"{run}-{v}", unique))

            t0 = time.perf_counter()
            await asyncio.gather(*(visitor(v) for v in range(visitors)))
            wall = time.perf_counter() - t0
            seconds.sort()
            return {"median": statistics.median(seconds), "p95": seconds[int(0.95 * (len(seconds) - 1))],
                    "throughput": len(seconds) / wall}  # fmt: skip

        return {"new": await phase(visitors), "open": await phase(requests)}


PHASES = {"new": "each visitor's first", "open": "with the page open"}
REPEATED = "app, photos asked before"


def forward_ms(bundle: Path) -> float:
    """The bare ONNX forward pass of one photo as the app serves it (with its mirror when the bundle has it)."""
    import numpy as np

    from food101_core.bundle import load_bundle
    from food101_core.serving.images import read_image
    from food101_core.serving.predictor import Predictor

    p = Predictor.from_bundle(load_bundle(bundle))
    ready = p.preprocess(read_image(next((MINI / "images").glob("*/*.jpg"))))
    if p.tta_flip:
        ready = np.concatenate([ready, ready[:, :, ::-1, :]])
    for _ in range(5):
        p.forward(ready)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        p.forward(ready)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def start(kind: str, bundle: Path, concurrency: int):
    from helpers import free_port, start_app

    if kind == "app":
        return start_app(["--run", str(bundle), "--concurrency", str(concurrency)])
    import subprocess
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-floor", str(port), "--concurrency", str(concurrency)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError("the floor app did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=DEMO_BUNDLE)
    ap.add_argument("--visitors", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--requests", type=int, default=100, help="visits per measurement (at least the visitors)")
    ap.add_argument("--concurrency", type=int, default=2, help="app.py's --concurrency, for both apps")
    ap.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_floor:
        return floor_app(args.serve_floor, args.concurrency)
    from food101_core.bundle import load_bundle

    photos = sorted((MINI / "images").glob("*/*.jpg"))[:100]
    stage = load_bundle(args.run).final_stage
    fwd = forward_ms(args.run)
    rows: dict[tuple[str, int], dict] = {}
    for kind in ("floor", "app"):
        proc, url = start(kind, args.run, args.concurrency)
        try:
            for n in args.visitors:
                rows[kind, n] = asyncio.run(load(url, photos, n, max(args.requests, n), stage))
            if kind == "app":  # for information: photos asked before (the targets are on new photos)
                for n in args.visitors:
                    rows[REPEATED, n] = asyncio.run(load(url, photos, n, max(args.requests, n), stage, unique=False))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"bare ONNX forward pass: {fwd:.1f} ms a photo ({args.run.name}, as served)")
    print("| what | visitors | calls | median (ms) | p95 (ms) | answers/s |\n| --- | ---: | --- | ---: | ---: | ---: |")
    for (kind, n), phases in rows.items():
        for name, r in phases.items():
            print(f"| {kind} | {n} | {PHASES[name]} | {r['median'] * 1000:.0f} | {r['p95'] * 1000:.0f} | "
                  f"{r['throughput']:.1f} |")  # fmt: skip
    for n in args.visitors:
        for name in PHASES:
            app, floor = rows["app", n][name], rows["floor", n][name]
            if n == 1:
                limit = floor["median"] * 1000 + 2 * fwd
                print(f"1 visitor, {PHASES[name]}: app median {app['median'] * 1000:.0f} ms, target <= floor + 2x "
                      f"forward = {limit:.0f} ms")  # fmt: skip
            else:
                print(f"{n} visitors, {PHASES[name]}: p95 {app['p95'] / floor['p95']:.2f}x the floor's, throughput "
                      f"{floor['throughput'] / app['throughput']:.2f}x below it (targets <= 1.5x)")  # fmt: skip


if __name__ == "__main__":
    main()
