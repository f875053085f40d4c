"""The failure slices in words and numbers: the table the Slices tab lists, and one slice's photos."""

from __future__ import annotations

import pandas as pd

from ..bundle import Bundle, BundleError
from ..slicing import slice_mask

NO_SLICES = (
    "This bundle has no failure slices: it was evaluated before they existed. Re-evaluate it where the data set is "
    "at hand: `python -m food101_core.training.evaluate RUN [--data PATH]`."
)
API_FIELDS = ("name", "conditions", "n", "accuracy", "overall", "p_value")


def found(b: Bundle) -> dict:
    """The shipped stage's slices as the bundle keeps them, or a clear error naming how to add them."""
    s = b.slices(b.stages[-1])
    if s is None:
        raise BundleError(NO_SLICES)
    return s


def api_rows(b: Bundle) -> list[dict]:
    """`/slices`: [{name, conditions, n, accuracy, overall, p_value}] of the shipped stage, most significant first."""
    return [{k: s[k] for k in API_FIELDS} for s in found(b)["slices"]]


def slices_table(b: Bundle) -> pd.DataFrame:
    """One row a slice, as the tab lists it."""
    rows = found(b)["slices"]
    return pd.DataFrame({
        "slice": [s["name"] for s in rows],
        "photos": [s["n"] for s in rows],
        "top-1 in it": [f"{s['accuracy']:.0%}" for s in rows],
        "elsewhere": [f"{s.get('rest_accuracy', s['overall']):.0%}" for s in rows],
        "p (corrected)": [f"{s['p_value']:.1e}" for s in rows],
        "defined by": ["; ".join(c["text"] for c in s["conditions"]) for s in rows],
    })  # fmt: skip


def summary_line(b: Bundle) -> str:
    s = found(b)
    n, tested = len(s["slices"]), s.get("tested", 0)
    if not n:
        return (
            f"No group of photos is clearly worse than the rest: none of the {tested:,} groups of one or two "
            "conditions tried passes the corrected test."
        )
    overall, test, correction = s["slices"][0]["overall"], s.get("test", "a one-sided test"), s.get("correction")
    return (
        f"**{n}** group{'s' if n != 1 else ''} of photos where the final model is clearly less often right than "
        f"its **{overall:.0%}** overall: {test} against the other photos, corrected ({correction}) for the "
        f"**{tested:,}** groups of one or two conditions tried, each of at least {s.get('min_size')} photos. "
        "Click one to see its photos."
    )


def slice_gallery(b: Bundle, number: int, limit: int) -> tuple[list[tuple[str, str]], str]:
    """A slice's photos that the bundle has pictures of (mistakes first, most confident first) and a line."""
    s = found(b)["slices"][number]
    props = b.properties()
    if props is None:
        raise BundleError(NO_SLICES)
    p = b.evaluation(b.stages[-1]).predictions
    members = p[slice_mask(props, s["conditions"])]
    members = members.sort_values(["correct", "confidence"], ascending=[True, False], kind="stable")
    shown = [r for r in members.itertuples() if b.has_thumb(r.index)][:limit]
    items = [(str(b.thumb(r.index)), f"{b.name_of[r.true]} → {b.name_of[r.pred]} {'✓' if r.correct else '✗'}")
             for r in shown]  # fmt: skip
    line = (
        f"**{s['name']}**: {len(members):,} photos, **{members['correct'].mean():.0%}** right against "
        f"{s.get('rest_accuracy', s['overall']):.0%} for the other photos ({s['overall']:.0%} overall; "
        f"p = {s['p_value']:.1e}, corrected). {len(shown)} with pictures in the bundle shown, mistakes first."
    )
    return items, line
