"""Drive the app in a real headless Chromium (Debian's package, through Playwright) as a person would.

Used by tests/test_app.py, and to refresh the README's screenshots (they are taken once each chart has drawn):

    python tests/browser.py http://127.0.0.1:7860 docs/ PHOTO.jpg ["Labelled-as dish" for the Data-quality tab]
"""

from __future__ import annotations

import atexit
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from food101_core.app.tabs import TABS as ALL_TABS

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).resolve().parent.parent / ".cache" / "axe-core-4.14.1" / "axe.min.js"  # tests/run.sh fetches it
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# What a drawn plotly chart has in its SVG: heatmap cells are one <image>, bars and lines are <path>s with a shape.
MARKS = {
    "heatmap": ".heatmaplayer image",
    "bars": ".barlayer .point path",
    "lines": ".scatterlayer path.js-line",
}


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(p):
    return p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


# One Chromium profile per process (each pytest-xdist worker its own: a profile serves one browser at a time), kept
# for its HTTP cache and V8's code cache: the app's page then loads on compiled scripts, in 3 s and 5 s of CPU
# against 6 s and 9.5 s in a fresh profile (the demo app, this machine). Everything else in it (local storage, where
# the app keeps its marks; cookies) is removed before each launch, so no test sees another's state.
PROFILE = Path(tempfile.mkdtemp(prefix="food101-chromium-"))
atexit.register(shutil.rmtree, PROFILE, ignore_errors=True)
PROFILE_CACHES = {"Default", "Cache", "Code Cache"}


def cached_page(p, **context_options):
    """A page in Chromium on this process's profile (`PROFILE`) with only its caches kept; the context's
    `close()` closes that browser."""
    for folder in (PROFILE, PROFILE / "Default"):
        for entry in folder.iterdir() if folder.is_dir() else ():
            if entry.name not in PROFILE_CACHES:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    context = p.chromium.launch_persistent_context(PROFILE, executable_path=chromium_path(), headless=True,
                                                   args=CHROMIUM_ARGS, **context_options)  # fmt: skip
    return context, context.pages[0] if context.pages else context.new_page()


def drawn_marks(page, chart: str, kind: str, timeout_ms: int) -> int:
    """Wait until the chart under `chart` has drawn marks of `kind` with a real shape; return how many."""
    js = """([chart, sel]) => Array.from(document.querySelectorAll(chart + ' ' + sel)).filter(el => {
        if (el.tagName === 'image') return (el.getAttribute('href') || '').startsWith('data:image') &&
            el.getBoundingClientRect().width > 0;
        const d = el.getAttribute('d') || '';
        return d.length > 2 && !/^M[^A-Z]*Z?$/.test(d) && !/^M0,0Z$/.test(d);
    }).length"""
    page.wait_for_function(js, arg=[chart, MARKS[kind]], timeout=timeout_ms)
    return page.evaluate(js, [chart, MARKS[kind]])


def visible_images_loaded(page, selector: str, timeout_ms: int) -> int:
    """Wait until every image of `selector` that is inside its scroll box's visible area has loaded; return how many.

    Gradio's galleries load their thumbnails lazily (loading="lazy"): one scrolled out of sight is not fetched until
    it scrolls in, so waiting for every <img> would wait for ever without anything being wrong.
    """
    js = """(sel) => {
        const imgs = Array.from(document.querySelectorAll(sel + ' img'));
        const seen = imgs.filter(i => {
            const r = i.getBoundingClientRect();
            if (r.width === 0 || r.height === 0) return false;
            let el = i.parentElement;
            while (el) {  // clipped by a scroll box, across or down (a gallery's preview strip scrolls across)
                const s = getComputedStyle(el), b = el.getBoundingClientRect();
                if (/(auto|scroll|hidden)/.test(s.overflowY) && (r.bottom <= b.top || r.top >= b.bottom)) return false;
                if (/(auto|scroll|hidden)/.test(s.overflowX) && (r.right <= b.left || r.left >= b.right)) return false;
                el = el.parentElement;
            }
            return r.top < window.innerHeight && r.bottom > 0 && r.left < window.innerWidth && r.right > 0;
        });
        return seen.length > 0 && seen.every(i => i.complete && i.naturalWidth > 0) ? seen.length : 0;
    }"""
    page.locator(selector).scroll_into_view_if_needed()
    page.wait_for_function(js, arg=selector, timeout=timeout_ms)
    return page.evaluate(js, selector)


def scroll_gallery_to_end(page, selector: str) -> None:
    """Scroll a gallery's own scroll box (and the page) so that its last thumbnail comes into sight."""
    page.locator(f"{selector} img").last.scroll_into_view_if_needed()
    page.wait_for_timeout(300)


def _count(page) -> int | None:
    """The number of mistakes the Mistakes tab says it has, once it is not busy."""
    text = page.locator("#mistake-count").inner_text()
    m = re.search(r"([\d,]+) mistakes?", text)
    return int(m.group(1).replace(",", "")) if m and "processing" not in text else None


def _settled_count(page, timeout_ms: int, other_than: int | None = None) -> int | None:
    """The mistake count once the tab is idle and (for a filter) has changed; the last reading at the deadline."""
    deadline = time.time() + timeout_ms / 1000
    while time.time() < deadline:
        count = _count(page)
        if count is not None and count != other_than:
            return count
        page.wait_for_timeout(200)
    return _count(page)


def _tab(page, name: str) -> None:
    """Open a tab as a person would: from the tab bar, or on a narrow screen from its "more" (overflow) menu."""
    tab = page.get_by_role("tab", name=name).first
    if not tab.is_visible():
        page.locator(".overflow-menu").first.click()
        tab = page.locator(".overflow-dropdown button", has_text=name).first
    tab.click()


# whether the tab named n is the one open
TAB_IS_JS = """(n) => { const b = document.querySelector('.tab-container button.selected');
    return b && b.innerText.trim() === n; }"""


def _tab_opened(page, name: str, tries: int = 3) -> int:
    """How many clicks the tab took to open: a click that lands while the page redraws its tab bar under load can
    be lost, and a person clicks again. The tab's content is what the caller then checks."""
    for clicks in range(1, tries + 1):
        with suppress(Exception):
            page.wait_for_function(TAB_IS_JS, arg=name, timeout=10_000)
            return clicks
        _tab(page, name)
    return tries + 1


def first_screen(page) -> dict:
    """Where the photo box and the Predict button are, against the viewport (no scrolling done)."""
    page.wait_for_selector("#photo")
    page.wait_for_timeout(500)
    return {
        "viewport": page.viewport_size,
        "photo": page.locator("#photo").bounding_box(),
        "button": page.locator("#predict-btn").bounding_box(),
        "example": page.locator("#examples .thumbnail-item").first.bounding_box()
        if page.locator("#examples .thumbnail-item").count()
        else None,
        "header": page.locator("#header").bounding_box(),
        "text": page.locator("body").inner_text(),
    }


def verdict_dish(page, timeout_ms: int) -> str:
    """The dish the verdict names, once a prediction has finished (the verdict starts with no dish in it)."""
    page.wait_for_function(
        "() => { const t = document.querySelector('#verdict').innerText;"
        " return t.includes('predicted in') && !t.includes('processing'); }",
        timeout=timeout_ms,
    )
    m = re.search(r"([^\n]+?) \(\d+%\) · predicted in", page.locator("#verdict").inner_text())
    return m.group(1).strip() if m else ""


def exercise_predict(page, photo: Path, out: Path, seen: dict, timeout_ms: int) -> None:
    """Click a test-photo thumbnail on the fresh page, then upload a photo with Grad-CAM on: each predicts."""
    from playwright.sync_api import expect

    thumbs = page.locator("#examples img")
    seen["examples"] = thumbs.count()
    if seen["examples"]:
        visible_images_loaded(page, "#examples", timeout_ms)
        seen["example_caption"] = page.locator("#examples .caption-label").first.inner_text()
        thumbs.first.click()
        seen["example_dish"] = verdict_dish(page, timeout_ms)
        page.reload()
    choose_files(page, "#photo", photo, "#photo img")  # the verdict, next, says whether it arrived
    page.get_by_label("Show Grad-CAM: where the model looked").check()
    page.locator("#predict-btn").click()
    seen["verdict_dish"] = verdict_dish(page, timeout_ms)
    seen["top5"] = page.locator("#top5").inner_text()
    seen["verdict"] = page.locator("#verdict").inner_text()
    expect(page.locator("#gradcam img")).to_be_visible()
    if page.locator("#similar").is_visible():  # the bundle has reference photos: the nearest ones show
        page.locator("#similar img").first.wait_for(timeout=timeout_ms)
        seen["similar_shown"] = visible_images_loaded(page, "#similar", timeout_ms)
        seen["similar_captions"] = page.locator("#similar").inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(out / "predict.png"))


def click_most_confused_cell(page) -> tuple[str, str]:
    """Click the heatmap cell of the first row of the most-confused table; return its (true, predicted) names."""
    first_cell = page.locator('#pairs [data-testid="cell-0-0"]')  # the table's virtual rows
    first_cell.wait_for()
    true_name, pred_name = (name.strip() for name in first_cell.inner_text().split("→"))  # "true → answered"
    xy = page.evaluate(
        """([t, p]) => {
            const div = document.querySelector('#confusion-plot .cm-plot');
            const fl = div._fullLayout, tr = div.data[0];
            const col = tr.x.indexOf(p), row = tr.y.indexOf(t);
            const at = () => {
                const r = div.getBoundingClientRect();
                return [r.left + fl.xaxis._offset + fl.xaxis.l2p(col), r.top + fl.yaxis._offset + fl.yaxis.l2p(row)];
            };
            window.scrollBy(0, at()[1] - window.innerHeight / 2);  // a tall (101-class) heatmap: bring the cell in
            return at();
        }""",
        [true_name, pred_name],
    )
    page.mouse.move(*xy)
    page.mouse.click(*xy)
    return true_name, pred_name


def click_cell(page, true_name: str, pred_name: str) -> None:
    """Click the heatmap cell (true, predicted), first scrolling it into view (the phone's matrix scrolls sideways)."""
    xy = page.evaluate(
        """([t, p]) => {
            const div = document.querySelector('#confusion-plot .cm-plot');
            const fl = div._fullLayout, tr = div.data[0];
            const col = tr.x.indexOf(p), row = tr.y.indexOf(t);
            const at = () => {
                const r = div.getBoundingClientRect();
                return [r.left + fl.xaxis._offset + fl.xaxis.l2p(col), r.top + fl.yaxis._offset + fl.yaxis.l2p(row)];
            };
            const box = document.querySelector('#confusion-plot');
            box.scrollLeft += at()[0] - box.getBoundingClientRect().left - box.clientWidth / 2;
            window.scrollBy(0, at()[1] - window.innerHeight / 2);
            return at();
        }""",
        [true_name, pred_name],
    )
    tap(page, xy)


def tap(page, xy) -> None:
    """A click where a person's finger or mouse would make it: a tap on a touch screen."""
    if page.context.browser and page.evaluate("() => navigator.maxTouchPoints > 0"):
        page.touchscreen.tap(*xy)
    else:
        page.mouse.click(*xy)


def pair_rows(page) -> list[tuple[str, str, int]]:
    """The most confused pairs as the Confusion tab lists them: (true, answered, photos)."""
    page.locator('#pairs [data-testid="cell-0-0"]').wait_for()
    return [
        (*(name.strip() for name in row[0].split("→")), int(row[1].replace(",", "")))
        for row in page.evaluate(
            """() => { const rows = {};
                for (const c of document.querySelectorAll('#pairs [data-testid^="cell-"]')) {
                    const [, r, k] = c.dataset.testid.split('-'); (rows[r] = rows[r] || [])[k] = c.innerText.trim(); }
                return Object.values(rows).filter(r => r[0] && r[0].includes('→')); }"""
        )
    ]


MAP_STATE_JS = """() => {
    const ownText = sel => {  // a box's own words, without its status tracker's ('processing | 0.2/0.8s')
        const e = document.querySelector(sel);
        if (!e) return '';
        const c = e.cloneNode(true);
        c.querySelectorAll('[data-testid=status-tracker]').forEach(t => t.remove());
        return c.textContent.trim();
    };
    const div = document.querySelector('#map-plot .map-plot');
    const title = div && div.layout && div.layout.title ? (div.layout.title.text || div.layout.title) : '';
    const menu = sel => (document.querySelector(sel + ' input') || {value: null}).value;  // null: not drawn
    const tab = document.querySelector('.tab-container button.selected');
    return {tab: tab ? tab.innerText.trim() : null, true: menu('#map-true'), pred: menu('#map-pred'),
            banner: (document.querySelector('#map-filter') || {}).innerText || '',
            title: String(title).replace(/<br>/g, ' '),
            pair_title: ownText('#pair-title')};
}"""


def race_the_map(page, rounds: int, timeout_ms: int) -> list[dict]:
    """Issue 28's race, `rounds` times: a matrix cell, at once another pair's row, at once the Map tab; then, once the
    page is idle (no event running, and a moment for the last draw: a late draw must not win), what the Map's menus,
    banner and title say."""
    _tab(page, "Confusion matrix")
    drawn_marks(page, "#confusion-plot", "heatmap", timeout_ms)
    rows = pair_rows(page)[:5]  # the first rows, which the table keeps drawn (it draws only the rows in its view)
    seen = []
    for k in range(rounds):
        if k:
            _tab(page, "Confusion matrix")
            page.locator("#confusion-plot .cm-plot").wait_for()
        cell, row = rows[k % len(rows)], rows[(k + 1) % len(rows)]
        click_cell(page, cell[0], cell[1])
        page.locator(f'#pairs [data-testid="cell-{(k + 1) % len(rows)}-0"]').click()
        _tab(page, "Map")
        opened = _tab_opened(page, "Map")
        wants = [f"true dish {pair[0]} and answered {pair[1]}" for pair in (cell, row)]  # whichever landed last
        with suppress(Exception):  # on a time-out the test reports what stayed on the page
            page.wait_for_function(
                "(ws) => { const b = document.querySelector('#map-filter');"
                " return b && ws.some(w => b.innerText.includes(w)); }",
                arg=wants,
                timeout=timeout_ms,
            )
        settled(page, timeout_ms, hidden_too=True)  # the pair's title, in the Confusion tab, may still be drawing
        state = page.evaluate(MAP_STATE_JS)
        seen.append({"cell": cell, "row": row, "map_clicks": opened, **state})
    return seen


def exercise_confusion(page, out: Path, seen: dict, timeout_ms: int) -> None:
    """The heatmap draws; a click on the most confused cell fills the gallery, whose thumbnails load on sight."""
    from playwright.sync_api import expect

    _tab(page, "Confusion matrix")
    seen["heatmap_marks"] = drawn_marks(page, "#confusion-plot", "heatmap", timeout_ms)
    true_name, pred_name = click_most_confused_cell(page)
    expect(page.locator("#pair-title")).to_contain_text(f"{true_name} → {pred_name}")
    expect(page.locator("#pair-gallery img").first).to_be_visible()
    seen["cell"] = (true_name, pred_name)
    seen["cell_title"] = page.locator("#pair-title").inner_text()
    seen["cell_images"] = page.locator("#pair-gallery img").count()
    seen["cell_images_in_sight"] = visible_images_loaded(page, "#pair-gallery", timeout_ms)
    page.screenshot(path=str(out / "confusion.png"), full_page=True)
    scroll_gallery_to_end(page, "#pair-gallery")  # the last thumbnail loads once it is in sight: none is broken
    last = page.locator("#pair-gallery img").last
    page.wait_for_function("(i) => i.complete && i.naturalWidth > 0", arg=last.element_handle(), timeout=timeout_ms)


def exercise_per_class(page, out: Path, seen: dict, timeout_ms: int) -> None:
    from playwright.sync_api import expect

    _tab(page, "Per-class metrics")
    expect(page.locator("#per-class-table")).to_contain_text("precision")
    seen["f1_bars"] = drawn_marks(page, "#f1-plot", "bars", timeout_ms)
    page.screenshot(path=str(out / "per_class.png"), full_page=True)


def exercise_mistakes(page, out: Path, seen: dict, timeout_ms: int) -> None:
    """Filter the mistakes by the true class of the most confused cell, then select one."""
    from playwright.sync_api import expect

    true_name = seen["cell"][0]
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
    visible_images_loaded(page, "#mistakes-gallery", timeout_ms)
    page.screenshot(path=str(out / "mistakes.png"), full_page=True)


def exercise_slices(page, out: Path, seen: dict, timeout_ms: int) -> None:
    """The slices listed; a click on the first shows its photos and the line that counts them."""
    from playwright.sync_api import expect

    _tab(page, "Slices")
    if page.locator("#slices-missing").count():
        seen["slices"] = "missing"
        return
    expect(page.locator("#slices-summary")).to_be_visible()
    seen["slices_summary"] = page.locator("#slices-summary").inner_text()
    if "No group" not in seen["slices_summary"]:
        page.locator("#slices-table [role=gridcell]").first.click()
        expect(page.locator("#slice-line")).to_contain_text("right against", timeout=timeout_ms)
        seen["slice_line"] = page.locator("#slice-line").inner_text()
        seen["slice_images"] = visible_images_loaded(page, "#slice-gallery", timeout_ms)
    page.screenshot(path=str(out / "slices.png"), full_page=True)


def exercise_curves(page, out: Path, seen: dict, timeout_ms: int) -> None:
    _tab(page, "Training")
    seen["training_lines"] = drawn_marks(page, "#training-plot", "lines", timeout_ms)
    page.screenshot(path=str(out / "training.png"), full_page=True)
    _tab(page, "Calibration")
    seen["calibration_bars"] = drawn_marks(page, "#calibration-plot", "bars", timeout_ms)
    page.screenshot(path=str(out / "calibration.png"), full_page=True)


def drawn_colours(page, selector: str) -> int:
    """How many distinct colours a chart's pixels have: a WebGL scatter draws into a canvas, not into the SVG."""
    import io

    from PIL import Image

    shot = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB").quantize(64)
    return sum(1 for count, _ in shot.getcolors() if count > 20)


# Where the map's first point is on the screen, once scrolled to the middle of it (a click there opens that photo).
FIRST_POINT_JS = """() => {
    const div = document.querySelector('#map-plot .map-plot');
    const fl = div._fullLayout, tr = div._fullData[0];
    const at = () => {
        const r = div.getBoundingClientRect();
        const x = fl.xaxis._offset + fl.xaxis.d2p(tr.x[0]), y = fl.yaxis._offset + fl.yaxis.d2p(tr.y[0]);
        return [r.left + x, r.top + y];
    };
    window.scrollBy(0, at()[1] - window.innerHeight / 2);
    return at();
}"""


def exercise_map(page, out: Path, seen: dict, timeout_ms: int) -> None:
    """The map draws (timed from the tab's click), and a click on a point shows that photo and its neighbours."""
    from playwright.sync_api import expect

    t0 = time.perf_counter()
    _tab(page, "Map")
    page.wait_for_function(
        "() => { const d = document.querySelector('#map-plot .map-plot');"
        " return d && d._fullData && d._fullData.length && d.querySelector('canvas'); }",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)  # the WebGL frame after Plotly's own bookkeeping
    seen["map_seconds"] = time.perf_counter() - t0
    page.get_by_label("true dish", exact=True).check()  # one colour per dish, each named in the key
    page.wait_for_function("() => document.querySelectorAll('#map-plot .legend .traces').length > 2")
    page.wait_for_timeout(300)
    seen["map_colours"] = drawn_colours(page, "#map-plot .map-plot")
    seen["map_legend"] = page.locator("#map-plot .legend .traces").count()
    xy = page.evaluate(FIRST_POINT_JS)
    page.mouse.move(*xy)
    page.mouse.click(*xy)
    expect(page.locator("#map-caption")).to_contain_text("test image", timeout=timeout_ms)
    seen["map_caption"] = page.locator("#map-caption").inner_text()
    seen["map_similar"] = visible_images_loaded(page, "#map-similar", timeout_ms)
    page.screenshot(path=str(out / "map.png"), full_page=True)


def exercise_quality(page, out: Path, seen: dict, timeout_ms: int) -> None:
    """Suspect labels show as thumbnails; a "labelled as" filter narrows them; duplicate pairs and the chart draw."""
    from playwright.sync_api import expect

    _tab(page, "Data quality")
    expect(page.locator("#suspect-count")).to_contain_text("suspect labels match", timeout=timeout_ms)
    seen["suspects_all"] = page.locator("#suspect-count").inner_text()
    seen["suspect_images"] = visible_images_loaded(page, "#suspects-gallery", timeout_ms)
    seen["suspect_captions"] = page.locator("#suspects-gallery").inner_text()
    seen["quality_bars"] = drawn_marks(page, "#quality-plot", "bars", timeout_ms)
    with page.expect_download(timeout=timeout_ms) as download:  # what a click on the button saves
        page.locator("#suspects-csv").click()
    seen["suspects_csv"] = Path(download.value.path()).read_text()
    expect(page.locator("#pair-count")).to_contain_text("pairs", timeout=timeout_ms)
    seen["pair_count"] = page.locator("#pair-count").inner_text()
    if page.locator("#pairs-gallery img").count():
        seen["pair_images"] = visible_images_loaded(page, "#pairs-gallery", timeout_ms)
    page.screenshot(path=str(out / "quality.png"), full_page=True)
    given = seen["quality_filter"]
    page.locator("#q-given input").click()
    page.locator("#q-given input").fill(given)
    page.get_by_role("option", name=given, exact=True).click()
    page.wait_for_function(  # the new count (not the progress timer Gradio shows while the filter runs)
        """([sel, before]) => { const count = t => (t.match(/([\\d,]+) suspect labels match/) || [])[1];
            const now = count(document.querySelector(sel).innerText);
            return now !== undefined && now !== count(before); }""",
        arg=["#suspect-count", seen["suspects_all"]],
        timeout=timeout_ms,
    )
    seen["suspects_filtered"] = page.locator("#suspect-count").inner_text()


def exercise_app(url: str, out: Path, photo: Path, timeout_ms: int = 60_000, quality_filter: str = "") -> dict:
    """On a desktop screen: the first screen, every tab, their charts drawn. Returns what it saw."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    with sync_playwright() as p:
        browser, page = cached_page(p, viewport=DESKTOP)
        page.set_default_timeout(timeout_ms)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        seen["desktop"] = first_screen(page)
        exercise_predict(page, photo, out, seen, timeout_ms)
        exercise_confusion(page, out, seen, timeout_ms)
        seen["tab_labels"] = page.evaluate(
            "() => Array.from(document.querySelectorAll('[role=tab]')).map(t => t.innerText)"
        )
        exercise_per_class(page, out, seen, timeout_ms)
        exercise_mistakes(page, out, seen, timeout_ms)
        exercise_slices(page, out, seen, timeout_ms)
        exercise_curves(page, out, seen, timeout_ms)
        if page.locator("#map-missing").count() == 0:
            exercise_map(page, out, seen, timeout_ms)
        if quality_filter:
            seen["quality_filter"] = quality_filter
            exercise_quality(page, out, seen, timeout_ms)
        seen["page_errors"] = errors
        browser.close()
    return seen


def exercise_phone(url: str, out: Path, timeout_ms: int = 60_000) -> dict:
    """On a 390 x 844 phone: the first screen, and the run details' results table (one line per header)."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser, page = cached_page(p, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        seen = {"phone": first_screen(page)}
        page.screenshot(path=str(out / "phone.png"))
        page.locator("#run-details").get_by_text("Run details").click()
        table = page.locator("#results-table")
        table.locator("th").first.wait_for()
        seen["header_heights"] = page.evaluate(  # each header's height in lines of its text
            """() => Array.from(document.querySelectorAll('#results-table th')).filter(th => th.innerText.trim())
                .map(th => {
                    const range = document.createRange(); range.selectNodeContents(th);
                    const lh = parseFloat(getComputedStyle(th).lineHeight) || 20;
                    return range.getBoundingClientRect().height / lh;
                })"""
        )
        seen["table_overflow"] = page.evaluate(
            "() => { const t = document.querySelector('#results-table table'); return t.scrollWidth - t.clientWidth; }"
        )
        table.scroll_into_view_if_needed()
        page.screenshot(path=str(out / "phone_details.png"))
        browser.close()
    return seen


@contextmanager
def launch_page(url: str, viewport: dict = DESKTOP, timeout_ms: int = 60_000):
    """A page of the app in headless Chromium; `page.errors` collects the page's JavaScript errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        phone = viewport["width"] < 600
        browser, page = cached_page(p, viewport=viewport, is_mobile=phone, has_touch=phone)
        page.set_default_timeout(timeout_ms)
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#photo")
        try:
            yield page
        finally:
            browser.close()


def exercise_compare(page, out: Path, timeout_ms: int = 60_000) -> dict:
    """The Compare tab: the per-class F1 change chart draws, the verdict shows, the flips' thumbnails load."""
    out.mkdir(parents=True, exist_ok=True)
    _tab(page, "Compare")
    seen = {"bars": drawn_marks(page, "#compare-plot", "bars", timeout_ms)}
    seen["verdict"] = page.locator("#compare-verdict").inner_text()
    try:
        page.locator("#compare-flips img").first.wait_for(timeout=10_000)
        seen["flips"] = visible_images_loaded(page, "#compare-flips", timeout_ms)
    except Exception:  # no flip with a thumbnail: the gallery stays empty
        seen["flips"] = 0
    page.screenshot(path=str(out / "compare.png"), full_page=True)
    seen["page_errors"] = page.errors
    return seen


def phone_shots(url: str, out: Path, timeout_ms: int = 60_000) -> None:
    """The phone's screen (390 x 844) after a person's first taps: a matrix cell's photos, a map point, a mistake."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = cached_page(p, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.wait_for_selector("#photo")
        _tab(page, "Confusion matrix")
        drawn_marks(page, "#confusion-plot", "heatmap", timeout_ms)
        page.locator('#pairs [data-testid="cell-0-0"]').click()
        visible_images_loaded(page, "#pair-gallery", timeout_ms)
        page.locator("#pair-title").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "phone_confusion.png"))
        _tab(page, "Map")
        page.locator("#map-plot canvas").first.wait_for()
        page.wait_for_timeout(500)
        page.locator("#map-plot").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "phone_map.png"))
        browser.close()


if __name__ == "__main__":
    shots = Path(sys.argv[2])
    print(exercise_app(sys.argv[1], shots, Path(sys.argv[3]), quality_filter=sys.argv[4] if len(sys.argv) > 4 else ""))
    print(exercise_phone(sys.argv[1], shots))
    phone_shots(sys.argv[1], shots)


# The open tab's panel (Gradio keeps the others in the page, hidden), as a JavaScript expression
OPEN_PANEL_JS = "Array.from(document.querySelectorAll('[role=tabpanel]')).find(p => p.offsetParent !== null)"


# What a person must be able to read (issue "Readable at a glance"), checked on the visible tab:
# - a text cut short: an element with text of its own whose content is wider or taller than its box while the box
#   hides the rest (ellipsis, hidden overflow), or a menu whose chosen value is wider than its box;
# - a box wider than the page, unless it sits inside a box that scrolls (the phone's confusion matrix);
# - a gallery that scrolls sideways inside itself;
# - a chart without a key: a plotly chart with no legend and no colour bar.
READABILITY_JS = (
    """() => {
  const panel = """
    + OPEN_PANEL_JS
    + """;
  const root = panel || document.body;
  const vw = document.documentElement.clientWidth;
  const shown = el => el.offsetParent !== null && el.getClientRects().length > 0;
  const name = el => (el.id ? '#' + el.id : el.tagName.toLowerCase() + '.' + String(el.className).split(' ')[0])
      + ': ' + (el.innerText || '').trim().slice(0, 60);
  const cut = [], wide = [], sideways = [], keyless = [];
  const scope = [...root.querySelectorAll('*'), ...document.querySelectorAll('#header-text *, [role=tab]')];
  for (const el of scope) {
    if (!shown(el)) continue;
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (own && !el.closest('.js-plotly-plot, textarea, input, .cm-plot, .map-plot')) {
      const s = getComputedStyle(el);
      const hides = s.textOverflow === 'ellipsis' || /hidden|clip/.test(s.overflowX);
      if (hides && el.scrollWidth > el.clientWidth + 1) cut.push(name(el));
      else {  // the text itself reaching past a box that hides what sticks out (a label squeezed by its block)
        const range = document.createRange(); range.selectNodeContents(el);
        const t = range.getBoundingClientRect();
        for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
          const ox = getComputedStyle(a).overflowX;
          // inside a frame made to scroll (a table, the phone's matrix): the rest is a scroll away, not cut; a
          // component's own block also scrolls when squeezed, and that is a cut
          if (/auto|scroll/.test(ox) && !a.classList.contains('block')) break;
          const b = a.getBoundingClientRect();
          const outside = t.width > 0 && (t.right > b.right + 1 || t.left < b.left - 1);
          // past a box that hides what sticks out, or past its own component's block (drawn over by the next one)
          if (outside && (/hidden|clip/.test(ox) || a.classList.contains('block'))) { cut.push(name(el)); break; }
        }
      }
    }
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 1 && !el.closest('.js-plotly-plot svg, .js-plotly-plot canvas')) {
      let p = el.parentElement, clipped = false;
      while (p) { if (/(auto|scroll|hidden)/.test(getComputedStyle(p).overflowX) &&
                      p.getBoundingClientRect().right <= vw + 1) { clipped = true; break; } p = p.parentElement; }
      if (!clipped) wide.push(name(el) + ' right=' + Math.round(r.right));
    }
  }
  // a menu's chosen value (the header's Model, a tab's dish filter) cut short in its box
  for (const i of [...root.querySelectorAll('input[role=combobox]'), ...document.querySelectorAll('#header input')])
    if (shown(i) && i.scrollWidth > i.clientWidth + 1) cut.push(name(i.closest('[id]') || i) + ' = ' + i.value);
  for (const g of root.querySelectorAll('.grid-wrap')) if (shown(g) && g.scrollWidth > g.clientWidth + 1)
    sideways.push(name(g.closest('[id]') || g));
  const charts = Array.from(root.querySelectorAll('.js-plotly-plot')).filter(shown);
  for (const c of charts) if (!c.querySelector('.legend, .colorbar')) keyless.push(name(c.closest('[id]') || c));
  return {cut: [...new Set(cut)].slice(0, 20), wide: wide.slice(0, 20), sideways, keyless, charts: charts.length,
          page_wider: document.documentElement.scrollWidth - vw};
}"""
)
TABS = tuple(t.title for t in ALL_TABS if not t.needs)  # the app's one list of tabs (Compare needs a second run)


def first_chart_seconds(page, timeout_ms: int) -> float | None:
    """Seconds from now until a chart of the visible tab has drawn marks (None: the tab has no chart)."""
    t0 = time.perf_counter()
    js = (
        """() => { const panel = """
        + OPEN_PANEL_JS
        + """;
        if (!panel) return false;
        const places = Array.from(panel.querySelectorAll('[id$="-plot"]')).filter(c => c.offsetParent !== null);
        if (!places.length) return panel.querySelector('.tab-intro, #map-missing, #quality-missing') ? 'none' : false;
        return places.some(c => c.querySelector('.heatmaplayer image, .barlayer path, .scatterlayer path, canvas'));
    }"""
    )
    page.wait_for_function(js, timeout=timeout_ms)
    return None if page.evaluate(js) == "none" else time.perf_counter() - t0


def readability(url: str, viewport: dict, out: Path | None = None, timeout_ms: int = 60_000) -> dict:
    """Open every tab as a person would at `viewport` and report, per tab, what cannot be read and how long its
    first chart took to draw after the tab's click."""
    from playwright.sync_api import sync_playwright

    report: dict = {}
    with sync_playwright() as p:
        phone = viewport["width"] < 600
        browser, page = cached_page(p, viewport=viewport, device_scale_factor=2 if phone else 1, is_mobile=phone,
                                    has_touch=phone)  # fmt: skip
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.wait_for_selector("#photo")
        page.wait_for_timeout(1000)  # the page's own load events
        for tab in TABS:
            if page.locator("button", has_text=tab).count() == 0:
                continue
            _tab(page, tab)
            seconds = first_chart_seconds(page, timeout_ms)
            settled(page)  # galleries and tables fill in; the checks and the audit read the settled tab
            report[tab] = {**page.evaluate(READABILITY_JS), "first_chart_s": seconds,
                           "axe": axe_violations(page, settle=False, panel_only=len(report) > 0)}  # fmt: skip
            if phone:
                report[tab]["phone"] = page.evaluate(PHONE_LAYOUT_JS)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out / f"{'phone' if phone else 'desktop'}-{tab.split()[0].lower()}.png"),
                                full_page=True)  # fmt: skip
        browser.close()
    return report


def settled(page, timeout_ms: int = 15_000, hidden_too: bool = False) -> None:
    """Wait until no Gradio event is running on the page (no status tracker or pending box shown), then 300 ms for
    the answer's drawing; on a time-out, go on with the page as it is (the caller's checks then say what is wrong).
    `hidden_too`: also wait for events still running in tabs not shown (their trackers count while they say
    something), as a caller that reads another tab's text must."""
    with suppress(Exception):
        page.wait_for_function(
            "(hidden) => !Array.from(document.querySelectorAll('[data-testid=status-tracker], .pending'))"
            ".some(s => !s.classList.contains('hide')"
            " && (s.offsetParent !== null || (hidden && s.textContent.trim())))",
            arg=hidden_too,
            timeout=timeout_ms,
        )
    page.wait_for_timeout(300)


def axe_violations(page, settle: bool = True, panel_only: bool = False) -> list[dict] | None:
    """axe-core's audit of the page as it is (WCAG 2 A/AA rules and best practices): the serious and critical
    violations, each with a few of its elements. None when axe-core is not installed (tests/run.sh fetches it).
    `settle=False` when the caller has just waited for the page to settle. `panel_only`: the open tab's panel
    alone, for a walk that audited the whole page (header, tab bar) on its first tab: the rest does not change
    from tab to tab, and the panel alone takes axe about half the time."""
    if not AXE.is_file():
        return None
    if settle:
        settled(page)  # audit the settled page, not Gradio's fading boxes while an event runs
    if not page.evaluate("() => typeof axe !== 'undefined'"):  # once a page: the script is half a megabyte
        page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async (panelOnly) => {
            const panel = """
        + OPEN_PANEL_JS
        + """;
            const context = panelOnly && panel ? {include: [panel]} : document;
            return (await axe.run(context, {resultTypes: ['violations']})).violations
              .filter(v => v.impact === 'serious' || v.impact === 'critical')
              .map(v => ({id: v.id, impact: v.impact, n: v.nodes.length,
                          where: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + n.failureSummary)}));
        }""",
        panel_only,
    )


PHONE_LAYOUT_JS = "\n".join(  # the function, without the file's opening comment
    line for line in (Path(__file__).parent / "phone_layout.js").read_text().splitlines() if not line.startswith("//")
)


def box_in_view(page, selector: str, settle_ms: int = 1000) -> dict:
    """Where the top of the box an action filled lies in the viewport once drawn, and again a moment later."""
    page.locator(selector).first.wait_for(state="visible")
    page.wait_for_timeout(500)
    top = lambda: page.locator(selector).first.evaluate("e => e.getBoundingClientRect().top")  # noqa: E731
    first = top()
    page.wait_for_timeout(settle_ms)
    box = page.locator(selector).first
    return {"box": selector, "top": first, "later": top(), "height": page.viewport_size["height"],
            "text": box.inner_text(), "images": box.locator("img").count()}  # fmt: skip


SHOWN_JS = "() => Number(document.documentElement.dataset.shown || 0)"


def answer_in_view(page, selector: str, act) -> dict:
    """Once the page is idle, do `act`, wait until the box's words change (the server has answered, however slow
    the machine) and the app's scroll-into-view step has run (`<html data-shown>` counts up, context.show_js), then
    see where the box's top lands (`box_in_view`)."""
    settled(page)  # as a person waits for a tab to finish drawing: a click on a gallery being refilled is lost
    box = page.locator(selector).first
    before = box.inner_text() if box.count() else None
    shown = page.evaluate(SHOWN_JS)
    act()
    page.wait_for_function(
        "([sel, before]) => { const e = document.querySelector(sel); return e && e.innerText !== before; }",
        arg=[selector, before],
    )
    page.wait_for_function(f"n => ({SHOWN_JS})() > n", arg=shown)
    return box_in_view(page, selector)


def answers_in_view(url: str, viewport: dict, photo: Path, bad_file: Path, timeout_ms: int = 60_000) -> dict:
    """Every action that fills a box (issue "Right on every screen", item 2): where that box's top lands."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as p:
        phone = viewport["width"] < 600
        browser, page = cached_page(p, viewport=viewport, is_mobile=phone, has_touch=phone)
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.wait_for_selector("#photo")
        choose_files(page, "#photo", photo, "#photo img")  # the verdict, next, says whether it arrived
        verdict_dish(page, timeout_ms)
        page.wait_for_function(f"() => ({SHOWN_JS})() >= 1")  # the answer's scroll-into-view has run
        seen["predict"] = box_in_view(page, "#top5")
        if page.locator("#similar img").count():
            seen["similar photo"] = answer_in_view(page, "#similar-view", page.locator("#similar img").first.click)
        page.reload()
        page.wait_for_selector("#photo")
        page.locator("#photo input[type=file]").set_input_files(str(bad_file))
        page.wait_for_function("() => document.querySelector('#verdict').innerText.includes('⚠')", timeout=timeout_ms)
        page.wait_for_function(f"() => ({SHOWN_JS})() >= 1")
        seen["error"] = box_in_view(page, "#verdict")
        _tab(page, "Confusion matrix")
        drawn_marks(page, "#confusion-plot", "heatmap", timeout_ms)
        rows = pair_rows(page)
        seen["matrix cell"] = answer_in_view(page, "#pair-title", lambda: click_cell(page, rows[0][0], rows[0][1]))
        page.evaluate("window.scrollTo(0, 0)")
        seen["pair row"] = answer_in_view(page, "#pair-title", page.locator('#pairs [data-testid="cell-1-0"]').click)
        seen["pair photo"] = answer_in_view(page, "#pair-view", page.locator("#pair-gallery img").first.click)
        _tab(page, "Mistakes")
        seen["mistake"] = answer_in_view(page, "#mistake-caption", page.locator("#mistakes-gallery img").first.click)
        seen["heat_keys"] = page.evaluate(  # the Grad-CAM key's colour bar, where the full photo gives Grad-CAM
            "() => Array.from(document.querySelectorAll('.heat-key .bar')).filter(b => b.offsetParent !== null)"
            ".map(b => b.getBoundingClientRect().width)"
        )
        _tab(page, "Slices")
        if page.locator("#slices-table [role=gridcell]").count():
            cell = page.locator("#slices-table [role=gridcell]").first
            seen["slice row"] = answer_in_view(page, "#slice-line", cell.click)
        if page.locator("#map-missing").count() == 0:
            _tab(page, "Map")
            xy = page.evaluate(FIRST_POINT_JS)
            seen["map point"] = answer_in_view(page, "#map-caption", lambda: page.mouse.click(*xy))
        _tab(page, "Data quality")
        if page.locator("#suspects-gallery img").count() or page.locator("#suspect-count").count():
            seen["suspect"] = answer_in_view(page, "#suspect-view", page.locator("#suspects-gallery img").first.click)
        browser.close()
    return seen


ACTIVE_JS = """() => { const e = document.activeElement;
    return {id: (e.closest('[id]') || {}).id || '', role: e.getAttribute('role') || '', tag: e.tagName,
            text: (e.innerText || e.value || '').trim().slice(0, 60)}; }"""


def tab_key_until(page, js: str, presses: int = 80) -> dict | None:
    """Press Tab until `js` holds for the focused element (as a keyboard user moves); what has focus then."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(js):
            return page.evaluate(ACTIVE_JS)
    return None


def keyboard_route(url: str, dish: str, timeout_ms: int = 60_000) -> dict:
    """With the keyboard alone: a tab opened, a dish filter set, a gallery photo opened, and the pairs list (the
    keyboard's way into the matrix) choosing a pair. What each step reached and showed."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as p:
        browser, page = cached_page(p, viewport=DESKTOP)
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.wait_for_selector("#photo")
        page.wait_for_timeout(1000)
        seen["tab"] = tab_key_until(
            page, "() => document.activeElement.getAttribute('role') === 'tab' && "
                  "document.activeElement.innerText.includes('Mistakes')")  # fmt: skip
        page.keyboard.press("Enter")
        page.locator("#mistake-count").wait_for()
        seen["count_all"] = _settled_count(page, timeout_ms)
        seen["filter"] = tab_key_until(page, "() => !!document.activeElement.closest('#f-true')")
        page.keyboard.type(dish)
        page.keyboard.press("Enter")
        page.wait_for_function(  # the gallery now shows that dish's mistakes
            "(d) => { const c = document.querySelector('#mistakes-gallery .caption-label');"
            " return c && c.innerText.startsWith(d + ' →'); }",
            arg=dish,
        )
        seen["count"] = _settled_count(page, timeout_ms, other_than=seen["count_all"])
        seen["photo"] = tab_key_until(
            page, "() => document.activeElement.classList.contains('thumbnail-item') && "
                  "!!document.activeElement.closest('#mistakes-gallery')")  # fmt: skip
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#mistake-caption').innerText.includes('test image')")
        seen["caption"] = page.locator("#mistake-caption").inner_text()
        page.evaluate("window.scrollTo(0, 0)")
        page.locator("[role=tab]", has_text="Confusion matrix").first.focus()
        page.keyboard.press("Enter")
        page.locator("#pairs").wait_for()
        seen["pairs"] = tab_key_until(page, "() => !!document.activeElement.closest('#pairs [role=gridcell]')")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#pair-title').innerText.includes('→')")
        page.wait_for_timeout(500)
        seen["pair_row"] = page.evaluate(ACTIVE_JS)["text"]
        seen["pair_title"] = page.locator("#pair-title").inner_text()
        browser.close()
    return seen


def choose_files(page, box: str, upload: Path, shown: str | None = None, tries: int = 3) -> int:
    """Choose a file in the upload box `box` as a person would: once the page is idle, and again if it has not shown
    after a while (a choice made while the page is still drawing, under load, can be lost): what shows it is the
    selector `shown` (a photo box's preview), else the file's name in the box. How many tries it took; the caller's
    checks then say whether the file arrived."""
    shown = page.locator(shown) if shown else page.locator(box, has_text=upload.name)
    for attempt in range(1, tries + 1):
        settled(page)
        page.locator(f"{box} input[type=file]").set_input_files(str(upload))
        with suppress(Exception):
            shown.first.wait_for(timeout=30_000)
            return attempt
    return tries + 1


def sets_in(app_tmp: Path) -> set[str]:
    """The folders of visitors' sets an app keeps under its TMPDIR (AppContext.files)."""
    return {str(f) for f in app_tmp.glob("food101-explorer-*/sets/*/set-*")}


def two_visitors(url: str, upload: Path, app_tmp: Path, timeout_ms: int = 60_000) -> dict:
    """Two browser sessions at once: the first evaluates a set of photos in Your photos, the second opens that tab.
    What each then sees; then the first closes its page: the app's folders of visitors' sets (under the app's
    TMPDIR, `app_tmp`) before and after."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as p:
        browser = launch(p)
        first, second = (browser.new_context(viewport=DESKTOP).new_page() for _ in range(2))
        for page in (first, second):
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            page.wait_for_selector("#photo")
            _tab(page, "Your photos")
        seen["sets_before"] = sets_in(app_tmp)
        seen["upload_tries"] = choose_files(first, "#set-files", upload)
        if seen["upload_tries"] > 3:  # the file never showed in the box: nothing further to see
            return seen
        first.locator("#set-go").click()
        first.wait_for_function("() => document.querySelector('#set-summary').innerText.includes('Top-1')")
        seen["first"] = first.locator("#set-summary").inner_text()
        seen["first_mistakes"] = first.locator("#set-mistakes img").count()
        seen["first_download"] = first.locator("#set-zip").is_visible()
        # the first visitor's set in every analysis tab: chosen in Photos, then Per-class shows its dishes
        first.locator("#photos input").click()
        first.get_by_role("option", name="Your upload", exact=False).click()
        first.wait_for_function("() => document.querySelector('#header-text').innerText.includes('you uploaded')")
        seen["first_header"] = first.locator("#header-text").inner_text()
        _tab(first, "Per-class metrics")
        first.wait_for_function(
            "() => document.querySelector('#per-class-table').innerText.includes('f1 change vs test split')"
        )
        seen["first_per_class"] = first.locator("#per-class-table").inner_text()
        second.wait_for_timeout(1000)
        seen["second"] = second.locator("#set-summary").inner_text()
        seen["second_mistakes"] = second.locator("#set-mistakes img").count()
        seen["second_files"] = second.locator("#set-files").inner_text()
        seen["second_photos_menu"] = second.locator("#photos").is_visible()
        seen["sets_open"] = sets_in(app_tmp) - seen["sets_before"]  # the first visitor's
        first.close()  # Gradio notices the page has gone when its heartbeat stream breaks
        deadline = time.time() + 90
        while seen["sets_open"] & sets_in(app_tmp) and time.time() < deadline:
            time.sleep(1)
        seen["sets_left"] = seen["sets_open"] & sets_in(app_tmp)
        browser.close()
    return seen


REPORT_JS = """(ids) => ids.map(id => {
    const s = document.getElementById(id);
    if (!s) return {id, present: false};
    const charts = Array.from(s.querySelectorAll('.js-plotly-plot'));
    const imgs = Array.from(s.querySelectorAll('img'));
    return {id, present: true, heading: (s.querySelector('h2') || {}).innerText || '',
            missing: (s.querySelector('p.note') || {}).innerText || '',
            charts: charts.length, drawn: charts.filter(c => c.querySelector('.main-svg') &&
                c.getBoundingClientRect().width > 100 && c.getBoundingClientRect().height > 100).length,
            images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
            rows: s.querySelectorAll('tbody tr').length, text: s.innerText.length};
})"""


def open_report(report: Path, out: Path, sections: list[str], timeout_ms: int = 60_000) -> dict:
    """The report file opened in Chromium with every network request refused (it must need none): per section, its
    charts drawn, photos loaded and table rows; the requests refused; axe-core's serious and critical findings; a
    screenshot of its first page (desktop) and one on a phone."""
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        seen: dict = {}
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            context = browser.new_context(viewport=viewport, offline=True)
            context.route(re.compile(r"^(https?|wss?)://"), lambda route: (refused.append(route.request.url),
                                                                          route.abort()))  # fmt: skip
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            page.goto(report.resolve().as_uri())
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
            page.wait_for_timeout(500)
            seen[name] = {s["id"]: s for s in page.evaluate(REPORT_JS, sections)}
            seen[name]["overflow"] = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            page.screenshot(path=str(out / f"report_{name}.png"))
            if name == "desktop":
                seen["axe"] = axe_violations(page)
        browser.close()
    seen["refused"] = refused
    return seen


VIEW_STATE_JS = """() => {
    const value = (sel) => { const e = document.querySelector(sel + ' input'); return e ? e.value : null; };
    const text = (sel) => ((document.querySelector(sel) || {}).textContent || '').trim();
    const checked = (sel) => { const e = document.querySelector(sel + ' input:checked'); return e ? e.value : null; };
    const tab = document.querySelector('.tab-container button.selected');
    return {tab: tab ? tab.innerText.trim() : null, model: value('#stage'), true: value('#f-true'),
            pred: value('#f-pred'), conf: value('#f-conf'), opened: text('#mistake-caption'),
            pair: text('#pair-title'), map_true: value('#map-true'), map_pred: value('#map-pred'),
            colour: checked('#map-colour'), header: text('#header-text')};
}"""
HAS = "(sel, words) => ((document.querySelector(sel) || {}).textContent || '').includes(words)"


def read_view(page) -> dict:
    """What the page shows: the open tab and its state, then (opening them, as Gradio draws a tab when first opened)
    the Map's menus and the Confusion tab's pair."""
    settled(page)
    seen = page.evaluate(VIEW_STATE_JS)
    _tab(page, "Map")
    settled(page)
    _tab(page, "Confusion matrix")
    settled(page)
    later = page.evaluate(VIEW_STATE_JS)
    return {**seen, **{k: later[k] for k in ("pair", "map_true", "map_pred", "colour")}}


def choose(page, selector: str, option: str) -> None:
    """Pick `option` in the dropdown `selector` as a person does: open it, click the option."""
    page.locator(f"{selector} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def linked_view(url: str, out: Path, timeout_ms: int = 60_000) -> dict:
    """Issue 31's links: set a view by clicking (a model, a confusion pair, the map's colouring, a dish filter and an
    opened photo), read what the page shows and its URL; open that URL in a fresh page and read again; then a link
    holding a dish this run does not have: the notice, and the URL without it."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=DESKTOP).new_page()
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.wait_for_selector("#photo")
        choose(page, "#stage", "Stage 1: head only")
        settled(page)
        _tab(page, "Confusion matrix")
        drawn_marks(page, "#confusion-plot", "heatmap", timeout_ms)
        true_name, pred_name, _ = pair_rows(page)[1]
        click_cell(page, true_name, pred_name)
        page.wait_for_function(f"([t, p]) => ({HAS})('#pair-title', t + ' → ' + p)", arg=[true_name, pred_name])
        _tab(page, "Map")
        page.locator("#map-colour label", has_text="confidence").click()
        settled(page)
        _tab(page, "Mistakes")
        choose(page, "#f-true", pred_name)
        settled(page)
        page.locator("#mistakes-gallery .thumbnail-item").nth(1).click()
        page.wait_for_function(f"() => ({HAS})('#mistake-caption', 'test image')")
        settled(page)
        seen["pair"], seen["url"] = (true_name, pred_name), page.url
        seen["before"] = read_view(page)
        again = browser.new_context(viewport=DESKTOP).new_page()
        again.set_default_timeout(timeout_ms)
        again.goto(seen["url"])
        again.wait_for_function(f"() => ({HAS})('#mistake-caption', 'test image')")
        settled(again)
        again.wait_for_timeout(1000)  # a late step of the restore would change it now
        seen["after_url"] = again.url
        again.screenshot(path=str(out / "linked.png"))
        seen["after"] = read_view(again)
        stale = browser.new_context(viewport=DESKTOP).new_page()
        stale.set_default_timeout(timeout_ms)
        stale.goto(url + "?tab=mistakes&true=Sushi&pred=" + pred_name.replace(" ", "+"))
        stale.locator(".toast-body").first.wait_for()
        # the restore's last step drops what the run lacks from the URL, then opens the link's tab: wait for the tab
        stale.wait_for_function(TAB_IS_JS, arg="Mistakes")
        settled(stale)
        seen["stale_notice"] = stale.locator(".toast-body").first.inner_text()
        seen["stale"], seen["stale_url"] = stale.evaluate(VIEW_STATE_JS), stale.url
        browser.close()
    return seen


def mark_photo(page, view: str, words: str, dish: str | None = None) -> str:
    """In the large view `view`, mark the photo shown (`words`: a mark's label on the page), choosing `dish` for a
    relabel; return what the view then says of its mark."""
    box = page.locator(view)
    box.get_by_label(words, exact=True).check()
    if dish:
        box.locator("input[aria-label*='Relabel as']").click()
        page.get_by_role("option", name=dish, exact=True).click()
    box.locator("button.mark-go").click()
    page.wait_for_function(f"() => ({HAS})('{view} .prose.mark-note', 'Your mark')")
    return box.locator(".prose.mark-note").inner_text()


def marks_round_trip(url: str, out: Path, dishes: list[str], timeout_ms: int = 60_000) -> dict:
    """Issue 31's marks as a person makes them: two suspects marked (exclude; relabel as another dish) in Data
    quality, a mistake (a test photo) relabelled in Mistakes, one mark made and undone; the page reloaded; the marks
    downloaded as CSV into `out`."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as p:
        browser, page = cached_page(p, viewport=DESKTOP, accept_downloads=True)
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.wait_for_selector("#photo")
        _tab(page, "Data quality")
        settled(page)
        suspects = page.locator("#suspects-gallery .thumbnail-item")
        seen["suspects"] = [suspects.nth(i).inner_text() for i in range(3)]
        suspects.nth(0).click()
        settled(page)
        page.wait_for_function(f"() => ({HAS})('#suspect-view .prose.mark-note', 'Not marked')")
        seen["unmarked"] = page.locator("#suspect-view .prose.mark-note").inner_text()
        seen["excluded"] = mark_photo(page, "#suspect-view", "exclude")
        suspects.nth(1).click()
        settled(page)
        seen["relabelled"] = mark_photo(page, "#suspect-view", "relabel as …", dishes[0])
        suspects.nth(2).click()
        settled(page)
        mark_photo(page, "#suspect-view", "exclude")
        page.locator("#suspect-view button.mark-undo").click()
        page.wait_for_function(f"() => ({HAS})('#suspect-view .prose.mark-note', 'Not marked')")
        seen["undone"] = page.locator("#suspect-view .prose.mark-note").inner_text()
        _tab(page, "Mistakes")
        settled(page)
        page.locator("#mistakes-gallery .thumbnail-item").first.click()
        page.wait_for_function(f"() => ({HAS})('#mistake-caption', 'test image')")
        seen["test_photo"] = page.locator("#mistake-caption").inner_text()
        seen["test_mark"] = mark_photo(page, "#mistake-view", "relabel as …", dishes[1])
        page.reload()
        page.wait_for_selector("#photo")
        _tab(page, "Data quality")
        settled(page)
        page.locator("#marks button").first.click()
        settled(page)
        seen["summary"] = page.locator("#marks-summary").inner_text()
        suspects.nth(0).click()
        page.wait_for_function(f"() => ({HAS})('#suspect-view .prose.mark-note', 'mark')")
        seen["reopened"] = page.locator("#suspect-view .prose.mark-note").inner_text()
        with page.expect_download() as download:
            page.locator("#marks-csv").click()
        download.value.save_as(out / "marks.csv")
        browser.close()
    return seen
