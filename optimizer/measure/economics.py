"""Spec section 3 for any (segment, bundle, discount, perk), by positions into the instance.

Per take: revenue `r = P * (1 - d)`, margin `m = r - C - c_k`, list margin `m0 = P - C`,
promotion spend `P * d + c_k` (section 3, constraint 6); per impression the contact cost `c_s`
of the segment's channel (section 8); and the instance's take probability
`sigmoid(logit(take_rate) + price_sensitivity * d + lift_k)` and `baseline_rate` (NaN where the
pair has no response).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.estimation.glm import logit, sigmoid
from optimizer.model.instance import Instance


@dataclass(frozen=True)
class Economics:
    revenue: np.ndarray  # r per take
    margin: np.ndarray  # m per take
    list_margin: np.ndarray  # m0 per baseline purchase
    list_price: np.ndarray  # P
    spend: np.ndarray  # P * d + c_k per take
    contact: np.ndarray  # c_s per impression
    prob: np.ndarray  # the instance's take probability; NaN without a response
    baseline: np.ndarray  # the instance's baseline rate; NaN without a response


def economics(instance: Instance, segment: np.ndarray, bundle: np.ndarray, discount: np.ndarray,
              perk: np.ndarray) -> Economics:
    """Every array indexed like the arguments (positions; `perk` -1 for none)."""
    prices = instance.bundle_prices()
    price = prices["price"].to_numpy(np.float64)[bundle]
    cost = prices["unit_cost"].to_numpy(np.float64)[bundle]
    perk_cost = np.append(instance.perks["cost"].to_numpy(np.float64), 0.0)[perk]
    lift = np.append(instance.perks["lift"].to_numpy(np.float64), 0.0)[perk]
    revenue = price * (1 - discount)
    take, beta, base = _responses(instance, segment, bundle)
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = sigmoid(logit(take) + beta * discount + lift)
    return Economics(revenue=revenue, margin=revenue - cost - perk_cost, list_margin=price - cost,
                     list_price=price, spend=price * discount + perk_cost,
                     contact=contact_costs(instance)[segment], prob=prob, baseline=base)


def contact_costs(instance: Instance) -> np.ndarray:
    """Per segment, the cost per impression of its channel (0 without one)."""
    channel = pd.Index(instance.channels["id"]).get_indexer(instance.segments["channel"])
    cost = instance.channels["cost_per_impression"].fillna(0.0).to_numpy(np.float64)
    return np.append(cost, 0.0)[channel]


def _responses(instance: Instance, segment: np.ndarray, bundle: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """take_rate, price_sensitivity (0 when not given) and baseline_rate (0 when not given) of
    each (segment, bundle) pair; NaN for a pair with no response."""
    r = instance.responses
    keys = pd.MultiIndex.from_arrays([pd.Index(instance.segments["id"]).get_indexer(r["segment"]),
                                      pd.Index(instance.bundles["id"]).get_indexer(r["bundle"])])
    row = keys.get_indexer(pd.MultiIndex.from_arrays([segment, bundle]))
    found = row >= 0

    def column(name: str, default: float) -> np.ndarray:
        values = np.append(r[name].fillna(default).to_numpy(np.float64), np.nan)
        return np.where(found, values[row], np.nan)

    return column("take_rate", np.nan), column("price_sensitivity", 0.0), \
        column("baseline_rate", 0.0)
