"""The three data sources, selection options, odd and corrupt images, and the pipeline's guarantees."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import MINI, TINY_CLASSES, food_image, needs_mini, tiny_config
from PIL import Image

from food101_core.training import data as fdata
from food101_core.training.data import DataError, load_data, make_dataset


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_food101_folder_source(tiny_food101, tmp_path):
    d = load_data(tiny_config(tiny_food101, tmp_path, calibration_fraction=0.0))  # every training photo read
    assert d.class_ids == TINY_CLASSES
    assert d.class_names == ["Red soup", "Green salad", "Blue cheese"]  # from meta/labels.txt
    assert len(d.train) == 36 and len(d.test) == 18 and d.val is None
    test_txt = (tiny_food101 / "meta" / "test.txt").read_text().split()
    assert d.test.ids == test_txt  # the test order is the file's order
    assert d.test.labels.tolist() == [TINY_CLASSES.index(i.split("/")[0]) for i in test_txt]


@needs_mini
def test_food101_mini_counts_and_selection(tmp_path):
    d = load_data(tiny_config(MINI, tmp_path, num_classes=3, train_fraction=0.1, val_fraction=0.2))
    assert d.class_ids == ["apple_pie", "baby_back_ribs", "baklava"]
    assert d.class_names[0] == (MINI / "meta" / "labels.txt").read_text().splitlines()[0]
    per_class = np.bincount(np.concatenate([d.train.labels, d.val.labels]), minlength=3)
    assert per_class.tolist() == [32, 32, 32] or per_class.tolist() == [33, 33, 33]  # 10% of 325
    assert np.bincount(d.test.labels).tolist() == [125, 125, 125]
    assert not set(d.train.ids) & set(d.val.ids) and not set(d.train.ids) & set(d.test.ids)
    named = load_data(tiny_config(MINI, tmp_path, classes=["baklava", "apple_pie"]))
    assert named.class_ids == ["baklava", "apple_pie"] and len(named.test) == 250
    assert {i.split("/")[0] for i, y in zip(named.test.ids, named.test.labels) if y == 0} == {"baklava"}


def test_class_folders_source_splits_75_25_with_fixed_seed(tmp_path):
    rng = np.random.default_rng(1)
    for c, n in (("soup", 8), ("cake", 12)):
        (tmp_path / "f" / c).mkdir(parents=True)
        for i in range(n):
            food_image((120, 60, 30), rng).save(tmp_path / "f" / c / f"{c}{i}.png")
    (tmp_path / "f" / "cake" / "notes.txt").write_text("not an image")
    cfg = tiny_config(tmp_path / "f", tmp_path, calibration_fraction=0.0)  # the source's own 75/25 split only
    a, b = load_data(cfg), load_data(cfg)
    assert a.class_ids == ["cake", "soup"]
    assert np.bincount(a.test.labels).tolist() == [3, 2] and np.bincount(a.train.labels).tolist() == [9, 6]
    assert a.test.ids == b.test.ids  # same seed, same split
    assert not set(a.train.ids) & set(a.test.ids)
    cfg.seed = 7
    assert load_data(cfg).test.ids != a.test.ids


def test_tfds_source_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        d = load_data(tiny_config("tfds:food101", tmp_path, num_classes=101))
        assert len(d.class_ids) == 101 and d.class_ids[0] == "apple_pie" and d.class_names[0] == "Apple pie"
        assert len(d.test) == 20 and d.test.ids[3] == "test/00003"
        x, y = batches(make_dataset(d.test, 101, tiny_config("tfds:food101", tmp_path), training=False))
        assert x.shape == (20, 32, 32, 3) and x.dtype == np.float32
        assert (y.argmax(1) == d.test.labels).all()  # labels stay aligned with images, in order


def test_tfds_offline_error_says_what_to_do(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    class Offline:
        def download_and_prepare(self):
            raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds, "builder", lambda name: Offline())
    with pytest.raises(DataError, match="--data /path/to/food-101"):
        load_data(tiny_config("tfds:food101", tmp_path))


def test_bad_sources_have_clear_errors(tmp_path, tiny_food101):
    with pytest.raises(DataError, match="no such folder"):
        load_data(tiny_config(tmp_path / "nope", tmp_path))
    with pytest.raises(DataError, match="unknown classes"):
        load_data(tiny_config(tiny_food101, tmp_path, classes=["pizza"]))
    with pytest.raises(DataError, match="asked for 5 classes"):
        load_data(tiny_config(tiny_food101, tmp_path, num_classes=5))


def test_odd_images_decode_like_pil(tiny_food101, tmp_path):
    """Grayscale, CMYK, RGBA, palette and 16-bit files all decode to the RGB that PIL sees."""
    rng = np.random.default_rng(3)
    rgb = food_image((180, 120, 60), rng, size=(32, 32))
    folder = tiny_food101 / "images" / "red_soup"
    odd = {
        "gray": rgb.convert("L"),
        "cmyk": rgb.convert("CMYK"),
        "rgba": rgb.convert("RGBA"),
        "palette": rgb.convert("P"),
        "g16": Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257),
    }
    for name, im in odd.items():
        fmt = "JPEG" if im.mode in {"L", "CMYK"} else "PNG"
        im.save(folder / f"{name}.jpg", fmt, quality=100)  # Food-101 names every file .jpg; content decides
    (tiny_food101 / "meta" / "test.txt").write_text("\n".join(f"red_soup/{n}" for n in odd) + "\n")
    d = load_data(tiny_config(tiny_food101, tmp_path))
    assert d.source["skipped"] == []
    x, _ = batches(make_dataset(d.test, 3, tiny_config(tiny_food101, tmp_path), training=False))
    for got, (name, im) in zip(x, odd.items()):
        expected = np.asarray(Image.open(folder / f"{name}.jpg").convert("RGB"), np.float32)
        if name == "g16":
            expected = np.repeat(np.asarray(im, np.float32)[..., None] / 257, 3, axis=2)
        assert np.abs(got - expected).mean() < 6, name  # same picture (JPEG decoders differ by a few levels)


def test_corrupt_and_unsupported_images_are_reported_by_name_and_skipped(tiny_food101, tmp_path, caplog):
    folder = tiny_food101 / "images" / "green_salad"
    good = (folder / "0.jpg").read_bytes()
    (folder / "0.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (folder / "1.jpg").write_text("this is not a picture")
    food_image((1, 2, 3), np.random.default_rng(0)).save(folder / "2.jpg", "TIFF")  # TF cannot decode TIFF
    (folder / "3.jpg").unlink()
    d = load_data(tiny_config(tiny_food101, tmp_path, calibration_fraction=0.0))  # all that is readable trains
    skipped = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in d.source["skipped"]}
    assert set(skipped) == {"0.jpg", "1.jpg", "2.jpg", "3.jpg"}
    assert "unsupported format TIFF" in skipped["2.jpg"] and "not found" in skipped["3.jpg"]
    assert len(d.train) == 32
    assert "green_salad/0.jpg" in caplog.text
    x, _ = batches(make_dataset(d.train, 3, tiny_config(tiny_food101, tmp_path), training=True))
    assert len(x) == 32  # the whole pipeline runs over what is left


def test_pipeline_shuffles_training_only_and_keeps_test_order(tiny_food101, tmp_path):
    cfg = tiny_config(tiny_food101, tmp_path, batch_size=5)
    d = load_data(cfg)
    x1, _ = batches(make_dataset(d.test, 3, cfg, training=False))
    x2, y2 = batches(make_dataset(d.test, 3, cfg, training=False))
    assert np.array_equal(x1, x2) and (y2.argmax(1) == d.test.labels).all()
    assert x1.dtype == np.float32 and x1.shape == (18, 32, 32, 3) and x1.min() >= 0 and x1.max() <= 255
    train = make_dataset(d.train, 3, cfg, training=True)
    _, ya = batches(train)
    _, yb = batches(train)
    assert not np.array_equal(ya, yb)  # reshuffled every epoch
    assert sorted(ya.argmax(1)) == sorted(d.train.labels)  # every image once per epoch


def test_augmentation_changes_images_but_not_shapes(tiny_food101, tmp_path):
    cfg = tiny_config(tiny_food101, tmp_path, batch_size=36)
    d = load_data(cfg)
    plain = next(iter(make_dataset(d.train, 3, cfg, training=False)))[0].numpy()
    aug = next(iter(make_dataset(d.train, 3, cfg, training=False, augment=True)))[0].numpy()
    assert aug.shape == plain.shape and not np.allclose(aug, plain)


def test_mixup_blends_each_image_and_its_label_with_the_same_weight(tiny_food101, tmp_path):
    cfg = tiny_config(tiny_food101, tmp_path, batch_size=36)
    d = load_data(cfg)
    x, y = (t.numpy() for t in next(iter(make_dataset(d.train, 3, cfg, training=False))))
    mx, my = (t.numpy() for t in next(iter(make_dataset(d.train, 3, cfg, training=False, mixup=0.4))))
    assert np.allclose(my.sum(1), 1) and (my.max(1) < 0.999).sum() > 5  # soft labels, still distributions
    flat, mflat = x.reshape(len(x), -1), mx.reshape(len(mx), -1)
    for i in range(len(x)):  # find the partner and weight that explain the image, then check the label agrees
        best = None
        for j in range(len(x)):
            diff = flat[i] - flat[j]
            w = 1.0 if not diff.any() else float(np.clip((mflat[i] - flat[j]) @ diff / (diff @ diff), 0, 1))
            err = np.abs(w * flat[i] + (1 - w) * flat[j] - mflat[i]).max()
            if best is None or err < best[0]:
                best = (err, w, j)
        err, w, j = best
        assert err < 0.05, f"image {i} is not a blend of two images of the batch"
        np.testing.assert_allclose(my[i], w * y[i] + (1 - w) * y[j], atol=1e-3)


def test_cache_decision_uses_memory_size():
    assert fdata.cache_fits(1000, 224)
    assert not fdata.cache_fits(10**9, 224)
