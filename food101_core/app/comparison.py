"""Two runs compared: the per-class F1 change chart (the numbers are `food101_core.compare`'s)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def f1_change_figure(per_class: pd.DataFrame, name_a: str, name_b: str) -> go.Figure:
    """Per-class F1 of run B minus run A, sorted: green where B is better, red where it is worse."""
    df = per_class.sort_values("change", kind="stable")
    fig = go.Figure(
        go.Bar(
            x=df["change"],
            y=df["class"],
            orientation="h",
            marker_color=np.where(df["change"] >= 0, "#2ca02c", "#d62728"),
            customdata=df[["f1_a", "f1_b"]].to_numpy(),
            hovertemplate="%{y}: F1 %{customdata[0]:.3f} → %{customdata[1]:.3f} (%{x:+.3f})<extra></extra>",
        )
    )
    fig.update_layout(
        height=min(2400, 120 + 22 * len(df)),
        xaxis={"title": f"F1 change, {name_b} − {name_a}", "zeroline": True},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Per-class F1 change (B − A), sorted",
    )
    return fig
