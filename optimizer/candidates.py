"""Candidate expansion (spec section 3): every offerable variant, as whole arrays.

This is the single source of the model's semantics. Every backend reads the
table built here; only `optimizer.check` re-derives the rules on its own, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from optimizer.model import Instance

MAX_SLOT_WARNINGS = 1000


@dataclass(frozen=True)
class Candidates:
    """One row per candidate variant x[s, b, v]; per-unit quantities are for the whole segment."""

    segment: np.ndarray  # int32, row of instance.segments
    bundle: np.ndarray  # int32, row of instance.bundles
    discount: np.ndarray  # float64, d
    perk: np.ndarray  # int32, row of instance.perks, -1 for none
    views: np.ndarray  # float64, V
    take_prob: np.ndarray  # float64, p
    list_price: np.ndarray  # float64, P
    reference_price: np.ndarray  # float64, sum of item prices
    perk_cost: np.ndarray  # float64, c_k
    revenue: np.ndarray  # float64, r = P (1 - d), per take
    margin: np.ndarray  # float64, m = r - C - c_k, per take
    value: np.ndarray  # float64, V (p m - baseline m0)
    slot_key: np.ndarray  # int64, bundle row or n_bundles + exclusion group code
    lo: np.ndarray  # per segment: lo_eff
    hi: np.ndarray  # per segment
    showable: np.ndarray  # per segment: eligible ungrouped bundles + distinct groups
    group_names: tuple[str, ...]
    warnings: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.segment)

    @property
    def takes(self) -> np.ndarray:
        """Expected takes w per unit of x: V * p."""
        out: np.ndarray = self.views * self.take_prob
        return out


def bundle_variants(instance: Instance) -> pd.DataFrame:
    """Per bundle, its (discount, perk) variants: the ladder (capped by max_discount) x (none + perks)."""
    max_d = instance.policy.max_discount
    perk_bundle = pd.Index(instance.bundles["id"]).get_indexer(instance.perks["bundle"])
    perks_of = pd.Series(np.arange(len(perk_bundle))).groupby(perk_bundle).agg(list).to_dict()
    rows: list[tuple[int, float, int]] = []
    for b, ladder in enumerate(instance.bundle_ladders()):
        options = [-1, *perks_of.get(b, [])]
        rows += [(b, d, k) for d in ladder if max_d is None or d <= max_d for k in options]
    return pd.DataFrame(rows, columns=["bundle", "discount", "perk"]).astype(
        {"bundle": np.int32, "discount": np.float64, "perk": np.int32})


def expand(instance: Instance) -> Candidates:
    """Build the candidate table for every (segment, bundle, discount, perk) at once."""
    segs, resp, policy = instance.segments, instance.responses, instance.policy
    bundle_ids = pd.Index(instance.bundles["id"])
    n_bundles = len(bundle_ids)
    r_seg = pd.Index(segs["id"]).get_indexer(resp["segment"]).astype(np.int32)
    r_bun = bundle_ids.get_indexer(resp["bundle"]).astype(np.int32)
    silent = segs["silent"].to_numpy(dtype=bool)

    variants = bundle_variants(instance)
    v_count = np.bincount(variants["bundle"], minlength=n_bundles)
    v_start = np.cumsum(v_count) - v_count
    live = np.flatnonzero(~silent[r_seg])
    per_resp = v_count[r_bun[live]]
    resp_row = np.repeat(live, per_resp)
    within = np.arange(per_resp.sum()) - np.repeat(np.cumsum(per_resp) - per_resp, per_resp)
    var_row = v_start[r_bun[resp_row]] + within

    seg = r_seg[resp_row]
    bun = r_bun[resp_row]
    d = variants["discount"].to_numpy()[var_row]
    perk = variants["perk"].to_numpy()[var_row]
    # A trailing zero makes perk -1 ("none") index a cost and lift of 0.
    perk_cost = np.append(instance.perks["cost"].to_numpy(dtype=np.float64), 0.0)[perk]
    perk_lift = np.append(instance.perks["lift"].to_numpy(dtype=np.float64), 0.0)[perk]

    prices = instance.bundle_prices()
    price = prices["price"].to_numpy()[bun]
    unit_cost = prices["unit_cost"].to_numpy()[bun]
    take_rate = resp["take_rate"].to_numpy(dtype=np.float64)[resp_row]
    baseline = resp["baseline_rate"].to_numpy(dtype=np.float64)[resp_row]
    beta = resp["price_sensitivity"].to_numpy(dtype=np.float64)[resp_row]
    views = segs["views"].to_numpy(dtype=np.float64)[seg]

    p = expit(logit(take_rate) + beta * d + perk_lift)
    revenue = price * (1.0 - d)
    margin = revenue - unit_cost - perk_cost
    value = views * (p * margin - baseline * (price - unit_cost))
    bundle_floor = instance.bundles["min_margin_rate"].to_numpy(dtype=np.float64)
    floor = np.where(np.isnan(bundle_floor), policy.min_margin_rate, bundle_floor)[bun]
    keep = (revenue > 0) & (margin >= floor * revenue)
    if not policy.allow_negative_uplift:
        keep &= value >= 0

    groups = instance.bundles["exclusion_group"]
    group_codes, group_names = pd.factorize(groups, use_na_sentinel=True)
    group_codes = np.asarray(group_codes)
    slot_key = np.where(group_codes[bun] >= 0, n_bundles + group_codes[bun], bun).astype(np.int64)

    k = keep
    seg_k = seg[k]
    lo_req, hi = _offer_limits(instance)
    showable = _showable(seg_k, slot_key[k], len(segs), n_bundles + len(group_names))
    lo = np.minimum(np.minimum(lo_req, hi), showable)
    return Candidates(
        segment=seg_k, bundle=bun[k], discount=d[k], perk=perk[k], views=views[k],
        take_prob=p[k], list_price=price[k],
        reference_price=prices["reference_price"].to_numpy()[bun[k]], perk_cost=perk_cost[k],
        revenue=revenue[k], margin=margin[k], value=value[k], slot_key=slot_key[k],
        lo=lo, hi=hi, showable=showable,
        group_names=tuple(str(g) for g in group_names),
        warnings=_slot_warnings(segs["id"], lo, lo_req, showable),
    )


def _offer_limits(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    segs, policy = instance.segments, instance.policy
    silent = segs["silent"].to_numpy(dtype=bool)
    lo = segs["min_offers"].fillna(policy.min_offers_per_view).to_numpy(dtype=np.int64)
    hi = segs["max_offers"].fillna(policy.max_offers_per_view).to_numpy(dtype=np.int64)
    return np.where(silent, 0, lo), np.where(silent, 0, hi)


def _showable(seg: np.ndarray, slot: np.ndarray, n_segments: int, n_slots: int) -> np.ndarray:
    """Per segment: how many distinct slots (ungrouped bundles, exclusion groups) have a candidate."""
    pairs = np.unique(seg.astype(np.int64) * n_slots + slot)
    return np.bincount(pairs // n_slots, minlength=n_segments).astype(np.int64)


def _slot_warnings(ids: pd.Series, lo: np.ndarray, lo_req: np.ndarray,
                   showable: np.ndarray) -> tuple[str, ...]:
    short = np.flatnonzero(lo < lo_req)
    out = []
    for s in short[:MAX_SLOT_WARNINGS]:
        need, have = int(lo_req[s]), int(showable[s])
        out.append(f"segment {ids.iloc[s]!r}: {need} offer{'s' * (need != 1)} required, "
                   f"{have} candidate{'s' * (have != 1)}")
    if len(short) > MAX_SLOT_WARNINGS:
        out.append(f"... and {len(short) - MAX_SLOT_WARNINGS} more segments with unfilled slots")
    return tuple(out)
