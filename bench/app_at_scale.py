"""The app at Food-101's size: a 101-class bundle with 25,250 test photos, beside the 10-class demo bundle.

Prints the bundle's size, the evaluation's time, and how long each tab takes to draw in Chromium (the browser
test's own steps), for both bundles, and the ratio. The data are generated from food101-mini's photos (tinted and
patterned per class, `food101_core.training.synthetic`); the model is a tiny MobileNetV2 at 32 px (speed of the app does
not depend on its accuracy, and the test photos' count and the class count are what grow).

    python bench/app_at_scale.py [--test-per-class 250] [--work /tmp/food101-scale]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import DEMO_BUNDLE, MINI, ROOT

sys.path.insert(0, str(ROOT / "tests"))


def make_bundle(work: Path, test_per_class: int) -> Path:
    """Generate the data (once) and train + evaluate a tiny model on it through train.py."""
    from helpers import tiny_args

    import train
    from food101_core.training.synthetic import make_food101_layout, make_from_photos

    data = work / f"food-{test_per_class}"
    if not data.exists():
        if MINI.is_dir():
            make_from_photos(data, MINI, classes=101, n_train=4, n_test=test_per_class, side=64)
        else:
            make_food101_layout(data, n_train=4, n_test=test_per_class, classes=101)
    name = f"scale-{test_per_class}"
    if not (work / "runs" / name / "bundle.json").exists():
        assert train.main(tiny_args(data, work / "runs", name, stage1_epochs=1, stage2_epochs=1)) == 0
    elif not (work / "runs" / name / "reference.csv").exists():  # an older bundle: add the feature space
        from food101_core.training.evaluate import reevaluate

        reevaluate(str(work / "runs" / name))
    return work / "runs" / name


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def timed_tabs(url: str, photo: Path) -> dict[str, float]:
    """Seconds from page load, and from each tab's click, until what it shows has drawn (the browser test's steps)."""
    import browser as B
    from playwright.sync_api import sync_playwright

    out, seen, t = Path("/tmp/food101-scale-shots"), {}, {}
    with sync_playwright() as p:
        br = B.launch(p)
        page = br.new_page(viewport=B.DESKTOP)
        page.set_default_timeout(180_000)
        t0 = time.perf_counter()
        page.goto(url)
        B.first_screen(page)
        t["first screen"] = time.perf_counter() - t0
        steps = {
            "predict (thumbnail, then upload)": lambda: B.exercise_predict(page, photo, out, seen, 180_000),
            "confusion matrix + cell click": lambda: B.exercise_confusion(page, out, seen, 180_000),
            "per-class metrics": lambda: B.exercise_per_class(page, out, seen, 180_000),
            "mistakes + filter + select": lambda: B.exercise_mistakes(page, out, seen, 180_000),
            "training + calibration": lambda: B.exercise_curves(page, out, seen, 180_000),
            "map: draw, click a point": lambda: B.exercise_map(page, out, seen, 180_000),
        }
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            t[name] = time.perf_counter() - t0
        t["map drawn after the tab's click"] = seen["map_seconds"]
        br.close()
    return t


def serve_and_time(bundle: Path) -> tuple[float, dict[str, float]]:
    from helpers import start_app

    from food101_core.bundle import load_bundle

    t0 = time.perf_counter()
    proc, url = start_app(["--run", str(bundle)], timeout=600)
    start = time.perf_counter() - t0
    try:
        b = load_bundle(bundle)
        photo = b.original_image(0) or b.thumb(next(i for i in range(len(b.test_ids)) if b.thumb(i)))
        return start, timed_tabs(url, photo)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test-per-class", type=int, default=250)
    ap.add_argument("--work", type=Path, default=Path("/tmp/food101-scale"))
    args = ap.parse_args()
    from food101_core.bundle import load_bundle

    big = make_bundle(args.work, args.test_per_class)
    rows = {}
    for label, path in (("demo (10 classes)", DEMO_BUNDLE), ("101 classes", big)):
        b = load_bundle(path)
        start, tabs = serve_and_time(path)
        feature_space = [
            p for p in path.rglob("*") if p.name in {"embedding.npz", "reference.csv"} or p.parent.name == "reference"
        ]
        rows[label] = {
            "test photos": len(b.test_ids),
            "bundle MB": size_mb(path),
            "of which feature space MB": sum(p.stat().st_size for p in feature_space) / 1e6,
            "feature space s": b.config.get("timings", {}).get("embedding_s", float("nan")),
            "evaluation s": b.config.get("timings", {}).get("evaluate_s", float("nan")),
            "app start s": start,
            **{f"{k} s": v for k, v in tabs.items()},
        }
    small, large = rows.values()
    print(f"{'':36} {'demo':>10} {'101 classes':>12} {'ratio':>7}")
    for key in small:
        ratio = large[key] / small[key] if small[key] else float("nan")
        print(f"{key:36} {small[key]:10.2f} {large[key]:12.2f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
