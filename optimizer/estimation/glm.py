"""Many small logistic regressions at once: one per cell, with an optional normal prior.

Cell `c` has parameters `theta[c]` (p of them, p <= 2 here) and binomial rows
`y ~ Bin(n, sigmoid(x . theta[c] + offset))`. With prior precision `P` and prior mean
`m[c]` the estimate is the MAP of `loglik - (theta - m)' P (theta - m) / 2`; with P = 0
it is the maximum-likelihood estimate. Box bounds keep constrained parameters (price
sensitivity >= 0) and separated cells (no purchases at all) finite. Projected Newton
with step halving, vectorized over cells: no Python loop per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ITER = 100
TOL = 1e-7  # a step below this (on the logit scale) changes no estimate that matters
RIDGE = 1e-9  # keeps a cell's Hessian invertible when its data cannot identify a parameter
COMPACT_BELOW = 0.5  # share of cells still moving below which their rows are taken apart


@dataclass(frozen=True)
class Rows:
    cell: np.ndarray  # int64, which cell a row belongs to
    x: np.ndarray  # (rows, p) design
    offset: np.ndarray  # (rows,)
    n: np.ndarray  # trials
    y: np.ndarray  # successes


@dataclass(frozen=True)
class CellFit:
    theta: np.ndarray  # (cells, p)
    cov: np.ndarray  # (cells, p, p): inverse of the negative Hessian at theta


def sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free
    return out


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    out: np.ndarray = np.log(p) - np.log1p(-p)
    return out


def fit_cells(rows: Rows, cells: int, start: np.ndarray, lower: np.ndarray, upper: np.ndarray,
              prior_mean: np.ndarray | None = None, prior_precision: np.ndarray | None = None,
              ) -> CellFit:
    """MAP (or MLE) of every cell's parameters; `lower`/`upper` are per parameter. Cells are
    independent, so a cell whose step has become negligible stops, and once most have the
    rows of the rest are taken apart: late iterations cost what the few moving cells cost."""
    p = rows.x.shape[1]
    if p > 2:
        raise ValueError(f"rows.x: must have 1 or 2 columns (closed-form steps), got {p}")
    precision = np.zeros(p) if prior_precision is None else np.asarray(prior_precision, np.float64)
    mean = np.zeros((cells, p)) if prior_mean is None else prior_mean
    theta = np.clip(start.astype(np.float64, copy=True), lower, upper)
    moving = slice(None)  # the cells still iterating (an index array once some stop)
    part, count = rows, cells  # their rows, and how many they are
    hess_all = np.zeros((cells, p, p))
    value: np.ndarray | None = None  # the objective of the moving cells at their parameters
    for _ in range(MAX_ITER):
        here, prior = theta[moving], mean[moving]
        grad, hess = _derivatives(part, count, here, prior, precision)
        hess_all[moving] = hess  # a cell stops when its step is negligible: its last Hessian
        at_lower = (here <= lower) & (grad < 0)
        at_upper = (here >= upper) & (grad > 0)
        free = ~(at_lower | at_upper)
        step = _newton_step(grad, hess, free)
        if value is None:
            value = _objective(part, count, here, prior, precision)
        new, value = _halving(part, count, here, step, lower, upper, prior, precision, value)
        still = np.abs(new - here).max(axis=1, initial=0.0) > TOL  # before `here` (a view) moves
        theta[moving] = new
        if not still.any():
            break
        if still.mean() < COMPACT_BELOW:
            part = rows_of_cells(part, still)
            moving = np.arange(cells)[moving][still]
            value, count = value[still], len(moving)
    else:  # cells still moving after MAX_ITER: their curvature where they ended
        hess_all[moving] = _derivatives(part, count, theta[moving], mean[moving], precision)[1]
    return CellFit(theta, _inverse(-hess_all + RIDGE * np.eye(p)))


def rows_of_cells(rows: Rows, keep: np.ndarray) -> Rows:
    """The rows of the cells `keep` (bool per cell), cells numbered among those kept."""
    at = keep[rows.cell]
    number = np.cumsum(keep) - 1
    return Rows(number[rows.cell[at]], rows.x[at], rows.offset[at], rows.n[at], rows.y[at])


def _inverse(a: np.ndarray) -> np.ndarray:
    """Inverses of many 1x1 or 2x2 matrices, in closed form (LAPACK's per-matrix overhead
    dominates at this size)."""
    if a.shape[1] == 1:
        one: np.ndarray = 1.0 / a
        return one
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    out = np.empty_like(a)
    out[:, 0, 0], out[:, 1, 1] = a[:, 1, 1] / det, a[:, 0, 0] / det
    out[:, 0, 1], out[:, 1, 0] = -a[:, 0, 1] / det, -a[:, 1, 0] / det
    return out


def _linear(rows: Rows, theta: np.ndarray) -> np.ndarray:
    eta: np.ndarray = np.einsum("rp,rp->r", rows.x, theta[rows.cell]) + rows.offset
    return eta


def _derivatives(rows: Rows, cells: int, theta: np.ndarray, mean: np.ndarray,
                 precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = sigmoid(_linear(rows, theta))
    resid = rows.y - rows.n * mu
    weight = rows.n * mu * (1.0 - mu)
    p = rows.x.shape[1]
    grad = np.empty((cells, p))
    hess = np.empty((cells, p, p))
    for j in range(p):  # p <= 2: a loop over parameters, not over cells
        grad[:, j] = np.bincount(rows.cell, resid * rows.x[:, j], minlength=cells)
        for k in range(j, p):
            h = -np.bincount(rows.cell, weight * rows.x[:, j] * rows.x[:, k], minlength=cells)
            hess[:, j, k] = hess[:, k, j] = h
    grad -= precision * (theta - mean)
    hess -= np.diag(precision)
    return grad, hess


def _newton_step(grad: np.ndarray, hess: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Newton direction on each cell's free parameters; fixed ones do not move. The one or
    two parameters are solved in closed form, over whole columns."""
    g = np.where(free, grad, 0.0)
    diagonal = np.where(free, -np.diagonal(hess, axis1=1, axis2=2) + RIDGE, 1.0)
    if grad.shape[1] == 1:
        one: np.ndarray = g / diagonal
        return one
    a, d = diagonal[:, 0], diagonal[:, 1]
    b = np.where(free[:, 0] & free[:, 1], -hess[:, 0, 1], 0.0)
    det = a * d - b * b
    step = np.empty_like(g)
    step[:, 0] = (d * g[:, 0] - b * g[:, 1]) / det
    step[:, 1] = (a * g[:, 1] - b * g[:, 0]) / det
    return step


def _objective(rows: Rows, cells: int, theta: np.ndarray, mean: np.ndarray,
               precision: np.ndarray) -> np.ndarray:
    eta = _linear(rows, theta)
    ll = rows.y * eta - rows.n * np.logaddexp(0.0, eta)
    penalty = 0.5 * ((theta - mean) ** 2 * precision).sum(axis=1)
    out: np.ndarray = np.bincount(rows.cell, ll, minlength=cells) - penalty
    return out


def _halving(rows: Rows, cells: int, theta: np.ndarray, step: np.ndarray, lower: np.ndarray,
             upper: np.ndarray, mean: np.ndarray, precision: np.ndarray, base: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Take each cell's step, halved until its objective (`base` at `theta`) does not fall
    (concave: always ends); returns the new parameters and their objective."""
    scale = np.ones(cells)
    pending = np.ones(cells, bool)
    new, value = theta, base
    for _ in range(30):
        trial = np.clip(theta + scale[:, None] * step, lower, upper)
        new = np.where(pending[:, None], trial, new)
        at_new = _objective(rows, cells, new, mean, precision)
        worse = at_new < base - 1e-12 * np.abs(base)
        value = np.where(pending & ~worse, at_new, value)
        pending = worse & pending
        if not pending.any():
            break
        scale = np.where(pending, scale * 0.5, scale)
    new = np.where(pending[:, None], theta, new)
    return new, value
