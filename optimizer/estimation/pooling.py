"""Empirical-Bayes pooling of cell parameters toward bundle and segment effects.

Each cell parameter (on the logit scale) is modelled as
`theta[s, b] = mu + u[b] + v[s] + e[s, b]`, with `e ~ N(0, tau^2)`. The cell estimates
are MAPs under that prior; `mu`, the effects and `tau^2` are re-estimated from the cell
estimates (a Laplace-approximate EM), so the amount of pooling comes from the data: a
parameter that truly differs from cell to cell gets a wide prior and little shrinkage.
The bundle and segment effects are themselves shrunk by moments, since most segments
only have a dozen cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optimizer.estimation.glm import CellFit, Rows, fit_cells

MAX_EM = 300
EM_TOL = 1e-5
MIN_TAU2 = 1e-4  # keeps the prior proper when cells barely differ
BACKFIT_SWEEPS = 8


@dataclass(frozen=True)
class Grouping:
    bundle: np.ndarray  # cell -> bundle position
    segment: np.ndarray  # cell -> segment position
    bundles: int
    segments: int


@dataclass(frozen=True)
class PooledFit:
    fit: CellFit
    prior_mean: np.ndarray  # (cells, p): the pooled estimate each cell is shrunk toward
    tau2: np.ndarray  # (p,): between-cell variance of each parameter
    iterations: int


def pooled_fit(rows_of: Callable[[], Rows], cells: int, groups: Grouping, start: np.ndarray,
               lower: np.ndarray, upper: np.ndarray, has_data: np.ndarray,
               after_fit: Callable[[CellFit], None] | None = None,
               covariate: np.ndarray | None = None) -> PooledFit:
    """Alternate cell MAPs and prior re-estimation until the prior settles.

    `rows_of` is re-read each round so that shared parameters updated in `after_fit`
    (perk lifts, which enter as offsets) take effect. A per-cell `covariate` adds
    `kappa * covariate` to the prior mean, with `kappa` estimated too.
    """
    p = start.shape[1]
    tau2 = np.full(p, 1.0)
    mean = np.tile(_data_mean(start, has_data), (cells, 1))
    theta = start
    iterations = 0
    for iterations in range(1, MAX_EM + 1):  # noqa: B007 - the count is reported
        fit = fit_cells(rows_of(), cells, theta, lower, upper, mean, 1.0 / tau2)
        theta = fit.theta
        if after_fit is not None:
            after_fit(fit)
        new_mean = np.empty_like(mean)
        new_tau2 = np.empty_like(tau2)
        for j in range(p):
            values, var = theta[has_data, j], fit.cov[has_data, j, j]
            effect = _crossed_effects(values, groups, has_data, tau2[j], covariate)
            new_mean[:, j] = np.clip(effect, lower[j], upper[j])
            resid = values - new_mean[has_data, j]
            new_tau2[j] = max(MIN_TAU2, float(np.mean(resid**2 + var)) if len(values) else 1.0)
        done = np.all(np.abs(new_tau2 - tau2) <= EM_TOL * tau2) and \
            np.abs(new_mean - mean).max(initial=0.0) <= EM_TOL
        mean, tau2 = new_mean, new_tau2
        if done:
            break
    fit = fit_cells(rows_of(), cells, theta, lower, upper, mean, 1.0 / tau2)
    return PooledFit(fit, mean, tau2, iterations)


def _data_mean(theta: np.ndarray, has_data: np.ndarray) -> np.ndarray:
    if not has_data.any():
        return np.zeros(theta.shape[1])
    out: np.ndarray = theta[has_data].mean(axis=0)
    return out


def _crossed_effects(values: np.ndarray, groups: Grouping, has_data: np.ndarray, tau2: float,
                     covariate: np.ndarray | None) -> np.ndarray:
    """`mu + kappa * covariate + u[b] + v[s]` for every cell, by backfitting."""
    if not len(values):
        return np.zeros(len(has_data))
    b, s = groups.bundle[has_data], groups.segment[has_data]
    z_all = np.zeros(len(has_data)) if covariate is None else covariate
    z = z_all[has_data] - z_all[has_data].mean()
    zz = float(z @ z)
    mu, kappa = float(values.mean()), 0.0
    u = np.zeros(groups.bundles)
    v = np.zeros(groups.segments)
    for _ in range(BACKFIT_SWEEPS):
        if zz > 0:
            kappa = float(z @ (values - u[b] - v[s])) / zz
        trend = mu + kappa * z
        u = _shrunk_means(values - trend - v[s], b, groups.bundles, tau2)
        v = _shrunk_means(values - trend - u[b], s, groups.segments, tau2)
        mu = float((values - kappa * z - u[b] - v[s]).mean())
    centre = z_all[has_data].mean() if len(values) else 0.0
    out: np.ndarray = mu + kappa * (z_all - centre) + u[groups.bundle] + v[groups.segment]
    return out


def _shrunk_means(resid: np.ndarray, group: np.ndarray, size: int, tau2: float) -> np.ndarray:
    """Group means shrunk toward 0 by `sigma^2 / (sigma^2 + tau^2 / n)`, sigma^2 by moments."""
    n = np.bincount(group, minlength=size).astype(np.float64)
    raw = np.divide(np.bincount(group, resid, minlength=size), n, out=np.zeros(size), where=n > 0)
    used = n > 0
    noise = tau2 / n[used]
    sigma2 = max(0.0, float(np.mean(raw[used] ** 2 - noise))) if used.any() else 0.0
    factor = np.zeros(size)
    factor[used] = sigma2 / (sigma2 + noise)
    out: np.ndarray = raw * factor
    return out
