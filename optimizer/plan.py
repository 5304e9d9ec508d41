"""Invert: a `Solution` becomes an `offeropt/plan@1` document (spec section 4)."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pandas as pd

from optimizer.formulation import Family
from optimizer.solve import Solution

PLAN_FORMAT = "offeropt/plan@1"
OFFER_COLUMNS = ("segment", "bundle", "discount", "perk", "share", "reference_price", "price",
                 "expected_takes", "expected_incremental_margin")


def offers_frame(solution: Solution) -> pd.DataFrame:
    """One row per chosen offer, ordered by segment then value (best first)."""
    c, inst = solution.candidates, solution.instance
    pick = np.flatnonzero(solution.selected)
    perk_ids = inst.perks["id"].to_numpy(dtype=object)
    perk = c.perk[pick]
    frame = pd.DataFrame({
        "segment": inst.segments["id"].to_numpy(dtype=object)[c.segment[pick]],
        "bundle": inst.bundles["id"].to_numpy(dtype=object)[c.bundle[pick]],
        "discount": c.discount[pick],
        "perk": np.where(perk >= 0, perk_ids[np.maximum(perk, 0)] if len(perk_ids) else None, None),
        "share": np.ones(len(pick)),
        "reference_price": c.reference_price[pick],
        "price": c.revenue[pick],
        "expected_takes": c.takes[pick],
        "expected_incremental_margin": c.value[pick],
        "_segment_row": c.segment[pick],
    })
    frame = frame.sort_values(["_segment_row", "expected_incremental_margin"],
                              ascending=[True, False], kind="stable")
    return frame.drop(columns="_segment_row").reset_index(drop=True)


def kpis(solution: Solution) -> dict[str, Any]:
    c, inst = solution.candidates, solution.instance
    x = solution.selected.astype(np.float64)
    w = c.takes * x
    revenue = float(w @ c.revenue)
    list_value = float(w @ c.list_price)
    takes = float(w.sum())
    impressions = float(c.views @ x)
    all_views = float(inst.segments["views"].sum())
    usage = _inventory_usage(solution)
    return {
        "expected_incremental_margin": float(c.value @ x),
        "expected_offer_revenue": revenue,
        "expected_offer_margin": float(w @ c.margin),
        "expected_takes": takes,
        "impressions": impressions,
        "take_rate": _ratio(takes, impressions),
        "attach_rate": _ratio(takes, all_views),
        "discounted_share": _ratio(float(w @ (c.revenue * (c.discount > 0))), revenue),
        "avg_discount": _ratio(float(w @ (c.list_price * c.discount)), list_value),
        "promotion_spend": float(w @ (c.list_price * c.discount + c.perk_cost)),
        "aggregate_margin_rate": _ratio(float(w @ c.margin), revenue),
        "segments_with_offers": len(np.unique(c.segment[solution.selected])),
        "inventory": usage,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def _inventory_usage(solution: Solution) -> dict[str, dict[str, float]]:
    inst, form = solution.instance, solution.formulation
    stocked = inst.items[np.isfinite(inst.items["stock"].to_numpy(dtype=np.float64))]
    used = dict.fromkeys(stocked["id"], 0.0)
    rows = form.coupling
    inventory = np.flatnonzero(rows.family == Family.INVENTORY)
    activity = rows.matrix[inventory] @ solution.selected.astype(np.float64)
    for r, a in zip(inventory, activity, strict=True):
        used[str(inst.items["id"].iloc[int(rows.subject[r])])] = float(a)
    stock = dict(zip(stocked["id"], stocked["stock"], strict=True))
    return {str(k): {"used": v, "stock": float(stock[k])} for k, v in used.items()}


def binding_rows(solution: Solution, tol: float = 1e-6) -> list[dict[str, Any]]:
    """Coupling rows at their limit in the plan, with how much of the limit is used."""
    rows, inst = solution.formulation.coupling, solution.instance
    x = solution.selected.astype(np.float64)
    activity = rows.matrix @ x
    size = abs(rows.matrix) @ x
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
