"""The failure slices in words and numbers: the table the Slices tab lists, and one slice's photos."""

from __future__ import annotations

import pandas as pd

from ..bundle import Bundle, BundleError
from ..slicing import slice_mask

NO_SLICES = (
    "This saved run (its bundle: the folder of files the app reads) has no failure slices, the groups of photos "
    "the model does worse on: it was evaluated before they existed. To add them, evaluate it again where the data "
    "set is at hand: `python -m food101_core.training.evaluate RUN [--data PATH]`."
)
API_FIELDS = ("name", "conditions", "n", "accuracy", "overall", "p_value")


def found(b: Bundle, source: str | None = None) -> dict:
    """The slices of the shipped stage (or of a set) as the bundle keeps them, or a clear error naming how to add
    them."""
    s = b.slices(source if b.is_set(source) else b.final_stage)
    if s is None:
        raise BundleError(NO_SLICES)
    return s


def api_rows(b: Bundle, source: str | None = None) -> list[dict]:
    """`/slices`: [{name, conditions, n, accuracy, overall, p_value}] of the shipped stage, most significant first."""
    return [{k: s[k] for k in API_FIELDS} for s in found(b, source)["slices"]]


def slices_table(b: Bundle, source: str | None = None) -> pd.DataFrame:
    """One row a slice, as the tab lists it."""
    rows = found(b, source)["slices"]
    return pd.DataFrame({
        "slice": [s["name"] for s in rows],
        "photos": [s["n"] for s in rows],
        "top-1 in it": [f"{s['accuracy']:.0%}" for s in rows],
        "elsewhere": [f"{s.get('rest_accuracy', s['overall']):.0%}" for s in rows],
        "p (corrected)": [f"{s['p_value']:.1e}" for s in rows],
        "defined by": ["; ".join(c["text"] for c in s["conditions"]) for s in rows],
    })  # fmt: skip


def summary_line(b: Bundle, source: str | None = None) -> str:
    """How many groups are clearly worse, and why "clearly": the test and its correction in plain words."""
    s = found(b, source)
    n, tested = len(s["slices"]), s.get("tested", 0)
    if not n:
        return (
            f"No group of photos is clearly worse than the rest. {tested:,} groups of one or two conditions were "
            "tried; none passes the test, made strict because so many were tried."
        )
    overall = s["slices"][0]["overall"]
    return (
        f"**{n}** group{'s' if n != 1 else ''} of photos where the final model is clearly less often right than "
        f"its **{overall:.0%}** overall. Each group is defined by one or two conditions and holds at least "
        f"{s.get('min_size')} photos; **{tested:,}** were tried. With so many tries a gap can turn up by luck, "
        f"so each group passed a strict test: {significance_words(s)}. Click one to see its photos."
    )


def significance_words(s: dict) -> str:
    """The slices' test and its correction, named for a reader who knows them and said plainly for one who doesn't."""
    test, correction, tested = s.get("test", "one-sided"), s.get("correction"), s.get("tested", 0)
    fix = (
        f"Bonferroni-corrected for the {tested:,} tries (its p-value multiplied by {tested:,})"
        if correction == "bonferroni"
        else f"corrected ({correction}) for the {tested:,} tries"
    )
    return (
        f"a {test} test against the other photos (how likely so few right answers would be by luck alone), {fix}. "
        "The table's p is that corrected chance: the smaller, the surer"
    )


def slice_gallery(b: Bundle, number: int, limit: int, source: str | None = None) -> tuple[list[tuple[str, str]], str]:
    """A slice's photos that the bundle has pictures of (mistakes first, most confident first) and a line."""
    source = source if b.is_set(source) else b.final_stage
    s = found(b, source)["slices"][number]
    props = b.properties(source)
    if props is None:
        raise BundleError(NO_SLICES)
    p = b.evaluation(source).predictions
    members = p[slice_mask(props, s["conditions"])]
    members = members.sort_values(["correct", "confidence"], ascending=[True, False], kind="stable")
    shown = [r for r in members.itertuples() if b.has_source_photo(source, r.index)][:limit]
    items = [(str(b.source_photo(source, r.index)),
              f"{b.name_of[r.true]} → {b.name_of[r.pred]} {'✓' if r.correct else '✗'}") for r in shown]  # fmt: skip
    line = (
        f"**{s['name']}**: {len(members):,} photos, **{members['correct'].mean():.0%}** right against "
        f"{s.get('rest_accuracy', s['overall']):.0%} for the other photos ({s['overall']:.0%} overall; "
        f"p = {s['p_value']:.1e}, the corrected chance of this by luck). Shown: {len(shown)} with a picture kept, "
        "mistakes first."
    )
    return items, line
