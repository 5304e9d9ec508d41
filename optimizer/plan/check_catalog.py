"""The instance's tables as lookups for the plan checker (`optimizer.plan.check`).

Like the checker, this shares no code with the solver path: it re-derives the model of spec
section 3 from the tables. A plan row (segment, bundle, discount, perk) is found by key: its
segment and bundle by id, its response by the (segment, bundle) pair, and its variant among
the bundle's ladder x (no perk + the bundle's perks); a segment's audience and channel (section
8) by id. Economics are computed for the rows a
plan names, never for every variant of every response; only `slots` (constraint 3's count of
slots with a candidate) expands variants, and only for the segments it is asked about.
"""

from __future__ import annotations

import operator
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from optimizer.model.instance import Instance

BLOCK = 2_000_000  # variants per block when `slots` expands responses


def positions(values: Any, ids: Any) -> np.ndarray:
    """The row in the unique `ids` of each of `values` (strings, None for none), -1 if absent."""
    found = pc.index_in(_strings(values), value_set=_strings(ids))
    return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64)


def _strings(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pd.Series | pd.Index):
        array = pa.array(values) if len(values) else pa.array([], pa.large_string())
    else:
        array = pa.array(values, type=pa.large_string())
    return array if array.type == pa.large_string() else array.cast(pa.large_string())


class Catalog:
    """Per-segment, per-bundle and per-variant arrays of one instance, by row position."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        pol, segs, bundles = inst.policy, inst.segments, inst.bundles
        self.segment_ids, self.bundle_ids = segs["id"], bundles["id"]
        self.n_bundles = len(bundles)
        self.views = segs["views"].to_numpy(dtype=np.float64)
        self.silent = segs["silent"].to_numpy(dtype=bool)
        hi = segs["max_offers"].fillna(pol.max_offers_per_view).to_numpy(dtype=np.int64)
        lo = segs["min_offers"].fillna(pol.min_offers_per_view).to_numpy(dtype=np.int64)
        self.hi, self.lo = np.where(self.silent, 0, hi), np.where(self.silent, 0, lo)
        # spec section 8: each segment's audience and channel row (-1: none) and c_s, its
        # channel's cost per impression (0 without a channel: index -1 picks the appended 0)
        self.audience = positions(segs["audience"], inst.audiences["id"])
        self.channel = positions(segs["channel"], inst.channels["id"])
        cost = inst.channels["cost_per_impression"].fillna(0.0).to_numpy(dtype=np.float64)
        self.contact = np.append(cost, 0.0)[self.channel]

        items = inst.items.set_index("id")
        lines = inst.bundle_items.join(items[["price", "cost"]], on="item")
        lines = lines.assign(p=lines["price"] * lines["qty"], c=lines["cost"] * lines["qty"])
        econ = lines.groupby("bundle")[["p", "c"]].sum().reindex(pd.Index(self.bundle_ids))
        self.reference = econ["p"].to_numpy(dtype=np.float64)  # sum of item price * qty
        self.unit_cost = econ["c"].to_numpy(dtype=np.float64)  # C
        given = bundles["price"].to_numpy(dtype=np.float64)
        self.price = np.where(np.isnan(given), self.reference, given)  # P
        self.floor = bundles["min_margin_rate"].fillna(pol.min_margin_rate).to_numpy(dtype=np.float64)
        codes, names = pd.factorize(bundles["exclusion_group"], use_na_sentinel=True)
        self.group = np.asarray(codes, dtype=np.int64)  # -1: in no exclusion group
        self.group_names = [str(g) for g in names]
        self.slot = np.where(self.group >= 0, self.n_bundles + self.group, np.arange(self.n_bundles))
        self._slots = np.full(len(segs), -1, dtype=np.int64)  # filled by `slots` as asked
        self._variant_table()

    def _variant_table(self) -> None:
        """Every (bundle, discount, perk) of the bundles' ladders, ordered by bundle."""
        inst, nb = self.inst, self.n_bundles
        ladders = [inst.policy.discount_ladder if own is None else own
                   for own in inst.bundles["discounts"]]
        steps = pd.DataFrame({
            "bundle": np.repeat(np.arange(nb), [len(x) for x in ladders]),
            "discount": np.array([float(d) for x in ladders for d in x], dtype=np.float64)})
        perks = inst.perks
        perk_bundle = positions(perks["bundle"], self.bundle_ids)
        choices = pd.DataFrame({"bundle": np.r_[np.arange(nb), perk_bundle],
                                "perk": np.r_[np.full(nb, -1), np.arange(len(perks))]})
        table = steps.merge(choices, on="bundle").sort_values(["bundle", "discount", "perk"],
                                                              kind="stable")
        self.variants = table.reset_index(drop=True)
        perk = self.variants["perk"].to_numpy(dtype=np.int64)
        self.perk_cost = np.append(perks["cost"].to_numpy(dtype=np.float64), 0.0)[perk]
        self.lift = np.append(perks["lift"].to_numpy(dtype=np.float64), 0.0)[perk]
        self.variant_count = np.bincount(self.variants["bundle"].to_numpy(), minlength=nb)
        self.variant_start = np.cumsum(self.variant_count) - self.variant_count
        codes, names = pd.factorize(perks["id"])
        self._perk_names = pd.Index(names)
        self._perk_keys = pd.Index(perk_bundle * max(len(names), 1) + codes)

    def perk_rows(self, bundle: np.ndarray, perk: list[Any]) -> np.ndarray:
        """The perks table's row of each (bundle row, perk id): -1 for no perk (None), -2
        where the bundle has no such perk. Perk ids are strings or None."""
        named = ~np.fromiter(map(operator.is_, perk, repeat(None)), dtype=bool, count=len(perk))
        code = positions(perk, self._perk_names) if len(self._perk_names) else np.full(len(perk), -1)
        key = bundle * max(len(self._perk_names), 1) + code
        rows = np.asarray(self._perk_keys.get_indexer(key), dtype=np.int64)
        rows[(code < 0) | (bundle < 0)] = -2
        return np.where(named, np.where(rows < 0, -2, rows), -1)

    def variant_rows(self, bundle: np.ndarray, discount: np.ndarray, perk: np.ndarray) -> np.ndarray:
        """The variant of each (bundle row, discount, perk row), -1 where there is none."""
        asked = pd.DataFrame({"bundle": bundle, "discount": discount, "perk": perk})
        table = self.variants.assign(row=np.arange(len(self.variants)))
        found = asked.merge(table, on=["bundle", "discount", "perk"], how="left")["row"]
        return np.asarray(found.fillna(-1).to_numpy(), dtype=np.int64)

    @cached_property
    def _responses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per response its segment and bundle rows, and the (segment, bundle) keys sorted."""
        resp = self.inst.responses
        seg = positions(resp["segment"], self.segment_ids)
        bun = positions(resp["bundle"], self.bundle_ids)
        key = seg * self.n_bundles + bun
        order = np.argsort(key, kind="stable")
        return seg, bun, key[order], order

    def response_rows(self, segment: np.ndarray, bundle: np.ndarray) -> np.ndarray:
        """The response of each (segment row, bundle row), -1 where there is none."""
        _, _, keys, order = self._responses
        if not len(keys):
            return np.full(len(segment), -1, dtype=np.int64)
        key = segment * self.n_bundles + bundle
        at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        hit = (segment >= 0) & (bundle >= 0) & (keys[at] == key)
        return np.where(hit, order[at], -1)

    def economics(self, segment: np.ndarray, response: np.ndarray,
                  variant: np.ndarray) -> dict[str, np.ndarray]:
        """Spec section 3 for each (segment row, response row, variant row) given; `value` is
        net of the contact cost V * c_s (section 8), and so is the candidate rule on it."""
        resp, pol = self.inst.responses, self.inst.policy
        bundle = self.variants["bundle"].to_numpy()[variant]
        d = self.variants["discount"].to_numpy()[variant]
        take = resp["take_rate"].to_numpy(dtype=np.float64)[response]
        beta = resp["price_sensitivity"].to_numpy(dtype=np.float64)[response]
        base = resp["baseline_rate"].to_numpy(dtype=np.float64)[response]
        price, cost, perk_cost = self.price[bundle], self.unit_cost[bundle], self.perk_cost[variant]
        views = self.views[segment]
        prob = 1.0 / (1.0 + np.exp(-(np.log(take / (1 - take)) + beta * d + self.lift[variant])))
        r = price * (1 - d)
        m = r - cost - perk_cost
        value = views * (prob * m - base * (price - cost)) - views * self.contact[segment]
        ok = ~self.silent[segment] & (r > 0) & (m >= self.floor[bundle] * r - 1e-9 * np.abs(r))
        if pol.max_discount is not None:
            ok &= d <= pol.max_discount
        if not pol.allow_negative_uplift:
            ok &= value >= -1e-9 * np.abs(views * price)
        return {"bundle": bundle, "discount": d, "views": views, "prob": prob, "r": r, "m": m,
                "value": value, "P": price, "C": cost, "ref": self.reference[bundle],
                "perk_cost": perk_cost, "candidate": ok}

    def slots(self, segments: np.ndarray) -> np.ndarray:
        """Per segment row given: its distinct slots (ungrouped bundles and exclusion groups)
        with at least one candidate variant. Expands only these segments' responses."""
        todo = np.flatnonzero(np.bincount(segments[self._slots[segments] < 0],
                                          minlength=len(self._slots)))
        if len(todo):
            r_seg, r_bun, _, _ = self._responses
            wanted = np.zeros(len(self._slots), dtype=bool)
            wanted[todo] = True
            rows = np.flatnonzero(wanted[r_seg] & ~self.silent[r_seg])
            hit = self._with_candidate(rows, r_seg, r_bun)
            n_slots = self.n_bundles + len(self.group_names)
            pairs = np.sort(r_seg[hit] * n_slots + self.slot[r_bun[hit]])
            pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
            self._slots[todo] = np.bincount(pairs // n_slots, minlength=len(self._slots))[todo]
        out: np.ndarray = self._slots[segments]
        return out

    def _with_candidate(self, rows: np.ndarray, r_seg: np.ndarray, r_bun: np.ndarray) -> np.ndarray:
        """The responses among `rows` with a candidate variant, by `economics` on every variant
        of theirs, a block of about BLOCK variants at a time."""
        count = self.variant_count[r_bun[rows]]
        ends, first = np.cumsum(count), 0
        has = np.zeros(len(r_seg), dtype=bool)
        while first < len(rows):
            last = max(int(np.searchsorted(ends, ends[first] - count[first] + BLOCK, "right")),
                       first + 1)
            n = count[first:last]
            row = np.repeat(rows[first:last], n)
            within = np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n)
            variant = self.variant_start[r_bun[row]] + within
            has[row[self.economics(r_seg[row], row, variant)["candidate"]]] = True
            first = last
        return np.flatnonzero(has)
