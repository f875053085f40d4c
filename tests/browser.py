"""Drive the app in a real headless Chromium (Debian's package, through Playwright) as a person would.

Used by tests/test_app.py, and to refresh the README's screenshots:

    python tests/browser.py http://127.0.0.1:7860 docs/ PHOTO.jpg
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _count(page) -> int | None:
    """The number of mistakes the Mistakes tab says it has, once it is not busy."""
    m = re.search(r"(\d+) mistakes?", page.locator("#mistake-count").inner_text())
    return int(m.group(1)) if m and "processing" not in page.locator("#mistake-count").inner_text() else None


def _settled_count(page, timeout_ms: int, other_than: int | None = None) -> int | None:
    """The mistake count once the tab is idle and (for a filter) has changed; the last reading at the deadline."""
    deadline = time.time() + timeout_ms / 1000
    while time.time() < deadline:
        count = _count(page)
        if count is not None and count != other_than:
            return count
        page.wait_for_timeout(200)
    return _count(page)


def _images_loaded(page, selector: str) -> None:
    page.wait_for_function(
        f"Array.from(document.querySelectorAll('{selector} img')).every(i => i.complete && i.naturalWidth > 0)"
    )


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def exercise_app(url: str, out: Path, photo: Path, timeout_ms: int = 60_000) -> dict:
    """Open every tab, predict on an upload, click a confusion cell, filter the mistakes. Returns what it saw."""
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(timeout_ms)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        expect(page.locator("#title")).to_contain_text("Food-101 Explorer")

        # Predict: upload a photo, see the top 5
        page.locator("#photo input[type=file]").set_input_files(str(photo))
        page.get_by_label("Show Grad-CAM: where the model looked").check()
        page.locator("#predict-btn").click()
        expect(page.locator("#verdict")).to_contain_text("predicted in", timeout=timeout_ms)
        seen["top5"] = page.locator("#top5").inner_text()
        seen["verdict"] = page.locator("#verdict").inner_text()
        expect(page.locator("#gradcam img")).to_be_visible()
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "predict.png"), full_page=True)

        # Confusion matrix: the plotly heatmap renders; clicking the most confused cell shows its images
        _tab(page, "Confusion matrix")
        plot = page.locator("#confusion-plot .cm-plot")
        expect(plot.locator(".main-svg").first).to_be_visible()
        first_cell = page.locator('#pairs [data-testid="cell-0-0"]')  # the table's virtual rows
        expect(first_cell).to_be_visible()
        true_name = first_cell.inner_text().strip()
        pred_name = page.locator('#pairs [data-testid="cell-0-1"]').inner_text().strip()
        xy = page.evaluate(
            """([t, p]) => {
                const div = document.querySelector('#confusion-plot .cm-plot');
                const fl = div._fullLayout, tr = div.data[0];
                const col = tr.x.indexOf(p), row = tr.y.indexOf(t);
                const r = div.getBoundingClientRect();
                return [r.left + fl.xaxis._offset + fl.xaxis.l2p(col), r.top + fl.yaxis._offset + fl.yaxis.l2p(row)];
            }""",
            [true_name, pred_name],
        )
        page.mouse.move(*xy)
        page.mouse.click(*xy)
        expect(page.locator("#pair-title")).to_contain_text(f"{true_name} → {pred_name}")
        expect(page.locator("#pair-gallery img").first).to_be_visible()
        seen["cell"] = (true_name, pred_name)
        seen["cell_title"] = page.locator("#pair-title").inner_text()
        seen["cell_images"] = page.locator("#pair-gallery img").count()
        _images_loaded(page, "#pair-gallery")
        page.screenshot(path=str(out / "confusion.png"), full_page=True)

        # Per-class metrics
        _tab(page, "Per-class metrics")
        expect(page.locator("#per-class-table")).to_contain_text("precision")
        page.screenshot(path=str(out / "per_class.png"), full_page=True)

        # Mistakes: filter by true class, then select one
        _tab(page, "Mistakes")
        expect(page.locator("#mistake-count")).to_contain_text("mistake")
        seen["mistakes_all"] = _settled_count(page, timeout_ms)
        page.locator("#f-true input").click()
        page.locator("#f-true input").fill(true_name)
        page.get_by_role("option", name=true_name, exact=True).click()
        seen["mistakes_filtered"] = _settled_count(page, timeout_ms, other_than=seen["mistakes_all"])
        page.locator("#mistakes-gallery img").first.click()
        expect(page.get_by_text("predicted as")).to_be_visible()
        seen["captions"] = page.locator("#mistakes-gallery").inner_text()
        _images_loaded(page, "#mistakes-gallery")
        page.screenshot(path=str(out / "mistakes.png"), full_page=True)

        _tab(page, "Training")
        expect(page.locator("#training-plot .js-plotly-plot")).to_be_visible()
        page.screenshot(path=str(out / "training.png"), full_page=True)
        _tab(page, "Calibration")
        expect(page.get_by_text("expected calibration error")).to_be_visible()
        page.screenshot(path=str(out / "calibration.png"), full_page=True)
        seen["page_errors"] = errors
        browser.close()
    return seen


if __name__ == "__main__":
    print(exercise_app(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
