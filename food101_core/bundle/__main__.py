"""`python -m food101_core.bundle check|upgrade|publish|card RUN`: the bundle's command line."""

from __future__ import annotations

import sys
from pathlib import Path

from .card import write_card
from .hub import load_bundle, publish_bundle
from .layout import VERSION, BundleError
from .upgrade import upgrade_bundle


def main(argv: list[str] | None = None) -> int:
    """`check RUN` verifies a bundle; `publish RUN OWNER/NAME` uploads it with its model card (`card` writes the card
    alone); `upgrade RUN` converts format 1."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m food101_core.bundle", description=main.__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="verify every file of a bundle").add_argument("run")
    up = sub.add_parser("upgrade", help="convert a format-1 bundle (loose thumbnails) to the current format, in place")
    up.add_argument("run")
    pub = sub.add_parser("publish", help="upload a bundle to a Hugging Face Hub model repo (needs HF_TOKEN)")
    pub.add_argument("run")
    pub.add_argument("repo_id")
    pub.add_argument("--private", action="store_true")
    card = sub.add_parser("card", help="write the model card that publish would upload, to read it first")
    card.add_argument("run")
    card.add_argument("repo_id")
    card.add_argument("--out", default="README.md", help="where to write it (default: README.md)")
    for p in (pub, card):
        p.add_argument("--space", help="the Space (OWNER/NAME) that serves the bundle, named on the model card")
        p.add_argument("--license", default="apache-2.0", help="the model's license on the card (a Hub license id)")
    args = ap.parse_args(argv)
    try:
        if args.command == "check":
            b = load_bundle(args.run)
            m = b.evaluation(b.final_stage).metrics
            size = sum(f["bytes"] for f in b.files.values())
            print(f"{b.path}: complete; {b.num_classes} classes, {len(b.test_ids)} test images, top-1 {m['top1']:.2%}; "
                  f"{len(b.files) + 1} files, {size / 1e6:.1f} MB, {len(b.photos):,} photos")  # fmt: skip
            for name in b.sets:
                s = b.set_summary(name)
                top1 = "no scored photos" if s["top1"] is None else f"top-1 {s['top1']:.2%}"
                print(f"  set {name}: {s['n_files']:,} files, {s['scored']:,} scored, {top1}")
        elif args.command == "upgrade":
            print(f"{upgrade_bundle(Path(args.run))}: upgraded to format {VERSION}")
        elif args.command == "card":
            b, out = load_bundle(args.run), Path(args.out)
            write_card(b, args.repo_id, out, space=args.space, license=args.license)
            print(f"{out}: the model card for {args.repo_id}")
        else:
            print(publish_bundle(Path(args.run), args.repo_id, private=args.private, space=args.space,
                                 license=args.license))  # fmt: skip
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # network and authentication errors from the Hub client
        print(f"error: could not publish to the Hub: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
