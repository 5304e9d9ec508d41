"""The human-readable summary `offeropt solve` prints: KPIs, top offers, binding rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from optimizer.model.families import row_name
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan

MAX_HELD_SHOWN = 5  # rows named in the exploration line; the plan lists more


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def summary(inst: Instance, plan: Plan, top: int = 3, segments: int = 12) -> str:
    """A plan, explained: status, KPIs against the policy, top offers, binding rows."""
    cur = f" {inst.currency}" if inst.currency else ""
    solver = plan.solver
    out = [f"{inst.name}: {plan.status}"]
    timing = (f"{solver['seconds']:.2f} s (build {solver['build_seconds']:.2f} s, solve "
              f"{solver['solve_seconds']:.2f} s) with {solver['backend']}")
    if plan.objective is None:
        out.append(f"  no plan; {timing}")
        diagnosis = plan.diagnosis
        if diagnosis is not None:
            out.append("Conflicting constraints (the least relaxation that would allow a plan):")
            out += [f"  - {_conflict_line(c)}" for c in diagnosis["conflicts"]]
            if not diagnosis["conflicts"]:
                out.append(f"  - {diagnosis['message']}")
        if plan.status == "time_limit":
            out.append("  the time limit passed before any feasible plan was found; "
                       "raise --time-limit")
        if plan.message:
            out.append(f"  {plan.message}")
        return "\n".join(out)
    bound = "none" if plan.bound is None else _money(plan.bound)
    gap = "n/a" if plan.gap is None else f"{100 * plan.gap:.4f}%"
    out.append(f"  expected incremental margin {_money(plan.objective)}{cur} "
               f"(bound {bound}, gap {gap}); {timing}")
    out += _split_lines(plan, cur)
    out += _exploration_lines(plan, cur)
    out += _kpi_lines(plan.kpis or {}, inst, cur)
    out += _offer_lines(plan.offers.frame(), inst, cur, top, segments)
    binding = plan.binding or ()
    if binding:
        out.append("Binding constraints")
        for b in binding:
            if "segments_at_max" in b:
                out.append(f"  offers per view: {b['segments_at_max']} segments at their maximum")
            elif "more_binding" in b:
                out.append(f"  ... and {b['more_binding']:,} more at their {b['constraint']}")
            elif "used" in b:
                price = f"  (multiplier {_amount(b['multiplier'])})" if "multiplier" in b else ""
                out.append(f"  {row_name(b['constraint'], b)}: {b['used']:,.2f} of "
                           f"{b['limit']:,.2f}{price}")
            else:
                out.append(f"  {b['constraint']}")
    priced = solver.get("multipliers") or []
    if priced:
        out.append("Multipliers of the binding rows (margin per unit of the row)")
        for m in sorted(priced, key=lambda m: -m["multiplier"])[:15]:
            out.append(f"  {row_name(m['constraint'], m):<64}{_amount(m['multiplier']):>12}")
    near = near_limit_warnings(plan.kpis or {}, inst, cur)
    if plan.warnings or near:
        out.append("Warnings")
        out += [f"  {w}" for w in near]
        out += [f"  {w}" for w in plan.warnings[:20]]
        if len(plan.warnings) > 20:
            out.append(f"  ... {len(plan.warnings) - 20} more in the plan file")
    out.append(GLOSSARY)
    return "\n".join(out)


GLOSSARY = ("Glossary: bound = no plan earns more (proven); gap = (bound - margin) / bound; "
            "binding = a limit the plan uses in full, its multiplier the margin one more unit of "
            "it would add; takes = expected accepted offers.")
NEAR_LIMIT = 0.95  # a budget or a stock used above this share is warned about


def near_limit_warnings(k: Mapping[str, Any], inst: Instance, cur: str) -> list[str]:
    """The promotion budget and every stock used above NEAR_LIMIT, most used first."""
    out: list[tuple[float, str]] = []
    budget = inst.policy.promotion_budget
    spend = k.get("promotion_spend")
    if budget is not None and spend is not None and budget > 0 and spend > NEAR_LIMIT * budget:
        out.append((spend / budget, f"promotion budget {_pct(spend / budget)} used "
                                    f"({_money(spend)} of {_money(budget)}{cur})"))
    names = _names(inst.items)
    for item, use in (k.get("inventory") or {}).items():
        stock, used = use["stock"], use["used"]
        if stock > 0 and used > NEAR_LIMIT * stock:
            out.append((used / stock, f"stock of {_label(item, names)} {_pct(used / stock)} used "
                                      f"({used:,.1f} of {stock:,.0f})"))
    return [text for _, text in sorted(out, key=lambda x: -x[0])]


def _names(table: pd.DataFrame) -> dict[str, str]:
    """Id to name, for the rows that have a name."""
    names = table["name"] if "name" in table else pd.Series([None] * len(table))
    return {str(i): str(n) for i, n in zip(table["id"], names, strict=True)
            if isinstance(n, str) and n}


def _label(id_: str, names: Mapping[str, str]) -> str:
    """`id (name)`, or the id alone when there is no name or it is the id."""
    name = names.get(id_)
    return id_ if not name or name == id_ else f"{id_} ({name})"


def _split_lines(plan: Plan, cur: str) -> list[str]:
    """A split plan: how many segments split, and the gain over the best integral plan."""
    split = plan.solver.get("split")
    if plan.offer_sets is None or plan.objective is None or split is None:
        return []  # no sets, or only those of exploration
    out = [f"  split traffic: {split.get('segments_split', 0)} segments split between "
           f"{split.get('sets', len(plan.offer_sets))} offer sets"]
    integral = plan.solver.get("integral_objective")
    if isinstance(integral, int | float):
        gain = plan.objective - integral
        pct = f"{100 * gain / abs(integral):+.2f}%" if integral else "n/a"
        out.append(f"  split traffic: {'+' if gain >= 0 else '-'}{_money(abs(gain))}{cur} "
                   f"({pct}) over the best integral plan")
    return out


def _exploration_lines(plan: Plan, cur: str) -> list[str]:
    """Exploration sets (spec section 9), in words: how much was explored of what was asked,
    what it is expected to cost, and what held it back."""
    x = plan.exploration
    if x is None or plan.objective is None:
        return []
    asked = f"at most {100 * x['explore']:.4g}% of each segment's views asked"
    if not x["sets"]:
        why = f"the rows allowed none ({', '.join(x['held_back_by'])})" if x["held_back_by"] \
            else "no cell has another candidate variant"
        return [f"  exploration: none ({asked}): {why}"]
    cells = f"{x['cells_explored']} cell{'s' * (x['cells_explored'] != 1)}"
    segments = f"{x['segments_explored']} segment{'s' * (x['segments_explored'] != 1)}"
    out = [f"  exploration: {100 * x['share_explored']:.2f}% of the views of segments with offers "
           f"see other variants of {cells} in {segments} ({asked})"]
    cost, base = x["cost"], x["optimized_objective"]
    pct = f" ({100 * abs(cost) / abs(base):.3f}% of the optimized plan's {_money(base)}{cur})" \
        if base else ""
    if cost >= 0:
        out.append(f"  exploration: expected to cost {_money(cost)}{cur} of incremental margin{pct}")
    else:  # fractional shares can use room an integral plan left in a row
        out.append(f"  exploration: expected to earn {_money(-cost)}{cur} more than the optimized "
                   f"plan{pct}, using room it left in the rows")
    if x["held_back_by"]:
        held = f"{x['segments_held_back']} segment{'s' * (x['segments_held_back'] != 1)}"
        rows = x["held_back_by"]
        named = ", ".join(rows[:MAX_HELD_SHOWN]) + (
            ", ... (exploration.held_back_by in the plan)" if len(rows) > MAX_HELD_SHOWN else "")
        out.append(f"  exploration: {held} explored less than asked, held back by {named}")
    return out


def _conflict_line(c: dict[str, Any]) -> str:
    what = f"inventory of item {c['item']!r}" if c["item"] else row_name(c["constraint"], c)
    who = ", ".join(repr(s) for s in c["segments"]) or "none"
    return (f"{what}: the minimum offers need {c['needed']:,.6g} against a limit of "
            f"{c['limit']:,.6g}; segments: {who}")


def _kpi_lines(k: Mapping[str, Any], inst: Instance, cur: str) -> list[str]:
    pol = inst.policy

    def limit(value: float | None, fmt: Any, word: str = "limit") -> str:
        return "" if value is None else f"  ({word} {fmt(value)})"

    n_segments = len(inst.segments)
    rows = [
        ("expected offer revenue", _money(k["expected_offer_revenue"]) + cur, ""),
        ("expected offer margin", _money(k["expected_offer_margin"]) + cur, ""),
        ("expected takes", f"{k['expected_takes']:,.1f}", ""),
        ("impressions", _money(k["impressions"]), ""),
        ("take rate", _pct(k["take_rate"]), ""),
        ("attach rate", _pct(k["attach_rate"]), ""),
        ("discounted share", _pct(k["discounted_share"]), limit(pol.max_discounted_share, _pct)),
        ("average discount", _pct(k["avg_discount"]), limit(pol.max_avg_discount, _pct)),
        ("promotion spend", _money(k["promotion_spend"]) + cur,
         limit(pol.promotion_budget, _money, "budget")),
        ("aggregate margin rate", _pct(k["aggregate_margin_rate"]),
         limit(pol.min_aggregate_margin_rate, _pct, "floor")),
        ("segments with offers", f"{k['segments_with_offers']} of {n_segments}", ""),
    ]
    if "contact_cost" in k:  # spec section 8
        roi = "n/a (no spend)" if k["roi"] is None else f"{k['roi']:,.2f}"
        rows += [("contact cost", _money(k["contact_cost"]) + cur, ""),
                 ("return on spend", roi, "  (margin per unit of promotion and contact spend)")]
    lines = ["KPIs"] + [f"  {name:<24}{value:>22}{note}" for name, value, note in rows]
    lines += _contact_lines(k)
    inventory = k["inventory"]
    if inventory:
        lines.append("Inventory (stocked items, most used first)")
        ranked = sorted(inventory.items(), key=lambda kv: -kv[1]["used"] / max(kv[1]["stock"], 1e-9))
        names = _names(inst.items)
        width = max(24, *(len(_label(item, names)) for item, _ in ranked[:10]))
        for item, use in ranked[:10]:
            share = use["used"] / use["stock"] if use["stock"] > 0 else 0.0
            lines.append(f"  {_label(item, names):<{width}}{use['used']:>14,.1f} of "
                         f"{use['stock']:>10,.0f}  ({_pct(share)})")
    return lines


def _contact_lines(k: Mapping[str, Any], most: int = 10) -> list[str]:
    """Impressions per channel against capacity; offers per customer against the cap, for
    the audiences nearest their cap."""
    lines = []
    if k.get("channels"):
        lines.append("Channels (offer impressions)")
        for channel, use in k["channels"].items():
            cap = "no capacity" if use["capacity"] is None else \
                f"of {_money(use['capacity'])}  ({_pct(use['impressions'] / use['capacity'])})" \
                if use["capacity"] > 0 else "of 0"
            lines.append(f"  {channel:<24}{_money(use['impressions']):>14} {cap}")
    audiences = k.get("audiences") or {}
    if audiences:
        def fill(use: Mapping[str, Any]) -> float:
            cap = use["cap"]
            return -1.0 if cap is None else use["offers_per_customer"] / max(cap, 1e-12)

        ranked = sorted(audiences.items(), key=lambda kv: -fill(kv[1]))[:most]
        lines.append(f"Audiences (offers per customer; {len(ranked)} of {len(audiences)}, "
                     f"nearest their cap first)")
        for audience, use in ranked:
            cap = "no cap" if use["cap"] is None else f"cap {use['cap']:,.2f}"
            lines.append(f"  {audience:<24}{use['offers_per_customer']:>14,.2f}  {cap}")
    return lines


def _offer_lines(offers: pd.DataFrame, inst: Instance, cur: str, top: int,
                 segments: int) -> list[str]:
    """The most valuable segments' best offers: the bundle by id and name, the deal, the
    reference price against the price paid (with the savings), takes and margin."""
    if not len(offers):
        return ["Offers: none"]
    codes, names = pd.factorize(offers["segment"])
    value = np.zeros(len(names))
    np.add.at(value, codes, offers["expected_incremental_margin"].to_numpy())  # in plan order
    ranked = names[np.argsort(-value, kind="stable")[:segments]]
    lines = [f"Top offers ({len(ranked)} of {len(names)} segments, by value)"]
    shown = offers[offers["segment"].isin(ranked)].groupby("segment", sort=False).head(top)
    bundle_names = _names(inst.bundles)
    rows: list[tuple[str, str, str, str, str]] = []  # segment, label, deal, price, figures
    for seg in ranked:
        rows.append((seg, "", "", "", ""))
        for o in shown[shown["segment"] == seg].itertuples():
            deal = f"{o.discount * 100:.0f}% off" if o.discount > 0 else "no discount"
            if o.perk:
                deal += f" + {o.perk}"
            if o.share < 1.0:  # split traffic: seen by part of the views
                deal += f" ({100 * o.share:.0f}% of views)"
            saving = o.reference_price - o.price
            price = f"{_money(o.reference_price)} → {_money(o.price)}{cur} (saves " \
                    f"{_money(saving)})" if saving >= 0.5 else f"{_money(o.price)}{cur}"
            rows.append(("", _label(o.bundle, bundle_names), deal, price,
                         f"{o.expected_takes:>10,.1f} takes  +{_money(o.expected_incremental_margin)}"))
    widths = [max((len(r[k]) for r in rows if not r[0]), default=0) for k in (1, 2, 3)]
    for seg, label, deal, price, figures in rows:
        lines.append(f"  {seg}" if seg else f"    {label:<{widths[0]}}  {deal:<{widths[1]}}  "
                     f"{price:<{widths[2]}}{figures}")
    return lines


def _amount(value: float) -> str:
    """A multiplier in plain digits: thousands separated, two decimals below 1,000."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}" if abs(value) >= 0.01 \
        else f"{value:.2g}"
