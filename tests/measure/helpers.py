"""Plans and truths for the measurement tests, computed here from the instance's tables (spec
section 3), not by the code under test."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from optimizer.io import load_instance
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan
from tests.constants import ROOT

DEMO = ROOT / "instances" / "demo"
Offer = tuple[str, float, str | None]  # bundle, discount, perk
SetSpec = tuple[str, float, list[Offer]]  # set id, weight, offers

# an integral plan of the demo: one set per segment (site and email segments)
INTEGRAL: dict[str, list[SetSpec]] = {
    "champions-cart": [("a", 1.0, [("laptop-care", 0.0, None), ("lens-and-card", 0.0, None)])],
    "loyal-cart": [("a", 1.0, [("hair-duo", 0.0, None), ("laptop-care", 0.05, None)])],
    "loyal-product": [("a", 1.0, [("laptop-care", 0.0, "free-setup")])],
    "bargain-hunters-cart": [("a", 1.0, [("hair-duo", 0.1, None)])],
    "saas-trial-product": [("a", 1.0, [("saas-pro-upgrade", 0.1, "free-onboarding")])],
    "loyal-email": [("a", 1.0, [("hair-duo", 0.0, None)])],
}
# a split plan: several sets per segment, an empty one where the segment allows none
SPLIT: dict[str, list[SetSpec]] = {
    "champions-cart": [("a", 0.6, [("laptop-care", 0.0, None)]),
                       ("b", 0.4, [("laptop-care", 0.1, None), ("hair-duo", 0.0, None)])],
    "loyal-cart": [("a", 0.5, [("hair-duo", 0.0, None)]), ("b", 0.5, [("hair-duo", 0.1, None)])],
    "loyal-email": [("a", 0.7, [("laptop-care", 0.0, None)]), ("b", 0.3, [])],
    "saas-trial-renewal": [("a", 0.8, [("saas-team-upgrade", 0.0, None)]), ("b", 0.2, [])],
}
# an exploring logging policy: three sets per segment, every one with some weight
EXPLORE: dict[str, list[SetSpec]] = {
    "champions-cart": [("a", 0.5, [("laptop-care", 0.0, None)]),
                       ("b", 0.3, [("laptop-care", 0.1, None)]),
                       ("c", 0.2, [("laptop-care", 0.05, "free-setup")])],
    "loyal-cart": [("a", 0.5, [("hair-duo", 0.0, None)]), ("b", 0.3, [("hair-duo", 0.2, None)]),
                   ("c", 0.2, [("hair-duo", 0.1, None)])],
    "bargain-hunters-cart": [("a", 0.6, [("hair-duo", 0.0, None)]),
                             ("b", 0.25, [("hair-duo", 0.2, None)]),
                             ("c", 0.15, [("laptop-care", 0.1, None)])],
}
# a target served by the exploring policy's least weighted sets: fully supported
EXPLOIT: dict[str, list[SetSpec]] = {
    "champions-cart": [("x", 1.0, [("laptop-care", 0.05, "free-setup")])],
    "loyal-cart": [("x", 1.0, [("hair-duo", 0.1, None)])],
    "bargain-hunters-cart": [("x", 1.0, [("laptop-care", 0.1, None)])],
}


def demo() -> Instance:
    return load_instance(DEMO)


def offer_value(inst: Instance, segment: str, offer: Offer) -> dict[str, float]:
    """Spec section 3 for one offer shown to one view: take probability, margin per take,
    and the incremental margin per view net of contact cost."""
    key = (id(inst), segment, offer)
    if key not in _VALUES:
        _VALUES[key] = (inst, _offer_value(inst, segment, offer))  # the instance kept alive
    return _VALUES[key][1]


_VALUES: dict[tuple[int, str, Offer], tuple[Instance, dict[str, float]]] = {}


def _offer_value(inst: Instance, segment: str, offer: Offer) -> dict[str, float]:
    bundle, discount, perk = offer
    r = inst.responses.set_index(["segment", "bundle"]).loc[(segment, bundle)]
    lines = inst.bundle_items[inst.bundle_items["bundle"] == bundle].merge(
        inst.items, left_on="item", right_on="id")
    reference = float((lines["price"] * lines["qty"]).sum())
    cost = float((lines["cost"] * lines["qty"]).sum())
    given = inst.bundles.set_index("id").loc[bundle, "price"]
    price = reference if pd.isna(given) else float(given)
    perks = inst.perks.set_index(["bundle", "id"])
    lift, perk_cost = (0.0, 0.0) if perk is None else (float(perks.loc[(bundle, perk), "lift"]),
                                                        float(perks.loc[(bundle, perk), "cost"]))
    z = math.log(r["take_rate"] / (1 - r["take_rate"])) + r["price_sensitivity"] * discount + lift
    p = 1 / (1 + math.exp(-z))
    margin = price * (1 - discount) - cost - perk_cost
    channel = inst.segments.set_index("id").loc[segment, "channel"]
    costs = inst.channels.set_index("id")["cost_per_impression"]
    contact = float(costs.get(channel, 0.0)) if isinstance(channel, str) else 0.0
    value = p * margin - r["baseline_rate"] * (price - cost) - contact
    return {"p": p, "margin": margin, "value": value, "price": price * (1 - discount),
            "list_price": price, "baseline": float(r["baseline_rate"])}


def make_plan(inst: Instance, spec: dict[str, list[SetSpec]], split: bool = True) -> Plan:
    """A plan document serving `spec`, its offers' shares and figures from the instance."""
    views = inst.segments.set_index("id")["views"]
    offers: dict[tuple[str, str, float, str | None], float] = {}
    for segment, sets in spec.items():
        for _, weight, held in sets:
            for offer in held:
                key = (segment, *offer)
                offers[key] = offers.get(key, 0.0) + weight
    rows = []
    for (segment, bundle, discount, perk), share in offers.items():
        v = offer_value(inst, segment, (bundle, discount, perk))
        n = share * float(views[segment])
        rows.append({"segment": segment, "bundle": bundle, "discount": discount, "perk": perk,
                     "share": share, "reference_price": v["list_price"], "price": v["price"],
                     "expected_takes": n * v["p"], "expected_incremental_margin": n * v["value"]})
    doc: dict[str, Any] = {"format": "offeropt/plan@1", "instance": inst.name, "status": "optimal",
                           "objective": sum(r["expected_incremental_margin"] for r in rows),
                           "bound": None, "gap": None, "solver": {}, "offers": rows, "kpis": None,
                           "warnings": []}
    if split:
        doc["offer_sets"] = [{"segment": s, "set": k, "weight": w, "explore": False,
                              "offers": [{"bundle": b, "discount": d, "perk": p} for b, d, p in o]}
                             for s, sets in spec.items() for k, w, o in sets]
    return Plan.from_dict(doc)


def true_value_per_view(inst: Instance, spec: dict[str, list[SetSpec]], views: pd.Series,
                        holdout: float) -> float:
    """The policy's expected incremental margin per view, over segments weighted by `views`
    (a view of a segment not in `spec` earns 0), `holdout` of them held out."""
    total = 0.0
    for segment, n in views.items():
        per = sum(w * sum(offer_value(inst, str(segment), o)["value"] for o in held)
                  for _, w, held in spec.get(str(segment), []))
        total += n * (1 - holdout) * per
    return total / float(views.sum())


def realized_truth(inst: Instance, logs: pd.DataFrame) -> dict[str, float]:
    """What the logged traffic was expected to earn under the truth: takes, and incremental
    margin net of contact cost, over the logged shown rows."""
    shown = logs[logs["shown"] == 1]
    values = [offer_value(inst, s, (b, d, p or None)) for s, b, d, p in
              zip(shown["segment"], shown["bundle"], shown["discount"], shown["perk"], strict=True)]
    n = shown["views"].to_numpy(np.float64)
    return {"takes": float(np.dot(n, [v["p"] for v in values])),
            "margin": float(np.dot(n, [v["value"] for v in values])),
            "impressions": float(n.sum())}
