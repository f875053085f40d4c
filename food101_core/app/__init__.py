"""The Gradio app over one run bundle: `build_app` composes the header and one builder per tab.

Each tab lives in its own module (`predict_tab`, `confusion_tab`, ...) and lays out and wires only that tab;
what the tabs show is computed in `food101_core.analysis`, `figures` and `inference`. A new tab is one new
module plus one line in `build_app`.
"""

from .interface import CSS, PLOTLY_JS, build_app, no_run_app

__all__ = ["CSS", "PLOTLY_JS", "build_app", "no_run_app"]
