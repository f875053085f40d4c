"""Predictions kept for photos asked again: the same file bytes and the same model give the same answer, so the app
answers a repeat (an example photo many visitors click, Grad-CAM ticked or another model chosen on the photo already
in the box) without decoding the photo or running the model again. Bounded by memory, least recently used first out.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import replace

from PIL import Image

from .predictor import Prediction

# about 120 answers of a 224 px EfficientNetB0 (a 4:3 photo decoded at 448 x 597 px, 0.8 MB; its 7 x 7 x 1280 map,
# 0.25 MB): the example photos and the photos visitors have in their boxes, a small share of a Space's memory
KEEP_MB = 128


def photo_key(model: str, data: bytes) -> tuple[str, str]:
    """What identifies an answer: the model and a digest of the photo's bytes (the file as sent, not its name)."""
    return model, hashlib.blake2b(data, digest_size=16).hexdigest()


def size_of(image: Image.Image, pred: Prediction) -> int:
    """The bytes an entry holds: the decoded photo and the prediction's arrays."""
    arrays = (pred.probs, pred.features, pred.feature_map, pred.raw_probs)
    return image.width * image.height * len(image.getbands()) + sum(a.nbytes for a in arrays if a is not None)


class KeptPredictions:
    """A thread-safe, memory-bounded LRU map from `photo_key` to (decoded photo, prediction)."""

    def __init__(self, max_mb: float = KEEP_MB) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.bytes = 0
        self.hits = 0  # answers given from here
        self._entries: OrderedDict[tuple[str, str], tuple[Image.Image, Prediction, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[Image.Image, Prediction] | None:
        """The photo and its prediction if kept (marked `kept`), else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        image, pred, _ = entry
        return image, replace(pred, kept=True)

    def put(self, key: tuple[str, str], image: Image.Image, pred: Prediction) -> None:
        """Keep an answer; the least recently used go until the rest fit (one larger than the whole budget is not
        kept)."""
        size = size_of(image, pred)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self.bytes += size - (old[2] if old else 0)
            self._entries[key] = (image, pred, size)
            while self.bytes > self.max_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)
