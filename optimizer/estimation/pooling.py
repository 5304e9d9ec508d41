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

from optimizer.estimation.glm import CellFit, Rows, fit_cells, rows_of_cells

MAX_EM = 300
EM_TOL = 1e-3
MIN_TAU2 = 1e-4  # keeps the prior proper when cells barely differ
BACKFIT_SWEEPS = 8
FULL_ROUNDS = 8  # rounds on every cell after a pilot (SQUAREM-extrapolated)
PILOT_CELLS = 50_000  # above this many cells of data, tau^2 is first estimated on a sample
MAX_LOG_TAU2 = 20.0  # an extrapolated log tau^2 beyond this is no prior at all
MAX_STEP = 64.0  # the most SQUAREM extrapolates, in EM rounds' worth


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

    Plain EM creeps when cells hold little data (a few views each, as at a million
    segments): each round moves the prior a little, for hundreds of rounds. Rounds are
    therefore extrapolated by SQUAREM (Varadhan and Roland, 2008): two rounds give the
    direction and the rate, one step goes most of the way, and a third round from there
    keeps the sequence an EM sequence. With more than `PILOT_CELLS` cells of data, the
    rounds first run on the cells of a random sample of segments. Their tau^2 (a handful of
    numbers, well measured by a sample, and the slowest part of EM) is then kept, and at
    most `FULL_ROUNDS` (+1) rounds on every cell fit the effects and the cells: sparse cells
    move their weakly identified effects (price sensitivity) by about 1e-3 a round for
    dozens of rounds, which changes no decision and would cost minutes a round at a
    million segments.

    `rows_of` is re-read each round so that shared parameters updated in `after_fit`
    (perk lifts, which enter as offsets) take effect; the pilot leaves them as they are. A
    per-cell `covariate` adds `kappa * covariate` to the prior mean, with `kappa`
    estimated too.
    """
    tau2 = np.full(start.shape[1], 1.0)
    rounds = 0
    keep = _pilot(groups, has_data) if int(has_data.sum()) > PILOT_CELLS else None
    if keep is not None:
        part = rows_of_cells(rows_of(), keep)
        _, segment = np.unique(groups.segment[keep], return_inverse=True)
        pilot_groups = Grouping(groups.bundle[keep], segment, groups.bundles, int(segment.max()) + 1)
        pilot, rounds = _em(lambda: part, int(keep.sum()), pilot_groups, start[keep], lower,
                            upper, has_data[keep], None,
                            None if covariate is None else covariate[keep], tau2)
        tau2 = pilot.tau2
    state, more = _em(rows_of, cells, groups, start, lower, upper, has_data, after_fit,
                      covariate, tau2, most=FULL_ROUNDS if rounds else MAX_EM)
    fit = fit_cells(rows_of(), cells, state.theta, lower, upper, state.mean, 1.0 / state.tau2)
    return PooledFit(fit, state.mean, state.tau2, rounds + more)


def _pilot(groups: Grouping, has_data: np.ndarray) -> np.ndarray | None:
    """The cells (bool) of a seeded random sample of segments holding about `PILOT_CELLS`
    cells of data; None when the sample would hold no cell of data or every cell."""
    share = PILOT_CELLS / max(1, int(has_data.sum()))
    chosen = np.random.default_rng(0).random(groups.segments) < share
    keep: np.ndarray = chosen[groups.segment]
    sampled = int(has_data[keep].sum())
    return keep if 0 < sampled < int(has_data.sum()) else None


def _em(rows_of: Callable[[], Rows], cells: int, groups: Grouping, start: np.ndarray,
        lower: np.ndarray, upper: np.ndarray, has_data: np.ndarray,
        after_fit: Callable[[CellFit], None] | None, covariate: np.ndarray | None,
        tau2: np.ndarray, most: int = MAX_EM) -> tuple[_State, int]:
    """EM rounds, SQUAREM-extrapolated, from `tau2` until the prior settles (or after about
    `most` rounds; with fewer than `MAX_EM`, tau^2 stays as given): the last state and the
    number of rounds."""
    learn_tau2 = most == MAX_EM
    state = _State(np.tile(_data_mean(start, has_data), (cells, 1)), tau2, start)

    def em(at: _State) -> _State:
        fit = fit_cells(rows_of(), cells, at.theta, lower, upper, at.mean, 1.0 / at.tau2)
        if after_fit is not None:
            after_fit(fit)
        mean, new_tau2 = _prior(fit, groups, has_data, at.tau2, lower, upper, covariate)
        return _State(mean, new_tau2 if learn_tau2 else at.tau2, fit.theta)

    rounds = 0
    while rounds < most:
        first = em(state)
        second = em(first)
        rounds += 2
        if _settled(first, second):
            return second, rounds
        extrapolated = _squarem(state, first, second, lower, upper)
        state = em(extrapolated) if extrapolated is not None else second
        rounds += extrapolated is not None
    return state, rounds


@dataclass(frozen=True)
class _State:
    mean: np.ndarray  # (cells, p): the prior mean of each cell
    tau2: np.ndarray  # (p,)
    theta: np.ndarray  # (cells, p): the last MAPs, where the next round's Newton starts


def _prior(fit: CellFit, groups: Grouping, has_data: np.ndarray, tau2: np.ndarray,
           lower: np.ndarray, upper: np.ndarray, covariate: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The prior re-estimated from the cell MAPs: each cell's mean and each parameter's tau^2."""
    mean = np.empty_like(fit.theta)
    new_tau2 = np.empty_like(tau2)
    for j in range(len(tau2)):
        values, var = fit.theta[has_data, j], fit.cov[has_data, j, j]
        effect = _crossed_effects(values, groups, has_data, float(tau2[j]), covariate)
        mean[:, j] = np.clip(effect, lower[j], upper[j])
        resid = values - mean[has_data, j]
        new_tau2[j] = max(MIN_TAU2, float(np.mean(resid**2 + var)) if len(values) else 1.0)
    return mean, new_tau2


def _settled(before: _State, after: _State) -> bool:
    return bool(np.all(np.abs(after.tau2 - before.tau2) <= EM_TOL * before.tau2)
                and np.abs(after.mean - before.mean).max(initial=0.0) <= EM_TOL)


def _squarem(x0: _State, x1: _State, x2: _State, lower: np.ndarray, upper: np.ndarray
             ) -> _State | None:
    """The SqS3 step from three EM iterates (on the prior mean and log tau^2), within the
    parameters' bounds, or None when it would not go beyond the second iterate."""
    def vector(x: _State) -> np.ndarray:
        return np.concatenate([x.mean.ravel(), np.log(x.tau2)])

    v0, v1, v2 = vector(x0), vector(x1), vector(x2)
    r, v = v1 - v0, v2 - 2 * v1 + v0
    norm_v = float(np.sqrt(v @ v))
    if norm_v == 0:
        return None
    alpha = min(-1.0, max(-MAX_STEP, -float(np.sqrt(r @ r)) / norm_v))
    if alpha == -1.0:
        return None
    out = v0 - 2 * alpha * r + alpha**2 * v
    p = len(x0.tau2)
    mean = np.clip(out[:-p].reshape(x0.mean.shape), lower, upper)
    tau2 = np.maximum(MIN_TAU2, np.exp(np.minimum(out[-p:], MAX_LOG_TAU2)))
    return _State(mean, tau2, x2.theta)


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
