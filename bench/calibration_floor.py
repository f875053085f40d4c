"""How low can a bundle's ECE go on its test split? The noise floor, and what one temperature could reach at best.

Not a speed benchmark: it says whether a calibration target is measurable at all. A perfectly calibrated model
still shows an ECE above zero on a finite test split, because each confidence bin holds a sample. Drawing the
labels from the bundle's own calibrated probabilities many times gives that floor. The "oracle" temperatures are
fitted on the test split itself, which the bundle never does: they bound what any temperature fitted elsewhere
could achieve, and are for this diagnosis only.

    python bench/calibration_floor.py [BUNDLE] [--draws 200]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import DEMO_BUNDLE


def main() -> None:
    from food101_core.bundle import load_bundle
    from food101_core.calibration import fit_temperature, temper
    from food101_core.metrics import calibration

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", default=str(DEMO_BUNDLE))
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()

    b = load_bundle(args.bundle)
    ev = b.evaluation()
    probs, labels = ev.probs.astype(np.float64), b.test_labels
    raw = temper(probs, 1 / ev.temperature)  # the stored probabilities are calibrated: undo T

    def ece(p: np.ndarray, y: np.ndarray = labels) -> float:
        return calibration(p.max(1), p.argmax(1) == y)[0]

    rng = np.random.default_rng(0)
    cum = np.cumsum(probs / probs.sum(1, keepdims=True), axis=1)
    floor = [ece(probs, (rng.random((len(probs), 1)) > cum).sum(1)) for _ in range(args.draws)]
    grid = np.linspace(0.3, 3.0, 271)
    by_ece = min(grid, key=lambda t: ece(temper(raw, t)))
    by_nll = fit_temperature(raw, labels)
    print(f"{b.path.name}: {len(labels)} test photos, final stage {b.final_stage}")
    print(f"ECE raw {ece(raw):.3f}; with the bundle's temperature {ev.temperature:.2f}: {ece(probs):.3f}")
    print(
        f"noise floor (labels drawn from the calibrated probabilities, {args.draws} draws): "
        f"mean {np.mean(floor):.3f}, 5th-95th percentile {np.quantile(floor, 0.05):.3f}-{np.quantile(floor, 0.95):.3f}"
    )
    print(f"oracle temperature by NLL on the test split: {by_nll:.2f} -> ECE {ece(temper(raw, by_nll)):.3f}")
    print(f"oracle temperature by ECE on the test split: {by_ece:.2f} -> ECE {ece(temper(raw, by_ece)):.3f}")


if __name__ == "__main__":
    main()
