"""Two runs compared: the per-class F1 change chart (the numbers are `food101_core.compare`'s)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def f1_change_figure(per_class: pd.DataFrame, name_a: str, name_b: str) -> go.Figure:
    """Per-class F1 of run B minus run A, sorted: green where B is better, red where it is worse (named in the key)."""
    df = per_class.sort_values("change", kind="stable")
    fig = go.Figure()
    for better, colour, words in ((True, "#2ca02c", f"{name_b} better"), (False, "#d62728", f"{name_a} better")):
        part = df[(df["change"] >= 0) == better]
        fig.add_trace(
            go.Bar(
                x=part["change"],
                y=part["class"],
                orientation="h",
                marker_color=colour,
                name=words,
                customdata=part[["f1_a", "f1_b"]].to_numpy(),
                hovertemplate="%{y}: F1 %{customdata[0]:.3f} → %{customdata[1]:.3f} (%{x:+.3f})<extra></extra>",
            )
        )
    fig.update_layout(
        height=min(2400, 160 + 22 * len(df)),
        xaxis={"title": f"F1 change, {name_b} − {name_a}", "zeroline": True},
        yaxis={"categoryorder": "array", "categoryarray": list(df["class"])},
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        title={"text": f"Per-class F1 change ({name_b} − {name_a}), sorted", "font": {"size": 14}},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    )
    return fig
