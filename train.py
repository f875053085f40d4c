"""Fine-tune an ImageNet backbone on Food-101 in two stages and write a run bundle.

    python train.py                                   # the reference recipe: EfficientNetB0, Food-101 via TFDS
    python train.py --data ../shared/data/food101-mini --backbone mobilenet \\
        --weights ../shared/weights/mobilenet_075_imagenet_notop.weights.h5

Every flag is a field of `food101_core.config.TrainConfig`; the bundle records them all. Running the same
command again resumes an interrupted run from its last finished epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from food101_core.config import CHOICES, TrainConfig

HELP = {
    "data": "tfds:food101 (download), a Food-101-layout folder (images/ + meta/), or a folder of class folders",
    "classes": "comma-separated class ids to keep (default: all)",
    "num_classes": "keep only the first N classes (0 = all)",
    "train_fraction": "fraction of each class's training images to use",
    "val_fraction": "fraction of training images held out to pick each stage's best epoch (0 = use test)",
    "keep_epoch": (
        "best (by validation accuracy) or last: for a final fit on all training images (--val-fraction 0) "
        "with epoch counts chosen earlier on validation"
    ),
    "weights": "imagenet, none, or a local .weights.h5 file of the bare backbone (include_top=False)",
    "unfreeze_blocks": "stage 2 unfreezes the top N whole blocks of the backbone (0 = all)",
    "cache_features": "stage 1 on pooled features computed once, un-augmented (--no-cache-features to augment it)",
    "strategy": "default, mirrored (all local GPUs) or multiworker (TF_CONFIG)",
    "cpu_devices": "split the CPU into N logical devices (to try tf.distribute without GPUs)",
    "name": "bundle folder name under --out (default: backbone-data-recipehash)",
    "stage2_schedule": "constant (the reference) or cosine (one-epoch warm-up to --stage2-lr, then decay to 0)",
    "mixup": (
        "blend pairs of training images and their labels, like --augment (stage 2, or both with "
        "--no-cache-features); Beta(a, a) weights, e.g. 0.2 (0 = off)"
    ),
    "ema_momentum": "validate, keep and ship the exponential moving average of the weights (e.g. 0.998; 0 = off)",
    "deterministic": "TensorFlow op determinism: bit-identical reruns on one machine, somewhat slower",
}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """One flag per TrainConfig field, typed from its default."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=HELP.get(f.name))
        elif isinstance(default, list):
            ap.add_argument(
                flag,
                type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
                default=default,
                help=HELP.get(f.name),
            )
        else:
            ap.add_argument(
                flag,
                type=type(default),
                default=default,
                choices=CHOICES.get(f.name),
                help=HELP.get(f.name, f"default {default}"),
            )
    ap.add_argument("--force", action="store_true", help="train again even if the bundle exists")
    args = ap.parse_args(argv)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    if found := cfg.problems():  # exits 2 with the usage line, like a bad choice
        ap.error("; ".join(f"--{k.replace('_', '-')} {getattr(cfg, k)}: {why}" for k, why in found.items()))
    return cfg, args


MIN_FREE_BYTES = 2 * 1024**3  # checkpoints, cached features and the bundle of a full Food-101 run fit in this


def check_writable(folder: Path, min_free: int = MIN_FREE_BYTES) -> None:
    """Fail now, not after hours of training, if the bundle cannot be written or the disk is nearly full."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        sys.exit(f"error: cannot write to --out {folder}: {e}")
    free = shutil.disk_usage(folder).free
    if free < min_free:
        sys.exit(
            f"error: only {free / 1024**3:.2f} GiB free under --out {folder}; a run needs about "
            f"{min_free / 1024**3:.0f} GiB for checkpoints, cached features and the bundle"
        )


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(cfg.out)
    dest, work = out / cfg.run_name(), out / ".work" / cfg.run_name()
    if (dest / "bundle.json").exists() and not args.force:
        print(f"{dest} is already trained (use --force to train again)")
        return 0
    check_writable(out)

    from food101_core.bundle import write_bundle
    from food101_core.data import DataError
    from food101_core.evaluate import evaluate_models
    from food101_core.training import TrainingError, clear_work, is_chief, read_history, stale_recipe, train

    if args.force and stale_recipe(cfg, work):
        print(f"--force: discarding the unfinished run of another recipe in {work}")
        clear_work(work)
    try:
        models, data, timings = train(cfg, work)
        if not is_chief():
            return 0
        t0 = time.perf_counter()
        evals, thumbs = evaluate_models(models, data, cfg)
        timings["evaluate_s"] = time.perf_counter() - t0
        write_bundle(
            dest,
            cfg=cfg,
            data=data,
            model_files={s: work / f"{s}.keras" for s in models},
            history=read_history(work),
            evals=evals,
            thumbs=thumbs,
            extra=timings,
            overwrite=args.force,
        )
    except (DataError, TrainingError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    clear_work(work)
    m1, m2 = evals["stage1"].metrics, evals["stage2"].metrics
    print(f"bundle: {dest}\nstage 1 top-1 {m1['top1']:.2%}  stage 2 top-1 {m2['top1']:.2%}  (top-5 {m2['top5']:.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
