"""A bundle at Food-101's size: files, bytes per part, photos stored once, evaluation against the analyses, and what a
Space downloads before its first answer.

Takes a bundle trained on the 101-class stand-in (generated from food101-mini's photos: `make_from_photos`, 100
training and 250 test photos a class; the issue's set-up trains MobileNet at 128 px, 15 + 1 epochs, with train.py),
evaluates its models again into a new bundle as train.py does (the analyses on by default, reusing the evaluation's
features; --no-analyses leaves them out), then prints:
- the evaluation's seconds and the analyses' (each timed in the same run), and their ratio (issue 30: <= 1.2 x);
- files, MB, the fullest folder, photos and whether any is stored twice;
- each part's files and MB (the table of docs/bundle-format.md);
- with --hub: the app started on the bundle through a local stand-in of the Hub; the files and MB fetched before
  its first /predict answer.

    python bench/bundle_at_scale.py RUN [--data PATH] [--out /tmp/food101-bundle-scale] [--hub]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import ROOT

sys.path.insert(0, str(ROOT / "tests"))


def part_of(rel: str) -> str:
    """The row of docs/bundle-format.md's size table a bundle file belongs to."""
    if rel.startswith("photos/"):
        return f"photos/{rel.split('/')[1].split('-')[0]}-NN.zip" if rel.endswith(".zip") else rel
    if rel.startswith("models/"):
        return "models/*" + Path(rel).suffix if not rel.endswith(".head.npz") else "models/*.head.npz"
    if rel.startswith("stage"):
        return "stageN/" + rel.split("/", 1)[1]
    return rel.split("/")[0] + ("/" if "/" in rel else "")


def report(path: Path) -> None:
    import pandas as pd

    from food101_core.bundle import load_bundle

    b = load_bundle(path)
    files = {**b.files, "bundle.json": {"bytes": (path / "bundle.json").stat().st_size}}
    folders = Counter(str(Path(rel).parent) for rel in files)
    index = pd.read_csv(path / "photos" / "index.csv", dtype=str)
    twice = int(index.duplicated(["split", "id"]).sum())
    print(f"{path}: {len(files)} files, {sum(f['bytes'] for f in files.values()) / 1e6:.1f} MB; fullest folder "
          f"{max(folders.values())} entries; {len(index):,} photos, {twice} stored twice")  # fmt: skip
    parts: dict[str, list[int]] = {}
    for rel, meta in files.items():
        parts.setdefault(part_of(rel), []).append(meta["bytes"])
    print("| part | files | MB |\n| --- | ---: | ---: |")
    for part, sizes in sorted(parts.items(), key=lambda kv: -sum(kv[1])):
        print(f"| `{part}` | {len(sizes)} | {sum(sizes) / 1e6:.1f} |")
    per_group = index.groupby(index["shard"].str.extract(r"photos/(\w+)-")[0]).size().to_dict()
    print(f"photos per group: {per_group}")


def evaluate_then_analyse(run: Path, data: str | None, out: Path, analyses: bool = True) -> Path:
    """Evaluate the run's models into `out` as train.py does, with its analyses (the default) or without; print the
    evaluation's seconds, the analyses', and their ratio, from one run.

    train.py's analyses reuse the evaluation's test features and stage 1's cached training features; that cache is
    gone once a run is finished, so it is made again first (untimed: it is stage 1's training cost, not theirs).
    """
    import tempfile

    import food101_core.training.evaluate as evaluate
    from food101_core.bundle import load_bundle
    from food101_core.training.analyses import backbone_features
    from food101_core.training.data import load_data
    from food101_core.training.model import load_stage_model

    b = load_bundle(run)
    cfg = b.train_config
    cfg.data, cfg.analyses = data or cfg.data, analyses
    data_ = load_data(cfg)
    models = {s: load_stage_model(b, s) for s in b.stages}
    cache = Path(tempfile.mkdtemp(prefix="food101-stage1-cache-"))
    if analyses:
        np.save(cache / "features_train.npy", backbone_features(models["stage1"], data_.train, data_.num_classes, cfg))
    spent: dict[str, float] = {}
    add_analyses = evaluate.add_analyses

    def timed_analyses(*args, **kwargs):  # the very step train.py runs after writing the bundle, timed
        t0 = time.perf_counter()
        parts = add_analyses(*args, **kwargs)
        spent["analyses"], spent["parts"] = time.perf_counter() - t0, parts
        return parts

    evaluate.add_analyses = timed_analyses
    t0 = time.perf_counter()
    evaluate.evaluate_and_write(out, cfg=cfg, data=data_, models=models, history=b.history, timings={},
                                overwrite=True, feature_cache=cache,
                                model_files={s: b.path / f"models/{s}.keras" for s in b.stages})  # fmt: skip
    total = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    timings = json.loads((out / "config.json").read_text())["timings"]
    evaluation = total - spent.get("analyses", 0.0)
    slices = timings.get("properties_s", 0) + timings.get("slices_s", 0)
    print(f"evaluation {evaluation:.0f} s (both stages, thumbnails, ONNX), of which photo properties "
          f"{timings.get('properties_s', 0):.1f} s and slices {timings.get('slices_s', 0):.1f} s: "
          f"{slices / evaluation:.1%}")  # fmt: skip
    if analyses:
        said = ", ".join(f"{k} {v:.0f} s" for k, v in spent["parts"].items())
        print(f"analyses {spent['analyses']:.0f} s ({said}): evaluation with them is {total / evaluation:.2f} x "
              "the evaluation without them")  # fmt: skip
    return out


def first_answer(path: Path) -> None:
    """Start the app on the bundle through a local stand-in of the Hub; what it fetched before answering."""
    import tempfile

    from gradio_client import Client, handle_file
    from helpers import start_app
    from hub_server import HubServer

    from food101_core.bundle import load_bundle

    b = load_bundle(path)
    photo = b.thumb(next(i for i in range(len(b.test_ids)) if b.has_thumb(i)))
    tmp = Path(tempfile.mkdtemp())
    with HubServer(path, "bench/scale") as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "0", "TMPDIR": str(tmp)}
        t0 = time.perf_counter()
        proc, url = start_app(["--run", "bench/scale"], env=env, timeout=600)
        try:
            Client(url, verbose=False).predict(handle_file(str(photo)), False, b.final_stage, api_name="/predict")
            seconds = time.perf_counter() - t0
            total = sum(f["bytes"] for f in b.files.values())
            print(f"first /predict answer from the Hub stand-in after {seconds:.1f} s: {len(hub.files())} of "
                  f"{len(b.files) + 1} files, {hub.bytes_sent() / 1e6:.1f} of {total / 1e6:.1f} MB: "
                  f"{', '.join(hub.files())}")  # fmt: skip
        finally:
            proc.terminate()
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a bundle trained on the stand-in (format 2; `bundle upgrade` a format-1)")
    ap.add_argument("--data", help="where its data set is now")
    ap.add_argument("--out", type=Path, default=Path("/tmp/food101-bundle-scale"))
    ap.add_argument("--hub", action="store_true", help="also time the app's first answer from a Hub stand-in")
    ap.add_argument("--report-only", action="store_true", help="only report on RUN as it is")
    ap.add_argument("--no-analyses", action="store_true", help="evaluate only (the slices' share of it)")
    args = ap.parse_args()
    path = args.run if args.report_only else evaluate_then_analyse(args.run, args.data, args.out, not args.no_analyses)
    report(path)
    if args.hub:
        first_answer(path)


if __name__ == "__main__":
    main()
