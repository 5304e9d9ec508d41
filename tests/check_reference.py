"""The plan checker as it was before it went columnar: every variant of every response as
pandas rows. Kept, unchanged but for this docstring, only as the oracle of
`tests/plan/test_check_equivalence.py`, which holds the checker to its verdicts and recomputed
values on small instances. Not for use at any size: it is the reason the checker was rewritten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import Issue
from optimizer.model.instance import Instance

REL_TOL = 1e-6
STATUSES = {"optimal", "feasible", "infeasible", "time_limit", "error"}
PLAN_STATUSES = {"optimal", "feasible"}
_NO_PERK = "\0none"  # a join key for "no perk" that no perk id can equal


@dataclass(frozen=True)
class CheckReport:
    violations: tuple[str, ...]
    objective: float | None
    kpis: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations


def _close(a: float, b: float, scale: float = 1.0) -> bool:
    return abs(a - b) <= REL_TOL * max(1.0, abs(a), abs(b), scale)


def _variants(inst: Instance) -> pd.DataFrame:
    """Every (segment, bundle, discount, perk) of a response, with its economics and verdict."""
    pol = inst.policy
    items = inst.items.set_index("id")
    lines = inst.bundle_items.join(items[["price", "cost"]], on="item")
    lines = lines.assign(p=lines["price"] * lines["qty"], c=lines["cost"] * lines["qty"])
    econ = lines.groupby("bundle")[["p", "c"]].sum().rename(columns={"p": "ref", "c": "C"})
    bundles = inst.bundles.set_index("id").join(econ)
    bundles["P"] = bundles["price"].fillna(bundles["ref"])
    bundles["floor"] = bundles["min_margin_rate"].fillna(pol.min_margin_rate)
    ladder = [(b, float(d)) for b, own in zip(bundles.index, bundles["discounts"], strict=True)
              for d in (pol.discount_ladder if own is None else own)]
    ladders = pd.DataFrame(ladder, columns=["bundle", "discount"])
    none = pd.DataFrame({"bundle": bundles.index, "perk": None, "perk_cost": 0.0, "lift": 0.0})
    perks = inst.perks.rename(columns={"id": "perk", "cost": "perk_cost"})
    options = pd.concat([none, perks[["bundle", "perk", "perk_cost", "lift"]]], ignore_index=True)
    seg = inst.segments.set_index("id")
    v = (inst.responses.merge(ladders, on="bundle").merge(options, on="bundle")
         .join(bundles[["P", "C", "ref", "floor", "exclusion_group"]], on="bundle")
         .join(seg[["views", "silent"]], on="segment"))
    z = np.log(v["take_rate"] / (1 - v["take_rate"])) + v["price_sensitivity"] * v["discount"] \
        + v["lift"]
    v["prob"] = 1.0 / (1.0 + np.exp(-z))
    v["r"] = v["P"] * (1 - v["discount"])
    v["m"] = v["r"] - v["C"] - v["perk_cost"]
    v["value"] = v["views"] * (v["prob"] * v["m"] - v["baseline_rate"] * (v["P"] - v["C"]))
    ok = ~v["silent"] & (v["r"] > 0) & (v["m"] >= v["floor"] * v["r"] - 1e-9 * v["r"].abs())
    if pol.max_discount is not None:
        ok &= v["discount"] <= pol.max_discount
    if not pol.allow_negative_uplift:
        ok &= v["value"] >= -1e-9 * (v["views"] * v["P"]).abs()
    v["candidate"] = ok
    v["slot"] = np.where(v["exclusion_group"].isna(), "bundle:" + v["bundle"],
                         "group:" + v["exclusion_group"].fillna(""))
    return v


def plan_issues(plan: Any) -> list[Issue]:
    """Fields whose JSON type is wrong, so that no rule can even be evaluated on them: each
    offer's `segment`, `bundle`, `discount`, `perk` and `share`, and `offers` and `kpis`."""
    if not isinstance(plan, dict):
        return [Issue("plan", "must be a JSON object", plan)]
    offers = plan.get("offers")
    if not isinstance(offers, list):
        return [Issue("offers", "must be a list of objects", offers)]
    issues = []
    for i, offer in enumerate(offers):
        if not isinstance(offer, dict):
            issues.append(Issue(f"offers[{i}]", "must be an object", offer))
            continue
        for name, ok, rule in _OFFER_TYPES:
            if name in offer and not ok(offer[name]):
                issues.append(Issue(f"offers[{i}].{name}", rule, offer[name]))
    if not isinstance(plan.get("kpis"), dict | None):
        issues.append(Issue("kpis", "must be an object or null", plan.get("kpis")))
    return issues


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_OFFER_TYPES: tuple[tuple[str, Any, str], ...] = (
    ("segment", lambda v: isinstance(v, str), "must be a string (a segment id)"),
    ("bundle", lambda v: isinstance(v, str), "must be a string (a bundle id)"),
    ("discount", _is_number, "must be a number"),
    ("perk", lambda v: v is None or isinstance(v, str), "must be a string (a perk id) or null"),
    ("share", _is_number, "must be a number in (0, 1]"),
)


def check_plan(inst: Instance, plan: dict[str, Any]) -> CheckReport:
    """Every rule a plan must meet; an empty `violations` means the plan is sound."""
    bad: list[str] = []
    if plan.get("format") != "offeropt/plan@1":
        bad.append(f"format: must be 'offeropt/plan@1', got {plan.get('format')!r}")
    if plan.get("instance") != inst.name:
        bad.append(f"instance: must be {inst.name!r}, got {plan.get('instance')!r}")
    status = plan.get("status")
    status = status if isinstance(status, str) else repr(status)  # a list is not hashable
    if status not in STATUSES:
        bad.append(f"status: must be one of {sorted(STATUSES)}, got {status!r}")
    malformed = plan_issues(plan)
    if malformed:  # no rule can be evaluated on fields of the wrong type
        return CheckReport((*bad, *(str(i) for i in malformed)), None, {})
    offers = plan["offers"]
    sets = plan.get("offer_sets")
    if status not in PLAN_STATUSES:
        if offers:
            bad.append(f"offers: a plan with status {status!r} must have no offers")
        if sets:
            bad.append(f"offer_sets: a plan with status {status!r} must have no offer sets")
        return CheckReport(tuple(bad), None, {})

    variants = _variants(inst)
    chosen = _match_offers(_offers_frame(offers), variants, bad)
    _check_constraints(inst, chosen, variants, bad)
    if sets is not None:
        _check_offer_sets(inst, sets, offers, variants, bad)
    kpis = _kpis(inst, chosen)
    objective = float(kpis["expected_incremental_margin"])
    _check_totals(plan, objective, kpis, bad)
    return CheckReport(tuple(bad), objective, kpis)


def evaluate_plan(truth: Instance, plan: dict[str, Any]) -> CheckReport:
    """What a plan realizes if `truth` holds: its value, KPIs and the rules it breaks there.

    Unlike `check_plan` the plan's own figures are not compared (they came from other
    estimates); offers that are no variant of `truth` count as violations and add nothing.
    """
    malformed = plan_issues(plan)
    if malformed:
        return CheckReport(tuple(str(i) for i in malformed), None, {})
    offers = plan["offers"]
    bad: list[str] = []
    variants = _variants(truth)
    chosen = _match_offers(_offers_frame(offers), variants, bad, compare_claims=False)
    _check_constraints(truth, chosen, variants, bad)
    kpis = _kpis(truth, chosen)
    return CheckReport(tuple(bad), float(kpis["expected_incremental_margin"]), kpis)


def _offers_frame(offers: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(offers, columns=["segment", "bundle", "discount", "perk", "share",
                                         "reference_price", "price", "expected_takes",
                                         "expected_incremental_margin"])


def _match_offers(frame: pd.DataFrame, variants: pd.DataFrame, bad: list[str],
                  compare_claims: bool = True) -> pd.DataFrame:
    frame = frame.assign(perk=frame["perk"].where(frame["perk"].notna(), None), pos=range(len(frame)))
    for i, share in enumerate(frame["share"]):
        if not isinstance(share, int | float) or not 0 < share <= 1:
            bad.append(f"offers[{i}].share: must be in (0, 1], got {share!r}")
    key = ["segment", "bundle", "discount", "perk"]
    v = variants.assign(perk=variants["perk"].fillna(_NO_PERK))
    f = frame.assign(perk=frame["perk"].astype(object).fillna(_NO_PERK),
                     discount=pd.to_numeric(frame["discount"], errors="coerce"))
    m = f.merge(v, on=key, how="left", suffixes=("", "_v"), indicator="matched")
    for row in m.itertuples():
        where = f"offers[{row.pos}]"
        if row.matched != "both":
            perk = None if row.perk == _NO_PERK else row.perk
            bad.append(f"{where}: must be a variant of a (segment, bundle) response with a discount"
                       f" of the bundle's ladder and one of its perks, got ({row.segment!r}, "
                       f"{row.bundle!r}, {row.discount!r}, {perk!r})")
        elif not row.candidate:
            bad.append(f"{where}: must be a candidate (segment not silent, r > 0, margin floor, "
                       f"max_discount, non-negative uplift), got ({row.segment!r}, {row.bundle!r}, "
                       f"discount {row.discount})")
        elif compare_claims:
            for field, truth in (("reference_price", row.ref), ("price", row.r),
                                 ("expected_takes", row.share * row.views * row.prob),
                                 ("expected_incremental_margin", row.share * row.value)):
                got = getattr(row, field)
                if not isinstance(got, int | float) or not _close(float(got), float(truth)):
                    bad.append(f"{where}.{field}: must be {truth!r}, got {got!r}")
    return m[m["matched"] == "both"].drop(columns="matched")


def _check_constraints(inst: Instance, chosen: pd.DataFrame, variants: pd.DataFrame,
                       bad: list[str]) -> None:
    tol = 1e-6
    per_pair = chosen.groupby(["segment", "bundle"])["share"].sum()
    for (s, b), total in per_pair[per_pair > 1 + tol].items():
        bad.append(f"segment {s!r}, bundle {b!r}: at most one variant, got shares summing to {total}")
    grouped = chosen[chosen["exclusion_group"].notna()]
    per_group = grouped.groupby(["segment", "exclusion_group"])["share"].sum()
    for (s, g), total in per_group[per_group > 1 + tol].items():
        bad.append(f"segment {s!r}, exclusion group {g!r}: at most one bundle, got {total}")

    pol = inst.policy
    shown = chosen.groupby("segment")["share"].sum()
    for s, (lo_eff, hi) in _offer_limits(inst, variants).items():
        n = float(shown.get(s, 0.0))
        if not lo_eff - tol <= n <= hi + tol:
            bad.append(f"segment {s!r}: must show between {lo_eff} and {hi} offers, got {n:g}")

    t = _totals(inst, chosen)
    stock = inst.items.set_index("id")["stock"]
    for item, u in t["used"].items():
        if np.isfinite(stock[item]) and u > stock[item] + tol * max(1.0, stock[item]):
            bad.append(f"inventory of {item!r}: must be <= stock {stock[item]:g}, got {u:.6g}")

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


def _offer_limits(inst: Instance, variants: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per segment id: (lo_eff, hi) of constraint 3."""
    pol = inst.policy
    showable = variants[variants["candidate"]].groupby("segment")["slot"].nunique()
    out = {}
    for s, row in inst.segments.set_index("id").iterrows():
        silent = bool(row["silent"])
        hi = 0 if silent else int(pol.max_offers_per_view if pd.isna(row["max_offers"])
                                  else row["max_offers"])
        lo = 0 if silent else int(pol.min_offers_per_view if pd.isna(row["min_offers"])
                                  else row["min_offers"])
        out[str(s)] = (min(lo, hi, int(showable.get(s, 0))), hi)
    return out


def _id(value: Any) -> Any:
    """An id as a join key: strings and None as they are, anything else (malformed) as text."""
    return value if value is None or isinstance(value, str) else f"\0{value!r}"


def _number(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else math.nan


def _offer_key(segment: Any, bundle: Any, discount: Any, perk: Any) -> tuple[Any, ...]:
    """A hashable (segment, bundle, discount, perk); discounts compared to 1e-9."""
    d = _number(discount)
    return (_id(segment), _id(bundle), repr(discount) if math.isnan(d) else round(d, 9),
            _NO_PERK if perk is None else _id(perk))


def _check_offer_sets(inst: Instance, sets: Any, offers: list[dict[str, Any]],
                      variants: pd.DataFrame, bad: list[str]) -> None:
    """Spec section 7: every set meets constraints 1-3 on its own, a segment's weights sum to
    1, and each offer's share is the total weight of the sets holding it."""
    tol = 1e-6
    if not isinstance(sets, list) or not all(isinstance(e, dict) for e in sets):
        bad.append("offer_sets: must be a list of objects")
        return
    limits = _offer_limits(inst, variants)
    group_of = dict(zip(inst.bundles["id"], inst.bundles["exclusion_group"], strict=True))
    ids: dict[str, set[str]] = {}  # per segment with sets: its set ids
    total: dict[str, float] = {}  # per segment: the sum of its sets' weights
    rows = []  # (set, offer, segment, bundle, discount, perk, weight or None)
    for i, entry in enumerate(sets):
        where = f"offer_sets[{i}]"
        s = entry.get("segment")
        if not isinstance(s, str) or s not in limits:
            bad.append(f"{where}.segment: must be a segment of the instance, got {s!r}")
            continue
        set_id = entry.get("set")
        ids.setdefault(s, set())
        if not isinstance(set_id, str) or not set_id:
            bad.append(f"{where}.set: must be a non-empty string, got {set_id!r}")
        elif set_id in ids[s]:
            bad.append(f"{where}.set: must be unique within segment {s!r}, got {set_id!r} again")
        else:
            ids[s].add(set_id)
        weight = entry.get("weight")
        ok_weight = isinstance(weight, int | float) and not isinstance(weight, bool) \
            and 0 < weight <= 1
        if not ok_weight:
            bad.append(f"{where}.weight: must be in (0, 1], got {weight!r}")
            total[s] = math.nan  # the sum is not checked again: this is the error
        else:
            total[s] = total.get(s, 0.0) + float(weight)
        if not isinstance(entry.get("explore", False), bool):
            bad.append(f"{where}.explore: must be true or false, got {entry.get('explore')!r}")
        held = entry.get("offers")
        if not isinstance(held, list) or not all(isinstance(o, dict) for o in held):
            bad.append(f"{where}.offers: must be a list of objects")
            continue
        lo, hi = limits[s]
        if not lo <= len(held) <= hi:
            bad.append(f"{where}: must hold between {lo} and {hi} offers, got {len(held)}")
        bundles = [_id(o.get("bundle")) for o in held]
        for b in sorted({b for b in bundles if bundles.count(b) > 1}, key=repr):
            bad.append(f"{where}: at most one variant per bundle, got {bundles.count(b)} of "
                       f"bundle {b!r}")
        in_group: dict[str, set[str]] = {}
        for b in bundles:
            g = group_of.get(b)
            if isinstance(g, str):
                in_group.setdefault(g, set()).add(b)
        for g, members in sorted(in_group.items()):
            if len(members) > 1:
                bad.append(f"{where}: at most one bundle per exclusion group, got "
                           f"{len(members)} in group {g!r} ({', '.join(sorted(members))})")
        for j, o in enumerate(held):
            rows.append((i, j, s, o.get("bundle"), o.get("discount"), o.get("perk"),
                         float(weight) if ok_weight else None))

    for s, summed in total.items():
        if not math.isnan(summed) and abs(summed - 1.0) > tol:
            bad.append(f"segment {s!r}: offer set weights must sum to 1, got {summed!r}")
    for s in sorted({_id(o.get("segment")) for o in offers} - set(ids), key=repr):
        bad.append(f"segment {s!r}: has offers, so must have offer sets (the plan has offer_sets)")

    f = pd.DataFrame({"segment": pd.Series([r[2] for r in rows], dtype=object),
                      "bundle": pd.Series([_id(r[3]) for r in rows], dtype=object),
                      "discount": pd.Series([_number(r[4]) for r in rows], dtype=np.float64),
                      "perk": pd.Series([_NO_PERK if r[5] is None else _id(r[5]) for r in rows],
                                        dtype=object)})
    v = variants.loc[variants["candidate"], ["segment", "bundle", "discount", "perk"]]
    v = v.assign(perk=v["perk"].fillna(_NO_PERK))
    m = f.merge(v, on=["segment", "bundle", "discount", "perk"], how="left", indicator="matched")
    # a left merge on unique right keys keeps the left rows, in order: one per set offer
    for (i, j, s, b, d, p, _), matched in zip(rows, m["matched"], strict=True):
        if matched != "both":
            bad.append(f"offer_sets[{i}].offers[{j}]: must be a candidate of segment {s!r}, "
                       f"got ({b!r}, {d!r}, {p!r})")
    weight_of: dict[tuple[Any, ...], float] = {}
    for _, _, s, b, d, p, w in rows:
        if w is not None:
            key = _offer_key(s, b, d, p)
            weight_of[key] = weight_of.get(key, 0.0) + w

    listed = set()
    for k, o in enumerate(offers):
        key = _offer_key(o.get("segment"), o.get("bundle"), o.get("discount"), o.get("perk"))
        listed.add(key)
        if _id(o.get("segment")) not in ids:
            continue  # reported above
        expected, share = weight_of.get(key, 0.0), o.get("share")
        if not isinstance(share, int | float) or abs(float(share) - expected) > tol:
            bad.append(f"offers[{k}].share: must be the total weight of the offer sets holding "
                       f"it, {expected!r}, got {share!r}")
    for i, j, s, b, d, p, _ in rows:
        if _offer_key(s, b, d, p) not in listed:
            bad.append(f"offer_sets[{i}].offers[{j}]: must be one of the plan's offers, got "
                       f"({s!r}, {b!r}, {d!r}, {p!r})")


def _totals(inst: Instance, chosen: pd.DataFrame) -> dict[str, Any]:
    """The plan's sums over offers, with w = share * V * p (spec section 4)."""
    w = chosen["share"] * chosen["views"] * chosen["prob"]
    lines = inst.bundle_items.merge(chosen.assign(w=w)[["bundle", "w"]], on="bundle")
    return {
        "takes": float(w.sum()),
        "impressions": float((chosen["share"] * chosen["views"]).sum()),
        "value": float((chosen["share"] * chosen["value"]).sum()),
        "revenue": float((w * chosen["r"]).sum()),
        "listed": float((w * chosen["P"]).sum()),
        "margin": float((w * chosen["m"]).sum()),
        "discounted_revenue": float((w * chosen["r"] * (chosen["discount"] > 0)).sum()),
        "discount_value": float((w * chosen["P"] * chosen["discount"]).sum()),
        "spend": float((w * (chosen["P"] * chosen["discount"] + chosen["perk_cost"])).sum()),
        "used": (lines["w"] * lines["qty"]).groupby(lines["item"]).sum(),
    }


def _kpis(inst: Instance, chosen: pd.DataFrame) -> dict[str, Any]:
    t = _totals(inst, chosen)

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else 0.0

    stocked = inst.items[inst.items["stock"].notna()]
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
        "inventory": {str(i): {"used": float(t["used"].get(i, 0.0)), "stock": float(s)}
                      for i, s in zip(stocked["id"], stocked["stock"], strict=True)},
    }


def _check_totals(plan: dict[str, Any], objective: float, kpis: dict[str, Any],
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
        if name == "inventory":
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
