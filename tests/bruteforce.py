"""A third, deliberately naive implementation of the spec: enumerate every plan.

Reads the JSON document directly (no offeropt code), evaluates spec section 3 with
plain Python math, and returns the best feasible objective. Only for tiny instances.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_LADDER = (0, 0.05, 0.1, 0.15, 0.2)


@dataclass
class Variant:
    segment: str
    bundle: str
    group: str | None
    value: float
    takes: float  # w = V p
    revenue: float  # r
    price: float  # P
    discount: float
    perk_cost: float
    margin: float  # m
    qty: dict[str, int]
    perk: str | None = None

    @property
    def offer(self) -> tuple[str, str, float, str | None]:
        return (self.segment, self.bundle, self.discount, self.perk)


def variants_of(doc: dict[str, Any]) -> dict[str, list[list[Variant]]]:
    """Per segment: per responding bundle, its candidate variants (spec's candidate rules)."""
    pol = {"discount_ladder": DEFAULT_LADDER, "min_margin_rate": 0.0, "max_discount": None,
           "allow_negative_uplift": False, **(doc.get("policy") or {})}
    items = {i["id"]: i for i in doc["items"]}
    bundles = {b["id"]: b for b in doc["bundles"]}
    segs = {s["id"]: s for s in doc["segments"]}
    contact = {c["id"]: c.get("cost_per_impression") or 0.0 for c in doc.get("channels") or []}
    out: dict[str, list[list[Variant]]] = {s: [] for s in segs}
    for resp in doc["responses"]:
        s, b = segs[resp["segment"]], bundles[resp["bundle"]]
        if s.get("silent"):
            continue
        ref = sum(items[line["item"]]["price"] * line["qty"] for line in b["items"])
        cost = sum(items[line["item"]]["cost"] * line["qty"] for line in b["items"])
        price = b.get("price") or ref
        floor = b.get("min_margin_rate")
        floor = pol["min_margin_rate"] if floor is None else floor
        t = resp["take_rate"]
        base = resp.get("baseline_rate") or 0.0
        beta = resp.get("price_sensitivity") or 0.0
        found = []
        ladder = b.get("discounts")
        for d in (pol["discount_ladder"] if ladder is None else ladder):
            if pol["max_discount"] is not None and d > pol["max_discount"]:
                continue
            for perk in [None, *(b.get("perks") or [])]:
                ck = perk["cost"] if perk else 0.0
                lift = perk["lift"] if perk else 0.0
                p = 1 / (1 + math.exp(-(math.log(t / (1 - t)) + beta * d + lift)))
                r = price * (1 - d)
                m = r - cost - ck
                value = s["views"] * (p * m - base * (price - cost)) - \
                    s["views"] * contact.get(s.get("channel"), 0.0)
                if r <= 0 or m < floor * r or (value < 0 and not pol["allow_negative_uplift"]):
                    continue
                qty = {line["item"]: line["qty"] for line in b["items"]}
                found.append(Variant(s["id"], b["id"], b.get("exclusion_group"), value,
                                     s["views"] * p, r, price, d, ck, m, qty,
                                     perk["id"] if perk else None))
        if found:
            out[s["id"]].append(found)
    return out


def segment_plans(doc: dict[str, Any], seg: dict[str, Any], options: list[list[Variant]]
                  ) -> list[tuple[Variant, ...]]:
    pol = {"min_offers_per_view": 1, "max_offers_per_view": 3, **(doc.get("policy") or {})}
    silent = bool(seg.get("silent"))
    hi = 0 if silent else (seg.get("max_offers") if seg.get("max_offers") is not None
                           else pol["max_offers_per_view"])
    lo = 0 if silent else (seg.get("min_offers") if seg.get("min_offers") is not None
                           else pol["min_offers_per_view"])
    slots = {v.group or f"bundle:{v.bundle}" for opts in options for v in opts}
    lo_eff = min(lo, hi, len(slots))
    plans = []
    for combo in itertools.product(*[[None, *opts] for opts in options]):
        chosen = tuple(v for v in combo if v is not None)
        groups = [v.group for v in chosen if v.group]
        if len(groups) != len(set(groups)) or not lo_eff <= len(chosen) <= hi:
            continue
        plans.append(chosen)
    return plans


@dataclass
class Enumeration:
    """Every plan (one plan per segment, combined), its aggregates, and which are feasible."""

    per_segment: list[list[tuple[Variant, ...]]]
    total: np.ndarray  # plans x aggregates
    ok: np.ndarray  # bool per plan

    def plan(self, index: int) -> list[Variant]:
        counts = [len(p) for p in self.per_segment]
        picks = np.unravel_index(index, counts)
        return [v for plans, k in zip(self.per_segment, picks, strict=True) for v in plans[k]]


def enumerate_plans(doc: dict[str, Any], rel_tol: float = 1e-9,
                    extra: Any = None) -> Enumeration:
    """Every plan; `extra(segment, plan)` adds aggregate columns (after the spec's ones)."""
    pol = doc.get("policy") or {}
    variants = variants_of(doc)
    stocked = [i["id"] for i in doc["items"] if i.get("stock") is not None]
    stock = np.array([i["stock"] for i in doc["items"] if i.get("stock") is not None], dtype=float)
    caps = contact_rows(doc)
    # Per segment: a matrix of its plans' aggregates; combined across segments by broadcasting.
    total: np.ndarray | None = None
    per_segment = []
    for seg in doc["segments"]:
        plans = segment_plans(doc, seg, variants[seg["id"]])
        per_segment.append(plans)
        rows = np.array([_aggregate(p, stocked) + contact_usage(caps, seg, p) +
                         (extra(seg["id"], p) if extra else []) for p in plans])
        total = rows if total is None else (total[:, None, :] + rows[None, :, :]).reshape(
            -1, rows.shape[1])
    assert total is not None
    rev, disc_rev, listed, disc_val, spend, margin = total[:, 1:7].T
    usage = total[:, 7:7 + len(stocked)]
    ok = np.ones(len(total), dtype=bool)

    def le(lhs: np.ndarray, rhs: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
        return lhs <= rhs + rel_tol * np.maximum(1.0, scale)

    if stocked:
        ok &= np.all(le(usage, stock[None, :], np.maximum(usage, stock[None, :])), axis=1)
    if pol.get("max_discounted_share") is not None:
        ok &= le(disc_rev, pol["max_discounted_share"] * rev, listed)
    if pol.get("max_avg_discount") is not None:
        ok &= le(disc_val, pol["max_avg_discount"] * listed, listed)
    if pol.get("promotion_budget") is not None:
        ok &= le(spend, pol["promotion_budget"], np.maximum(spend, pol["promotion_budget"]))
    if pol.get("min_aggregate_margin_rate") is not None:
        ok &= le(pol["min_aggregate_margin_rate"] * rev, margin, listed)
    first = 7 + len(stocked)
    for k, (_, _, limit) in enumerate(caps):
        used = total[:, first + k]
        ok &= le(used, limit, np.maximum(used, limit))
    return Enumeration(per_segment, total, ok)


Cap = tuple[str, Any, float]  # (kind, subject, limit)


def contact_rows(doc: dict[str, Any]) -> list[Cap]:
    """Spec section 8's rows 8-10, each with its limit; a frequency cap's subject is the
    audience and its customers."""
    caps: list[Cap] = []
    for a in doc.get("audiences") or []:
        if a.get("max_offers_per_customer") is not None:
            caps.append(("frequency", (a["id"], a["customers"]), float(a["max_offers_per_customer"])))
        if a.get("max_repeats") is not None:
            caps += [("repeat", (a["id"], b["id"]), float(a["max_repeats"]))
                     for b in doc["bundles"]]
    caps += [("capacity", c["id"], float(c["capacity"])) for c in doc.get("channels") or []
             if c.get("capacity") is not None]
    return caps


def contact_usage(caps: list[Cap], seg: dict[str, Any], plan: tuple[Variant, ...]) -> list[float]:
    """What one segment's plan adds to each row 8-10 (offers shown, not takes)."""
    out = []
    for kind, subject, _ in caps:
        if kind == "frequency":
            audience, customers = subject
            out.append(len(plan) * seg["views"] / customers if seg.get("audience") == audience
                       else 0.0)
        elif kind == "repeat":
            out.append(float(sum(v.bundle == subject[1] for v in plan))
                       if seg.get("audience") == subject[0] else 0.0)
        else:
            out.append(len(plan) * seg["views"] if seg.get("channel") == subject else 0.0)
    return out


def best_objective(doc: dict[str, Any], rel_tol: float = 1e-9) -> float | None:
    """The optimum over every plan (None if no plan is feasible)."""
    e = enumerate_plans(doc, rel_tol)
    return float(e.total[e.ok, 0].max()) if e.ok.any() else None


def changes(previous: list[Variant], segment: str, plan: tuple[Variant, ...]) -> int:
    """Offers changed in one segment against yesterday's: a (segment, bundle) pair added,
    removed, or shown with another variant counts once."""
    before = {v.bundle: v.offer for v in previous if v.segment == segment}
    after = {v.bundle: v.offer for v in plan}
    return sum(before.get(b) != after.get(b) for b in before.keys() | after.keys())


def best_stable(doc: dict[str, Any], previous: list[Variant], penalty: float,
                max_changed_segments: int | None) -> float | None:
    """max value - penalty x changes over the feasible plans changing at most
    `max_changed_segments` segments (None if there is none)."""
    def extra(segment: str, plan: tuple[Variant, ...]) -> list[float]:
        n = changes(previous, segment, plan)
        return [float(n), float(n > 0)]

    e = enumerate_plans(doc, extra=extra)
    ok = e.ok.copy()
    if max_changed_segments is not None:
        ok &= e.total[:, -1] <= max_changed_segments
    score = e.total[:, 0] - penalty * e.total[:, -2]
    return float(score[ok].max()) if ok.any() else None


def _aggregate(plan: tuple[Variant, ...], stocked: list[str]) -> list[float]:
    value = sum(v.value for v in plan)
    rev = sum(v.takes * v.revenue for v in plan)
    disc_rev = sum(v.takes * v.revenue for v in plan if v.discount > 0)
    listed = sum(v.takes * v.price for v in plan)
    disc_val = sum(v.takes * v.price * v.discount for v in plan)
    spend = sum(v.takes * (v.price * v.discount + v.perk_cost) for v in plan)
    margin = sum(v.takes * v.margin for v in plan)
    usage = [sum(v.takes * v.qty.get(i, 0) for v in plan) for i in stocked]
    return [value, rev, disc_rev, listed, disc_val, spend, margin, *usage]


def lp_optimum(doc: dict[str, Any]) -> float | None:
    """The LP relaxation's optimum, from the enumeration: each segment mixes its own plans
    (weights summing to 1) and the coupling rows hold on the mix. None if infeasible."""
    from scipy.optimize import linprog

    pol = doc.get("policy") or {}
    variants = variants_of(doc)
    stocked = [i["id"] for i in doc["items"] if i.get("stock") is not None]
    stock = [float(i["stock"]) for i in doc["items"] if i.get("stock") is not None]
    caps = contact_rows(doc)
    columns, owner = [], []
    for k, seg in enumerate(doc["segments"]):
        for plan in segment_plans(doc, seg, variants[seg["id"]]):
            columns.append(_aggregate(plan, stocked) + contact_usage(caps, seg, plan))
            owner.append(k)
    agg = np.array(columns).T  # aggregates x columns
    value, rev, disc_rev, listed, disc_val, spend, margin = agg[:7]
    rows = [*agg[7:7 + len(stocked)], *agg[7 + len(stocked):]]
    limits = [*stock, *(limit for _, _, limit in caps)]
    if pol.get("max_discounted_share") is not None:
        rows.append(disc_rev - pol["max_discounted_share"] * rev)
        limits.append(0.0)
    if pol.get("max_avg_discount") is not None:
        rows.append(disc_val - pol["max_avg_discount"] * listed)
        limits.append(0.0)
    if pol.get("promotion_budget") is not None:
        rows.append(spend)
        limits.append(pol["promotion_budget"])
    if pol.get("min_aggregate_margin_rate") is not None:
        rows.append(pol["min_aggregate_margin_rate"] * rev - margin)
        limits.append(0.0)
    segments = len(doc["segments"])
    eq = np.zeros((segments, len(owner)))
    eq[owner, np.arange(len(owner))] = 1.0
    result = linprog(-value, A_ub=np.array(rows) if rows else None,
                     b_ub=np.array(limits) if rows else None, A_eq=eq, b_eq=np.ones(segments),
                     bounds=(0, None), method="highs")
    return float(-result.fun) if result.status == 0 else None
