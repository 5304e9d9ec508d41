"""The frontier as a plot: incremental margin (and its proven bound) against the limit, as
one self-contained SVG (matplotlib's `Figure`, never pyplot: safe in any thread)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from optimizer.frontier.frontier import Frontier, number_text

RC: Any = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                      "axes.spines.right": False, "svg.hashsalt": "offeropt"}


def frontier_svg(f: Frontier) -> str:
    """The curve: objective per value (dots where the check passed, crosses where it did
    not), the proven bound dashed above it, and where the limit stops costing money."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    solved = [p for p in f.points if p.objective is not None]
    with rc_context(RC):
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.subplots()
        x = np.array([p.value for p in solved], dtype=np.float64)
        y = np.array([p.objective for p in solved], dtype=np.float64)
        ax.plot(x, y, color="#0969da", linewidth=1.6, label="incremental margin")
        ok = np.array([p.checked for p in solved], dtype=bool)
        ax.scatter(x[ok], y[ok], color="#0969da", zorder=3, s=18)
        if (~ok).any():
            ax.scatter(x[~ok], y[~ok], color="#cf222e", marker="x", zorder=3, s=30,
                       label="failed the check")
        bounded = [p for p in solved if p.bound is not None]
        if bounded:
            ax.plot([p.value for p in bounded], [float(p.bound or 0.0) for p in bounded],
                    color="#57606a",
                    linestyle="--", linewidth=1.0, label="proven bound")
        stop = f.stops_costing_at
        if stop is not None:
            ax.axvline(stop, color="#bf8700", linewidth=1.0, linestyle=":",
                       label=f"stops costing money at {number_text(stop, 4)}")
        for p in f.points:
            if p.objective is None:
                ax.axvline(p.value, color="#cf222e", linewidth=0.6, alpha=0.4)
        cur = f" ({f.currency})" if f.currency else ""
        ax.set_xlabel(f.vary)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
        ax.set_ylabel(f"expected incremental margin{cur}")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_title(f"{f.instance}: margin against {f.vary}", loc="left")
        if solved:
            ax.legend(loc="lower right", frameon=False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]
