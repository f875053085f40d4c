"""Generated data sets in Food-101's layout, for tests and for scale checks without the real 5 GB archive.

    python -m food101_core.training.synthetic OUT --classes 101 --train-per-class 20 --test-per-class 250 \\
        [--from ../shared/data/food101-mini]

Without `--from`, each class is a noisy colour (a tiny network separates them in a few steps). With `--from`, the
images are real photos of another Food-101-layout folder, tinted and patterned per class, so the pictures look like
food and compress like photos: enough to measure bundle size, evaluation time and the app's speed at 101 classes.
"""

from __future__ import annotations

import argparse
import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

TINY_CLASSES = ["red_soup", "green_salad", "blue_cheese"]
TINY_NAMES = ["Red soup", "Green salad", "Blue cheese"]
TINY_COLOURS = [(200, 40, 40), (40, 170, 60), (50, 70, 200)]


def class_colours(n: int) -> list[tuple[int, int, int]]:
    """n well-separated colours: the three tiny classes' first, then evenly spaced hues."""
    if n <= len(TINY_COLOURS):
        return TINY_COLOURS[:n]
    hues = [(i * 0.618034) % 1.0 for i in range(n)]  # golden-ratio steps: neighbours differ
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.55 + 0.4 * (i % 2))) for i, h in enumerate(hues)]


def noisy_image(colour: tuple[int, int, int], rng: np.random.Generator, size=(40, 56)) -> Image.Image:
    """A noisy image dominated by one colour."""
    base = np.array(colour, np.float32) + rng.normal(0, 25, (*size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _write_meta(root: Path, ids: list[str], names: list[str], train: list[str], test: list[str]) -> None:
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "classes.txt").write_text("\n".join(ids) + "\n")
    (root / "meta" / "labels.txt").write_text("\n".join(names) + "\n")
    (root / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "meta" / "test.txt").write_text("\n".join(test) + "\n")


def class_ids(n: int) -> tuple[list[str], list[str]]:
    """Class ids and display names: the three tiny ones, or dish_000 ... for more."""
    if n <= len(TINY_CLASSES):
        return TINY_CLASSES[:n], TINY_NAMES[:n]
    ids = [f"dish_{i:03d}" for i in range(n)]
    return ids, [f"Dish {i:03d}" for i in range(n)]


def make_food101_layout(
    root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0, classes: int = 3, size=(40, 56)
) -> Path:
    """A Food-101-layout folder of noisy colour classes, with display names in meta/labels.txt."""
    rng = np.random.default_rng(seed)
    ids, names = class_ids(classes)
    train, test = [], []
    for c, colour in zip(ids, class_colours(classes)):
        (root / "images" / c).mkdir(parents=True)
        for i in range(n_train + n_test):
            noisy_image(colour, rng, size).save(root / "images" / c / f"{i}.jpg", quality=92)
            (train if i < n_train else test).append(f"{c}/{i}")
    _write_meta(root, ids, names, train, test)
    return root


def _source_photos(source: Path) -> list[Path]:
    photos = sorted((source / "images").rglob("*.jpg"))
    if not photos:
        raise FileNotFoundError(f"{source}/images has no .jpg photos")
    return photos


def _dressed(photo: Path, colour: tuple[int, int, int], pattern: int, side: int) -> Image.Image:
    """A real photo, cropped square and resized, tinted towards the class colour and striped in its pattern."""
    with Image.open(photo) as im:
        im.draft("RGB", (side, side))
        im = ImageOps.fit(im.convert("RGB"), (side, side))
    a = np.asarray(im, np.float32) * 0.6 + np.array(colour, np.float32) * 0.4
    stripe = (np.arange(side) // max(2, side // (4 + pattern % 7))) % 2 == 0
    a[stripe, :, :] *= 0.85 if pattern % 2 else 1.0
    a[:, stripe, :] *= 0.85 if pattern % 3 == 0 else 1.0
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def make_from_photos(
    root: Path, source: Path, classes: int = 101, n_train: int = 20, n_test: int = 250, side: int = 96, seed: int = 0
) -> Path:
    """A Food-101-layout folder of `classes` classes made of `source`'s photos, tinted and patterned per class."""
    rng = np.random.default_rng(seed)
    photos = _source_photos(source)
    ids, names = class_ids(classes)
    train, test = [], []
    total = classes * (n_train + n_test)
    with tqdm(total=total, desc="generating photos", unit="img") as bar:
        for k, (c, colour) in enumerate(zip(ids, class_colours(classes))):
            (root / "images" / c).mkdir(parents=True)
            for i, j in enumerate(rng.integers(0, len(photos), n_train + n_test)):
                _dressed(photos[j], colour, k, side).save(root / "images" / c / f"{i}.jpg", quality=85)
                (train if i < n_train else test).append(f"{c}/{i}")
                bar.update()
    _write_meta(root, ids, names, train, test)
    return root


ALTERATIONS = ("re-encoded", "resized", "cropped")


def altered(photo: Path, how: str) -> Image.Image:
    """A near-copy of a photo as it turns up again in scraped data: re-encoded, resized, or slightly cropped."""
    with Image.open(photo) as im:
        im = im.convert("RGB")
    w, h = im.size
    if how == "resized":
        return im.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BICUBIC)
    if how == "cropped":
        return im.crop((w // 20, h // 20, w - w // 20, h - h // 20))  # 90 % of each side
    return im  # re-encoded: saved again below at another JPEG quality


@dataclass
class Tampered:
    """A Food-101-layout copy of a data set with known faults: which training labels were changed, which test
    photos were copied (altered) into the training split, under which new training ids."""

    root: Path
    flipped: list[str]  # training ids whose label (class folder) was changed
    leaked: dict[str, str]  # new training id -> the test id it copies


def tampered_copy(
    source: Path, dest: Path, flip_fraction: float = 0.05, leaks: int = 10, seed: int = 0, classes: int = 0
) -> Tampered:
    """`source` (Food-101 layout) again at `dest` with a share of its training labels moved to another class at
    random, and `leaks` test photos copied, altered, into the training split. Unchanged photos are symlinks."""
    rng = np.random.default_rng(seed)
    class_list = (source / "meta" / "classes.txt").read_text().split()
    names = (source / "meta" / "labels.txt").read_text().splitlines()
    if classes:
        class_list, names = class_list[:classes], names[:classes]
    keep = set(class_list)
    lines = {s: [x for x in (source / "meta" / f"{s}.txt").read_text().split() if x.split("/")[0] in keep]
             for s in ("train", "test")}  # fmt: skip
    flip = set(rng.choice(len(lines["train"]), round(flip_fraction * len(lines["train"])), replace=False).tolist())
    train, flipped = [], []
    for k, image_id in enumerate(lines["train"]):
        cls, name = image_id.split("/")
        if k in flip:
            cls = rng.choice([c for c in class_list if c != cls])
            flipped.append(f"{cls}/{name}")
        (dest / "images" / cls).mkdir(parents=True, exist_ok=True)
        (dest / "images" / cls / f"{name}.jpg").symlink_to((source / "images" / f"{image_id}.jpg").resolve())
        train.append(f"{cls}/{name}")
    leaked = {}
    for k, j in enumerate(rng.choice(len(lines["test"]), leaks, replace=False)):
        test_id = lines["test"][j]
        new_id = f"{test_id.split('/')[0]}/leak{k}"
        how = ALTERATIONS[k % len(ALTERATIONS)]
        altered(source / "images" / f"{test_id}.jpg", how).save(dest / "images" / f"{new_id}.jpg", quality=75)
        train.append(new_id)
        leaked[new_id] = test_id
    for test_id in lines["test"]:
        (dest / "images" / test_id.split("/")[0]).mkdir(parents=True, exist_ok=True)
        (dest / "images" / f"{test_id}.jpg").symlink_to((source / "images" / f"{test_id}.jpg").resolve())
    _write_meta(dest, class_list, names, train, lines["test"])
    return Tampered(dest, flipped, leaked)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m food101_core.training.synthetic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("out", type=Path, help="folder to create (must not exist)")
    ap.add_argument("--classes", type=int, default=101)
    ap.add_argument("--train-per-class", type=int, default=20)
    ap.add_argument("--test-per-class", type=int, default=250)
    ap.add_argument("--side", type=int, default=96, help="image side in pixels (with --from)")
    ap.add_argument("--from", dest="source", type=Path, help="a Food-101-layout folder whose photos to reuse")
    args = ap.parse_args(argv)
    if args.out.exists():
        ap.error(f"{args.out} exists already")
    if args.source:
        make_from_photos(args.out, args.source, args.classes, args.train_per_class, args.test_per_class, args.side)
    else:
        make_food101_layout(args.out, args.train_per_class, args.test_per_class, classes=args.classes)
    print(
        f"{args.out}: {args.classes} classes, {args.train_per_class} training, {args.test_per_class} test images each"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
