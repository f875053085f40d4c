"""The report to send: `python -m food101_core.report RUN out.html` (and the app's button) writes one HTML file that
opens offline in a browser with every section drawn, its numbers those of an independent computation, and at
Food-101's class count under 8 MB."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import DEMO_BUNDLE, NO_TENSORFLOW, ROOT
from sklearn.metrics import accuracy_score, f1_score

from food101_core.bundle import load_bundle
from food101_core.report import build_report

needs_demo = pytest.mark.skipif(not (DEMO_BUNDLE / "bundle.json").is_file(), reason="needs assets/demo-bundle")
CHARTS = ("per-class", "confusion", "calibration", "data-quality", "training")
PHOTOS = ("pairs", "mistakes", "slices", "data-quality")
MAX_BYTES = 8_000_000


@needs_demo
def test_the_report_opens_offline_with_every_section_drawn(tmp_path):
    """Written by the command line (without TensorFlow, as the app's side), opened in Chromium with the network
    refused: every section there, its charts drawn, its photos loaded; the results are scikit-learn's on the same
    predictions; nothing asked of the network; no serious accessibility finding; no sideways scroll on a phone."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed (tests/run.sh installs it)")
    from browser import open_report

    from food101_core.app.report import SECTIONS

    out = tmp_path / "report.html"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NO_TENSORFLOW), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "food101_core.report", str(DEMO_BUNDLE), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    b = load_bundle(DEMO_BUNDLE)
    for stage in b.stages:  # the results table, against scikit-learn on the bundle's predictions
        p = b.evaluation(stage).predictions
        assert f"{accuracy_score(p['true'], p['pred']):.2%}" in text
        assert f"{f1_score(p['true'], p['pred'], average='macro'):.3f}" in text
    seen = open_report(out, tmp_path, list(SECTIONS))
    assert seen["refused"] == []  # it asked the network for nothing
    for viewport in ("desktop", "phone"):
        sections = seen[viewport]
        for key, heading in SECTIONS.items():
            s = sections[key]
            assert s["present"] and s["heading"] == heading and s["text"] > 100, (viewport, key, s)
            if key != "sets":  # the demo has every analysis: nothing may be missing
                assert not s["missing"], (viewport, key, s["missing"])
        for key in CHARTS:
            assert sections[key]["charts"] >= 1 and sections[key]["drawn"] == sections[key]["charts"], (viewport, key)
        for key in PHOTOS:
            assert sections[key]["images"] >= 4 and sections[key]["loaded"] == sections[key]["images"], (viewport, key)
        assert sections["per-class"]["rows"] == b.num_classes
        assert sections["overflow"] <= 0, f"{viewport}: the page scrolls sideways by {sections['overflow']} px"
    assert seen["axe"] == [], seen["axe"]
    assert len(out.read_bytes()) < MAX_BYTES


def test_a_101_class_report_stays_under_8_mb_with_its_photos_bounded(scale_bundle):
    """At Food-101's class count the per-class table has 101 rows and the confusion matrix 101 x 101 cells, while the
    photos stay at the sections' fixed caps (real photos re-encode to ~5 KB each: docs/app.md)."""
    html = build_report(load_bundle(scale_bundle))
    size = len(html.encode())
    photos = len(re.findall(r'<img src="data:image/jpeg;base64,', html))
    assert html.count("<tr>") > 101 and photos <= 130
    assert size < MAX_BYTES, f"{size / 1e6:.1f} MB"
