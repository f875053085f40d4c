"""The app's tabs, listed once: their order, titles and ids. The page (`interface.build_app`), the browser tests and
the README's tab table all read this list (tests/test_layout.py checks the table against it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tab:
    id: str  # Gradio's tab id, and the module `<id>_tab.py` (dashes as underscores) that builds it
    title: str  # what the tab strip shows
    needs: str = ""  # "compare": only with a second run


TABS: tuple[Tab, ...] = (
    Tab("predict", "Predict"),
    Tab("your-photos", "Your photos"),
    Tab("confusion", "Confusion matrix"),
    Tab("per-class", "Per-class metrics"),
    Tab("mistakes", "Mistakes"),
    Tab("slices", "Slices"),
    Tab("map", "Map"),
    Tab("quality", "Data quality"),
    Tab("training", "Training"),
    Tab("calibration", "Calibration"),
    Tab("compare", "Compare", needs="compare"),
)
TITLE = {t.id: t.title for t in TABS}
