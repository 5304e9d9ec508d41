"""Invert: a `Solution` becomes a `Plan`, the `offeropt/plan@1` document (spec section 4)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from optimizer.formulation.contacts import family_of, subject_of
from optimizer.model.families import Family, row_subject
from optimizer.plan.model import OFFER_FIELDS, OfferSet, OfferTable, Plan, SetOffer, Status
from optimizer.solve.dispatch import Solution

MAX_BINDING_LISTED = 50  # binding caps listed per family; a million-segment plan has many
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
        **_contact_kpis(solution, float((share * c.value[pick]).sum()),
                        float(w @ (v.list_price * v.discount + v.perk_cost)[var])),
    }


def _contact_kpis(solution: Solution, margin: float, spend: float) -> dict[str, Any]:
    """Spec section 8, for an instance with audiences or channels: the contact cost, the
    return on promotion and contact spend, and every referenced channel's impressions and
    audience's offers per customer against their limits."""
    inst, c = solution.instance, solution.candidates
    if not (len(inst.audiences) or len(inst.channels)):
        return {}
    contacts = c.contacts
    pick = np.flatnonzero(solution.selected)
    seg = c.segment[pick]
    impressions = solution.share[pick] * c.segment_views[seg]
    cost = float(impressions @ contacts.impression_cost[seg])
    return {
        "contact_cost": cost,
        "roi": margin / (spend + cost) if spend + cost > 0 else None,
        "channels": _per_referenced(contacts.channel, seg, impressions, inst.channels["id"],
                                    contacts.capacity, "impressions", "capacity"),
        "audiences": _per_referenced(contacts.audience, seg,
                                     solution.share[pick] * contacts.frequency_weight[seg],
                                     inst.audiences["id"], contacts.frequency_cap,
                                     "offers_per_customer", "cap"),
    }


def _per_referenced(of_segment: np.ndarray, seg: np.ndarray, amount: np.ndarray, ids: pd.Series,
                    limit: np.ndarray, used_name: str, limit_name: str
                    ) -> dict[str, dict[str, float | None]]:
    """Per audience or channel some segment names, in table order: the plan's use and limit."""
    rows = of_segment[seg]
    used = np.bincount(rows[rows >= 0], amount[rows >= 0], minlength=len(ids))
    return {str(ids.iloc[r]): {used_name: float(used[r]),
                               limit_name: float(limit[r]) if np.isfinite(limit[r]) else None}
            for r in np.unique(of_segment[of_segment >= 0])}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def row_activity(solution: Solution) -> tuple[np.ndarray, np.ndarray]:
    """Each coupling row's left-hand side in the plan, and the sum of its absolute terms."""
    c = solution.candidates
    pick = np.flatnonzero(solution.selected)
    usage = c.usage_of(pick, solution.share[pick])
    K = solution.coupling.K
    return K @ usage, abs(K) @ usage


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
    priced = _multipliers(solution)
    out = []
    for r in range(len(rows)):
        limit = rows.upper[r] if np.isfinite(rows.upper[r]) else rows.lower[r]
        if abs(activity[r] - limit) > tol * max(1.0, abs(limit), size[r]):
            continue
        family = Family(int(rows.family[r]))
        named = row_subject(inst, family, int(rows.subject[r]))
        entry: dict[str, Any] = {"constraint": family.label, **named}
        if named:
            entry["used"], entry["limit"] = float(activity[r]), float(limit)
        out.append(_with_multiplier(entry, priced))
    at_max = solution.candidates.hi > 0
    counts = np.bincount(solution.candidates.segment[solution.selected],
                         solution.share[solution.selected], minlength=len(at_max))
    full = int(((np.abs(counts - solution.candidates.hi) <= tol) & at_max & (counts > 0)).sum())
    if full:
        out.append({"constraint": "offers per view", "segments_at_max": full})
    return [*out, *_binding_contacts(solution, tol)]


def _binding_contacts(solution: Solution, tol: float) -> list[dict[str, Any]]:
    """Rows 8-9 at their limit (spec section 8), by id, with the multiplier the solve gave:
    the first MAX_BINDING_LISTED of each family in table order, then how many more bind."""
    c, inst = solution.candidates, solution.instance
    pick = np.flatnonzero(solution.selected)
    keys, used = c.subset(pick).contact_usage(solution.share[pick])
    limit = c.contacts.limit(keys)
    at = np.abs(used - limit) <= tol * np.maximum(1.0, limit)
    keys, used, limit = keys[at], used[at], limit[at]
    family, subject = family_of(keys), subject_of(keys)
    priced = _multipliers(solution)
    out: list[dict[str, Any]] = []
    for kind in np.unique(family):
        label = Family(int(kind)).label
        rows = np.flatnonzero(family == kind)
        entries = []
        for r in rows[:MAX_BINDING_LISTED]:
            named = row_subject(inst, Family(int(kind)), int(subject[r]))
            entries.append(_with_multiplier(
                {"constraint": label, **named, "used": float(used[r]), "limit": float(limit[r])},
                priced))
        out += entries
        if len(rows) > MAX_BINDING_LISTED:
            out.append({"constraint": label, "more_binding": len(rows) - MAX_BINDING_LISTED})
    return out


_RowKey = tuple[str, str | None, str | None, str | None, str | None]


def _row_key(row: Mapping[str, Any]) -> _RowKey:
    return (row["constraint"], row.get("item"), row.get("audience"), row.get("bundle"),
            row.get("channel"))


def _multipliers(solution: Solution) -> dict[_RowKey, float]:
    """The multipliers the solve reported (the decomposition's, the LP's duals), by row."""
    return {_row_key(p): p["multiplier"]
            for p in getattr(solution.stats, "multipliers", None) or []}


def _with_multiplier(entry: dict[str, Any], priced: dict[_RowKey, float]) -> dict[str, Any]:
    price = priced.get(_row_key(entry))
    return entry if price is None else {**entry, "multiplier": price}


def build_plan(solution: Solution) -> Plan:
    """The plan of a solution. Fields beyond the spec are additions only."""
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
    exploration = solution.exploration if has_plan else None
    if sets is not None and (exploration is None or exploration.optimized_split):
        # the optimized sets: exploration sets are the `exploration` report's
        solver["split"] = {"segments_split": len(sets.split_segments()),
                           "sets": int((~sets.is_explore).sum())}
    offers = offers_frame(solution)
    return Plan(
        instance=solution.instance.name, status=Status(solution.status),
        objective=solution.objective, bound=solution.bound, gap=solution.gap, solver=solver,
        offers=OfferTable.from_frame(offers if has_plan else offers.iloc[:0]),
        kpis=kpis(solution) if has_plan else None,
        warnings=(*solution.candidates.warnings, *solution.instance.warnings),
        binding=tuple(binding_rows(solution)) if has_plan else None,
        offer_sets=None if sets is None else offer_set_records(solution),
        exploration=None if exploration is None else exploration.to_dict(),
        diagnosis=None if solution.diagnosis is None else solution.diagnosis.to_dict(),
        message=solution.message or None)


def set_id(k: int) -> str:
    """The k-th set id of a segment: a, b, ..., z, aa, ab, ... (bijective base 26)."""
    out = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def offer_set_records(solution: Solution) -> tuple[OfferSet, ...]:
    """Spec section 7: per segment its weighted offer sets, ids a, b, ... in the segments'
    order (exploration sets, spec section 9, after the optimized ones); a set's offers by
    their value to the segment, best first. Empty sets stay."""
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
    perk_names = [None if p < 0 else str(perk_ids[p]) for p in perk.tolist()]
    members = list(map(SetOffer, bundles.tolist(), discounts.tolist(), perk_names))
    bounds = starts.tolist()
    return tuple(OfferSet(seg_ids[s], set_id(k), w, x, tuple(members[a:b]))
                 for s, k, w, x, a, b in zip(sets.segment.tolist(), rank.tolist(),
                                             sets.weight.tolist(), sets.is_explore.tolist(),
                                             bounds[:-1], bounds[1:], strict=True))


def plan_csv(plan: Plan) -> str:
    """The plan's offers as CSV, one row per offer, for spreadsheets."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OFFER_FIELDS)
    writer.writerows(zip(*(["" if v is None else v for v in plan.offers.raw[name]]
                           for name in OFFER_FIELDS), strict=True))
    return buffer.getvalue()


def plan_sets_csv(plan: Plan) -> str:
    """A split plan's offer sets as CSV: one row per (segment, set, offer), with the set's
    weight on each; an empty set is one row with empty bundle, discount and perk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SET_COLUMNS)
    for entry in plan.offer_sets or ():
        head = (entry.segment, entry.set, entry.weight, "true" if entry.explore else "false")
        offers: list[tuple[Any, ...]] = [(o.bundle, o.discount, o.perk or "") for o in entry.offers]
        writer.writerows((*head, *offer) for offer in offers or [("", "", "")])
    return buffer.getvalue()
