"""Invert: a `Solution` becomes an `offeropt/plan@1` document (spec section 4)."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pandas as pd

from optimizer.model.families import Family
from optimizer.solve.dispatch import Solution

PLAN_FORMAT = "offeropt/plan@1"
OFFER_COLUMNS = ("segment", "bundle", "discount", "perk", "share", "reference_price", "price",
                 "expected_takes", "expected_incremental_margin")
SET_COLUMNS = ("segment", "set", "weight", "explore", "bundle", "discount", "perk")


def offers_frame(solution: Solution) -> pd.DataFrame:
    """One row per chosen offer (its share of the segment's views), by segment then value."""
    c, inst = solution.candidates, solution.instance
    pick = np.flatnonzero(solution.selected)
    share = solution.share[pick]
    v, var = c.variants, c.variant[pick]
    perk_ids = inst.perks["id"].to_numpy(dtype=object)
    perk = v.perk[var]
    frame = pd.DataFrame({
        "segment": inst.segments["id"].to_numpy(dtype=object)[c.segment[pick]],
        "bundle": inst.bundles["id"].to_numpy(dtype=object)[v.bundle[var]],
        "discount": v.discount[var],
        "perk": pd.Series(np.where(perk >= 0, perk_ids[np.maximum(perk, 0)] if len(perk_ids) else None,
                                   None), dtype=object),  # object: a missing perk stays None
        "share": share,
        "reference_price": v.reference_price[var],
        "price": v.revenue[var],
        "expected_takes": share * (c.segment_views[c.segment[pick]] * c.take_prob[pick]),
        "expected_incremental_margin": share * c.value[pick],
        "_segment_row": c.segment[pick],
    })
    frame = frame.sort_values(["_segment_row", "expected_incremental_margin"],
                              ascending=[True, False], kind="stable")
    return frame.drop(columns="_segment_row").reset_index(drop=True)


def kpis(solution: Solution) -> dict[str, Any]:
    """Spec section 4, with w = share * V * p per offer (share 1 in an integral plan)."""
    c, inst = solution.candidates, solution.instance
    pick = np.flatnonzero(solution.selected)
    share = solution.share[pick]
    v = c.variants
    var = c.variant[pick]
    w = share * c.takes[pick]
    revenue = float(w @ v.revenue[var])
    list_value = float(w @ v.list_price[var])
    margin = float(w @ v.margin[var])
    takes = float(w.sum())
    impressions = float((share * c.views[pick]).sum())
    all_views = float(inst.segments["views"].sum())
    return {
        "expected_incremental_margin": float((share * c.value[pick]).sum()),
        "expected_offer_revenue": revenue,
        "expected_offer_margin": margin,
        "expected_takes": takes,
        "impressions": impressions,
        "take_rate": _ratio(takes, impressions),
        "attach_rate": _ratio(takes, all_views),
        "discounted_share": _ratio(float(w @ (v.revenue * (v.discount > 0))[var]), revenue),
        "avg_discount": _ratio(float(w @ (v.list_price * v.discount)[var]), list_value),
        "promotion_spend": float(w @ (v.list_price * v.discount + v.perk_cost)[var]),
        "aggregate_margin_rate": _ratio(margin, revenue),
        "segments_with_offers": len(np.unique(c.segment[pick])),
        "inventory": _inventory_usage(solution),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def row_activity(solution: Solution) -> tuple[np.ndarray, np.ndarray]:
    """Each coupling row's left-hand side in the plan, and the sum of its absolute terms."""
    c = solution.candidates
    pick = np.flatnonzero(solution.selected)
    takes = np.bincount(c.variant[pick], solution.share[pick] * c.takes[pick],
                        minlength=len(c.variants))
    K = solution.coupling.K
    return K @ takes, abs(K) @ takes


def _inventory_usage(solution: Solution) -> dict[str, dict[str, float]]:
    inst, rows = solution.instance, solution.coupling
    stocked = inst.items[np.isfinite(inst.items["stock"].to_numpy(dtype=np.float64))]
    used = dict.fromkeys(stocked["id"], 0.0)
    activity, _ = row_activity(solution)
    for r in np.flatnonzero(rows.family == Family.INVENTORY):
        used[str(inst.items["id"].iloc[int(rows.subject[r])])] = float(activity[r])
    stock = dict(zip(stocked["id"], stocked["stock"], strict=True))
    return {str(k): {"used": v, "stock": float(stock[k])} for k, v in used.items()}


def binding_rows(solution: Solution, tol: float = 1e-6) -> list[dict[str, Any]]:
    """Coupling rows at their limit in the plan, with how much of the limit is used."""
    rows, inst = solution.coupling, solution.instance
    activity, size = row_activity(solution)
    out = []
    for r in range(len(rows)):
        limit = rows.upper[r] if np.isfinite(rows.upper[r]) else rows.lower[r]
        if abs(activity[r] - limit) > tol * max(1.0, abs(limit), size[r]):
            continue
        family = Family(int(rows.family[r]))
        entry: dict[str, Any] = {"constraint": family.label}
        if family == Family.INVENTORY:
            entry["item"] = str(inst.items["id"].iloc[int(rows.subject[r])])
            entry["used"], entry["limit"] = float(activity[r]), float(limit)
        out.append(entry)
    at_max = solution.candidates.hi > 0
    counts = np.bincount(solution.candidates.segment[solution.selected],
                         solution.share[solution.selected], minlength=len(at_max))
    full = int(((np.abs(counts - solution.candidates.hi) <= tol) & at_max & (counts > 0)).sum())
    if full:
        out.append({"constraint": "offers per view", "segments_at_max": full})
    return out


def plan_document(solution: Solution) -> dict[str, Any]:
    """The plan as `offeropt/plan@1`. Fields beyond the spec are additions only."""
    offers = offers_frame(solution)
    has_plan = solution.objective is not None
    solver: dict[str, Any] = {
        "method": solution.method, "backend": solution.solver,
        "seconds": round(solution.seconds, 6), "build_seconds": round(solution.build_seconds, 6),
        "solve_seconds": round(solution.solve_seconds, 6), "termination": solution.termination,
        **solution.stats.to_dict(solution.stability),
    }
    if solution.check is not None:
        solver["check"] = solution.check.value
    sets = solution.offer_sets if has_plan else None
    if sets is not None:
        solver["split"] = {"segments_split": len(sets.split_segments()), "sets": len(sets)}
    doc: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "instance": solution.instance.name,
        "status": solution.status.value,
        "objective": solution.objective,
        "bound": solution.bound,
        "gap": solution.gap,
        "solver": solver,
        "offers": [_offer_record(r) for r in offers.to_dict(orient="records")] if has_plan else [],
        "kpis": kpis(solution) if has_plan else None,
        "warnings": list(solution.candidates.warnings) + list(solution.instance.warnings),
    }
    if has_plan:
        doc["binding"] = binding_rows(solution)
    if sets is not None:
        doc["offer_sets"] = offer_set_records(solution)
    if solution.diagnosis is not None:
        doc["diagnosis"] = solution.diagnosis.to_dict()
    if solution.message:
        doc["message"] = solution.message
    return doc


def set_id(k: int) -> str:
    """The k-th set id of a segment: a, b, ..., z, aa, ab, ... (bijective base 26)."""
    out = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def offer_set_records(solution: Solution) -> list[dict[str, Any]]:
    """Spec section 7: per segment its weighted offer sets, ids a, b, ... in the segments'
    order; a set's offers by their value to the segment, best first. Empty sets stay."""
    sets, c, inst = solution.offer_sets, solution.candidates, solution.instance
    assert sets is not None
    member_set = sets.set_of_member
    order = np.lexsort((-c.value[sets.member], member_set))  # per set, best value first
    member, member_set = sets.member[order], member_set[order]
    v, var = c.variants, c.variant[member]
    perk_ids = inst.perks["id"].to_numpy(dtype=object)
    perk = v.perk[var]
    bundles = inst.bundles["id"].to_numpy(dtype=object)[v.bundle[var]]
    discounts = v.discount[var]
    seg_ids = inst.segments["id"].to_numpy(dtype=object)
    starts = np.r_[0, np.cumsum(np.bincount(member_set, minlength=len(sets)))]
    first = np.r_[True, sets.segment[1:] != sets.segment[:-1]] if len(sets) else np.zeros(0, bool)
    rank = np.arange(len(sets)) - np.maximum.accumulate(np.where(first, np.arange(len(sets)), 0))
    out = []
    for i in range(len(sets)):
        offers = [{"bundle": str(bundles[j]), "discount": float(discounts[j]),
                   "perk": None if perk[j] < 0 else str(perk_ids[perk[j]])}
                  for j in range(starts[i], starts[i + 1])]
        out.append({"segment": str(seg_ids[sets.segment[i]]), "set": set_id(int(rank[i])),
                    "weight": float(sets.weight[i]), "explore": False, "offers": offers})
    return out


def _offer_record(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in OFFER_COLUMNS:
        value = row[key]
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def plan_csv(doc: dict[str, Any]) -> str:
    """The plan's offers as CSV, one row per offer, for spreadsheets."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(OFFER_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for offer in doc["offers"]:
        writer.writerow({k: "" if offer.get(k) is None else offer[k] for k in OFFER_COLUMNS})
    return buffer.getvalue()


def plan_sets_csv(doc: dict[str, Any]) -> str:
    """A split plan's offer sets as CSV: one row per (segment, set, offer), with the set's
    weight on each; an empty set is one row with empty bundle, discount and perk."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SET_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for entry in doc.get("offer_sets") or []:
        head = {"segment": entry["segment"], "set": entry["set"], "weight": entry["weight"],
                "explore": "true" if entry.get("explore") else "false"}
        for offer in entry["offers"] or [{}]:
            writer.writerow({**head, **{k: "" if offer.get(k) is None else offer[k]
                                        for k in ("bundle", "discount", "perk")}})
    return buffer.getvalue()
