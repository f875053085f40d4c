"""A failure slice's photos: the conditions `slice_finder.py` finds, applied to the bundle's per-photo properties.

The floor's part of the slices, so that the app shows a slice's photos without the finder's libraries (sliceline,
scipy, scikit-learn). A condition is a JSON-safe dict: {"column", "low", "high", "text"} (a numeric bin, low
exclusive, high inclusive, either None for open) or {"column", "value", "text"}.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def condition_mask(table: pd.DataFrame, condition: dict[str, Any]) -> np.ndarray:
    """The photos meeting one condition (a level of `numeric_levels` or `categorical_levels`)."""
    values = table[condition["column"]]
    if "value" in condition:
        return (values == condition["value"]).to_numpy(bool)
    x = values.to_numpy(float)
    low = -math.inf if condition.get("low") is None else condition["low"]
    high = math.inf if condition.get("high") is None else condition["high"]
    return (x > low) & (x <= high)


def slice_mask(table: pd.DataFrame, conditions: list[dict[str, Any]]) -> np.ndarray:
    """The photos of a slice (every condition met): what the app shows for a row of `find_slices`."""
    mask = np.ones(len(table), bool)
    for condition in conditions:
        mask &= condition_mask(table, condition)
    return mask
