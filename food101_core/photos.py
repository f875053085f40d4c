"""The bundle's photos: every thumbnail stored once, packed into a few zip shards that are read by random access.

A photo is keyed by its split and id ("test", "apple_pie/1011328"), whichever views show it (mistakes, map, pairs,
duplicates, suspects, reference photos). Shards are plain uncompressed zips (JPEG does not compress further), so any
tool opens them and one member is one seek away. `photos/index.csv` says which shard holds which photo; shards are
grouped by first use ("first": what the first screen, Predict, shows: its examples and the reference photos of
"similar training photos"; "test": what the other tabs show; "train": the data-quality views), so a Space that
downloads on demand fetches a group only when a view needs it.

Part of the floor: imports neither the training code nor the app.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps

INDEX = "photos/index.csv"
SHARD = "photos/{group}-{n:02d}.zip"
GROUPS = ("first", "test", "train")  # the order views first need them: "first", what the first screen shows
# an evaluation set's photos (bundle.layout.set_split): their own group, after the others, one set's per shard
MAX_SHARD_PHOTOS = 4000  # and about 32 MB: a handful of shards at Food-101's size, each one quick download
MAX_SHARD_BYTES = 32 << 20

Key = tuple[str, str]  # (split, id)
THUMB_SIZE = 128


def member(split: str, image_id: str) -> str:
    return f"{split}/{image_id}.jpg"


def pack(
    photos: dict[Key, bytes], group_of: Callable[[Key], str], index: pd.DataFrame | None = None
) -> dict[str, bytes]:
    """New shards for the photos not in `index` yet, and the index over all: {bundle path: bytes}.

    `index` (split, id, shard) is that of a bundle the photos are added to; its shards are kept as they are and
    new ones are numbered after them, so adding photos never rewrites a shard.
    """
    index = index if index is not None else pd.DataFrame(columns=["split", "id", "shard"])
    have = set(zip(index["split"], index["id"]))
    new = sorted((k for k in photos if k not in have), key=lambda k: (group_order(group_of(k)), group_of(k), k))
    used = set(index["shard"])
    files: dict[str, bytes] = {}
    rows: list[dict] = []
    batch: list[Key] = []

    def flush(group: str) -> None:
        name = SHARD.format(group=group, n=sum(u.startswith(f"photos/{group}-") for u in used))
        used.add(name)
        files[name] = _zip({member(*k): photos[k] for k in batch})
        rows.extend({"split": k[0], "id": k[1], "shard": name} for k in batch)
        batch.clear()

    size = 0
    for key in new:
        group = group_of(key)
        if batch and (group != group_of(batch[-1]) or len(batch) >= MAX_SHARD_PHOTOS or size >= MAX_SHARD_BYTES):
            flush(group_of(batch[-1]))
            size = 0
        batch.append(key)
        size += len(photos[key])
    if batch:
        flush(group_of(batch[-1]))
    table = pd.concat([index, pd.DataFrame(rows, columns=["split", "id", "shard"])], ignore_index=True)
    files[INDEX] = table.to_csv(index=False).encode()
    return files


def thumbnail_jpeg(data: bytes, size: int = THUMB_SIZE, quality: int = 85) -> bytes:
    """A small JPEG (longer side <= size), upright and RGB, from any image PIL reads."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality, optimize=True)
        return out.getvalue()


def group_order(group: str) -> int:
    """Where a group's shards go: GROUPS in their order, then any other (a set's photos)."""
    return GROUPS.index(group) if group in GROUPS else len(GROUPS)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)  # fixed date: same bytes
    return buf.getvalue()


def file_name_of(image_id: str, split: str = "test") -> str:
    """A photo's file name in the cache: a hash of its id, so that no id can point outside the cache (a set's photo:
    of its split and id, so that a set photo named as a test photo is still its own)."""
    key = image_id if split in GROUPS else f"{split}/{image_id}"
    return hashlib.sha1(key.encode()).hexdigest()[:20]


class PhotoStore:
    """Random access to a bundle's photos. `fetch(bundle path) -> local Path` brings a shard on first use (from the
    Hub, for a bundle opened by repo id); each photo is extracted once into `cache`, whose files the app serves."""

    def __init__(self, index: pd.DataFrame, fetch: Callable[[str], Path], cache: Path):
        self._where = {(str(s), str(i)): str(sh) for s, i, sh in zip(index["split"], index["id"], index["shard"])}
        self._fetch, self.cache = fetch, cache
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._lock = threading.Lock()
        self._by_name: dict[str, Key] | None = None

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: Key) -> bool:
        return key in self._where

    def find(self, file_name: str) -> Key | None:
        """The (split, id) of a photo from the name of its file (`path` names each file by a hash of its id): how a
        gallery's clicked thumbnail, which Gradio hands back as a file, is known again. Test first, should one id be
        kept in both splits."""
        with self._lock:
            if self._by_name is None:
                self._by_name = {}
                for split, image_id in sorted(self._where, key=lambda k: k[0] != "test", reverse=True):
                    self._by_name[file_name_of(image_id, split)] = (split, image_id)
        return self._by_name.get(Path(file_name).stem)

    def shards(self) -> set[str]:
        return set(self._where.values())

    def on_first_screen(self, split: str, image_id: str) -> bool:
        """Whether the photo is packed with those the first screen shows (no other shard is fetched for it)."""
        return self._where.get((split, image_id), "").startswith("photos/first-")

    def read(self, split: str, image_id: str) -> bytes | None:
        shard = self._where.get((split, image_id))
        if shard is None:
            return None
        with self._lock:
            if shard not in self._zips:
                self._zips[shard] = zipfile.ZipFile(self._fetch(shard))
            return self._zips[shard].read(member(split, image_id))

    def path(self, split: str, image_id: str) -> Path | None:
        """The photo as a file (extracted on first use; a hashed name, so no id can point outside the cache)."""
        if (split, image_id) not in self._where:
            return None
        target = self.cache / split / f"{file_name_of(image_id, split)}.jpg"
        if not target.is_file():
            data = self.read(split, image_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{threading.get_ident()}")
            tmp.write_bytes(data)
            tmp.replace(target)
        return target
