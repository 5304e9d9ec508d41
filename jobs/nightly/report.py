"""A nightly run report as one self-contained HTML page: tables and inline SVG plots.

Nothing is fetched when the page opens (no scripts, fonts or images from elsewhere), so it
can be mailed, archived or opened from a file share as it is.
"""

from __future__ import annotations

import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: draw to memory only
import matplotlib.pyplot as plt

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False})

PERCENT_KPIS = {"take_rate", "discounted_share", "avg_discount", "inventory_utilisation"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{padding:.25rem .75rem;
border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}
.pass{color:#1a7f37}.fail{color:#cf222e;font-weight:bold}.badge{padding:.2rem .6rem;
border-radius:.3rem;color:#fff}.published{background:#1a7f37}.kept_previous{background:#bf8700}
.failed{background:#cf222e}.dry_run{background:#57606a}figure{margin:0 0 1.5rem}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(28rem,1fr));gap:1rem}
figure svg{width:100%;height:auto}
#guardrails :is(td,th):last-child,#solver td:last-child{text-align:left}
"""


def render_html(report: dict[str, Any]) -> str:
    outcome = str(report.get("outcome", ""))
    title = f"offeropt nightly run {report.get('run_key', '')}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p><span class='badge {_e(outcome)}'>{_e(outcome.replace('_', ' '))}</span> "
        f"{_e(report.get('summary', ''))}</p>",
        _yesterday(report.get("yesterday")),
        "<h2>KPIs against yesterday</h2>", _kpi_table(report.get("kpis") or []),
        "<h2>Guardrails</h2>", _guardrail_table(report.get("guardrails") or []),
        _contacts(report.get("contacts")), _exploration(report.get("exploration")),
        "<h2>Plots</h2><div class='plots'>", _plots(report), "</div>",
        "<h2>Plan diff</h2>", _diff(report.get("diff") or {}),
        "<h2>Solver</h2>", _solver_table(report.get("solver") or {}),
    ]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def _yesterday(realized: dict[str, Any] | None) -> str:
    """The active plan's realized figures from the recorded logs, against its expectation."""
    if not realized:
        return ""
    head = f"<h2>Yesterday's plan (version {_e(realized['version'])}), realized</h2>"
    if "error" in realized:
        return f"{head}<p>Not measured: {_e(realized['error'])}</p>"
    m = realized["measurement"]
    rows = "".join(
        f"<tr><td>{label}</td><td>{_e(_figure(m.get(key)))}</td></tr>" for key, label in (
            ("take_rate", "take rate"), ("attach_rate", "attach rate"),
            ("incremental_margin", "incremental margin against the holdout"),
            ("incremental_margin_per_view", "per served view"),
            ("expected_incremental_margin", "the plan's expectation for these views"),
            ("roi", "promotion ROI")))
    return (f"{head}<p>{_e(realized['headline'])}</p><table><tr><th>measure</th><th>value "
            f"(95% interval)</th></tr>{rows}</table>")


def _exploration(x: dict[str, Any] | None) -> str:
    if not x:
        return ""
    return (f"<h2>Exploration</h2><p>{100 * x['share_explored']:.2f}% of the views of segments "
            f"with offers see other variants of {x['cells_explored']} cells in "
            f"{x['segments_explored']} segments (at most {100 * x['explore']:.4g}% asked), "
            f"expected to cost {x['cost']:,.0f} of incremental margin against the optimized "
            f"plan's {x['optimized_objective']:,.0f}.</p>")


def _figure(figure: Any) -> str:
    if isinstance(figure, dict):
        value, low, high = figure.get("value"), figure.get("lo"), figure.get("hi")
        if value is None:
            return "-"
        return f"{value:,.4g}" + ("" if low is None or high is None else
                                  f" ({low:,.4g} to {high:,.4g})")
    return "-" if figure is None else f"{figure:,.4g}"


def _e(x: object) -> str:
    return html.escape(str(x))


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "&mdash;"
    if key in PERCENT_KPIS:
        return f"{value:.2%}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}" if abs(value) < 1e4 else f"{value:,.0f}"


def _change(x: float | None) -> str:
    return "&mdash;" if x is None else f"{x:+.1%}"


def _kpi_table(rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{_e(r['label'])}</td><td>{_fmt(r['kpi'], r['yesterday'])}</td>"
        f"<td>{_fmt(r['kpi'], r['today'])}</td>"
        f"<td>{_change(r['change'])}</td></tr>" for r in rows)
    return ("<table id='kpi-table'><thead><tr><th>KPI</th><th>Yesterday</th><th>Today</th>"
            f"<th>Change</th></tr></thead><tbody>{body}</tbody></table>")


def _guardrail_table(rails: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{_e(g['name'])}</td><td class='{'pass' if g['passed'] else 'fail'}'>"
        f"{'pass' if g['passed'] else 'FAIL'}</td><td>{_e(g['detail'])}</td></tr>"
        for g in rails)
    return ("<table id='guardrails'><thead><tr><th>Guardrail</th><th>Result</th><th>Detail</th>"
            f"</tr></thead><tbody>{body}</tbody></table>")


def _contacts(contacts: dict[str, Any] | None) -> str:
    """Spec section 8: channels against capacity, audiences against their caps."""
    if not contacts:
        return ""
    channels = "".join(
        f"<tr><td>{_e(c['channel'])}</td><td>{c['impressions']:,.0f}</td>"
        f"<td>{_fmt('capacity', c['capacity'])}</td></tr>" for c in contacts["channels"])
    nearest = "".join(
        f"<tr><td>{_e(a['audience'])}</td><td>{a['offers_per_customer']:,.2f}</td>"
        f"<td>{a['cap']:,.2f}</td></tr>" for a in contacts["nearest_cap"])
    return (
        "<h2>Channels and audiences</h2><table id='channels'><thead><tr><th>Channel</th>"
        f"<th>Offer impressions</th><th>Capacity</th></tr></thead><tbody>{channels}</tbody>"
        f"</table><p>{contacts['at_cap']:,} of {contacts['capped']:,} capped audiences "
        f"({contacts['audiences']:,} in all) are at their frequency cap.</p>"
        "<table id='audiences'><thead><tr><th>Audience (nearest its cap)</th>"
        f"<th>Offers per customer</th><th>Cap</th></tr></thead><tbody>{nearest}</tbody></table>")


def _diff(diff: dict[str, Any]) -> str:
    if not diff:
        return "<p>No plan to compare.</p>"
    counts = "".join(f"<tr><td>{_e(k.replace('_', ' '))}</td><td>{diff[k]:,}</td></tr>"
                     for k in ("segments_changed", "offers_added", "offers_removed", "offers_kept"))
    movers = "".join(f"<tr><td>{_e(m['segment'])}</td><td>{m['before']:,.0f}</td>"
                     f"<td>{m['after']:,.0f}</td><td>{m['change']:+,.0f}</td></tr>"
                     for m in diff.get("biggest_movers", []))
    return (f"<table id='diff'><tbody>{counts}</tbody></table><h3>Biggest movers</h3>"
            "<table id='movers'><thead><tr><th>Segment</th><th>Margin before</th>"
            f"<th>Margin after</th><th>Change</th></tr></thead><tbody>{movers}</tbody></table>")


def _solver_table(solver: dict[str, Any]) -> str:
    rows = []
    for name, run in solver.items():
        if isinstance(run, dict):
            shown = ", ".join(f"{k} {_e(v if not isinstance(v, float) else f'{v:,.6g}')}"
                              for k, v in run.items() if not isinstance(v, dict | list))
            rows.append(f"<tr><td>{_e(name)}</td><td style='text-align:left'>{shown}</td></tr>")
    return f"<table id='solver'><tbody>{''.join(rows)}</tbody></table>"


def _plots(report: dict[str, Any]) -> str:
    figures = [("plot-kpis", "KPI change against yesterday", _kpi_plot(report.get("kpis") or [])),
               ("plot-movers", "Biggest movers (expected margin)",
                _movers_plot((report.get("diff") or {}).get("biggest_movers", []))),
               ("plot-inventory", "Inventory utilisation, most used items",
                _inventory_plot(report.get("inventory") or []))]
    return "".join(f"<figure class='plot' id='{fid}'>{svg}<figcaption>{_e(caption)}"
                   "</figcaption></figure>" for fid, caption, svg in figures)


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _kpi_plot(rows: list[dict[str, Any]]) -> str:
    shown = [r for r in rows if r["change"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [r["label"] for r in shown]
    change = [100 * r["change"] for r in shown]
    ax.barh(labels, change, color=["#1a7f37" if c >= 0 else "#cf222e" for c in change])
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_xlabel("change against yesterday (%)")
    ax.invert_yaxis()
    if not shown:
        ax.text(0.5, 0.5, "no plan yesterday", ha="center", transform=ax.transAxes)
    return _svg(fig)


def _movers_plot(movers: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh([m["segment"] for m in movers], [m["change"] for m in movers],
            color=["#1a7f37" if m["change"] >= 0 else "#cf222e" for m in movers])
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_xlabel("change in expected incremental margin")
    ax.invert_yaxis()
    return _svg(fig)


def _inventory_plot(items: list[dict[str, Any]], top: int = 15) -> str:
    ranked = sorted(items, key=lambda i: -max(i["today"] or 0, i["yesterday"] or 0))[:top]
    fig, ax = plt.subplots(figsize=(6, 3))
    x = range(len(ranked))
    ax.bar([i - 0.2 for i in x], [100 * (r["yesterday"] or 0) for r in ranked], 0.4,
           label="yesterday", color="#8c959f")
    ax.bar([i + 0.2 for i in x], [100 * (r["today"] or 0) for r in ranked], 0.4,
           label="today", color="#0969da")
    ax.set_xticks(list(x), [r["item"] for r in ranked], rotation=60, ha="right")
    ax.set_ylabel("stock used (%)")
    ax.legend(frameon=False)
    return _svg(fig)
