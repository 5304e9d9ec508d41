"""A measurement as one self-contained HTML page, in the nightly report's style: tables and
inline SVG plots drawn by matplotlib (no scripts, fonts or images fetched when it opens).

Plots are drawn on `matplotlib.figure.Figure` objects, never through pyplot, so writing a
report changes no global state of the process (its backend, its open figures).
"""

from __future__ import annotations

import html
import io
from typing import Any

import numpy as np
import pandas as pd

from optimizer.measure.measurement import Figure, Measurement
from optimizer.measure.off_policy import ESTIMATORS, OffPolicyEstimate
from optimizer.measure.text import headline, money, pct

MOST_PLOTTED = 15
MOST_LISTED = 100  # group rows in the table; the JSON lists them all
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{padding:.25rem .75rem;
border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}
figure{margin:0 0 1.5rem}.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(28rem,1fr));
gap:1rem}figure svg{width:100%;height:auto}.warn{color:#9a6700}.note{color:#57606a}
"""
RC: Any = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False}
LABELS = {"on_policy": "logged policy", "dm": "DM", "ips": "IPS", "snips": "SNIPS", "dr": "DR"}


def measurement_html(m: Measurement, off_policy: OffPolicyEstimate | None = None,
                     title: str | None = None) -> str:
    version = "" if m.version is None else f" version {m.version}"
    title = title or f"offeropt measurement: {m.instance}{version}"
    parts = [f"<h1>{_e(title)}</h1>", f"<p>{_e(headline(m))}</p>",
             "<h2>Figures</h2>", _figure_table(m),
             "<h2>Plots</h2><div class='plots'>", _plots(m, off_policy), "</div>",
             f"<h2>Per {_e(m.group_by)}</h2>", _group_table(m)]
    if off_policy is not None:
        parts += [f"<h2>Off-policy estimates of {_e(off_policy.target)}</h2>",
                  _off_policy_table(off_policy)]
    notes = [*m.warnings, *(off_policy.warnings if off_policy else ())]
    parts += [f"<p class='warn'>warning: {_e(w)}</p>" for w in notes]
    parts.append("<p class='note'>Definitions, units and intervals: docs/measurement.md. "
                 "Intervals are 95%; money is in the instance's currency; per view means per "
                 "served (non-holdout) view.</p>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def _e(x: object) -> str:
    return html.escape(str(x))


def _range(f: Figure, show: Any) -> str:
    return "&mdash;" if f.lo is None else f"{show(f.lo)} to {show(f.hi)}"


def _figure_table(m: Measurement) -> str:
    def two(x: float | None) -> str:
        return money(x, 2)

    rows = [("incremental margin", money(m.incremental_margin.value),
             _range(m.incremental_margin, money), money(m.expected_incremental_margin)),
            ("incremental margin per served view", two(m.incremental_margin_per_view.value),
             _range(m.incremental_margin_per_view, two),
             two(m.expected_incremental_margin / m.views if m.views else None)),
            ("take rate", pct(m.take_rate.value), _range(m.take_rate, pct), ""),
            ("attach rate", pct(m.attach_rate.value), _range(m.attach_rate, pct),
             pct(m.expected_takes / m.views if m.views else None)),
            ("AOV increment (revenue per served view)", two(m.aov_increment.value),
             _range(m.aov_increment, two), ""),
            ("promotion ROI", two(m.roi.value), _range(m.roi, two), ""),
            ("takes", money(m.takes), "", money(m.expected_takes)),
            ("offer impressions", money(m.impressions), "", ""),
            ("served views / holdout views", f"{money(m.views)} / {money(m.holdout_views)}", "", ""),
            ("promotion spend / contact cost",
             f"{money(m.promotion_spend)} / {money(m.contact_cost)}", "", "")]
    body = "".join(f"<tr><td>{_e(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>"
                   for a, b, c, d in rows)
    return ("<table id='figures'><thead><tr><th>Figure</th><th>Realized</th><th>95% interval</th>"
            f"<th>Plan expected</th></tr></thead><tbody>{body}</tbody></table>")


def _group_table(m: Measurement) -> str:
    def cell(x: Any, fmt: Any = money) -> str:
        return "&mdash;" if x is None or (isinstance(x, float) and x != x) else fmt(x)

    listed = m.groups
    if len(listed) > MOST_LISTED:
        listed = listed.sort_values("views", ascending=False, kind="stable").head(MOST_LISTED)
    body = "".join(
        f"<tr><td>{_e(r.group)}</td><td>{money(r.views)}</td><td>{money(r.holdout_views)}</td>"
        f"<td>{cell(r.take_rate, pct)}</td><td>{cell(r.attach_rate, pct)}</td>"
        f"<td>{cell(r.incremental_margin_per_view, lambda x: money(x, 2))}</td>"
        f"<td>{cell(r.incremental_margin_per_view_lo, lambda x: money(x, 2))} to "
        f"{cell(r.incremental_margin_per_view_hi, lambda x: money(x, 2))}</td>"
        f"<td>{cell(r.expected_per_view, lambda x: money(x, 2))}</td>"
        f"<td>{cell(r.realized_over_expected, lambda x: f'{100 * x:.0f}%')}</td>"
        f"<td>{cell(r.roi, lambda x: money(x, 2))}</td></tr>" for r in listed.itertuples())
    more = len(m.groups) - len(listed)
    note = f"<p class='note'>{more:,} more groups, with fewer views: the JSON lists them all.</p>" \
        if more > 0 else ""
    return note + ("<table id='groups'><thead><tr><th>Group</th><th>Served views</th><th>Holdout views</th>"
            "<th>Take rate</th><th>Attach rate</th><th>Margin per view</th><th>95% interval</th>"
            "<th>Expected per view</th><th>Realized / expected</th><th>ROI</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _off_policy_table(e: OffPolicyEstimate) -> str:
    def two(x: float | None) -> str:
        return money(x, 2)

    body = "".join(f"<tr><td>{LABELS[k]}</td><td>{two(getattr(e, k).value)}</td>"
                   f"<td>{_range(getattr(e, k), two)}</td></tr>" for k in ESTIMATORS)
    return ("<table id='off-policy'><thead><tr><th>Estimator</th><th>Value per view</th>"
            f"<th>95% interval</th></tr></thead><tbody>{body}</tbody></table>"
            f"<p>The plan's own expectation on these views: {two(e.expected_per_view)} per view; "
            f"{100 * e.holdout:.0f}% held out; {money(e.views)} views, of which IPS effectively "
            f"rests on {money(e.effective_views)}; {pct(e.unsupported_share)} of the target's "
            "probability on offer sets never logged.</p>")


def _plots(m: Measurement, e: OffPolicyEstimate | None) -> str:
    top = m.groups.sort_values("views", ascending=False, kind="stable").head(MOST_PLOTTED)
    figures = [("plot-margin", f"Incremental margin per served view, per {m.group_by}: realized "
                "(95% interval) against the plan's expectation", _margin_plot(top)),
               ("plot-take-rate", f"Take rate per {m.group_by} (95% interval)", _take_plot(top))]
    if e is not None:
        figures.append(("plot-off-policy", f"Value per view of {e.target}, by estimator "
                        "(95% interval)", _off_policy_plot(e)))
    return "".join(f"<figure class='plot' id='{fid}'>{svg}<figcaption>{_e(caption)}"
                   "</figcaption></figure>" for fid, caption, svg in figures)


def _new(height: float = 3.0) -> Any:
    from matplotlib import rc_context
    from matplotlib.figure import Figure as Canvas

    with rc_context(RC):
        fig = Canvas(figsize=(6, height))
        ax = fig.subplots()
    return fig, ax


def _svg(fig: Any) -> str:
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context(RC):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _margin_plot(g: pd.DataFrame) -> str:
    fig, ax = _new(max(2.5, 0.35 * len(g) + 1))
    y = np.arange(len(g))
    value = g["incremental_margin_per_view"].to_numpy(np.float64)
    err = np.vstack([value - g["incremental_margin_per_view_lo"].to_numpy(np.float64),
                     g["incremental_margin_per_view_hi"].to_numpy(np.float64) - value])
    ax.barh(y, value, xerr=np.nan_to_num(err), color="#0969da", ecolor="#444", capsize=3,
            label="realized")
    ax.scatter(g["expected_per_view"], y, marker="D", color="#bf8700", zorder=3, label="expected")
    ax.set_yticks(y, [str(x) for x in g["group"]])
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("incremental margin per served view")
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2)
    return _svg(fig)


def _take_plot(g: pd.DataFrame) -> str:
    fig, ax = _new(max(2.5, 0.35 * len(g) + 1))
    y = np.arange(len(g))
    rate = 100 * g["take_rate"].to_numpy(np.float64)
    err = np.vstack([rate - 100 * g["take_rate_lo"].to_numpy(np.float64),
                     100 * g["take_rate_hi"].to_numpy(np.float64) - rate])
    ax.barh(y, rate, xerr=np.nan_to_num(err), color="#1a7f37", ecolor="#444", capsize=3)
    ax.set_yticks(y, [str(x) for x in g["group"]])
    ax.invert_yaxis()
    ax.set_xlabel("takes per offer impression (%)")
    return _svg(fig)


def _off_policy_plot(e: OffPolicyEstimate) -> str:
    fig, ax = _new()
    figures = [getattr(e, k) for k in ESTIMATORS]
    value = np.array([f.value if f.value is not None else np.nan for f in figures])
    err = np.array([0.0 if f.lo is None or f.value is None else f.value - f.lo for f in figures])
    y = np.arange(len(figures))
    ax.errorbar(value, y, xerr=err, fmt="o", color="#0969da", ecolor="#444", capsize=3)
    ax.axvline(e.expected_per_view, color="#bf8700", linestyle="--", label="plan's expectation")
    ax.set_yticks(y, [LABELS[k] for k in ESTIMATORS])
    ax.invert_yaxis()
    ax.set_xlabel("incremental margin per view")
    ax.legend(frameon=False)
    return _svg(fig)
