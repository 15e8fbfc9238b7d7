"""matplotlib Figure objects (no pyplot) rendered to inline SVG strings, with scoped rcParams.

Every function takes plain DataFrames computed in analysis/ and returns an SVG string ('' when there
is nothing to plot). The user's global matplotlib state is never touched.
"""

from __future__ import annotations

import io
import re

import matplotlib
import pandas as pd
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

__all__ = ["timeline_svg", "barh_svg", "hooks_svg", "figure_to_svg"]

COLORS = {"accepted": "#2e7d32", "dropped": "#c62828", "invalid": "#ef6c00", "bar": "#37474f",
          "newly_blocked": "#c62828", "newly_allowed": "#2e7d32"}
_RC = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
       "axes.titlesize": 10, "figure.dpi": 100, "svg.hashsalt": "nfreplay"}


def figure_to_svg(fig: Figure) -> str:
    """The figure as an <svg> element (XML declaration and DOCTYPE stripped) for inline embedding."""
    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"^<svg\b", '<svg class="fig"', svg, count=1)


def timeline_svg(tl: pd.DataFrame) -> str:
    """Packets per time bin: accepted, dropped, INVALID."""
    if tl is None or len(tl) == 0:
        return ""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(8, 2.6))
        ax = fig.add_subplot()
        x = tl.index.tz_convert(None) if getattr(tl.index, "tz", None) is not None else tl.index
        for col in ("accepted", "dropped", "invalid"):
            if col in tl:
                ax.step(x, tl[col].to_numpy(), where="post", label=col if col != "invalid" else "INVALID",
                        color=COLORS[col], linewidth=1.4)
        ax.set_ylabel("packets per bin")
        ax.legend(loc="upper right", frameon=False, ncols=3)
        fig.autofmt_xdate()
        return figure_to_svg(fig)


def barh_svg(labels, values, title: str = "", color: str = COLORS["bar"], max_bars: int = 15) -> str:
    """Horizontal bar chart of the top values (largest at the top)."""
    labels = [str(x) for x in list(labels)[:max_bars]]
    values = list(values)[:max_bars]
    if not values:
        return ""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6, 0.3 * len(values) + 0.8))
        ax = fig.add_subplot()
        ax.barh(range(len(values))[::-1], values, color=color)
        ax.set_yticks(range(len(values))[::-1], labels)
        if title:
            ax.set_title(title, loc="left")
        ax.set_xlabel("packets")
        return figure_to_svg(fig)


def hooks_svg(vh: pd.DataFrame) -> str:
    """Packets traversing each hook, and those dropped/rejected there."""
    if vh is None or len(vh) == 0 or vh["traversed"].sum() == 0:
        return ""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6, 2.4))
        ax = fig.add_subplot()
        x = range(len(vh))
        ax.bar([i - 0.2 for i in x], vh["traversed"], width=0.4, label="traversed", color=COLORS["bar"])
        ax.bar([i + 0.2 for i in x], vh["dropped"] + vh["rejected"], width=0.4, label="dropped/rejected",
               color=COLORS["dropped"])
        ax.set_xticks(list(x), vh["hook"].tolist())
        ax.legend(frameon=False)
        return figure_to_svg(fig)
