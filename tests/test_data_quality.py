"""Data quality: suspect labels from out-of-sample probabilities, near-duplicates, the loop back through --exclude."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import needs_mini, needs_weights, tiny_args

from food101_core.bundle import load_bundle
from food101_core.training import quality as dq


def test_cross_validated_probabilities_are_out_of_sample():
    """Random labels on features a classifier can memorise: in sample it is sure of them, out of sample not.

    Each fold's rows are also recomputed independently (scikit-learn, trained on the other folds only) and must
    equal what cross_val_probs returned for them.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 200)).astype(np.float32)
    y = rng.integers(0, 6, 300)
    probs, fold = dq.cross_val_probs(x, y, 6, folds=5, seed=1)
    assert sorted(np.unique(fold)) == list(range(5))
    z = dq.prepare(x, seed=1)
    in_sample = dq.classifier().fit(z, y).predict_proba(z)[np.arange(300), y]
    out_of_sample = probs[np.arange(300), y]
    print(f"probability of the random label: {in_sample.mean():.3f} in sample, {out_of_sample.mean():.3f} out of it")
    assert in_sample.mean() > out_of_sample.mean() + 0.02  # one that saw the labels has learnt something of them
    assert out_of_sample.mean() < 1 / 6 + 0.01  # one that never saw them is at chance, or below
    for f in range(5):
        held = fold == f
        clf = dq.classifier().fit(z[~held], y[~held])
        np.testing.assert_allclose(probs[held], clf.predict_proba(z[held]), atol=1e-5)
    for c in range(6):  # stratified: every fold holds about a fifth of each class
        counts = np.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("dims", [0, 4], ids=["every-pair", "projected-filter"])
def test_similar_pairs_match_a_brute_force_search(dims):
    """The same pairs whether every pair is compared in full or most are ruled out in a projection first."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 16)), rng.normal(size=(70, 16))
    a[3], a[40] = b[7] + 0.01, a[12] * 3  # a near-copy across, and one within a (a scaled copy: cosine 1)
    for other in (b, None):
        # chunks smaller than the data: their seams are tested
        found, total = dq.similar_pairs(a, other, 0.95, chunk=8, dims=dims)
        sims = 1 - cdist(a, a if other is None else other, "cosine")
        i, j = np.nonzero(sims >= 0.95)
        want = {(p, q) for p, q in zip(i, j) if other is not None or p < q}
        assert {(p, q) for p, q, _ in found} == want and want and total == len(want)
        for p, q, s in found:
            assert s == pytest.approx(sims[p, q], abs=1e-5)
    same = np.ones((300, 8)) + rng.normal(0, 1e-3, (300, 8))  # every photo alike: 44,850 pairs above any threshold
    capped, total = dq.similar_pairs(same, None, 0.9, chunk=50, limit=100, dims=dims // 2)  # filter: all pass
    sims = 1 - cdist(same, same, "cosine")
    best = np.sort(sims[np.triu_indices(300, 1)])[::-1][:100]
    assert len(capped) == 100 and np.allclose([s for _, _, s in capped], best, atol=1e-6)  # the best 100, in order
    assert total == 300 * 299 // 2  # and how many there were in all


@needs_mini
@needs_weights
def test_changed_labels_lead_the_suspect_list(tampered_analysis):
    t, result = tampered_analysis
    k = len(t.flipped)
    top = set(result.suspects["id"][:k])
    precision = len(top & set(t.flipped)) / k
    recall = len(set(result.suspects["id"]) & set(t.flipped)) / k
    print(f"{k} labels changed: top-{k} precision {precision:.1%}, recall of all {len(result.suspects)} {recall:.1%}")
    assert precision >= 0.6
    s = result.suspects.iloc[0]  # the most suspect one is suggested as another class than it is labelled
    assert s["given"] != s["suggested"] and s["id"].split("/")[0] == s["given"]


@needs_mini
@needs_weights
def test_test_photos_copied_into_training_are_found(tampered_analysis):
    t, result = tampered_analysis
    d = result.duplicates
    pairs = set(zip(d.query("kind == 'train-test'")["a_id"], d.query("kind == 'train-test'")["b_id"]))
    found = [new for new, test_id in t.leaked.items() if (test_id, new) in pairs]
    print(f"found {len(found)} of {len(t.leaked)} leaked copies; {len(d)} pairs in all")
    assert len(found) == len(t.leaked)
    assert (d["similarity"] >= dq.DUPLICATE_SIMILARITY).all()
    for _, kind in d.groupby("kind"):
        assert kind["similarity"].is_monotonic_decreasing


def test_the_bundle_carries_the_analysis_as_training_writes_it(tiny_bundle):
    """train.py writes the analysis: a row per suspect, thumbnails for the top N and every pair, counts that add up."""
    from food101_core.app import quality_report

    b = load_bundle(tiny_bundle)
    q = b.data_quality()
    assert q is not None and q.summary["n_train"] == 36 - 3 and q.summary["suspects"] == len(q.suspects)
    assert q.suspects["quality"].is_monotonic_increasing  # most suspect (lowest given-label probability) first
    assert set(q.suspects["given"]) <= set(b.class_ids) and (q.suspects["given"] != q.suspects["suggested"]).any()
    top = q.suspects.head(int(b.train_config.suspect_thumbs))
    assert all(b.photo("train", i) is not None for i in top["id"])
    pictured = q.duplicates.groupby("kind").head(b.train_config.pair_thumbs)
    for row in pictured.itertuples():
        assert b.photo(row.a_split, row.a_id) and b.photo(row.b_split, row.b_id)
    counts = quality_report.class_counts(b)
    assert counts["suspect labels"].sum() == len(q.suspects)
    assert counts["training photos"].sum() == 36 - 3  # one photo a class is held out to fit the temperature


def test_suspects_endpoint_and_the_csv_that_train_reads(client, tiny_bundle, tmp_path):
    from food101_core.app import quality_report
    from food101_core.app.quality_tab import CSV_COLUMNS
    from food101_core.training.data import read_id_list

    b = load_bundle(tiny_bundle)
    rows = client.predict(None, None, api_name="/suspects")
    assert [r["id"] for r in rows] == b.data_quality().suspects["id"].tolist()
    name = b.class_names[0]
    some = client.predict(name, None, api_name="/suspects")
    assert some and all(r["given_name"] == name for r in some)
    quality_report.suspects_table(b)[CSV_COLUMNS].to_csv(tmp_path / "s.csv", index=False)  # what the tab serves
    assert read_id_list(tmp_path / "s.csv") == [r["id"] for r in rows]


def test_old_bundle_without_the_analysis_says_how_to_add_it(bundle_copy):
    import shutil

    from food101_core.app import quality_report
    from food101_core.bundle import write_manifest

    shutil.rmtree(bundle_copy / "quality")
    write_manifest(bundle_copy, load_bundle(bundle_copy, verify=False).stages)
    b = load_bundle(bundle_copy)
    assert not b.has_data_quality and b.data_quality() is None
    with pytest.raises(Exception, match=r"python -m food101_core\.training\.analyses"):
        quality_report.suspects_table(b)
    from food101_core.app import build_app

    page = build_app(b)  # builds, with the message in place of the tab's content
    shown = [blk.value for blk in page.blocks.values() if getattr(blk, "elem_id", None) == "quality-missing"]
    assert shown and "python -m food101_core.training.analyses" in shown[0]


def test_exclude_drops_the_listed_photos_and_records_them(tmp_path, tiny_food101):
    import train
    from food101_core.training.data import read_id_list

    listed = tmp_path / "suspects.csv"
    pd.DataFrame({"rank": [1, 2], "id": ["red_soup/3", "green_salad/5"], "given": ["x", "y"]}).to_csv(listed)
    assert read_id_list(listed) == ["red_soup/3", "green_salad/5"]
    args = tiny_args(tiny_food101, tmp_path / "runs", exclude=str(listed), stage1_epochs=0, stage2_epochs=0,
                     analyses=True)  # what is left out, not what is learnt: no fit  # fmt: skip
    assert train.main(args) == 0
    b = load_bundle(tmp_path / "runs" / "tiny")
    assert b.data_source["excluded"] == ["green_salad/5", "red_soup/3"]
    assert b.data_source["train"] == 36 - 2 - 3  # and one photo a class held out for calibration
    assert b.train_config.exclude == str(listed)
    assert not {"red_soup/3", "green_salad/5"} & set(b.data_quality().suspects["id"])


def test_exclude_refuses_unknown_ids_before_training_and_empty_excludes_nothing(tmp_path, tiny_food101, capsys):
    import train
    from food101_core.config import TrainConfig
    from food101_core.training.data import load_data

    bad = tmp_path / "ids.txt"
    bad.write_text("red_soup/3\nno_such/1\nred_soup/999\n")
    assert train.main(tiny_args(tiny_food101, tmp_path / "runs", exclude=str(bad))) == 2
    err = capsys.readouterr().err
    assert "no_such/1" in err and "red_soup/999" in err and "red_soup/3" not in err
    assert not (tmp_path / "runs" / ".work" / "tiny" / "stage1.keras").exists()  # refused before training
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cfg = TrainConfig(data=str(tiny_food101), val_fraction=0.0)
    assert len(load_data(TrainConfig(**{**cfg.to_dict(), "exclude": str(empty)})).train) == len(load_data(cfg).train)
    assert "exclude" not in cfg.recipe()  # off: runs named before the setting existed keep their names
    assert TrainConfig(**{**cfg.to_dict(), "exclude": str(empty)}).run_name() != cfg.run_name()


def test_read_id_list_reads_text_and_csv(tmp_path: Path):
    from food101_core.training.data import DataError, read_id_list

    (tmp_path / "a.txt").write_text("# suspects\napple_pie/1\n\n apple_pie/2 \n")
    assert read_id_list(tmp_path / "a.txt") == ["apple_pie/1", "apple_pie/2"]
    (tmp_path / "b.csv").write_text("rank,name\n1,x\n")
    with pytest.raises(DataError, match="'id' column"):
        read_id_list(tmp_path / "b.csv")
    with pytest.raises(DataError, match="no such file"):
        read_id_list(tmp_path / "missing.txt")


def test_the_analyses_command_adds_both_analyses_to_a_bundle_in_place(bundle_copy):
    """`python -m food101_core.training.analyses RUN` on a bundle written without them: the Map's feature space and
    the data-quality files arrive, the photos they need are added in new shards (none stored twice), bundle.json
    lists and verifies everything, and the evaluation's own files are untouched."""
    import shutil

    from food101_core.bundle import write_manifest
    from food101_core.training import analyses

    before = load_bundle(bundle_copy)
    kept = {rel: meta for rel, meta in before.files.items() if rel.startswith(("stage1/probs", "models/"))}
    shutil.rmtree(bundle_copy / "quality")
    for rel in ("reference.csv", f"{before.final_stage}/embedding.npz"):
        (bundle_copy / rel).unlink()
    write_manifest(bundle_copy, before.stages)
    assert not load_bundle(bundle_copy).has_feature_space
    assert analyses.main([str(bundle_copy)]) == 0
    b = load_bundle(bundle_copy)  # verifies every listed file
    assert b.has_feature_space and b.has_data_quality and b.data_quality().image_checks is not None
    assert all(b.files[rel] == meta for rel, meta in kept.items())
    index = pd.read_csv(bundle_copy / "photos" / "index.csv", dtype=str)
    assert not index.duplicated(["split", "id"]).any()
    assert all(b.reference_thumb(row) is not None for row in range(len(b.reference)))
    assert {"unfamiliar", "region"} <= set(b.properties().columns)
