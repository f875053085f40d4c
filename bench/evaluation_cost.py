"""What the feature space and the data-quality analysis add to an evaluation at Food-101's size.

A generated 101-class set (25,250 test photos, 20 training photos a class, made from food101-mini's photos) is
evaluated by the reference recipe's backbone, EfficientNetB0 at 224 px (random weights: the cost does not depend on
them), through `evaluate.evaluate_models`, the code path of train.py; both stages are evaluated, as in a real run.
Prints the seconds of each part and the two additions as a share of the plain evaluation.

    python bench/evaluation_cost.py [--test-per-class 250] [--backbone efficientnetb0] [--work /tmp/food101-cost]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import MINI


def main() -> None:
    from food101_core.bundle import Results
    from food101_core.config import TrainConfig
    from food101_core.training.data import load_data
    from food101_core.training.evaluate import evaluate_models
    from food101_core.training.model import build_model
    from food101_core.training.synthetic import make_food101_layout, make_from_photos

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-per-class", type=int, default=250)
    ap.add_argument("--backbone", default="efficientnetb0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--work", type=Path, default=Path("/tmp/food101-cost"))
    args = ap.parse_args()
    data_dir = args.work / f"food-{args.test_per_class}"
    if not data_dir.exists():
        if MINI.is_dir():
            make_from_photos(data_dir, MINI, classes=101, n_train=20, n_test=args.test_per_class, side=96)
        else:
            make_food101_layout(data_dir, n_train=20, n_test=args.test_per_class, classes=101)
    cfg = TrainConfig(data=str(data_dir), backbone=args.backbone, weights="none", image_size=args.image_size,
                      val_fraction=0.0, batch_size=64, cache="none")  # fmt: skip
    data = load_data(cfg)
    model = build_model(cfg, data.num_classes)
    t0 = time.perf_counter()
    run = Results({"timings": {}}, data.class_ids, data.class_names, data.test.ids, data.test.labels, None, {})
    evaluate_models({"stage1": model, "stage2": model}, data, cfg, run)
    total = time.perf_counter() - t0
    extra = dict(run.config["timings"])  # export_s, embedding_s, data_quality_s
    plain = total - sum(extra.values())
    print(f"{args.backbone} at {args.image_size} px, {len(data.test):,} test photos, 101 classes, both stages")
    print(f"evaluation without the additions: {plain:.1f} s")
    for k, v in extra.items():
        print(f"{k}: {v:.1f} s = +{v / plain:.1%} of it")
    print(f"in all: {total:.1f} s")


if __name__ == "__main__":
    main()
