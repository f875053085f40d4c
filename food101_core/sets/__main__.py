"""Evaluate your own photos with a bundle's model, without TensorFlow:

    python -m food101_core.sets add RUN PHOTOS --name NAME [--replace]
    python -m food101_core.sets add RUN SET.zip [--name NAME] [--replace]
    python -m food101_core.sets evaluate RUN PHOTOS [--out DIR]

PHOTOS: a folder of class folders, Food-101's images/ + meta/, a CSV of path,label, or a zip of any of these.
`add` scores them and adds the set to the bundle (sets/NAME/, its mistakes' photos in shards of their own,
bundle.json last): the app's Photos selector then shows it in every analysis tab, and `bundle publish` uploads it.
SET.zip: a set scored in the app and downloaded from it ("Download the set"), added as it is (no scoring again),
if the bundle's shipped model is the one that scored it.
`evaluate` leaves the bundle alone and writes DIR/predictions.csv (every photo: its label, the dish matched, the
answer, its top 5, or why it was refused) and DIR/summary.json (top-1, top-5, ECE against the test split, per dish).
Both print the summary. Photos without a label, or with a label the model does not know, are predicted, not scored:
a batch prediction.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..bundle import (
    BundleError,
    add_set,
    check_set_name,
    load_bundle,
    read_set_archive,
    renamed_set,
    served_model_sha,
    standalone_set,
)
from ..bundle.layout import SET_MANIFEST
from ..serving.predictor import Predictor
from .scoring import score_set
from .uploads import Limits, UploadError, collect


def progress_bar(total_hint: str):
    """A tqdm bar when tqdm is installed (the training side has it), else a line every 10 %."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    state: dict = {}

    def update(done: int, total: int) -> None:
        if tqdm is not None:
            if "bar" not in state:
                state["bar"] = tqdm(total=total, unit="photo", desc=total_hint)
            bar = state["bar"]
            bar.update(done - bar.n)
            if done == total:
                bar.close()
        elif done == total or done % max(total // 10, 1) == 0:
            print(f"{total_hint}: {done:,}/{total:,} photos", file=sys.stderr)

    return update


def words(s: dict) -> str:
    """The summary in a few lines, for the terminal."""
    lines = [f"{s['n_files']:,} files: {s['scored']:,} scored, {s['unlabelled']:,} without a label, "
             f"{sum(s['unknown_labels'].values()):,} with a label the model does not know, {len(s['refused']):,} "
             "refused"]  # fmt: skip
    if s["scored"]:
        d = s["difference"]
        lines.append(
            f"top-1 {s['top1']:.1%} (test split {s['test_top1']:.1%}; difference {d['top1']:+.1%}, 95 % interval "
            f"{d['low']:+.1%} to {d['high']:+.1%}), top-5 {s['top5']:.1%}, ECE {s['ece']:.3f}"
        )
        for r in s["per_class"][:5]:
            lines.append(f"  {r['name']}: {r['top1']:.0%} of {r['n']} (test split {r['test_top1']:.0%})")
    if s["unfamiliar_share"] is not None:
        lines.append(f"{s['unfamiliar_share']:.0%} of the photos look like nothing the model was trained on")
    for label, n in s["unknown_labels"].items():
        lines.append(f"  label {label!r}: {n} photo(s) predicted, not scored (not one of the model's dishes)")
    for r in s["refused"][:20]:
        lines.append(f"  refused {r['file']}: {r['reason']}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m food101_core.sets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = ap.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="score a set of photos and add it to the bundle")
    ev = sub.add_parser("evaluate", help="score a set of photos, results beside it (the bundle is left alone)")
    for p in (add, ev):
        p.add_argument("run", help="bundle folder (evaluate: or a Hugging Face Hub repo id)")
        p.add_argument("photos", type=Path, help="folder, zip or CSV of path,label")
        p.add_argument("--max-photos", type=int, default=Limits.max_photos, help="refuse photos past this many")
    add.add_argument(
        "--name",
        help="the set's name: 1-40 lower-case letters, digits, - or _ (a downloaded set: its own unless given)",
    )
    add.add_argument("--replace", action="store_true", help="replace a set of the same name")
    ev.add_argument("--out", type=Path, default=None, help="where predictions.csv and summary.json go")
    return ap


def is_set_archive(path: Path) -> bool:
    """A set downloaded from the app: a zip holding set.json."""
    import zipfile

    try:
        return path.is_file() and zipfile.is_zipfile(path) and SET_MANIFEST in zipfile.ZipFile(path).namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def add_archive(args) -> int:
    """`add RUN SET.zip`: a set scored in the app, added without scoring it again."""
    try:
        files = read_set_archive(args.photos)
        if args.name:
            files = renamed_set(files, args.name)
        name = add_set(Path(args.run), files, replace=args.replace)
    except (BundleError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"added the set {name!r} to {args.run} (sets/{name}/); the app's Photos selector shows it")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "add" and is_set_archive(args.photos):
        return add_archive(args)
    if args.command == "add" and not args.name:
        print("error: name the set with --name (a set downloaded from the app carries its own)", file=sys.stderr)
        return 2
    try:
        name = check_set_name(args.name) if args.command == "add" else "your-photos"
        b = load_bundle(args.run)
        if args.command == "add" and b.remote:
            raise BundleError("add a set to a local bundle folder (then publish it)")
        if args.command == "add" and name in b.sets and not args.replace:
            raise BundleError(f"{b.path} has a set named {name!r} already (choose another --name, or --replace)")
        predictor = Predictor.from_bundle(b, b.final_stage)
        with tempfile.TemporaryDirectory(prefix="food101-set-") as work:
            found = collect(args.photos, Path(work), Limits(max_photos=args.max_photos))
            s = score_set(b, predictor, found, progress_bar(args.photos.name), name=name)
        if args.command == "add":
            add_set(b.path, standalone_set(s, b.class_ids, served_model_sha(b.manifest)), replace=args.replace)
    except (BundleError, UploadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(words(s.summary))
    if args.command == "add":
        print(f"added the set {name!r} to {b.path} (sets/{name}/); the app's Photos selector shows it")
        return 0
    out = args.out or Path(f"{args.photos.stem}-results")
    out.mkdir(parents=True, exist_ok=True)
    s.files.to_csv(out / "predictions.csv", index=False)
    (out / "summary.json").write_text(json.dumps(s.summary, indent=1))
    print(f"wrote {out / 'predictions.csv'} and {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
