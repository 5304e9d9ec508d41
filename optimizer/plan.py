"""Invert: a `Solution` becomes an `offeropt/plan@1` document (spec section 4)."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pandas as pd

from optimizer.families import Family
from optimizer.solve import Solution

PLAN_FORMAT = "offeropt/plan@1"
OFFER_COLUMNS = ("segment", "bundle", "discount", "perk", "share", "reference_price", "price",
                 "expected_takes", "expected_incremental_margin")


def offers_frame(solution: Solution) -> pd.DataFrame:
    """One row per chosen offer, ordered by segment then value (best first)."""
    c, inst = solution.candidates, solution.instance
    pick = np.flatnonzero(solution.selected)
    v, var = c.variants, c.variant[pick]
    perk_ids = inst.perks["id"].to_numpy(dtype=object)
    perk = v.perk[var]
    frame = pd.DataFrame({
        "segment": inst.segments["id"].to_numpy(dtype=object)[c.segment[pick]],
        "bundle": inst.bundles["id"].to_numpy(dtype=object)[v.bundle[var]],
        "discount": v.discount[var],
        "perk": pd.Series(np.where(perk >= 0, perk_ids[np.maximum(perk, 0)] if len(perk_ids) else None,
                                   None), dtype=object),  # object: a missing perk stays None
        "share": np.ones(len(pick)),
        "reference_price": v.reference_price[var],
        "price": v.revenue[var],
        "expected_takes": c.segment_views[c.segment[pick]] * c.take_prob[pick],
        "expected_incremental_margin": c.value[pick],
        "_segment_row": c.segment[pick],
    })
    frame = frame.sort_values(["_segment_row", "expected_incremental_margin"],
                              ascending=[True, False], kind="stable")
    return frame.drop(columns="_segment_row").reset_index(drop=True)


def kpis(solution: Solution) -> dict[str, Any]:
    c, inst = solution.candidates, solution.instance
    pick = np.flatnonzero(solution.selected)
    v = c.variants
    var = c.variant[pick]
    w = c.takes[pick]
    revenue = float(w @ v.revenue[var])
    list_value = float(w @ v.list_price[var])
    margin = float(w @ v.margin[var])
    takes = float(w.sum())
    impressions = float(c.views[pick].sum())
    all_views = float(inst.segments["views"].sum())
    return {
        "expected_incremental_margin": float(c.value[pick].sum()),
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
    takes = np.bincount(c.variant[pick], c.takes[pick], minlength=len(c.variants))
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
                         minlength=len(at_max))
    full = int(((counts == solution.candidates.hi) & at_max & (counts > 0)).sum())
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
        **solution.extra,
    }
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
    if solution.diagnosis is not None:
        doc["diagnosis"] = solution.diagnosis.to_dict()
    if solution.message:
        doc["message"] = solution.message
    return doc


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
