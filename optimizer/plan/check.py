"""Independent re-verification of a plan against spec sections 3 and 4.

Deliberately shares no code with the solver path (`candidates`, `formulation`, `coupling`,
`oracle`, `segment_choice`, ...): it re-derives the semantics from the instance tables with its
own lookups, so a bug in the solver path cannot hide itself here. It derives only what the plan
names, whatever the size of the instance: each offer is found by key in the tables
(`optimizer.plan.check_catalog`), the rules and claims of single offers are checked column-wise
(`optimizer.plan.check_offers`, with their sums per audience and channel), offer sets likewise
(`optimizer.plan.check_sets`); this module holds the rules over the whole plan (constraints
1-10), the KPIs and the plan's own figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import Issue
from optimizer.model.instance import Instance
from optimizer.plan.check_catalog import Catalog
from optimizer.plan.check_offers import REL_TOL, Contacts, match_offers
from optimizer.plan.check_sets import check_offer_sets
from optimizer.plan.model import PLAN_FORMAT, STATUSES, WITH_OFFERS, read_plan

__all__ = ["REL_TOL", "CheckReport", "check_plan", "evaluate_plan", "plan_issues"]


@dataclass(frozen=True)
class CheckReport:
    violations: tuple[str, ...]
    objective: float | None
    kpis: dict[str, Any]
    malformed: tuple[Issue, ...] = ()  # fields of the wrong JSON type: no rule was evaluated

    @property
    def ok(self) -> bool:
        return not self.violations


def _close(a: float, b: float, scale: float = 1.0) -> bool:
    """Equal within REL_TOL; an infinite claim is equal to nothing (inf - inf is no number)."""
    return math.isfinite(a - b) and abs(a - b) <= REL_TOL * max(1.0, abs(a), abs(b), scale)


def plan_issues(doc: Any) -> list[Issue]:
    """The fields of a plan document whose JSON type is wrong, so that no rule can even be
    evaluated on them (`optimizer.plan.model.read_plan`)."""
    return list(read_plan(doc).issues)


def check_plan(inst: Instance, doc: Mapping[str, Any]) -> CheckReport:
    """Every rule a plan document must meet; an empty `violations` means the plan is sound."""
    reading = read_plan(doc)
    plan = reading.doc
    bad: list[str] = []
    if plan.get("format") != PLAN_FORMAT:
        bad.append(f"format: must be {PLAN_FORMAT!r}, got {plan.get('format')!r}")
    if plan.get("instance") != inst.name:
        bad.append(f"instance: must be {inst.name!r}, got {plan.get('instance')!r}")
    status = plan.get("status")
    status = status if isinstance(status, str) else repr(status)  # a list is not hashable
    if status not in STATUSES:
        bad.append(f"status: must be one of {list(STATUSES)}, got {status!r}")
    if reading.issues:  # no rule can be evaluated on fields of the wrong type
        return CheckReport((*bad, *(str(i) for i in reading.issues)), None, {}, reading.issues)
    sets = plan.get("offer_sets")
    if status not in WITH_OFFERS:
        if len(reading.offers):
            bad.append(f"offers: a plan with status {status!r} must have no offers")
        if sets:
            bad.append(f"offer_sets: a plan with status {status!r} must have no offer sets")
        return CheckReport(tuple(bad), None, {})

    cat = Catalog(inst)
    chosen = match_offers(cat, reading.offers, bad)
    totals = _totals(cat, chosen)
    _check_constraints(cat, chosen, totals, bad)
    if sets is not None:
        check_offer_sets(cat, sets, reading.offers, bad)
    kpis = _kpis(cat, chosen, totals)
    objective = float(kpis["expected_incremental_margin"])
    _check_totals(plan, objective, kpis, bad)
    return CheckReport(tuple(bad), objective, kpis)


def evaluate_plan(truth: Instance, doc: Mapping[str, Any]) -> CheckReport:
    """What a plan realizes if `truth` holds: its value, KPIs and the rules it breaks there.

    Unlike `check_plan` the plan's own figures are not compared (they came from other
    estimates); offers that are no variant of `truth` count as violations and add nothing.
    """
    reading = read_plan(doc)
    if reading.issues:
        return CheckReport(tuple(str(i) for i in reading.issues), None, {}, reading.issues)
    bad: list[str] = []
    cat = Catalog(truth)
    chosen = match_offers(cat, reading.offers, bad, compare_claims=False)
    totals = _totals(cat, chosen)
    _check_constraints(cat, chosen, totals, bad)
    kpis = _kpis(cat, chosen, totals)
    return CheckReport(tuple(bad), float(kpis["expected_incremental_margin"]), kpis)


def _check_constraints(cat: Catalog, chosen: pd.DataFrame, t: dict[str, Any], bad: list[str]) -> None:
    """Constraints 1-10 over the offers that are variants, every figure weighted by `share`."""
    tol = 1e-6
    segments, bundles = cat.segment_ids, cat.bundle_ids
    per_pair = chosen.groupby(["segment", "bundle"], sort=False)["share"].sum()
    over = sorted((segments.iloc[s], bundles.iloc[b], total)
                  for (s, b), total in per_pair[per_pair > 1 + tol].items())
    bad += [f"segment {s!r}, bundle {b!r}: at most one variant, got shares summing to {total}"
            for s, b, total in over]
    grouped = chosen[chosen["group"] >= 0]
    per_group = grouped.groupby(["segment", "group"], sort=False)["share"].sum()
    over = sorted((segments.iloc[s], cat.group_names[g], total)
                  for (s, g), total in per_group[per_group > 1 + tol].items())
    bad += [f"segment {s!r}, exclusion group {g!r}: at most one bundle, got {total}"
            for s, g, total in over]

    shown = chosen.groupby("segment")["share"].sum()
    n = np.zeros(len(segments))
    n[shown.index.to_numpy(dtype=np.int64)] = shown.to_numpy(dtype=np.float64)
    hi, lo = cat.hi, np.minimum(cat.lo, cat.hi)
    short = np.flatnonzero(n < lo - tol)  # only these need lo_eff = min(lo, hi, slots)
    lo[short] = np.minimum(lo[short], cat.slots(short))
    wrong = np.flatnonzero(~((lo - tol <= n) & (n <= hi + tol)))
    bad += [f"segment {s!r}: must show between {a} and {b} offers, got {k:g}"
            for s, a, b, k in zip(segments.iloc[wrong].tolist(), lo[wrong].tolist(),
                                  hi[wrong].tolist(), n[wrong].tolist(), strict=True)]

    pol, stock, used = cat.inst.policy, cat.inst.items["stock"].to_numpy(dtype=np.float64), t["used"]
    over_stock = np.flatnonzero(np.isfinite(stock) & (used > stock + tol * np.maximum(1.0, stock)))
    bad += [f"inventory of {i!r}: must be <= stock {s:g}, got {u:.6g}" for i, s, u in
            sorted(zip(cat.inst.items["id"].iloc[over_stock].tolist(), stock[over_stock].tolist(),
                       used[over_stock].tolist(), strict=True))]

    rev, listed, scale = t["revenue"], t["listed"], max(1.0, t["listed"])
    if pol.max_discounted_share is not None and \
            t["discounted_revenue"] > pol.max_discounted_share * rev + tol * scale:
        bad.append(f"max_discounted_share: must be <= {pol.max_discounted_share}, got "
                   f"{t['discounted_revenue'] / rev:.6g}")
    if pol.max_avg_discount is not None and \
            t["discount_value"] > pol.max_avg_discount * listed + tol * scale:
        bad.append(f"max_avg_discount: must be <= {pol.max_avg_discount}, got "
                   f"{t['discount_value'] / listed:.6g}")
    if pol.promotion_budget is not None and \
            t["spend"] > pol.promotion_budget + tol * max(1.0, pol.promotion_budget):
        bad.append(f"promotion_budget: must be <= {pol.promotion_budget:g}, got {t['spend']:.6g}")
    if pol.min_aggregate_margin_rate is not None and \
            t["margin"] < pol.min_aggregate_margin_rate * rev - tol * scale:
        bad.append(f"min_aggregate_margin_rate: must be >= {pol.min_aggregate_margin_rate}, got "
                   f"{t['margin'] / rev:.6g}")
    t["contacts"].check_rows(bad)  # rows 8-10 (spec section 8)


def _totals(cat: Catalog, chosen: pd.DataFrame) -> dict[str, Any]:
    """The plan's sums over offers, with w = share * V * p (spec section 4); a missing share
    (NaN) adds nothing to a sum."""
    c = {name: chosen[name].to_numpy(dtype=np.float64)
         for name in ("share", "views", "prob", "value", "r", "P", "m", "discount", "perk_cost")}
    w = c["share"] * c["views"] * c["prob"]
    inst = cat.inst
    lines = pd.DataFrame({"bundle": pd.Index(cat.bundle_ids).get_indexer(inst.bundle_items["bundle"]),
                          "item": pd.Index(inst.items["id"]).get_indexer(inst.bundle_items["item"]),
                          "qty": inst.bundle_items["qty"].to_numpy()})
    lines = lines.merge(pd.DataFrame({"bundle": chosen["bundle"].to_numpy(), "w": w}), on="bundle")
    per_item = (lines["w"] * lines["qty"]).groupby(lines["item"]).sum()
    used = np.zeros(len(inst.items))
    used[per_item.index.to_numpy()] = per_item.to_numpy(dtype=np.float64)

    def total(x: np.ndarray) -> float:
        return float(np.nansum(x))

    return {
        "takes": total(w),
        "impressions": total(c["share"] * c["views"]),
        "value": total(c["share"] * c["value"]),
        "revenue": total(w * c["r"]),
        "listed": total(w * c["P"]),
        "margin": total(w * c["m"]),
        "discounted_revenue": total(w * c["r"] * (c["discount"] > 0)),
        "discount_value": total(w * c["P"] * c["discount"]),
        "spend": total(w * (c["P"] * c["discount"] + c["perk_cost"])),
        "used": used,
        "contacts": Contacts.of(cat, chosen),
    }


def _kpis(cat: Catalog, chosen: pd.DataFrame, t: dict[str, Any]) -> dict[str, Any]:
    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else 0.0

    inst = cat.inst
    stocked = np.flatnonzero(inst.items["stock"].notna().to_numpy())
    return {
        "expected_incremental_margin": t["value"],
        "expected_offer_revenue": t["revenue"],
        "expected_offer_margin": t["margin"],
        "expected_takes": t["takes"],
        "impressions": t["impressions"],
        "take_rate": ratio(t["takes"], t["impressions"]),
        "attach_rate": ratio(t["takes"], float(inst.segments["views"].sum())),
        "discounted_share": ratio(t["discounted_revenue"], t["revenue"]),
        "avg_discount": ratio(t["discount_value"], t["listed"]),
        "promotion_spend": t["spend"],
        "aggregate_margin_rate": ratio(t["margin"], t["revenue"]),
        "segments_with_offers": int(chosen.loc[chosen["share"] > 0, "segment"].nunique()),
        "inventory": {str(i): {"used": float(u), "stock": float(s)} for i, u, s in zip(
            inst.items["id"].iloc[stocked].tolist(), t["used"][stocked].tolist(),
            inst.items["stock"].iloc[stocked].tolist(), strict=True)},
        **t["contacts"].kpis(t["value"], t["spend"]),  # section 8's, if the instance has it
    }


def _check_totals(plan: Mapping[str, Any], objective: float, kpis: dict[str, Any],
                  bad: list[str]) -> None:
    claimed = plan.get("objective")
    if not isinstance(claimed, int | float) or not _close(float(claimed), objective):
        bad.append(f"objective: must be sum(share * value) = {objective!r}, got {claimed!r}")
    bound = plan.get("bound")
    if bound is not None:
        if not isinstance(bound, int | float) or bound < objective - REL_TOL * max(1, abs(objective)):
            bad.append(f"bound: must be >= the objective {objective!r}, got {bound!r}")
        else:
            gap = (bound - objective) / max(abs(bound), 1.0)
            if not isinstance(plan.get("gap"), int | float) or abs(plan["gap"] - gap) > REL_TOL:
                bad.append(f"gap: must be (bound - objective) / max(|bound|, 1) = {gap!r}, "
                           f"got {plan.get('gap')!r}")
    claimed_kpis = plan.get("kpis") or {}
    for name, truth in kpis.items():
        got = claimed_kpis.get(name)
        if name in Contacts.KPIS:  # version 1.1: compared only where the plan claims them
            if name in claimed_kpis:
                Contacts.check_kpi(name, truth, got, bad)
        elif name == "inventory":
            _check_inventory(truth, got, bad)
        elif not isinstance(got, int | float) or not _close(float(got), float(truth)):
            bad.append(f"kpis.{name}: must be {truth!r}, got {got!r}")


def _check_inventory(truth: dict[str, Any], got: Any, bad: list[str]) -> None:
    if not isinstance(got, dict) or set(got) != set(truth):
        bad.append(f"kpis.inventory: must list exactly the stocked items {sorted(truth)}")
        return
    for item, entry in truth.items():
        claimed = got[item]
        if not isinstance(claimed, dict) or not all(
            isinstance(claimed.get(k), int | float) and _close(float(claimed[k]), v)
            and not math.isnan(float(claimed[k])) for k, v in entry.items()
        ):
            bad.append(f"kpis.inventory.{item}: must be {entry}, got {claimed!r}")
