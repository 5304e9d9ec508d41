"""Why a (segment, bundle) pair has no candidate: the candidate rules of spec section 3,
replayed for that one pair in the order `optimizer.formulation.candidates` applies them.

A pair loses its variants in stages: the segment is silent, or the pair has no response;
then each variant (a discount of the bundle's ladder, with no perk or one of its perks)
is dropped by `max_discount`, by the margin floor (`r > 0` and `m >= floor * r`), or by
its value (`value >= 0` unless `allow_negative_uplift`; with a contact cost, spec section
8, a variant that would earn without the cost is dropped by the cost). The pair's rule is
the stage that dropped its last variants: the one that, had it not applied, would have
left a candidate. Each variant's own rule and figures are kept for the words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from optimizer.formulation.candidates import Variants
from optimizer.formulation.contacts import Contacts
from optimizer.model.instance import Instance

# The rules, in the order the candidate table applies them (a pair's rule is the last one
# that dropped any of its variants).
SILENT_SEGMENT = "silent_segment"
NO_RESPONSE = "no_response"
EMPTY_LADDER = "empty_ladder"
MAX_DISCOUNT = "max_discount"
MARGIN_FLOOR = "margin_floor"
NEGATIVE_UPLIFT = "negative_uplift"
CONTACT_COST = "contact_cost"
RULES = (SILENT_SEGMENT, NO_RESPONSE, EMPTY_LADDER, MAX_DISCOUNT, MARGIN_FLOOR, NEGATIVE_UPLIFT,
         CONTACT_COST)
_STAGE = {MAX_DISCOUNT: 0, MARGIN_FLOOR: 1, NEGATIVE_UPLIFT: 2, CONTACT_COST: 2}


@dataclass(frozen=True)
class VariantReason:
    """One variant of a pair and the rule that dropped it (None: it is a candidate)."""

    discount: float
    perk: str | None
    rule: str | None
    price: float  # r = P (1 - d)
    margin: float | None  # m = r - C - c_k
    floor: float | None  # the margin floor's rate
    value: float | None  # V (p m - baseline m0) - V c_s, when the margin floor held

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class PairRule:
    """Why a pair has no candidate: the rule, and (past the pair-wide rules) each variant's."""

    rule: str | None  # None: the pair has a candidate
    variants: tuple[VariantReason, ...]


def pair_rule(instance: Instance, variants: Variants, contacts: Contacts, segment: int,
              bundle: int, response: int | None) -> PairRule:
    """The candidate rules replayed for segment row `segment` and bundle row `bundle` (its
    response row `response`, None without one), with the same arithmetic as `expand`, so a
    borderline value falls the same way."""
    policy = instance.policy
    if bool(instance.segments["silent"].iloc[segment]):
        return PairRule(SILENT_SEGMENT, ())
    if response is None:
        return PairRule(NO_RESPONSE, ())
    row = response
    ladder = instance.bundle_ladders()[bundle]
    if not ladder:
        return PairRule(EMPTY_LADDER, ())
    perk_ids = instance.perks["id"].to_numpy(dtype=object)
    perk_names = [None, *(str(perk_ids[k]) for k in
                          np.flatnonzero(instance.perks["bundle"].to_numpy(dtype=object) ==
                                         instance.bundles["id"].iloc[bundle]))]
    price = float(instance.bundle_prices()["price"].iloc[bundle])
    cap = policy.max_discount
    out = [VariantReason(float(d), perk, MAX_DISCOUNT, price * (1.0 - d), None, None, None)
           for d in sorted(ladder) if cap is not None and d > cap for perk in perk_names]
    mine = np.flatnonzero(variants.bundle == bundle)  # ordered by discount, then perk
    if len(mine):
        out += _variant_reasons(instance, variants, contacts, segment, row, mine, perk_ids)
    stages = [_STAGE[v.rule] for v in out if v.rule is not None]
    if len(stages) < len(out):  # some variant survives every rule: a candidate
        return PairRule(None, tuple(out))
    last = max(stages)
    final = [v.rule for v in out if v.rule is not None and _STAGE[v.rule] == last]
    rule = CONTACT_COST if CONTACT_COST in final else final[0]
    return PairRule(rule, tuple(out))


def _variant_reasons(instance: Instance, v: Variants, contacts: Contacts, segment: int,
                     row: int, mine: np.ndarray, perk_ids: np.ndarray) -> list[VariantReason]:
    resp, policy = instance.responses, instance.policy
    views = float(instance.segments["views"].iloc[segment])
    bundle_floor = instance.bundles["min_margin_rate"].to_numpy(dtype=np.float64)
    floor_rate = np.where(np.isnan(bundle_floor), policy.min_margin_rate, bundle_floor)
    take_logit = logit(np.float64(resp["take_rate"].iloc[row]))
    beta = np.float64(resp["price_sensitivity"].iloc[row])
    base = np.float64(resp["baseline_rate"].iloc[row])
    # as `expand` computes it, element for element
    p = expit(take_logit + beta * v.discount[mine] + v.lift[mine])
    contact_cost = views * contacts.impression_cost[segment]
    earned = views * (p * v.margin[mine] - base * v.list_margin[mine])
    value = earned - contact_cost
    floor = floor_rate[v.bundle[mine]]
    out = []
    for k, j in enumerate(mine.tolist()):
        rule: str | None = None
        if not v.offerable[j]:
            rule = MARGIN_FLOOR
        elif value[k] < 0 and not policy.allow_negative_uplift:
            rule = CONTACT_COST if contact_cost > 0 and earned[k] >= 0 else NEGATIVE_UPLIFT
        perk = None if v.perk[j] < 0 else str(perk_ids[v.perk[j]])
        shown = rule != MARGIN_FLOOR
        out.append(VariantReason(float(v.discount[j]), perk, rule, float(v.revenue[j]),
                                 float(v.margin[j]), float(floor[k]),
                                 float(value[k]) if shown else None))
    return out


def segment_responses(instance: Instance, segment: int) -> dict[int, int]:
    """The response rows of a segment, by bundle row."""
    resp = instance.responses
    rows = np.flatnonzero(resp["segment"].to_numpy(dtype=object) ==
                          instance.segments["id"].iloc[segment])
    bundles = pd.Index(instance.bundles["id"]).get_indexer(resp["bundle"].iloc[rows])
    return dict(zip(bundles.tolist(), rows.tolist(), strict=True))


def segment_row(instance: Instance, segment: str) -> int:
    """The row of a segment id, or -1."""
    return int(pd.Index(instance.segments["id"]).get_indexer([segment])[0])


def bundle_row(instance: Instance, bundle: str) -> int:
    """The row of a bundle id, or -1."""
    return int(pd.Index(instance.bundles["id"]).get_indexer([bundle])[0])
