"""The coupling rows (spec section 3, constraints 4-7) per unit of expected takes.

Every coupling row is linear in the expected takes `w = V p` of the chosen variants, with
a coefficient that depends on the variant only: row r of the MIP has coefficient
`w_j * K[r, variant_j]` on candidate j. Keeping K (rows x variants, small) instead of the
full matrix (rows x candidates) is what lets the decomposition price a hundred million
candidates: `G' lam = w * (K' lam)[variant]` and `G x = K @ (takes of x per variant)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.formulation.candidates import Variants
from optimizer.model.families import Family
from optimizer.model.instance import Instance


@dataclass(frozen=True)
class VariantRows:
    """`lower <= sum_j w_j K[:, variant_j] x_j <= upper`, one row per stocked item or policy field."""

    K: sp.csr_matrix  # rows x variants
    lower: np.ndarray
    upper: np.ndarray
    family: np.ndarray  # int8 Family
    subject: np.ndarray  # int64: item row for inventory rows, -1 otherwise

    def __len__(self) -> int:
        return int(self.K.shape[0])

    def as_le(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """Every row as `K_le w <= limit`: a row with only a lower limit is negated."""
        upper = np.isfinite(self.upper)
        sign = np.where(upper, 1.0, -1.0)
        return sp.csr_matrix(sp.diags(sign) @ self.K), np.where(upper, self.upper, -self.lower)


def coupling_rows(instance: Instance, variants: Variants) -> VariantRows:
    """Every coupling row over the usage columns (`Candidates.usage_entries`): the variants'
    takes, then the channels' impressions."""
    n = len(variants) + len(instance.channels)
    inventory = _inventory(instance, variants)
    policy = _policy(instance, variants)
    blocks = [_wide(inventory, n), *(_wide(b, n) for b in policy), _channels(instance, variants)]
    return VariantRows(
        K=sp.csr_matrix(sp.vstack([b[0] for b in blocks], format="csr")) if blocks else
        sp.csr_matrix((0, n)),
        lower=np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0),
        upper=np.concatenate([b[2] for b in blocks]) if blocks else np.zeros(0),
        family=np.concatenate([b[3] for b in blocks]).astype(np.int8) if blocks else
        np.zeros(0, np.int8),
        subject=np.concatenate([b[4] for b in blocks]).astype(np.int64) if blocks else
        np.zeros(0, np.int64),
    )


def live_rows(rows: VariantRows, used: np.ndarray) -> VariantRows:
    """The rows some used column enters (and every policy row, as the spec writes them)."""
    live = (abs(rows.K) @ used.astype(np.float64) > 0) | \
        ~np.isin(rows.family, (Family.INVENTORY, Family.CHANNEL_CAPACITY))
    return VariantRows(sp.csr_matrix(rows.K[live]), rows.lower[live], rows.upper[live],
                       rows.family[live], rows.subject[live])


_Block = tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _wide(block: _Block, n_columns: int) -> _Block:
    """A block over the variants' columns, widened to every usage column."""
    K = block[0]
    return (sp.csr_matrix((K.data, K.indices, K.indptr), shape=(K.shape[0], n_columns)),
            *block[1:])


def _channels(instance: Instance, variants: Variants) -> _Block:
    """Spec section 8, row 10: each channel's offer impressions <= its capacity."""
    capacity = instance.channels["capacity"].to_numpy(np.float64)
    capped = np.flatnonzero(~np.isnan(capacity))
    k, n = len(capped), len(variants) + len(capacity)
    K = sp.csr_matrix((np.ones(k), (np.arange(k), len(variants) + capped)), shape=(k, n))
    return K, np.full(k, -np.inf), capacity[capped], np.full(k, Family.CHANNEL_CAPACITY), capped


def _inventory(instance: Instance, variants: Variants) -> _Block:
    """Constraint 4: takes x quantity of each stocked item, summed over bundles, <= stock."""
    stock = instance.items["stock"].to_numpy(dtype=np.float64)
    lines = instance.bundle_items
    line_bundle = pd.Index(instance.bundles["id"]).get_indexer(lines["bundle"])
    line_item = pd.Index(instance.items["id"]).get_indexer(lines["item"])
    stocked = np.isfinite(stock[line_item]) & np.isin(line_bundle, variants.bundle[variants.offerable])
    items, row = np.unique(line_item[stocked], return_inverse=True)
    per_bundle = sp.csr_matrix(
        (lines["qty"].to_numpy(dtype=np.float64)[stocked], (row, line_bundle[stocked])),
        shape=(len(items), variants.n_bundles))
    K = sp.csr_matrix(per_bundle[:, variants.bundle])
    k = len(items)
    return K, np.full(k, -np.inf), stock[items], np.full(k, Family.INVENTORY), items


def _policy(instance: Instance, v: Variants) -> list[_Block]:
    """Constraints 5-7, exactly as the spec writes them, each only when its policy field is set."""
    policy = instance.policy
    rows: list[tuple[Family, np.ndarray, float, float]] = []
    if policy.max_discounted_share is not None:
        rows.append((Family.DISCOUNTED_SHARE,
                     v.revenue * ((v.discount > 0) - policy.max_discounted_share), -np.inf, 0.0))
    if policy.max_avg_discount is not None:
        rows.append((Family.AVG_DISCOUNT, v.list_price * (v.discount - policy.max_avg_discount),
                     -np.inf, 0.0))
    if policy.promotion_budget is not None:
        rows.append((Family.PROMOTION_BUDGET, v.list_price * v.discount + v.perk_cost, -np.inf,
                     policy.promotion_budget))
    if policy.min_aggregate_margin_rate is not None:
        rows.append((Family.AGGREGATE_MARGIN, v.margin - policy.min_aggregate_margin_rate * v.revenue,
                     0.0, np.inf))
    out: list[_Block] = []
    for family, coef, lower, upper in rows:
        matrix = sp.csr_matrix(coef.reshape(1, -1))
        matrix.eliminate_zeros()
        out.append((matrix, np.array([lower]), np.array([upper]), np.array([family]),
                    np.array([-1])))
    return out
