"""Your own photos (issue 29, first part): label matching, untrusted zips, and a set's numbers against /predict."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT
from PIL import Image

from food101_core.bundle import load_bundle
from food101_core.labels import LabelMatcher
from food101_core.sets.uploads import Limits, UploadError, collect


def jpeg(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_labels_match_by_id_or_name_whatever_the_spelling():
    match = LabelMatcher(["apple_pie", "beef_tartare"], ["Apple Pie", "Beef Tartare"])
    for label in ("Apple Pie", "apple_pie", "apple-pie", "APPLE  PIE", " applepie ", "Apple_Pie"):
        assert match(label) == "apple_pie", label
    assert match("beef-tartare") == "beef_tartare"
    assert match("pizza") is None and match("") is None and match(None) is None


def untrusted_zip(path: Path) -> Path:
    """A zip with two good photos in dish folders and one entry of each kind the reader must refuse."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("set/Apple Pie/1.jpg", jpeg(1))
        zf.writestr("set/apple-pie/2.jpg", jpeg(2))
        zf.writestr("/etc/evil.jpg", jpeg(3))
        zf.writestr("set/../../evil.jpg", jpeg(4))
        link = zipfile.ZipInfo("set/Apple Pie/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("set/Apple Pie/inner.zip", b"PK\x05\x06" + b"\0" * 18)
        zf.writestr("set/Apple Pie/empty.jpg", b"")
        zf.writestr("set/Apple Pie/broken.jpg", b"\xff\xd8\xff not really a jpeg")
        zf.writestr("set/Apple Pie/notes.txt", b"lunch")
        zf.writestr("__MACOSX/set/._1.jpg", b"\0\5\26\7")
    return path


def test_an_untrusted_zip_is_read_entry_by_entry_and_nothing_lands_outside(tmp_path):
    work = tmp_path / "work"
    found = collect(untrusted_zip(tmp_path / "up.zip"), work)
    refused = {r["file"]: r["reason"] for r in found.refused}
    assert "outside the upload" in refused["/etc/evil.jpg"] and "outside the upload" in refused["set/../../evil.jpg"]
    assert "symbolic link" in refused["set/Apple Pie/link.jpg"]
    assert "archive inside the archive" in refused["set/Apple Pie/inner.zip"]
    assert "empty" in refused["set/Apple Pie/empty.jpg"] and "macOS" in refused["__MACOSX/set/._1.jpg"]
    names = {p.name: p.label for p in found.photos}  # read later: not-a-photo files are refused when decoded
    assert names == {"Apple Pie/1.jpg": "Apple Pie", "apple-pie/2.jpg": "apple-pie",
                     "Apple Pie/broken.jpg": "Apple Pie", "Apple Pie/notes.txt": "Apple Pie"}  # fmt: skip
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "up.zip"]
    assert written and all(work in p.parents for p in written)  # nothing outside the session's folder
    assert not any(p.name == "evil.jpg" for p in tmp_path.rglob("*")) and not (Path("/etc/evil.jpg")).exists()
    assert len(found.photos) + len(found.refused) == 10  # every entry accounted for


def test_a_zip_bomb_is_refused_before_anything_is_inflated(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/Apple Pie/big.jpg", b"\0" * 20_000_000)  # 20 MB that deflates ~1000 times
    assert zipfile.ZipFile(bomb).infolist()[0].compress_size < 100_000
    with pytest.raises(UploadError, match="inflate"):
        collect(bomb, tmp_path / "work")
    assert not any((tmp_path / "work").rglob("*.jpg"))
    with pytest.raises(UploadError, match="inflates to"):  # the total, announced by the headers
        collect(untrusted_zip(tmp_path / "up.zip"), tmp_path / "w2", Limits(max_bytes=1000))
    with pytest.raises(UploadError, match="entries"):
        collect(untrusted_zip(tmp_path / "up2.zip"), tmp_path / "w3", Limits(max_entries=5))


def test_a_header_that_lies_about_its_size_is_stopped_at_the_declared_size(tmp_path):
    """An entry that claims 1,000 bytes and inflates to 2 MB: never more than 1,000 bytes are inflated, and the file
    is refused (its checksum cannot match)."""
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/Apple Pie/a.jpg", b"\1" * 2_000_000)
    raw = bytearray(path.read_bytes())
    i = raw.index(b"PK\x01\x02")  # the central directory's record: the uncompressed size at offset 24
    raw[i + 24 : i + 28] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    found = collect(path, tmp_path / "work", Limits(max_ratio=1e9))
    assert [r["reason"] for r in found.refused] == ["it inflates past its declared size, or is damaged"]
    assert found.photos == [] and not any((tmp_path / "work").rglob("*.jpg"))


def test_limits_and_csv_paths_are_enforced_per_file(tmp_path):
    root = tmp_path / "mine"
    (root / "photos").mkdir(parents=True)
    for i in range(4):
        (root / "photos" / f"{i}.jpg").write_bytes(jpeg(i))
    (tmp_path / "outside.jpg").write_bytes(jpeg(9))
    (root / "labels.csv").write_text("path,label\nphotos/0.jpg,Apple Pie\nphotos/1.jpg,\nphotos/2.jpg,pizza\n"
                                     "../outside.jpg,Apple Pie\nphotos/missing.jpg,Apple Pie\n")  # fmt: skip
    found = collect(root, tmp_path / "work", Limits(max_photos=2))
    assert [(p.name, p.label) for p in found.photos] == [("photos/0.jpg", "Apple Pie"), ("photos/1.jpg", None)]
    reasons = {r["file"]: r["reason"] for r in found.refused}
    assert "limit of 2 photos" in reasons["photos/2.jpg"] and "outside the upload" in reasons["../outside.jpg"]
    assert "not there" in reasons["photos/missing.jpg"] and "not listed in labels.csv" in reasons["photos/3.jpg"]


def set_of_test_photos(b, root: Path, out: Path, n: int = 24) -> tuple[Path, list[tuple[Path, str]]]:
    """A zip of (up to) `n` of the bundle's test photos in dish folders spelt three ways, one photo with a label the
    model does not know, one without a label, and a text file."""
    n = min(n, len(b.test_ids) - 2)
    spell = [lambda s: s, lambda s: s.lower().replace(" ", "_"), lambda s: s.upper().replace(" ", "-")]
    photos = []
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(n):
            src = root / "images" / f"{b.test_ids[i]}.jpg"
            dish = b.name_of[b.evaluation().predictions["true"].iloc[i]]
            zf.write(src, f"lunch/{spell[i % 3](dish)}/{i}.jpg")
            photos.append((src, dish))
        zf.write(root / "images" / f"{b.test_ids[n]}.jpg", "lunch/Pizza Margherita/x.jpg")
        zf.write(root / "images" / f"{b.test_ids[n + 1]}.jpg", "lunch/loose.jpg")
        zf.writestr("lunch/readme.txt", "our canteen")
    return out, photos


def test_a_sets_numbers_are_predict_photo_by_photo(client, tiny_bundle, tmp_path):
    """/evaluate_set's top-1 is the share of its photos whose /predict answer is their dish (counted here with
    pandas), every file is accounted for, and unknown labels and unlabelled photos are predicted, not scored."""
    from gradio_client import handle_file

    b = load_bundle(tiny_bundle)
    zpath, photos = set_of_test_photos(b, Path(b.config["data"]["location"]), tmp_path / "lunch.zip")
    s = client.predict(handle_file(str(zpath)), api_name="/evaluate_set")
    answers = [client.predict(handle_file(str(p)), False, b.final_stage, api_name="/predict")[0]["label"]
               for p, _ in photos]  # fmt: skip
    right = pd.Series([a == dish for a, (_, dish) in zip(answers, photos)])
    assert s["n_files"] == len(photos) + 3 and s["scored"] == len(photos)
    assert s["top1"] == pytest.approx(right.mean()), (s["top1"], right.mean())
    assert s["unknown_labels"] == {"Pizza Margherita": 1} and s["unlabelled"] == 1
    assert [r["file"] for r in s["refused"]] == ["readme.txt"]
    assert s["test_top1"] == pytest.approx(b.evaluation().metrics["top1"])
    assert sum(r["n"] for r in s["per_class"]) == len(photos)
    d = s["difference"]
    assert d["low"] <= d["top1"] <= d["high"] and d["top1"] == pytest.approx(s["top1"] - s["test_top1"])
    assert 0 <= s["ece"] <= 1 and s["top1"] <= s["top5"] <= 1 and 0 <= s["unfamiliar_share"] <= 1


def test_the_command_line_writes_every_photos_prediction(tmp_path):
    demo = ROOT / "assets" / "demo-bundle"
    if not (demo / "bundle.json").is_file():
        pytest.skip("no demo bundle")
    b = load_bundle(demo)
    folder = tmp_path / "mine"
    for i in range(6):
        j = next(j for j in range(i * 50, len(b.test_ids)) if b.has_thumb(j))
        thumb, dish = b.thumb(j), b.name_of[b.evaluation().predictions["true"].iloc[j]]
        (folder / dish).mkdir(parents=True, exist_ok=True)
        (folder / dish / f"{i}.jpg").write_bytes(Path(thumb).read_bytes())
    done = subprocess.run([sys.executable, "-m", "food101_core.sets", "evaluate", str(demo), str(folder),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(table) == 6 and s["n_files"] == 6 and "top-1" in done.stdout
    assert s["top1"] == pytest.approx((table["pred"] == table["true"]).mean())


@pytest.mark.browser
def test_one_visitors_set_is_seen_only_in_that_visitors_session(demo_app_process, tmp_path):
    """Two browser sessions: the set the first evaluates shows in its tab, and nothing of it in the other's."""
    from browser import chromium_path, two_visitors

    if not chromium_path():
        pytest.skip("Debian's chromium is not installed (tests/run.sh installs it)")
    b = load_bundle(ROOT / "assets" / "demo-bundle")
    upload = tmp_path / "canteen.zip"
    with zipfile.ZipFile(upload, "w") as zf:
        for j in range(0, len(b.test_ids), 25):
            if b.has_thumb(j):
                dish = b.name_of[b.evaluation().predictions["true"].iloc[j]]
                zf.write(b.thumb(j), f"canteen/{dish}/{j}.jpg")
    url, app_tmp = demo_app_process
    seen = two_visitors(url, upload, app_tmp)
    assert seen["upload_tries"] <= 3, "the chosen zip never showed in the upload box"
    assert "Top-1" in seen["first"] and "files" in seen["first"], seen
    assert seen["first_download"] and "photos you uploaded" in seen["first_header"], seen
    # Per-class follows the Photos selector: the set's F1 beside the same model's on the test split, not stage 1's
    assert "f1 change vs test split" in seen["first_per_class"], seen
    assert "f1 change vs stage 1" not in seen["first_per_class"], seen
    assert seen["second"].strip() == "" and seen["second_mistakes"] == 0, seen
    assert "canteen.zip" not in seen["second_files"], seen
    assert not seen["second_photos_menu"], seen  # the demo has no sets: the first visitor's set is not offered
    # the page closed: its set (photos, predictions) is deleted then, not an hour later
    assert len(seen["sets_open"]) == 1 and not seen["sets_left"], seen
