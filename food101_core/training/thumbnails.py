"""The bundle's thumbnails: which test photos get one, and small upright JPEGs of them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..metrics import first_screen_photos, most_confident_mistakes
from ..photos import THUMB_SIZE, thumbnail_jpeg

if TYPE_CHECKING:
    from ..metrics import Evaluation
    from .data import Split


def thumbnail_indices(
    evals: dict[str, Evaluation], mistakes_per_class: int, right_per_class: int
) -> tuple[list[int], set[int]]:
    """The test photos the bundle keeps a thumbnail of, and those of them the first screen shows.

    Kept: each stage's `mistakes_per_class` most confident mistakes of every true dish (the Mistakes gallery shows
    the most confident first) and the first `right_per_class` photos of each dish the last stage gets right;
    bounded by classes x (stages x mistakes_per_class + right_per_class), whatever the test split's size. The
    first screen (Predict's examples) picks among the right ones and the last stage's most confident mistake of
    each dish, which are packed first so that a Space fetches only them before it answers.
    """
    keep: set[int] = set()
    for ev in evals.values():
        keep |= set(most_confident_mistakes(ev.predictions, per_class=mistakes_per_class)["index"].astype(int))
    first = first_screen_photos(list(evals.values())[-1].predictions, right_per_class)
    return sorted(keep | first), first


def make_thumbnails(split: Split, indices: list[int], size: int = THUMB_SIZE, quality: int = 85) -> dict[int, bytes]:
    """Thumbnails of a split's images at `indices`, read from files or from the TFDS split."""
    from tqdm.auto import tqdm

    wanted = set(indices)
    out: dict[int, bytes] = {}
    for i, data in tqdm(split.photo_bytes(wanted), total=len(wanted), desc="thumbnails", leave=False):
        try:
            out[i] = thumbnail_jpeg(data, size, quality)
        except Exception as e:  # one bad image must not lose the bundle
            logging.getLogger(__name__).warning("no thumbnail for image %d: %s", i, e)
    return out
