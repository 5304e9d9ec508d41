"""The baseline: the model written the usual PuLP way, one Python loop step per variable.

Same semantics as offeropt's candidate table (the benchmarks assert equal optima); used
only to measure what vectorized expansion and highspy's array API buy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pandas as pd
import pulp

from optimizer.model.instance import Instance

Key = tuple[str, str, float, "str | None"]


def variants(inst: Instance) -> tuple[dict[Key, float], dict[str, dict[Key, float]]]:
    """Every candidate's value and row coefficients, computed one variant at a time."""
    pol = inst.policy
    items = {r.id: r for r in inst.items.itertuples()}
    lines: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for r in inst.bundle_items.itertuples():
        lines[r.bundle].append((r.item, int(r.qty)))
    perks: dict[str, list[Any]] = defaultdict(list)
    for r in inst.perks.itertuples():
        perks[r.bundle].append(r)
    bundles = {r.id: r for r in inst.bundles.itertuples()}
    segments = {r.id: r for r in inst.segments.itertuples()}
    value: dict[Key, float] = {}
    coef: dict[str, dict[Key, float]] = defaultdict(dict)
    for resp in inst.responses.itertuples():
        seg, b = segments[resp.segment], bundles[resp.bundle]
        if seg.silent:
            continue
        ref = sum(items[i].price * q for i, q in lines[b.id])
        cost = sum(items[i].cost * q for i, q in lines[b.id])
        price = ref if math.isnan(b.price) else b.price
        floor = pol.min_margin_rate if math.isnan(b.min_margin_rate) else b.min_margin_rate
        ladder = pol.discount_ladder if b.discounts is None else b.discounts
        for d in ladder:
            if pol.max_discount is not None and d > pol.max_discount:
                continue
            for perk in [None, *perks[b.id]]:
                ck, lift = (perk.cost, perk.lift) if perk else (0.0, 0.0)
                z = math.log(resp.take_rate / (1 - resp.take_rate)) + resp.price_sensitivity * d + lift
                p = 1 / (1 + math.exp(-z))
                r = price * (1 - d)
                m = r - cost - ck
                v = seg.views * (p * m - resp.baseline_rate * (price - cost))
                if r <= 0 or m < floor * r or (v < 0 and not pol.allow_negative_uplift):
                    continue
                key = (seg.id, b.id, d, perk.id if perk else None)
                value[key] = v
                w = seg.views * p
                coef["rev"][key], coef["list"][key] = w * r, w * price
                coef["disc"][key], coef["spend"][key] = w * price * d, w * (price * d + ck)
                coef["margin"][key] = w * m
                for item, q in lines[b.id]:
                    coef[f"item:{item}"][key] = w * q
    return value, coef


def build(inst: Instance) -> tuple[pulp.LpProblem, dict[Key, pulp.LpVariable], dict[Key, float]]:
    pol = inst.policy
    value, coef = variants(inst)
    prob = pulp.LpProblem("plain", pulp.LpMaximize)
    x = {k: prob.add_variable(f"x{j}", 0, 1, pulp.LpBinary) for j, k in enumerate(value)}
    prob.setObjective(pulp.lpSum(value[k] * x[k] for k in x))
    groups = dict(zip(inst.bundles["id"], inst.bundles["exclusion_group"], strict=True))
    by_pair: dict[Any, list[Key]] = defaultdict(list)
    by_slot: dict[Any, list[Key]] = defaultdict(list)
    by_seg: dict[str, list[Key]] = defaultdict(list)
    for k in x:
        s, b = k[0], k[1]
        group = groups[b]
        by_pair[(s, b)].append(k)
        # no group (None, or <NA> in a loaded catalog's string column): the bundle is its own slot
        by_slot[(s, f"bundle:{b}" if pd.isna(group) else group)].append(k)
        by_seg[s].append(k)
    for keys in [*by_slot.values(), *by_pair.values()]:
        prob += pulp.lpSum(x[k] for k in keys) <= 1
    for seg in inst.segments.itertuples():
        hi = 0 if seg.silent else (pol.max_offers_per_view if pd.isna(seg.max_offers)
                                   else int(seg.max_offers))
        lo = 0 if seg.silent else (pol.min_offers_per_view if pd.isna(seg.min_offers)
                                   else int(seg.min_offers))
        keys = by_seg.get(seg.id, [])
        lo_eff = min(lo, hi, len({slot for (s, slot) in by_slot if s == seg.id}))
        if keys:
            prob += pulp.lpSum(x[k] for k in keys) <= hi
            if lo_eff:
                prob += pulp.lpSum(x[k] for k in keys) >= lo_eff
    for item in inst.items.itertuples():
        use = coef.get(f"item:{item.id}")
        if not math.isnan(item.stock) and use:
            prob += pulp.lpSum(c * x[k] for k, c in use.items()) <= item.stock
    if pol.max_discounted_share is not None:
        prob += pulp.lpSum(coef["rev"][k] * ((k[2] > 0) - pol.max_discounted_share) * x[k]
                           for k in x) <= 0
    if pol.max_avg_discount is not None:
        prob += pulp.lpSum((coef["disc"][k] - pol.max_avg_discount * coef["list"][k]) * x[k]
                           for k in x) <= 0
    if pol.promotion_budget is not None:
        prob += pulp.lpSum(coef["spend"][k] * x[k] for k in x) <= pol.promotion_budget
    if pol.min_aggregate_margin_rate is not None:
        prob += pulp.lpSum((coef["margin"][k] - pol.min_aggregate_margin_rate * coef["rev"][k])
                           * x[k] for k in x) >= 0
    return prob, x, value


def solver(gap: float, time_limit: float | None = None) -> pulp.HiGHS:
    return pulp.HiGHS(msg=False, gapRel=gap, threads=1, timeLimit=time_limit)


def solve(inst: Instance, gap: float, time_limit: float | None = None) -> float:
    prob, x, value = build(inst)
    prob.solve(solver(gap, time_limit))
    return sum(value[k] for k, var in x.items() if (var.varValue or 0) > 0.5)


def build_for_highs(inst: Instance) -> pulp.LpProblem:
    """Build the PuLP model and hand it to HiGHS through PuLP's adapter, without solving."""
    prob, _, _ = build(inst)
    adapter = solver(1e-4)
    adapter.createAndConfigureSolver(prob)
    adapter.buildSolverModel(prob)
    return prob
