"""Your photos scored end to end against the physical limit here: the bare ONNX forward pass (issue 29, item 6).

    python bench/set_speed.py [--run BUNDLE] [--sizes 500 2000] [--app]

For each size, in one run: a folder of that many real food101-mini photos in dish folders (tinted copies past the
1,250 test photos), then (a) the whole scoring, `collect` + `score_set` (read, decode, resize, forward, the set's
summary and unfamiliar check), and (b) the bare forward pass (`Predictor.predict_batch` in batches of 32) over the
same photos already decoded and resized. Prints photos per second for each and their ratio (target: >= 0.5).
`--app` also times the app's `/evaluate_set` on a zip of the first size (upload, unzip, scoring, JSON back).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from common import DEMO_BUNDLE, MINI, ROOT
from PIL import Image


def make_set(folder: Path, n: int) -> Path:
    """n photos of food101-mini's test split in folders named by dish; past the 1,250 real ones, tinted copies."""
    test = (MINI / "meta" / "test.txt").read_text().split()
    for i in range(n):
        image_id = test[i % len(test)]
        dish, name = image_id.split("/")
        out = folder / dish / f"{name}-{i}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        src = MINI / "images" / f"{image_id}.jpg"
        if i < len(test):
            out.write_bytes(src.read_bytes())
        else:
            im = np.asarray(Image.open(src).convert("RGB"), np.float32)
            tint = np.array([1.0, 0.9, 0.8])[np.roll(np.arange(3), i)]
            Image.fromarray(np.clip(im * tint, 0, 255).astype(np.uint8)).save(out, quality=90)
    return folder


def bare_forward(predictor, photos) -> float:
    """Seconds for the forward pass alone over photos already decoded and resized, in batches of 32."""
    from food101_core.sets.scoring import BATCH, decode

    arrays = np.stack([decode(predictor, p) for p in photos])
    predictor.predict_batch(arrays[:BATCH])  # warm
    t0 = time.perf_counter()
    for i in range(0, len(arrays), BATCH):
        predictor.predict_batch(arrays[i : i + BATCH])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(DEMO_BUNDLE))
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--app", action="store_true", help="also time the app's /evaluate_set on the first size")
    args = ap.parse_args()

    from food101_core.bundle import load_bundle
    from food101_core.serving.predictor import Predictor
    from food101_core.sets.scoring import score_set
    from food101_core.sets.uploads import Limits, collect

    b = load_bundle(args.run)
    predictor = Predictor.from_bundle(b, b.final_stage)
    print(f"bundle {args.run}: {b.final_stage}, {predictor.size} px, tta_flip={predictor.tta_flip}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = make_set(Path(tmp) / f"set-{n}", n)
            t0 = time.perf_counter()
            found = collect(folder, Path(tmp) / f"work-{n}", Limits(max_photos=n))
            s = score_set(b, predictor, found).summary
            whole = time.perf_counter() - t0
            bare = bare_forward(predictor, found.photos)
            print(f"{n:,} photos: whole scoring {n / whole:,.0f} photos/s ({whole:.1f} s), bare forward pass "
                  f"{n / bare:,.0f} photos/s ({bare:.1f} s): ratio {bare / whole:.2f} (target >= 0.5); "
                  f"top-1 {s['top1']:.1%} of {s['scored']:,}")  # fmt: skip
        if args.app:
            app_time(args.run, Path(tmp) / f"set-{args.sizes[0]}", args.sizes[0])


def app_time(run: str, folder: Path, n: int) -> None:
    """The app's /evaluate_set on a zip of the folder, end to end as a script sees it."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from gradio_client import Client, handle_file
    from helpers import start_app

    zpath = folder.with_suffix(".zip")
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(folder.rglob("*.jpg")):
            zf.write(f, f.relative_to(folder.parent))
    proc, url = start_app(["--run", run])
    try:
        client = Client(url, verbose=False)
        t0 = time.perf_counter()
        s = client.predict(handle_file(str(zpath)), api_name="/evaluate_set")
        print(f"the app's /evaluate_set on a {n:,}-photo zip ({zpath.stat().st_size / 1e6:.0f} MB): "
              f"{time.perf_counter() - t0:.1f} s end to end, {s['scored']:,} scored")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
