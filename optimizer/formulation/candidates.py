"""Candidate expansion (spec section 3): every offerable variant, as whole arrays.

This is the single source of the model's semantics. Every backend reads the
table built here; only `optimizer.plan.check` re-derives the rules on its own, on purpose.

The table is compact: per candidate only its segment, its variant (a row of the
per-bundle `Variants` table, which holds everything that does not depend on the
segment), its take probability and its value. Everything else is looked up. Rows come
ordered by (segment, slot), so the per-segment step needs no sort. Expansion runs over
blocks of responses, so its temporaries stay bounded at any instance size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logit

from optimizer.formulation.contacts import Contacts
from optimizer.model.instance import Instance

MAX_SLOT_WARNINGS = 1000
BLOCK = 4_000_000  # candidate variants per expansion block


@dataclass(frozen=True)
class Variants:
    """Every (bundle, discount, perk) a bundle can be offered with, and its economics per take."""

    bundle: np.ndarray  # int32
    discount: np.ndarray  # d
    perk: np.ndarray  # int32, row of instance.perks, -1 for none
    list_price: np.ndarray  # P
    reference_price: np.ndarray  # sum of item prices
    perk_cost: np.ndarray  # c_k
    lift: np.ndarray  # l_k
    revenue: np.ndarray  # r = P (1 - d)
    margin: np.ndarray  # m = r - C - c_k
    list_margin: np.ndarray  # m0 = P - C
    slot_key: np.ndarray  # int64: bundle row, or n_bundles + exclusion group code
    offerable: np.ndarray  # bool: r > 0, margin floor and max_discount hold
    n_bundles: int

    def __len__(self) -> int:
        return len(self.bundle)


def variant_table(instance: Instance) -> Variants:
    """Per bundle, the ladder (capped by max_discount) x (no perk + each perk), ordered by bundle."""
    policy = instance.policy
    ladders = instance.bundle_ladders()
    n_bundles = len(ladders)
    perk_bundle = pd.Index(instance.bundles["id"]).get_indexer(instance.perks["bundle"])
    options = pd.DataFrame({"bundle": np.r_[np.arange(n_bundles), perk_bundle],
                            "perk": np.r_[np.full(n_bundles, -1), np.arange(len(perk_bundle))]})
    steps = pd.DataFrame({"bundle": np.repeat(np.arange(n_bundles), [len(x) for x in ladders]),
                          "discount": np.array([d for x in ladders for d in x], dtype=np.float64)})
    if policy.max_discount is not None:
        steps = steps[steps["discount"] <= policy.max_discount]
    table = steps.merge(options, on="bundle").sort_values(["bundle", "discount", "perk"],
                                                         kind="stable")
    bundle = table["bundle"].to_numpy(np.int32)
    perk = table["perk"].to_numpy(np.int32)
    d = table["discount"].to_numpy(np.float64)
    prices = instance.bundle_prices()
    price = prices["price"].to_numpy()[bundle]
    unit_cost = prices["unit_cost"].to_numpy()[bundle]
    # A trailing zero makes perk -1 ("none") index a cost and lift of 0.
    perk_cost = np.append(instance.perks["cost"].to_numpy(dtype=np.float64), 0.0)[perk]
    revenue = price * (1.0 - d)
    margin = revenue - unit_cost - perk_cost
    bundle_floor = instance.bundles["min_margin_rate"].to_numpy(dtype=np.float64)
    floor = np.where(np.isnan(bundle_floor), policy.min_margin_rate, bundle_floor)[bundle]
    group_codes = np.asarray(pd.factorize(instance.bundles["exclusion_group"],
                                          use_na_sentinel=True)[0])
    slot = np.where(group_codes >= 0, n_bundles + group_codes, np.arange(n_bundles))
    return Variants(
        bundle=bundle, discount=d, perk=perk, list_price=price,
        reference_price=prices["reference_price"].to_numpy()[bundle], perk_cost=perk_cost,
        lift=np.append(instance.perks["lift"].to_numpy(dtype=np.float64), 0.0)[perk],
        revenue=revenue, margin=margin, list_margin=price - unit_cost,
        slot_key=slot[bundle].astype(np.int64), offerable=(revenue > 0) & (margin >= floor * revenue),
        n_bundles=n_bundles,
    )


@dataclass(frozen=True)
class Candidates:
    """One row per candidate variant x[s, b, v]; per-unit quantities are for the whole segment."""

    segment: np.ndarray  # int32, row of instance.segments
    variant: np.ndarray  # int32, row of `variants`
    take_prob: np.ndarray  # float64, p
    value: np.ndarray  # float64, V (p m - baseline m0)
    variants: Variants
    segment_views: np.ndarray  # per segment: V
    lo: np.ndarray  # per segment: lo_eff
    hi: np.ndarray  # per segment
    showable: np.ndarray  # per segment: eligible ungrouped bundles + distinct groups
    group_names: tuple[str, ...]
    warnings: tuple[str, ...]
    contacts: Contacts  # audiences and channels (spec section 8)

    def __len__(self) -> int:
        return len(self.segment)

    def subset(self, positions: np.ndarray) -> Candidates:
        """The candidates at sorted `positions`, still in (segment, slot) order."""
        return dataclasses.replace(self, segment=self.segment[positions],
                                   variant=self.variant[positions],
                                   take_prob=self.take_prob[positions], value=self.value[positions])

    def join(self, other: Candidates) -> Candidates:
        """These candidates and `other`'s (of other segments); the order is no longer by slot."""
        return dataclasses.replace(
            self, segment=np.r_[self.segment, other.segment], variant=np.r_[self.variant, other.variant],
            take_prob=np.r_[self.take_prob, other.take_prob], value=np.r_[self.value, other.value])

    @property
    def n_slots(self) -> int:
        return int(self.variants.slot_key.max(initial=-1)) + 1

    # The variant's columns, looked up per candidate (computed on use: the table stays small).
    def _per_candidate(self, column: np.ndarray) -> np.ndarray:
        out: np.ndarray = column[self.variant]
        return out

    @property
    def bundle(self) -> np.ndarray:
        return self._per_candidate(self.variants.bundle)

    @property
    def discount(self) -> np.ndarray:
        return self._per_candidate(self.variants.discount)

    @property
    def perk(self) -> np.ndarray:
        return self._per_candidate(self.variants.perk)

    @property
    def list_price(self) -> np.ndarray:
        return self._per_candidate(self.variants.list_price)

    @property
    def reference_price(self) -> np.ndarray:
        return self._per_candidate(self.variants.reference_price)

    @property
    def perk_cost(self) -> np.ndarray:
        return self._per_candidate(self.variants.perk_cost)

    @property
    def revenue(self) -> np.ndarray:
        return self._per_candidate(self.variants.revenue)

    @property
    def margin(self) -> np.ndarray:
        return self._per_candidate(self.variants.margin)

    @property
    def slot_key(self) -> np.ndarray:
        return self._per_candidate(self.variants.slot_key)

    def meets_caps(self) -> bool:
        """Whether these candidates, all shown, meet every audience's caps (rows 8-9)."""
        keys, used = self.contact_usage(np.ones(len(self)))
        limit = self.contacts.limit(keys)
        return bool(np.all(used <= limit + 1e-9 * np.maximum(1.0, limit)))

    def contact_usage(self, share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The keys of rows 8-9 (audiences) these candidates enter, and their use at `share`;
        channels' capacities are coupling rows on usage columns."""
        return self.contacts.usage(self.segment, self.bundle, share)

    @property
    def views(self) -> np.ndarray:
        out: np.ndarray = self.segment_views[self.segment]
        return out

    # Usage columns: what the coupling rows are written on (`optimizer.formulation.coupling`).
    # Column v < len(variants) holds the expected takes of variant v; column
    # len(variants) + c the offer impressions of channel c (spec section 8), for the
    # channels with a capacity. A candidate enters its variant's column with its takes, and
    # its segment's channel's column with the segment's views.
    @property
    def n_columns(self) -> int:
        return len(self.variants) + len(self.contacts.capacity)

    def segment_columns(self) -> np.ndarray:
        """Per segment: its channel's usage column, -1 without a capacity to count against."""
        channel = self.contacts.channel
        capped = np.isfinite(np.append(self.contacts.capacity, np.inf)[channel]) & (channel >= 0)
        out: np.ndarray = np.where(capped, len(self.variants) + channel, -1)
        return out

    def usage_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (column, amount per unit of x, candidate position) of these candidates."""
        channel = self.segment_columns()[self.segment]
        on = np.flatnonzero(channel >= 0)
        return (np.r_[self.variant.astype(np.int64), channel[on]],
                np.r_[self.takes, self.views[on]], np.r_[np.arange(len(self)), on])

    def usage_of(self, chosen: np.ndarray, share: np.ndarray | None = None,
                 takes: np.ndarray | None = None) -> np.ndarray:
        """Each usage column summed over the candidates at positions `chosen`, each shown to
        `share` of its views (default all); `takes` may pass `self.takes`, computed already."""
        seg = self.segment[chosen]
        weight = (self.takes if takes is None else takes)[chosen]
        views = self.segment_views[seg]
        if share is not None:
            weight, views = weight * share, views * share
        out = np.bincount(self.variant[chosen], weight, minlength=self.n_columns)
        column = self.segment_columns()[seg]
        on = column >= 0
        out += np.bincount(column[on], views[on], minlength=self.n_columns)
        return out

    def usage_by_owner(self, chosen: np.ndarray, owner: np.ndarray, n_owners: int,
                       takes: np.ndarray | None = None) -> sp.csr_matrix:
        """Usage columns x owners: each usage column summed over the candidates at positions
        `chosen` per their `owner`; `takes` may pass `self.takes`, computed already."""
        seg = self.segment[chosen]
        column = self.segment_columns()[seg]
        on = column >= 0
        weight = self.segment_views[seg] * self.take_prob[chosen] if takes is None else \
            takes[chosen]
        return sp.csr_matrix((np.r_[weight, self.segment_views[seg[on]]],
                              (np.r_[self.variant[chosen], column[on]], np.r_[owner, owner[on]])),
                             shape=(self.n_columns, n_owners))

    def usage_per_column(self, share: np.ndarray | None = None) -> np.ndarray:
        """Each usage column summed over these candidates, each shown to `share` (default 1)."""
        return self.usage_of(np.arange(len(self)), share)

    def priced(self, price: np.ndarray, takes: np.ndarray | None = None) -> np.ndarray:
        """Per candidate: its usage at `price` (one price per usage column)."""
        column = self.segment_columns()
        per_view = self.segment_views * np.append(price, 0.0)[column]  # -1: no channel column
        out: np.ndarray = (self.takes if takes is None else takes) * price[self.variant] + \
            per_view[self.segment]
        return out

    def usage_matrix(self) -> sp.csr_matrix:
        """Columns x candidates: the amount each candidate puts in each usage column."""
        cols, amount, pos = self.usage_entries()
        return sp.csr_matrix((amount, (cols, pos)), shape=(self.n_columns, len(self)))

    @property
    def takes(self) -> np.ndarray:
        """Expected takes w per unit of x: V * p."""
        out: np.ndarray = self.segment_views[self.segment] * self.take_prob
        return out


def expand(instance: Instance) -> Candidates:
    """Build the candidate table for every (segment, bundle, discount, perk), block by block."""
    segs, resp, policy = instance.segments, instance.responses, instance.policy
    variants = variant_table(instance)
    n_bundles = len(instance.bundles)
    r_seg = pd.Index(segs["id"]).get_indexer(resp["segment"]).astype(np.int32)
    r_bun = pd.Index(instance.bundles["id"]).get_indexer(resp["bundle"]).astype(np.int32)
    views = segs["views"].to_numpy(dtype=np.float64)
    silent = segs["silent"].to_numpy(dtype=bool)
    contacts = Contacts.of(instance)
    contact_cost = views * contacts.impression_cost  # per offer shown to the whole segment

    live = np.flatnonzero(variants.offerable)  # offerable variants, still ordered by bundle
    v_count = np.bincount(variants.bundle[live], minlength=n_bundles)
    v_start = np.cumsum(v_count) - v_count
    slot_of_bundle = np.zeros(n_bundles, np.int64)
    slot_of_bundle[variants.bundle] = variants.slot_key
    n_slots = max(int(slot_of_bundle.max(initial=0)) + 1, 1)
    rows = np.flatnonzero(~silent[r_seg] & (v_count[r_bun] > 0))
    key = r_seg[rows].astype(np.int64) * n_slots + slot_of_bundle[r_bun[rows]]
    if len(key) > 1 and not np.all(key[1:] >= key[:-1]):
        rows = rows[np.argsort(key, kind="stable")]  # (segment, slot) order, for the chooser

    r_logit = logit(resp["take_rate"].to_numpy(dtype=np.float64))
    r_beta = resp["price_sensitivity"].to_numpy(dtype=np.float64)
    r_base = resp["baseline_rate"].to_numpy(dtype=np.float64)
    per_row = v_count[r_bun[rows]]
    ends = np.cumsum(per_row)
    parts: list[tuple[np.ndarray, ...]] = []
    first = 0
    while first < len(rows):  # blocks of whole responses, about BLOCK variants each
        last = int(np.searchsorted(ends, (ends[first - 1] if first else 0) + BLOCK, side="right"))
        last = max(last, first + 1)
        block = rows[first:last]
        count = per_row[first:last]
        resp_row = np.repeat(block, count)
        within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        var = live[v_start[r_bun[resp_row]] + within].astype(np.int32)
        seg = r_seg[resp_row]
        p = expit(r_logit[resp_row] + r_beta[resp_row] * variants.discount[var] + variants.lift[var])
        value = views[seg] * (p * variants.margin[var] - r_base[resp_row] *
                              variants.list_margin[var]) - contact_cost[seg]
        keep = slice(None) if policy.allow_negative_uplift else value >= 0
        parts.append((seg[keep], var[keep], p[keep], value[keep]))
        first = last
    if parts:
        seg, var, p, value = (np.concatenate(column) for column in zip(*parts, strict=True))
    else:
        seg, var = np.zeros(0, np.int32), np.zeros(0, np.int32)
        p, value = np.zeros(0), np.zeros(0)

    group_names = pd.factorize(instance.bundles["exclusion_group"], use_na_sentinel=True)[1]
    lo_req, hi = _offer_limits(instance)
    showable = _showable(seg, variants.slot_key[var], len(segs))
    lo = np.minimum(np.minimum(lo_req, hi), showable)
    return Candidates(
        segment=seg, variant=var, take_prob=p, value=value, variants=variants,
        segment_views=views, lo=lo, hi=hi, showable=showable,
        group_names=tuple(str(g) for g in group_names),
        warnings=_slot_warnings(segs["id"], lo, lo_req, showable), contacts=contacts,
    )


def _offer_limits(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    segs, policy = instance.segments, instance.policy
    silent = segs["silent"].to_numpy(dtype=bool)
    lo = segs["min_offers"].fillna(policy.min_offers_per_view).to_numpy(dtype=np.int64)
    hi = segs["max_offers"].fillna(policy.max_offers_per_view).to_numpy(dtype=np.int64)
    return np.where(silent, 0, lo), np.where(silent, 0, hi)


def _showable(seg: np.ndarray, slot: np.ndarray, n_segments: int) -> np.ndarray:
    """Per segment: how many distinct slots (ungrouped bundles, exclusion groups) have a candidate.

    Candidates are in (segment, slot) order, so each new (segment, slot) starts a run.
    """
    if len(seg) == 0:
        return np.zeros(n_segments, np.int64)
    starts = np.r_[True, (seg[1:] != seg[:-1]) | (slot[1:] != slot[:-1])]
    return np.bincount(seg[starts], minlength=n_segments).astype(np.int64)


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


@dataclass(frozen=True)
class OfferMatch:
    """Offers named by ids (a plan's), by position in an instance and its candidate table."""

    segment: np.ndarray  # row of the segment, -1 when the instance has none
    bundle: np.ndarray  # row of the bundle, -1 likewise
    variant: np.ndarray  # float: the (bundle, discount, perk) variant, NaN when none
    candidate: np.ndarray  # int64: the candidate, -1 when the offer is no candidate


def match_offers(instance: Instance, cands: Candidates, offers: pd.DataFrame) -> OfferMatch:
    """Each offer (its segment, bundle, discount and perk ids) found among the instance's
    rows and `cands`, vectorized over both."""
    v = cands.variants
    seg = pd.Index(instance.segments["id"]).get_indexer(offers["segment"].astype(object))
    bun = pd.Index(instance.bundles["id"]).get_indexer(offers["bundle"].astype(object))
    perks = pd.MultiIndex.from_arrays([instance.perks["bundle"].astype(object),
                                       instance.perks["id"].astype(object)])
    perk_ids = offers["perk"].astype(object).where(offers["perk"].notna(), None)
    perk = np.where(perk_ids.isna(), -1, perks.get_indexer(
        pd.MultiIndex.from_arrays([offers["bundle"].astype(object), perk_ids])))
    variant_of = pd.Series(np.arange(len(v)), index=pd.MultiIndex.from_arrays(
        [v.bundle, np.round(v.discount, 9), v.perk]))
    var = variant_of.reindex(pd.MultiIndex.from_arrays(
        [bun, np.round(offers["discount"].to_numpy(np.float64), 9), perk])).to_numpy()
    known = (seg >= 0) & (bun >= 0) & ~np.isnan(var)
    key = np.where(known, seg.astype(np.int64) * len(v) + np.nan_to_num(var).astype(np.int64), -1)
    cand_key = cands.segment.astype(np.int64) * len(v) + cands.variant
    order = np.argsort(cand_key, kind="stable")
    candidate = np.full(len(key), -1, dtype=np.int64)
    if len(order):
        at = np.minimum(np.searchsorted(cand_key[order], key), len(order) - 1)
        found = known & (cand_key[order][at] == key)
        candidate[found] = order[at[found]]
    return OfferMatch(seg, bun, var, candidate)
