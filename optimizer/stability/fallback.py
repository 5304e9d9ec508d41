"""Yesterday's plan made feasible against today's instance: the fallback and warm start.

Per segment, yesterday's offers that are still candidates come first (the best one per
slot, at most `hi`), and today's candidates fill the slots still required by `lo_eff`.
Then, while a coupling row is overdrawn (stock that collapsed, a budget that shrank),
the offers that cover its overdraw at the least value lost per unit are dropped, and
segments left short of their minimum are refilled from the candidates that use the least
of the rows found overdrawn so far: a required slot moves to what is still available.
When that cannot meet every row there is no fallback.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.segment_choice import Chooser

SHED_ROUNDS = 16


def made_feasible(cands: Candidates, chooser: Chooser, rows: VariantRows,
                  kept: np.ndarray) -> np.ndarray | None:
    """Sorted positions of the fallback plan's candidates, or None when none meets every row."""
    if len(cands) == 0:
        return np.zeros(0, dtype=np.int64)
    K, limit = rows.as_le()
    tol = 1e-9 * np.maximum(1.0, np.abs(limit))
    pressed = np.zeros(len(limit), dtype=bool)
    plan = _keep_and_fill(cands, chooser, kept, np.zeros(len(cands)))
    for _ in range(SHED_ROUNDS):
        over = K @ cands.subset(plan).usage_per_column() - limit
        bad = np.flatnonzero(over > tol)
        if not len(bad):
            short = np.bincount(cands.segment[plan], minlength=len(cands.lo)) < cands.lo
            return None if short.any() or not cands.subset(plan).meets_caps() else plan
        pressed[bad] = True
        drop = _cheapest_cover(cands, plan, K[bad], over[bad])
        if not len(drop):
            return None
        # a refill's share of each pressed row's limit: the less, the better
        share = K[pressed].maximum(0).T @ (1.0 / np.maximum(np.abs(limit[pressed]), 1e-9))
        plan = _keep_and_fill(cands, chooser, np.setdiff1d(plan, drop),
                              cands.priced(np.asarray(share).ravel()))
    return None


def _keep_and_fill(cands: Candidates, chooser: Chooser, keep: np.ndarray,
                   cost: np.ndarray) -> np.ndarray:
    """`keep` (the best per slot, at most hi per segment), plus, where a segment needs more
    to reach lo_eff, the candidates of least `cost`, then of most value."""
    shift = 2.0 * float(np.abs(cands.value).max()) + 1.0
    ranked = cands.value - shift - 4.0 * shift * cost  # below zero: taken only to fill a minimum
    ranked[keep] = cands.value[keep] + shift
    return np.flatnonzero(chooser.choose(ranked))


def _cheapest_cover(cands: Candidates, plan: np.ndarray, K_bad: sp.csr_matrix,
                    over: np.ndarray) -> np.ndarray:
    """Offers to drop: per overdrawn row, those that cover its overdraw at the least value
    lost per unit shed. A required offer dropped is refilled by the caller."""
    use = (K_bad @ cands.subset(plan).usage_matrix()).tocoo()
    helps = use.data > 0
    row, col, amount = use.row[helps], use.col[helps], use.data[helps]
    order = np.lexsort((cands.value[plan][col] / amount, row))
    row, col, amount = row[order], col[order], amount[order]
    before = np.cumsum(amount) - amount
    start = np.searchsorted(row, np.arange(len(over)))
    before -= before[np.minimum(start[row], len(before) - 1)] if len(before) else 0
    return plan[np.unique(col[before < over[row]])]

