"""The MIP as arrays (spec section 3, constraints 1-7), built from the candidate table.

Rows are split into per-segment *structure* rows (families 1-3) and global
*coupling* rows (families 4-7), so a decomposition backend can relax the latter.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.candidates import Candidates
from optimizer.model import Instance


class Family(IntEnum):
    BUNDLE_ONCE = 1
    EXCLUSION_GROUP = 2
    OFFERS_PER_VIEW = 3
    INVENTORY = 4
    DISCOUNTED_SHARE = 5
    AVG_DISCOUNT = 6
    PROMOTION_BUDGET = 7
    AGGREGATE_MARGIN = 8

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Family.BUNDLE_ONCE: "one variant per bundle",
    Family.EXCLUSION_GROUP: "one bundle per exclusion group",
    Family.OFFERS_PER_VIEW: "offers per view",
    Family.INVENTORY: "inventory",
    Family.DISCOUNTED_SHARE: "max_discounted_share",
    Family.AVG_DISCOUNT: "max_avg_discount",
    Family.PROMOTION_BUDGET: "promotion_budget",
    Family.AGGREGATE_MARGIN: "min_aggregate_margin_rate",
}


@dataclass(frozen=True)
class Rows:
    """Linear rows `lower <= matrix @ x <= upper`, each tagged with its family and subject."""

    matrix: sp.csr_matrix
    lower: np.ndarray
    upper: np.ndarray
    family: np.ndarray  # int8 Family
    subject: np.ndarray  # int64: segment row (families 1-3), item row (4), -1 otherwise

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def normalized(self) -> Rows:
        """The same rows divided by their largest |coefficient|: same feasible set, sane scaling.

        Coupling rows mix coefficients near 1e7 (takes x yen) with unit ones, which
        HiGHS's presolve has been seen to mishandle; solvers get normalized rows.
        """
        empty = self.matrix.shape[0] == 0 or self.matrix.shape[1] == 0
        peak = np.zeros(len(self)) if empty else \
            np.asarray(abs(self.matrix).max(axis=1).todense()).ravel()
        scale = np.where(peak > 0, peak, 1.0)
        matrix = self.matrix.tocsr(copy=True)
        # Divide rather than multiply by 1/scale: a row of denormal coefficients stays finite.
        matrix.data = matrix.data / np.repeat(scale, np.diff(matrix.indptr))
        with np.errstate(over="ignore"):  # a finite limit far beyond the row's reach becomes inf
            return Rows(matrix, self.lower / scale, self.upper / scale, self.family, self.subject)

    @staticmethod
    def stack(parts: list[Rows], n_cols: int) -> Rows:
        parts = [p for p in parts if len(p)]
        if not parts:
            empty = np.zeros(0)
            return Rows(sp.csr_matrix((0, n_cols)), empty, empty, empty.astype(np.int8),
                        empty.astype(np.int64))
        return Rows(
            sp.vstack([p.matrix for p in parts], format="csr"),
            np.concatenate([p.lower for p in parts]),
            np.concatenate([p.upper for p in parts]),
            np.concatenate([p.family for p in parts]),
            np.concatenate([p.subject for p in parts]),
        )


@dataclass(frozen=True)
class Formulation:
    candidates: Candidates
    objective: np.ndarray
    structure: Rows
    coupling: Rows

    @cached_property
    def rows(self) -> Rows:
        """Every row, coupling rows normalized: what the MIP backends are given (built once)."""
        return Rows.stack([self.structure, self.coupling.normalized()], len(self.objective))


def formulate(instance: Instance, cands: Candidates) -> Formulation:
    n = len(cands)
    structure = Rows.stack([_slot_rows(cands), _offer_rows(cands)], n)
    coupling = Rows.stack([_inventory_rows(instance, cands), *_policy_rows(instance, cands)], n)
    return Formulation(cands, cands.value, structure, coupling)


def _rows_from_keys(keys: np.ndarray, cols: np.ndarray, n: int, lower: np.ndarray,
                    upper: np.ndarray, family: np.ndarray, subject: np.ndarray) -> Rows:
    """One row per distinct key in `keys[cols]`, with coefficient 1 on those columns."""
    uniq, row = np.unique(keys, return_inverse=True)
    matrix = sp.csr_matrix((np.ones(len(cols)), (row, cols)), shape=(len(uniq), n))
    return Rows(matrix, lower, upper, family, subject)


def _slot_rows(c: Candidates) -> Rows:
    """Families 1-2: at most one candidate per (segment, bundle) and per (segment, group)."""
    n = len(c)
    n_slots = int(c.slot_key.max()) + 1 if n else 1
    key = c.segment.astype(np.int64) * n_slots + c.slot_key
    uniq, count = np.unique(key, return_counts=True)
    crowded = uniq[count > 1]  # a single candidate is already bounded by x <= 1
    cols = np.flatnonzero(np.isin(key, crowded))
    k = len(crowded)
    slot = crowded % n_slots
    n_bundles = n_slots - len(c.group_names)
    family = np.where(slot < n_bundles, Family.BUNDLE_ONCE, Family.EXCLUSION_GROUP).astype(np.int8)
    return _rows_from_keys(key[cols], cols, n, np.full(k, -np.inf), np.ones(k), family,
                           crowded // n_slots)


def _offer_rows(c: Candidates) -> Rows:
    """Family 3: lo_eff <= offers shown <= hi, where either side can bind."""
    segs = np.flatnonzero((c.lo > 0) | (c.showable > c.hi))
    cols = np.flatnonzero(np.isin(c.segment, segs))
    k = len(segs)
    return _rows_from_keys(c.segment[cols], cols, len(c), c.lo[segs].astype(np.float64),
                           c.hi[segs].astype(np.float64), np.full(k, Family.OFFERS_PER_VIEW,
                                                                  np.int8), segs.astype(np.int64))


def _inventory_rows(instance: Instance, c: Candidates) -> Rows:
    """Family 4: expected takes times quantity of each stocked item <= its stock."""
    stock = instance.items["stock"].to_numpy(dtype=np.float64)
    lines = instance.bundle_items
    line_bundle = pd.Index(instance.bundles["id"]).get_indexer(lines["bundle"])
    line_item = pd.Index(instance.items["id"]).get_indexer(lines["item"])
    stocked = np.isfinite(stock[line_item])
    line_bundle, line_item = line_bundle[stocked], line_item[stocked]
    line_qty = lines["qty"].to_numpy(dtype=np.float64)[stocked]
    order = np.argsort(line_bundle, kind="stable")
    line_bundle, line_item, line_qty = line_bundle[order], line_item[order], line_qty[order]
    n_b = len(instance.bundles)
    per_bundle = np.bincount(line_bundle, minlength=n_b)
    start = np.cumsum(per_bundle) - per_bundle
    reps = per_bundle[c.bundle]
    col = np.repeat(np.arange(len(c)), reps)
    line = start[c.bundle[col]] + np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    items, row = np.unique(line_item[line], return_inverse=True)
    coef = c.takes[col] * line_qty[line]
    matrix = sp.csr_matrix((coef, (row, col)), shape=(len(items), len(c)))
    k = len(items)
    return Rows(matrix, np.full(k, -np.inf), stock[items], np.full(k, Family.INVENTORY, np.int8),
                items.astype(np.int64))


def _policy_rows(instance: Instance, c: Candidates) -> list[Rows]:
    """Families 5-7, exactly as the spec writes them, each only when its policy field is set."""
    policy = instance.policy
    w = c.takes
    rows: list[tuple[Family, np.ndarray, float, float]] = []
    if policy.max_discounted_share is not None:
        coef = w * c.revenue * ((c.discount > 0) - policy.max_discounted_share)
        rows.append((Family.DISCOUNTED_SHARE, coef, -np.inf, 0.0))
    if policy.max_avg_discount is not None:
        coef = w * c.list_price * (c.discount - policy.max_avg_discount)
        rows.append((Family.AVG_DISCOUNT, coef, -np.inf, 0.0))
    if policy.promotion_budget is not None:
        coef = w * (c.list_price * c.discount + c.perk_cost)
        rows.append((Family.PROMOTION_BUDGET, coef, -np.inf, policy.promotion_budget))
    if policy.min_aggregate_margin_rate is not None:
        coef = w * (c.margin - policy.min_aggregate_margin_rate * c.revenue)
        rows.append((Family.AGGREGATE_MARGIN, coef, 0.0, np.inf))
    out = []
    for family, coef, lower, upper in rows:
        matrix = sp.csr_matrix(coef.reshape(1, -1))
        matrix.eliminate_zeros()
        out.append(Rows(matrix, np.array([lower]), np.array([upper]),
                        np.array([family], np.int8), np.array([-1], np.int64)))
    return out
