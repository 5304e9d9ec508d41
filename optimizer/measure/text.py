"""A measurement (and an off-policy estimate) told in words, as `offeropt measure` prints it."""

from __future__ import annotations

from optimizer.measure.measurement import Figure, Measurement
from optimizer.measure.off_policy import OffPolicyEstimate

MOST_GROUPS = 15


def money(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def interval(f: Figure, fmt: str = "money", digits: int = 0) -> str:
    show = pct if fmt == "pct" else (lambda x: money(x, digits))
    return "no interval" if f.lo is None else f"95% interval {show(f.lo)} to {show(f.hi)}"


def headline(m: Measurement) -> str:
    """One sentence: incremental margin per view against the plan's expectation."""
    cur = f" {m.currency}" if m.currency else ""
    ratio = m.realized_over_expected
    against = "" if ratio is None else f", {100 * ratio:.0f}% of the {money(m.expected_incremental_margin)}" \
        f"{cur} the plan expected for these views"
    return (f"The plan earned {money(m.incremental_margin.value)}{cur} of incremental margin "
            f"against the holdout ({money(m.incremental_margin_per_view.value, 1)}{cur} per "
            f"served view){against}.")


def summary(m: Measurement, estimate: OffPolicyEstimate | None = None) -> str:
    cur = f" {m.currency}" if m.currency else ""
    version = "" if m.version is None else f" version {m.version}"
    unlogged = m.baseline.get("unlogged_views", 0.0)
    lines = [
        f"Plan for {m.instance!r}{version}: {money(m.views)} served views "
        f"({money(unlogged)} of them estimated views of empty offer sets) and "
        f"{money(m.holdout_views)} holdout views in the logs.",
        "  " + headline(m),
        f"  Incremental margin in all: {money(m.incremental_margin.value)}{cur} "
        f"({interval(m.incremental_margin)}); per served view "
        f"{money(m.incremental_margin_per_view.value, 2)}{cur} "
        f"({interval(m.incremental_margin_per_view, digits=2)}).",
        f"  Offers were taken {money(m.takes)} times in {money(m.impressions)} impressions: "
        f"take rate {pct(m.take_rate.value)} ({interval(m.take_rate, 'pct')}); attach rate "
        f"{pct(m.attach_rate.value)} of served views ({interval(m.attach_rate, 'pct')}). The plan "
        f"expected {money(m.expected_takes)} takes.",
        f"  AOV increment: {money(m.aov_increment.value, 2)}{cur} of revenue per served view over "
        f"the holdout ({interval(m.aov_increment, digits=2)}).",
        _roi_line(m, cur),
    ]
    lines += _group_lines(m, cur)
    if estimate is not None:
        lines += off_policy_lines(estimate, cur)
    lines += [f"warning: {w}" for w in m.warnings]
    return "\n".join(lines)


def _roi_line(m: Measurement, cur: str) -> str:
    spend = m.promotion_spend + m.contact_cost
    if m.roi.value is None:
        return f"  Promotion ROI: n/a (no promotion spend or contact cost; {money(spend)}{cur})."
    unit = cur.strip() or "unit"
    return (f"  Promotion ROI: {m.roi.value:,.2f} ({interval(m.roi, digits=2)}): each {unit} "
            f"of discounts, perks and contact cost ({money(spend)}{cur} in all) returned "
            f"{m.roi.value:,.2f} of incremental margin.")


def _group_lines(m: Measurement, cur: str) -> list[str]:
    g = m.groups
    if not len(g):
        return []
    lines = [f"Per {m.group_by} (incremental margin per served view, realized against the "
             f"plan's expectation{cur and ', ' + cur.strip()}):"]
    ranked = g.sort_values("views", ascending=False, kind="stable").head(MOST_GROUPS)
    for r in ranked.itertuples():
        ratio = "" if r.realized_over_expected != r.realized_over_expected else \
            f"  ({100 * r.realized_over_expected:.0f}% of expected)"
        lines.append(f"  {r.group!s:<24}{money(r.incremental_margin_per_view, 2):>12} "
                     f"[{money(r.incremental_margin_per_view_lo, 2)}, "
                     f"{money(r.incremental_margin_per_view_hi, 2)}]  expected "
                     f"{money(r.expected_per_view, 2)}{ratio}; take rate {pct(r.take_rate)}")
    if len(g) > MOST_GROUPS:
        lines.append(f"  ... and {len(g) - MOST_GROUPS} more groups (--json lists them all)")
    return lines


def off_policy_lines(e: OffPolicyEstimate, cur: str = "") -> list[str]:
    lines = [f"Off-policy estimates of {e.target} from the same logs (per view, "
             f"{100 * e.holdout:.0f}% held out; {money(e.views)} views):"]
    names = {"on_policy": "logged policy (realized)", "dm": "direct method (model)",
             "ips": "inverse propensity (IPS)", "snips": "self-normalized IPS",
             "dr": "doubly robust (DR)"}
    for key, label in names.items():
        f: Figure = getattr(e, key)
        lines.append(f"  {label:<28}{money(f.value, 2):>12}{cur}  ({interval(f, digits=2)})")
    lines.append(f"  the target plan's own expectation: {money(e.expected_per_view, 2)}{cur} per "
                 f"view; effective views of IPS {money(e.effective_views)}")
    lines += [f"warning: {w}" for w in e.warnings]
    return lines
