"""The app's words say one true thing: the contrast sentence never contradicts its own numbers, the answer's and the
runner-up's photos never mix, the held-out curve is named for what it is, jargon comes with plain words, and Predict
lists the dishes it knows. On the demo bundle, without training."""

from __future__ import annotations

import re

import gradio as gr
import numpy as np
import pytest
from helpers import DEMO_BUNDLE

from food101_core.app import calibration_tab, neighbours, predict_tab, quality_report, run_summary, slice_report
from food101_core.bundle import load_bundle
from food101_core.config import TrainConfig

NEARER = re.compile(r"nearer the (.+?) training photos \(mean distance ([\d.]+)\) than the (.+?) ones \(([\d.]+)\)")


@pytest.fixture(scope="module")
def demo():
    return load_bundle(DEMO_BUNDLE)


def rows_of(b, dish: str, distances: list[float]) -> list[dict]:
    """Reference photos of one dish with made-up distances, as `neighbours.contrast` returns them."""
    rows = np.flatnonzero(b.reference["label"].to_numpy() == b.class_names.index(dish))[: len(distances)]
    return [{"row": int(r), "id": str(b.reference["id"].iloc[r]), "label": dish, "distance": d}
            for r, d in zip(rows, distances)]  # fmt: skip


def claim(line: str) -> tuple[str, float, str, float] | None:
    """(nearer dish, its printed distance, farther dish, its printed distance) that the sentence states, if any."""
    m = NEARER.search(line)
    return (m[1], float(m[2]), m[3], float(m[4])) if m else None


@pytest.mark.parametrize(
    ("answer_d", "runner_d", "nearer"),
    [
        ([0.20, 0.22, 0.24], [0.30, 0.31, 0.32], "answer"),
        ([0.30, 0.31, 0.32], [0.20, 0.22, 0.24], "runner_up"),
        ([0.2549, 0.2549, 0.2549], [0.2451, 0.2451, 0.2451], None),  # 0.25 and 0.25 as printed, though not equal
        ([0.2451, 0.2451, 0.2451], [0.2549, 0.2549, 0.2549], None),
    ],
)
def test_contrast_sentence_agrees_with_the_printed_distances(demo, answer_d, runner_d, nearer):
    found = {"pred": rows_of(demo, "Apple Pie", answer_d), "runner_up": rows_of(demo, "Baklava", runner_d)}
    line = neighbours.contrast_groups(demo, found)["line"]
    said = claim(line)
    assert "yet farther" not in line and "closer" not in line
    if nearer is None:
        assert said is None and "about as near" in line and "mean distance 0.25 both" in line, line
        return
    want = ("Apple Pie", "Baklava") if nearer == "answer" else ("Baklava", "Apple Pie")
    assert said is not None and (said[0], said[2]) == want, line
    assert said[1] < said[3], line  # never "nearer X" with X's printed number the larger
    assert ("disagree with the answer" in line) == (nearer == "runner_up"), line
    assert (": its nearest photos agree with the answer" in line) == (nearer == "answer"), line


def test_contrast_groups_keep_each_dish_in_its_own_gallery(demo):
    found = {"pred": rows_of(demo, "Apple Pie", [0.2, 0.3, 0.4]), "runner_up": rows_of(demo, "Baklava", [0.25] * 3)}
    groups = neighbours.contrast_groups(demo, found)
    (answer_label, answer), (runner_label, runner) = groups["answer"], groups["runner_up"]
    assert answer_label == "Nearest Apple Pie training photos: the answer (dish · distance)"
    assert runner_label == "Nearest Baklava training photos: the runner-up (dish · distance)"
    assert [c for _, c in answer] == ["Apple Pie · 0.20", "Apple Pie · 0.30", "Apple Pie · 0.40"]
    assert runner and all(c.startswith("Baklava · ") for _, c in runner)
    assert all(path.endswith(".jpg") or path.endswith(".png") for path, _ in answer + runner)


def test_contrast_groups_with_nothing_to_show(demo):
    empty = {"line": "", "answer": ("", []), "runner_up": ("", [])}
    assert neighbours.contrast_groups(demo, None) == empty == neighbours.contrast_groups(demo, {})
    half = neighbours.contrast_groups(demo, {"pred": rows_of(demo, "Baklava", [0.3]), "runner_up": []})
    assert half["line"] == "" and half["runner_up"] == ("", []) and half["answer"][0].startswith("Nearest Baklava")


def test_contrast_sentence_is_true_for_every_test_photo(demo):
    """The real contrast of each demo test photo (its answer against its runner-up): the sentence names the dish with
    the smaller printed mean, and the galleries hold only their own dish."""
    stage, emb = demo.final_stage, demo.embedding(demo.final_stage)
    p = demo.evaluation(stage).predictions
    seen = set()
    for i in range(0, len(p), 5):
        row = p.iloc[i]
        found = neighbours.contrast(
            demo, stage, emb.test[i : i + 1], emb.test_resid[i : i + 1], row["top1"], row["top2"]
        )
        groups = neighbours.contrast_groups(demo, found)
        mean = {k: f"{np.mean([s['distance'] for s in found[k]]):.2f}" for k in ("pred", "runner_up")}
        said = claim(groups["line"])
        if said is None:
            assert mean["pred"] == mean["runner_up"] and "about as near" in groups["line"]
            seen.add("same")
        else:
            assert said[1] < said[3] and f"{said[1]:.2f}" in mean.values() and f"{said[3]:.2f}" in mean.values()
            seen.add("agree" if said[0] == demo.name_of[row["top1"]] else "disagree")
        for side, dish in (("answer", row["top1"]), ("runner_up", row["top2"])):
            assert all(c.startswith(f"{demo.name_of[dish]} · ") for _, c in groups[side][1])
    assert {"agree", "disagree"} <= seen  # both verdicts happen on real photos


def test_held_out_curve_is_named_for_what_it_is(demo):
    assert demo.train_config.val_fraction == 0 and demo.train_config.keep_epoch == "last"
    names = {t.name for t in run_summary.training_figure(demo).data}
    assert names == {"train", "test photos (validation, watched only)"}
    assert "no epoch was chosen" in run_summary.held_out_words(demo.train_config)
    held_out = TrainConfig(val_fraction=0.05)
    assert run_summary.held_out_name(held_out) == "held-out 5 % of training photos (validation)"
    assert "best epoch" in run_summary.held_out_words(held_out)
    chosen_on_test = TrainConfig(val_fraction=0.0, keep_epoch="best")
    assert "test" in run_summary.held_out_name(chosen_on_test)
    assert "best epoch" in run_summary.held_out_name(chosen_on_test)
    assert all("validation" in run_summary.held_out_name(c) for c in (held_out, chosen_on_test, demo.train_config))


def test_jargon_comes_with_plain_words(demo):
    slices = slice_report.summary_line(demo)
    assert "Fisher exact" in slices and "by luck" in slices
    assert "Bonferroni-corrected" in slices and f"multiplied by {demo.slices()['tested']:,}" in slices
    assert "cleanlab, a library that flags" in quality_report.summary_line(demo)
    calibration = calibration_tab.intro(demo)
    assert "ECE, expected calibration error) is how far the stated confidence is from the real share" in calibration
    assert "temperature scaling: one number" in calibration
    assert "ECE (expected calibration error): how far" in run_summary.results_table(demo)
    assert "T = " in run_summary.calibration_words(demo) and "divided by one number" in (
        run_summary.calibration_words(demo)
    )
    for words in (slice_report.NO_SLICES, quality_report.NO_DATA_QUALITY, neighbours.NO_FEATURE_SPACE):
        assert "bundle: the folder of files the app reads" in words
    every = " ".join([slices, quality_report.summary_line(demo), calibration, run_summary.summary_details(demo)])
    assert "/mistakes" not in every and "in the bundle" not in every


def test_dish_list_is_every_dish_alphabetical():
    assert predict_tab.dish_list(["baklava", "Apple pie", "Churros"]) == "Apple pie, baklava, Churros."
    many = [f"Dish {i:03d}" for i in range(101)][::-1]
    listed = predict_tab.dish_list(many).rstrip(".").split(", ")
    assert listed == sorted(many) and len(listed) == 101


@pytest.fixture(scope="module")
def predict_page(demo):
    """The Predict tab built alone on the demo bundle (ONNX on the CPU: a few seconds)."""
    from food101_core.app.context import AppContext

    with gr.Blocks() as blocks:
        stage = gr.Dropdown(demo.stages, value=demo.final_stage)
        photos, view = gr.Dropdown(["test"], value="test"), gr.Textbox(demo.final_stage, visible=False)
        ctx = AppContext(demo, blocks, stage, photos, view)
        with gr.Tabs():
            predict_tab.build(ctx)
    return blocks, ctx


def by_id(blocks: gr.Blocks, elem_id: str):
    found = [c for c in blocks.blocks.values() if getattr(c, "elem_id", None) == elem_id]
    assert len(found) == 1, elem_id
    return found[0]


def test_predict_lists_the_dishes_it_knows_in_a_closed_accordion(demo, predict_page):
    blocks, _ = predict_page
    dishes = by_id(blocks, "dishes")
    assert isinstance(dishes, gr.Accordion) and dishes.open is False
    assert dishes.label == f"The {demo.num_classes} dishes it knows"
    (text,) = [c.value for c in dishes.children if isinstance(c, gr.Markdown)]
    assert text.rstrip(".").split(", ") == sorted(demo.class_names, key=str.lower)


def test_predict_shows_the_two_dishes_in_two_galleries_and_keeps_its_api(demo, predict_page):
    blocks, ctx = predict_page
    assert all(isinstance(by_id(blocks, name), gr.Gallery) for name in ("contrast", "contrast-runner-up"))
    (api,) = [d for d in blocks.fns.values() if d.api_name == "predict"]
    assert [o.elem_id for o in api.outputs if not isinstance(o, gr.State)] == ["top5", "verdict", "gradcam"]
    stage = demo.final_stage
    said = predict_tab.predict_photo(ctx, str(demo.original_image(0) or demo.thumb(0)), False, stage)
    top, extras = list(said["top5"]), said["found"]
    updates = predict_tab.show_extras(extras)
    answer, runner_up = updates["contrast"], updates["runner_up"]
    assert answer["label"].startswith(f"Nearest {top[0]} training photos: the answer")
    assert runner_up["label"].startswith(f"Nearest {top[1]} training photos: the runner-up")
    assert answer["visible"] and all(c.startswith(f"{top[0]} · ") for _, c in answer["value"])
    assert runner_up["visible"] and all(c.startswith(f"{top[1]} · ") for _, c in runner_up["value"])
    assert updates["versus"] == extras["versus"] and (top[0] in updates["versus"] and top[1] in updates["versus"])
    hidden = predict_tab.show_extras({"contrast": ("", []), "runner_up": ("", [])})
    assert hidden["contrast"]["visible"] is False and hidden["runner_up"]["visible"] is False
