"""Comparing two runs: paired statistics checked against scipy and an explicit bootstrap, refusals, CLI, tab."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import local_client, start_app

from food101_core import compare
from food101_core.bundle import load_bundle, write_manifest


def shipped_as_stage1(bundle: Path, dest: Path) -> Path:
    """Another "run" on the same test set: the same bundle whose shipped (last) stage is its stage-1 model."""
    shutil.copytree(bundle, dest)
    (dest / "bundle.json").unlink()
    write_manifest(dest, ["stage1"])
    return dest


def test_paired_statistics_match_scipy_and_an_explicit_bootstrap(tiny_bundle):
    from scipy.stats import binomtest

    b = load_bundle(tiny_bundle)
    c = compare.compare(b, b, "stage1", "stage2")
    right1 = b.evaluation("stage1").predictions["correct"].to_numpy(bool)
    right2 = b.evaluation("stage2").predictions["correct"].to_numpy(bool)
    assert list(c.a_only) == list(np.flatnonzero(right1 & ~right2))
    assert list(c.b_only) == list(np.flatnonzero(right2 & ~right1))
    n01, n10 = len(c.a_only), len(c.b_only)
    want = binomtest(min(n01, n10), n01 + n10, 0.5).pvalue if n01 + n10 else 1.0
    assert c.mcnemar_p == pytest.approx(want, rel=1e-9)
    assert c.top1_b - c.top1_a == pytest.approx(
        b.evaluation("stage2").metrics["top1"] - b.evaluation("stage1").metrics["top1"]
    )
    rng = np.random.default_rng(5)  # the textbook bootstrap: resample photo indices
    idx = rng.integers(0, len(right1), (4000, len(right1)))
    diffs = right2[idx].mean(1) - right1[idx].mean(1)
    step = 1.01 / len(right1)  # the difference moves in steps of one photo: the two may part by one step
    assert c.ci_low == pytest.approx(np.quantile(diffs, 0.025), abs=step)
    assert c.ci_high == pytest.approx(np.quantile(diffs, 0.975), abs=step)
    assert c.ci_low <= c.top1_b - c.top1_a <= c.ci_high


@pytest.mark.parametrize("a_only,b_only", [(0, 0), (3, 17), (40, 41), (1, 250)])
def test_exact_mcnemar_is_scipys_binomial_test(a_only, b_only):
    from scipy.stats import binomtest

    want = binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    assert compare.mcnemar_exact(a_only, b_only) == pytest.approx(want, rel=1e-9, abs=1e-300)


def rewritten(bundle: Path, dest: Path, rel: str, change) -> Path:
    """A copy of `bundle` with one file changed by `change(text) -> text`, its manifest rewritten to match."""
    shutil.copytree(bundle, dest)
    (dest / rel).write_text(change((dest / rel).read_text()))
    stages = load_bundle(dest, verify=False).stages
    (dest / "bundle.json").unlink()
    write_manifest(dest, stages)
    return dest


def test_runs_on_other_test_sets_are_refused_with_what_differs(tiny_bundle, tmp_path):
    a = load_bundle(tiny_bundle)
    renamed = rewritten(tiny_bundle, tmp_path / "renamed", "classes.json", lambda t: t.replace("red_soup", "tomato"))
    with pytest.raises(compare.CompareError, match=r"different classes.*red_soup"):
        compare.compare(a, load_bundle(renamed))
    other = rewritten(tiny_bundle, tmp_path / "other", "test_set.csv", lambda t: t.replace("red_soup/13", "red_soup/x"))
    with pytest.raises(compare.CompareError, match="photo 1 is red_soup/13 in A, red_soup/x in B"):
        compare.compare(a, load_bundle(other))
    assert compare.main([str(tiny_bundle), str(other)]) == 2


def test_cli_prints_the_table(tiny_bundle, tmp_path, capsys):
    other = shipped_as_stage1(tiny_bundle, tmp_path / "b")
    assert compare.main([str(tiny_bundle), str(other)]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "McNemar" in out and "per-class F1" in out


@pytest.mark.browser
def test_compare_tab_and_endpoint(tiny_bundle, tmp_path):
    from browser import exercise_compare, launch_page
    from test_app import needs_chromium

    other = shipped_as_stage1(tiny_bundle, tmp_path / "b")
    proc, url = start_app(["--run", str(tiny_bundle), "--compare", str(other)])
    try:
        got = local_client(url).predict(api_name="/compare")
        want = compare.compare(load_bundle(tiny_bundle), load_bundle(other))
        assert got["top1_a"] == pytest.approx(want.top1_a) and got["mcnemar_p"] == pytest.approx(want.mcnemar_p)
        assert (got["a_only"], got["b_only"]) == (len(want.a_only), len(want.b_only))
        assert len(got["per_class"]) == 3 and {"ci_low", "ci_high"} <= set(got)
        needs_chromium()
        with launch_page(url) as page:
            seen = exercise_compare(page, tmp_path / "shots")
        assert seen["bars"] >= 1 and "McNemar" in seen["verdict"] and seen["page_errors"] == []
        if len(want.a_only):
            assert seen["flips"] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
