"""How much of each segment to explore: the served plan is `(1 - F_s) x optimized + F_s x
exploration` per segment, and every coupling row is linear in `F_s`.

With `delta[r, s]` what exploring all of segment s adds to row r, and `lower <= 0 <= upper`
the room the optimized plan leaves in each row, the shares solve a small LP: maximize the
explored views `sum views_s F_s` subject to `lower <= delta F <= upper`, `0 <= F_s <= F`;
then, at (nearly) those views, the least expected cost `sum cost_s F_s`. A row the optimized
plan binds lets one segment explore only as far as another's cheaper variants make room.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

VIEWS_KEPT = 1 - 1e-7  # the cheapest plan keeps this share of the most explored views
LEAST = 0.01  # of F: a segment the rows let explore less than this is not explored at all
ROUNDING = 1e-9  # of a row's terms: what the LP solver may overshoot a row by
AT_LIMIT = 1e-6  # a row this close to its limit (relative to its largest change) holds
# exploration back


@dataclass(frozen=True)
class Shares:
    share: np.ndarray  # F_s per explored segment, in [0, most]
    held_back: np.ndarray  # bool per row: at its limit while some segment explores less than F


def explore_shares(delta: sp.csr_matrix, lower: np.ndarray, upper: np.ndarray,
                   views: np.ndarray, cost: np.ndarray, most: float) -> Shares:
    """The shares (module docstring); `delta` is rows x segments, `views` and `cost` per
    segment (what exploring all of it shows and costs)."""
    n_rows, n = delta.shape
    full = np.full(n, most)
    if n == 0 or n_rows == 0 or delta.nnz == 0:
        return Shares(full, np.zeros(n_rows, dtype=bool))
    # each side of each row as `A F <= b`, scaled to a largest coefficient of 1
    peak = np.asarray(abs(delta).max(axis=1).todense()).ravel()
    scale = np.where(peak > 0, peak, 1.0)
    upper_side, lower_side = np.isfinite(upper) & (peak > 0), np.isfinite(lower) & (peak > 0)
    scaled = sp.csr_matrix(sp.diags(1.0 / scale) @ delta)
    a_ub = sp.vstack([scaled[upper_side], -scaled[lower_side]], format="csr")
    b_ub = np.r_[upper[upper_side] / scale[upper_side], -lower[lower_side] / scale[lower_side]]
    weight = views / max(float(views.max()), 1e-300)
    first = linprog(-weight, A_ub=a_ub, b_ub=b_ub, bounds=(0.0, most), method="highs")
    share = np.clip(first.x, 0.0, most) if first.status == 0 else np.zeros(n)
    if first.status == 0 and np.any(share < most * (1 - 1e-9)):
        # several plans explore as much: the cheapest (a cost may be negative: a variant the
        # rows kept out of the optimized plan)
        keep = VIEWS_KEPT * float(weight @ share)
        price = cost / max(float(np.abs(cost).max()), 1e-300)
        second = linprog(price, A_ub=sp.vstack([a_ub, sp.csr_matrix(-weight)], format="csr"),
                         b_ub=np.r_[b_ub, -keep], bounds=(0.0, most), method="highs")
        if second.status == 0:
            share = np.clip(second.x, 0.0, most)
    solved = share
    share = np.where(share < LEAST * most, 0.0, share)  # a set nobody sees measures nothing
    share = share * _within(delta, lower, upper, share)
    return Shares(share, _held_back(delta, lower, upper, solved, share < most * (1 - 1e-6)))


def _within(delta: sp.csr_matrix, lower: np.ndarray, upper: np.ndarray,
            share: np.ndarray) -> float:
    """The largest t <= 1 at which `t * share` meets every row: the LP solver meets rows within
    its tolerance only, and the plan is checked against the rows as written. An excess of
    rounding (ROUNDING of the row's terms, far within the check's 1e-6) is no excess."""
    use = delta @ share
    slack = ROUNDING * np.maximum(1.0, abs(delta) @ share)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = np.where(use > upper + slack, upper / use, 1.0)
        under = np.where(use < lower - slack, lower / use, 1.0)
    return float(np.clip(min(over.min(initial=1.0), under.min(initial=1.0)), 0.0, 1.0))


def _held_back(delta: sp.csr_matrix, lower: np.ndarray, upper: np.ndarray, solved: np.ndarray,
               short: np.ndarray) -> np.ndarray:
    """The rows at their limit in the LP's solution (`solved`) that some segment exploring
    less than F (`short`) would move further."""
    if not short.any():
        return np.zeros(delta.shape[0], dtype=bool)
    use = delta @ solved
    peak = np.asarray(abs(delta).max(axis=1).todense()).ravel()
    tol = AT_LIMIT * np.maximum(1.0, peak * max(float(solved.max(initial=0.0)), 1e-3))
    up = sp.csr_matrix(delta.maximum(0)) @ short.astype(np.float64) > 0
    down = sp.csr_matrix((-delta).maximum(0)) @ short.astype(np.float64) > 0
    out: np.ndarray = (np.isfinite(upper) & (use >= upper - tol) & up) | \
        (np.isfinite(lower) & (use <= lower + tol) & down)
    return out
