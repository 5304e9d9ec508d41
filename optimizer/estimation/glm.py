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
TOL = 1e-10
RIDGE = 1e-9  # keeps a cell's Hessian invertible when its data cannot identify a parameter


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
    """MAP (or MLE) of every cell's parameters; `lower`/`upper` are per parameter."""
    p = rows.x.shape[1]
    precision = np.zeros(p) if prior_precision is None else np.asarray(prior_precision, np.float64)
    mean = np.zeros((cells, p)) if prior_mean is None else prior_mean
    theta = np.clip(start.astype(np.float64, copy=True), lower, upper)
    for _ in range(MAX_ITER):
        grad, hess = _derivatives(rows, cells, theta, mean, precision)
        at_lower = (theta <= lower) & (grad < 0)
        at_upper = (theta >= upper) & (grad > 0)
        free = ~(at_lower | at_upper)
        step = _newton_step(grad, hess, free)
        theta, moved = _halving(rows, cells, theta, step, lower, upper, mean, precision)
        if moved <= TOL:
            break
    _, hess = _derivatives(rows, cells, theta, mean, precision)
    cov = np.linalg.inv(-hess + RIDGE * np.eye(p))
    return CellFit(theta, cov)


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
    """Newton direction on each cell's free parameters; fixed ones do not move."""
    p = grad.shape[1]
    keep = free[:, :, None] & free[:, None, :]
    neg = np.where(keep, -hess, 0.0) + np.eye(p) * np.where(free, RIDGE, 1.0)[:, None, :]
    step: np.ndarray = np.linalg.solve(neg, np.where(free, grad, 0.0)[..., None])[..., 0]
    return step


def _objective(rows: Rows, cells: int, theta: np.ndarray, mean: np.ndarray,
               precision: np.ndarray) -> np.ndarray:
    eta = _linear(rows, theta)
    ll = rows.y * eta - rows.n * np.logaddexp(0.0, eta)
    penalty = 0.5 * ((theta - mean) ** 2 * precision).sum(axis=1)
    out: np.ndarray = np.bincount(rows.cell, ll, minlength=cells) - penalty
    return out


def _halving(rows: Rows, cells: int, theta: np.ndarray, step: np.ndarray, lower: np.ndarray,
             upper: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, float]:
    """Take each cell's step, halved until its objective does not fall (concave: always ends)."""
    base = _objective(rows, cells, theta, mean, precision)
    scale = np.ones(cells)
    pending = np.ones(cells, bool)
    new = theta
    for _ in range(30):
        trial = np.clip(theta + scale[:, None] * step, lower, upper)
        new = np.where(pending[:, None], trial, new)
        worse = _objective(rows, cells, new, mean, precision) < base - 1e-12 * np.abs(base)
        pending = worse & pending
        if not pending.any():
            break
        scale = np.where(pending, scale * 0.5, scale)
    new = np.where(pending[:, None], theta, new)
    return new, float(np.abs(new - theta).max(initial=0.0))
