"""Matching a set's labels to the model's dishes: "Apple Pie", "apple_pie" and "apple-pie" are one dish."""

from __future__ import annotations

import re


def normalise(label: str) -> str:
    """A label without case, spaces, underscores or hyphens: the key two spellings of one dish share."""
    return re.sub(r"[\s_\-]+", "", str(label)).casefold()


class LabelMatcher:
    """Finds the model's class id for a label given by class id or display name, in any of their spellings."""

    def __init__(self, class_ids: list[str], class_names: list[str]):
        self._by_key: dict[str, str] = {}
        for cid, name in zip(class_ids, class_names):
            self._by_key.setdefault(normalise(cid), cid)
            self._by_key.setdefault(normalise(name), cid)

    def __call__(self, label: str | None) -> str | None:
        """The class id, or None for a label the model does not know (or no label at all)."""
        if label is None or not str(label).strip():
            return None
        return self._by_key.get(normalise(label))
