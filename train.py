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
from pathlib import Path

from food101_core.config import SETTINGS, TrainConfig


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """One flag per TrainConfig setting, typed from its default, with the help and choices the setting carries."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, f in SETTINGS.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag, help_ = "--" + name.replace("_", "-"), f"{f.metadata['help']} (default: {default})"
        if isinstance(default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        elif isinstance(default, list):
            ap.add_argument(
                flag, type=lambda s: [c.strip() for c in s.split(",") if c.strip()], default=default, help=help_
            )
        else:
            ap.add_argument(flag, type=type(default), default=default, choices=f.metadata["choices"], help=help_)
    ap.add_argument("--force", action="store_true", help="train again even if the bundle exists")
    args = ap.parse_args(argv)
    cfg = TrainConfig(**{name: getattr(args, name) for name in SETTINGS})
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

    from food101_core.training.data import DataError
    from food101_core.training.evaluate import evaluate_and_write
    from food101_core.training.fit import TrainingError, clear_work, is_chief, read_history, stale_recipe, train

    if args.force and stale_recipe(cfg, work):
        print(f"--force: discarding the unfinished run of another recipe in {work}")
        clear_work(work)
    try:
        models, data, timings = train(cfg, work)
        if not is_chief():
            return 0
        evals = evaluate_and_write(
            dest,
            cfg=cfg,
            data=data,
            models=models,
            model_files={s: work / f"{s}.keras" for s in models},
            history=read_history(work),
            timings=timings,
            overwrite=args.force,
            feature_cache=work,
        )
    except (DataError, TrainingError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    clear_work(work)
    print(f"bundle: {dest}")
    for stage, ev in evals.items():
        m = ev.metrics
        print(f"{stage}: top-1 {m['top1']:.2%}  top-5 {m['top5']:.2%}  ECE {m['ece']:.3f} (raw {m['ece_raw']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
