"""Food-101 Explorer's Gradio app: live prediction and visual error analysis over one run bundle.

    python app.py [--run PATH_OR_HUB_REPO_ID] [--compare PATH_OR_HUB_REPO_ID] [--mcp]

Which bundle: --run, else $FOOD101_RUN, else the newest bundle under runs/, else the demo bundle in assets/.
--compare (or $FOOD101_COMPARE) adds a Compare tab against a second run evaluated on the same test set.
--mcp (or GRADIO_MCP_SERVER=True) serves the endpoints as tools for agents too: docs/app.md, "Tools for agents".
Binds to 127.0.0.1 unless GRADIO_SERVER_NAME says otherwise (a Hugging Face Space sets 0.0.0.0).
"""

from __future__ import annotations

try:  # ZeroGPU (a free account's Space): `spaces` first of all, before Gradio and anything that touches CUDA
    import spaces
except ImportError:  # CPU Basic, a laptop: nothing changes
    spaces = None

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEMO_BUNDLE = ROOT / "assets" / "demo-bundle"
MAX_UPLOAD = "20mb"


def choose_run(arg: str | None) -> str | None:
    from food101_core.bundle import find_newest_bundle

    if arg or os.environ.get("FOOD101_RUN"):
        return arg or os.environ["FOOD101_RUN"]
    newest = find_newest_bundle(ROOT / "runs")
    if newest:
        return str(newest)
    return str(DEMO_BUNDLE) if (DEMO_BUNDLE / "bundle.json").is_file() else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="bundle folder or Hugging Face Hub model repo id (default: see above)")
    ap.add_argument("--compare", default=os.environ.get("FOOD101_COMPARE"), help="a second run, for the Compare tab")
    ap.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    ap.add_argument("--concurrency", type=int, default=2,
                    help="predictions at once, each on its share of the cores (2 suits a 2-core Space)")
    ap.add_argument("--mcp", action="store_true", default=None,
                    help="also serve the app's endpoints as MCP tools at /gradio_api/mcp/ (on a Space: the variable "
                    "GRADIO_MCP_SERVER=True)")  # fmt: skip
    args = ap.parse_args(argv)

    import gradio as gr

    from food101_core.app import CSS, HEAD, PLOTLY_JS, THEME, build_app, no_run_app, say_download, zerogpu
    from food101_core.bundle import BundleError, load_bundle

    zerogpu.register(spaces)  # before launch(), which sends ZeroGPU's start-up report

    gr.set_static_paths([PLOTLY_JS])
    ref, allowed = choose_run(args.run), []
    if ref is None:
        page = no_run_app("There is nothing under runs/ and no demo bundle in assets/.")
    else:
        try:
            bundle = load_bundle(ref)
            if bundle.remote:  # files beyond the first screen arrive on first use: say so on the page
                bundle.on_fetch = say_download
            other = load_bundle(args.compare) if args.compare else None
            is_demo = bundle.path.resolve() == DEMO_BUNDLE.resolve()
            page = build_app(bundle, demo=is_demo, compare=other, concurrency=args.concurrency)
            allowed = [str(x.path) for x in (bundle, other) if x] + [str(x.photo_cache) for x in (bundle, other) if x]
            print(f"serving bundle {bundle.path}", file=sys.stderr)
        except BundleError as e:
            print(f"error: {e}", file=sys.stderr)
            page = no_run_app(f"`{ref}`: {e}")
    page.queue(default_concurrency_limit=args.concurrency, max_size=64)
    page.launch(
        server_port=args.port,
        max_file_size=MAX_UPLOAD,
        allowed_paths=allowed,
        show_error=True,
        css=CSS,
        head=HEAD,
        theme=THEME,
        mcp_server=args.mcp,  # None: Gradio reads GRADIO_MCP_SERVER
    )


if __name__ == "__main__":
    main()
