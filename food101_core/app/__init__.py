"""The Gradio app over one run bundle: `build_app` composes the header and one builder per tab.

Each tab lives in its own module (`predict_tab`, `confusion_tab`, ...) and lays out and wires only that tab;
what the tabs show is computed by topic in `run_summary`, `errors`, `neighbours`, `quality_report` and
`comparison` here, and in the serving side
(`food101_core.serving`: the ONNX model, Grad-CAM, reading photos). A new tab is one new
module, a line in `tabs.TABS` (the one list of tabs, in order) and one in `interface.BUILDERS`.
"""

from . import zerogpu
from .interface import CSS, HEAD, PLOTLY_HEAD, PLOTLY_JS, THEME, build_app, no_run_app, say_download

__all__ = ["CSS", "HEAD", "PLOTLY_HEAD", "PLOTLY_JS", "THEME", "build_app", "no_run_app", "say_download", "zerogpu"]
