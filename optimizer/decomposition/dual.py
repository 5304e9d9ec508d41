"""Lagrangian decomposition: relax the coupling rows, solve every segment exactly at once.

Coupling rows (scaled, written as G x <= h) get multipliers lam >= 0. For any lam,
L(lam) = lam.h + max over structure-feasible x of (c - G'lam).x is a proven upper bound on
the optimum, and the inner max separates by segment. Because G = K[:, variant] * takes
(`optimizer.formulation.coupling`), pricing needs one number per variant, `K' lam`, and the segment
step (an `Oracle`) returns only the takes it chose per variant.

The multipliers: first Rprop (a sign-based descent with one adaptive step per row, blind
to how differently rows are scaled) gets close fast; then a cutting-plane method (Kelley)
inside a per-row trust region sized by Rprop's last steps uses every value and
subgradient seen so far to close in. With many segments L is nearly smooth, which is what
both rely on. Plans: any subproblem choice that meets every row, then *price shifting*
(multipliers of overdrawn rows raised until the choice meets every row, then bisected
back), then `optimizer.decomposition.recovery`'s MIP over the contested segments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import highspy
import numpy as np
import scipy.sparse as sp

from optimizer.backends import Progress
from optimizer.backends.highs import new_highs
from optimizer.decomposition.oracle import Oracle
from optimizer.formulation.coupling import VariantRows

DUAL_SHARE = 0.5  # share of the time budget for the multipliers; the rest for the plan
RPROP_ITERATIONS = 60
# A step grows by half while its row's subgradient keeps its sign: from zero prices the
# multipliers reach their scale in fewer evaluations than at 1.2. On generated audience
# catalogs of 100,000 and 200,000 segments the bound reached its plateau 3 to 6 evaluations
# sooner, and was as good or better at 30 and 60
RPROP_START, RPROP_GROW, RPROP_SHRINK = 0.01, 1.5, 0.5
SERIOUS_STEP = 0.1  # accept a step that achieves this share of the predicted decrease
MAX_CUTS = 400  # the master LP keeps the newest cuts
SHIFT_ROUNDS = 30
MAX_ITERATIONS = 1000
BISECTIONS = 6
FEASIBILITY_TOL = 1e-9


@dataclass
class Decomposition:
    bound: float  # best Lagrangian value: a proven upper bound
    bound_price: np.ndarray  # per-variant prices at the best multipliers
    price: np.ndarray | None  # per-variant prices whose choice is the best plan found
    objective: float | None
    iterations: int
    history: list[tuple[float, float | None, float]] = field(default_factory=list)
    recovery: str = ""
    infeasible: bool = False  # a row no candidate enters is violated
    row_prices: np.ndarray = field(default_factory=lambda: np.zeros(0))  # margin per unit of row
    early_price: np.ndarray | None = None  # per-variant prices at the best early multipliers


class Dual:
    """L(lam) over rows `K_le w <= h` scaled to their capacity, in units of the unpriced value.

    Each row is divided by the larger of its limit and its usage by the unpriced choice,
    so every multiplier reads "share of the total value per share of the row's capacity".
    """

    def __init__(self, oracle: Oracle, rows: VariantRows) -> None:
        self.oracle = oracle
        K, limit = rows.as_le()
        peak = np.asarray(abs(rows.K).multiply(oracle.max_takes()[None, :]).max(axis=1)
                          .todense()).ravel() if len(rows) else np.zeros(0)
        self.unpriced = oracle.evaluate(np.zeros(oracle.n_columns))
        reach = abs(K) @ self.unpriced.takes
        row_scale = np.maximum(np.maximum(np.abs(limit), reach), peak)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            h = limit / row_scale  # a limit far beyond the row's reach becomes inf: never binds
        self.live = (peak > 0) & np.isfinite(h)
        self.dead_violated = bool(np.any((peak <= 0) & (limit < 0)))  # 0 > limit: no plan
        self.row_scale, self.h = row_scale[self.live], h[self.live]
        K = sp.csr_matrix(K[self.live])
        # divide, not multiply by 1/scale: a row of denormal coefficients stays finite
        K.data = K.data / np.repeat(self.row_scale, np.diff(K.indptr))
        self.K = K
        self.scale = max(1.0, abs(self.unpriced.objective))
        self.tol = FEASIBILITY_TOL * np.maximum(1.0, np.abs(self.h))

    def __len__(self) -> int:
        return len(self.h)

    def price(self, lam: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.scale * (self.K.T @ lam)
        return out

    def evaluate(self, lam: np.ndarray, track: bool = False
                 ) -> tuple[float, np.ndarray, float, np.ndarray]:
        """L(lam) (scaled), its subgradient h - G x, the plan's value (scaled) and G x."""
        # the unpriced choice is known from the scaling: no second segment step for it
        e = self.unpriced if not lam.any() and not track else \
            self.oracle.evaluate(self.price(lam), track)
        usage: np.ndarray = self.K @ e.takes
        objective = e.objective / self.scale if e.meets_caps else -np.inf  # no plan otherwise
        return float(lam @ self.h) + e.adjusted / self.scale, self.h - usage, objective, usage

    def feasible(self, usage: np.ndarray) -> bool:
        return bool(np.all(usage <= self.h + self.tol))


@dataclass
class _Search:
    """The multiplier search's record: cuts, the best bound and the best plan so far."""

    dual: Dual
    start: float
    on_progress: Callable[[Progress], bool] | None
    best_bound: float = np.inf
    best_lam: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best_obj: float = -np.inf
    best_plan_lam: np.ndarray | None = None
    cuts_f: list[float] = field(default_factory=list)
    cuts_g: list[np.ndarray] = field(default_factory=list)
    history: list[tuple[float, float | None, float]] = field(default_factory=list)
    stop: bool = False
    early_until: int = 0  # evaluations within which the best multipliers are kept apart
    early_lam: np.ndarray | None = None
    evaluations: int = 0

    def evaluate(self, lam: np.ndarray, track: bool = False) -> tuple[float, np.ndarray]:
        """Every L(lam) is a bound, wherever lam comes from; every feasible choice a plan."""
        value, g, objective, usage = self.dual.evaluate(lam, track)
        self.evaluations += 1
        self.cuts_f = [*self.cuts_f[-MAX_CUTS + 1:], value - float(lam @ g)]
        self.cuts_g = [*self.cuts_g[-MAX_CUTS + 1:], g]
        if value < self.best_bound:
            self.best_bound, self.best_lam = value, lam
            if self.evaluations <= self.early_until:
                self.early_lam = lam
        if self.dual.feasible(usage) and objective > self.best_obj:
            self.best_obj, self.best_plan_lam = objective, lam
        self._report()
        return value, g

    def _report(self) -> None:
        scale = self.dual.scale
        elapsed = time.perf_counter() - self.start
        objective = None if self.best_plan_lam is None else self.best_obj * scale
        self.history.append((elapsed, objective, self.best_bound * scale))
        if self.on_progress is not None and self.on_progress(Progress(
                objective, self.best_bound * scale,
                None if objective is None else gap_of(self.best_obj, self.best_bound), elapsed)):
            self.stop = True

    def gap(self) -> float:
        return gap_of(self.best_obj, self.best_bound) if self.best_plan_lam is not None else np.inf

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def gap_of(objective: float, bound: float) -> float:
    return max(0.0, (bound - objective) / max(abs(bound), 1e-12))


def decompose(oracle: Oracle, rows: VariantRows, time_limit: float | None, gap: float,
              max_iterations: int = MAX_ITERATIONS, dual_share: float = DUAL_SHARE,
              on_progress: Callable[[Progress], bool] | None = None,
              early_until: int = 0, start_prices: np.ndarray | None = None,
              bisections: int = BISECTIONS) -> Decomposition:
    """The multipliers; with `early_until`, also the best of the first that many
    evaluations (`Decomposition.early_price`), for a repair to start from. `start_prices` (one
    price per row, as `Decomposition.row_prices`: yesterday's) is where the descent starts,
    after the zero point. `bisections` refine the safe price found by raising the prices of
    overdrawn rows."""
    start = time.perf_counter()
    dual = Dual(oracle, rows)
    search = _Search(dual, start, on_progress, early_until=early_until)
    if dual.dead_violated:
        return Decomposition(-np.inf, np.zeros(oracle.n_columns), None, None, 0, infeasible=True,
                             recovery="a coupling row no candidate enters is violated")
    budget = dual_share * (time_limit if time_limit is not None else np.inf)

    def more(done: int) -> bool:
        return done < max_iterations and len(dual) > 0 and not search.stop and \
            search.elapsed() < budget and search.gap() > gap

    search.evaluate(np.zeros(len(dual)))
    first = np.zeros(len(dual))
    if start_prices is not None and len(dual) and np.any(start_prices[dual.live] > 0):
        first = np.maximum(0.0, start_prices[dual.live] * dual.row_scale / dual.scale)
        search.evaluate(first)
    iterations, delta = _rprop(search, more, first)
    oracle.reset_tracking()  # contested: segments that still change near the optimum
    iterations = _kelley(search, more, iterations, delta, gap)
    how = "a subproblem choice met every row"
    if search.gap() > gap and len(dual) and not search.stop:
        shifted = _shift(search, time_limit if time_limit is not None else np.inf, gap,
                         bisections)
        how = shifted if search.best_plan_lam is not None and shifted else how
    plan_lam = search.best_plan_lam
    row_prices = np.zeros(len(rows))
    row_prices[dual.live] = search.best_lam * dual.scale / dual.row_scale
    return Decomposition(
        bound=search.best_bound * dual.scale,
        bound_price=dual.price(search.best_lam),
        price=None if plan_lam is None else dual.price(plan_lam),
        objective=None if plan_lam is None else search.best_obj * dual.scale,
        iterations=iterations, history=search.history,
        recovery=how if plan_lam is not None else "no subproblem choice met every row",
        row_prices=row_prices,
        early_price=None if search.early_lam is None else dual.price(search.early_lam))


def _rprop(search: _Search, more: Callable[[int], bool],
           lam: np.ndarray) -> tuple[int, np.ndarray]:
    """Sign-based descent from `lam` (the last point evaluated): each row's step grows while
    its subgradient keeps its sign."""
    k = len(search.dual)
    delta, previous = np.full(k, RPROP_START), np.zeros(k)
    g = search.cuts_g[-1]
    done = 0
    while done < RPROP_ITERATIONS and more(done):
        direction = np.where((lam <= 0) & (g > 0), 0.0, np.sign(g))  # no move below zero
        agree = direction * previous
        delta = np.where(agree > 0, delta * RPROP_GROW, np.where(agree < 0, delta * RPROP_SHRINK,
                                                                 delta))
        lam = np.maximum(0.0, lam - direction * delta)
        previous = direction
        _, g = search.evaluate(lam)
        done += 1
    return done, delta


def _kelley(search: _Search, more: Callable[[int], bool], done: int, delta: np.ndarray,
            gap: float) -> int:
    """Cutting planes in a per-row box around the best multipliers, grown where it binds."""
    center, value = search.best_lam, search.best_bound
    box = np.maximum(4.0 * delta, 1e-6)
    while more(done):
        lam, model = _master(search.cuts_f, search.cuts_g, np.maximum(0.0, center - box), center + box)
        predicted = value - model
        if predicted <= 1e-12 * max(1.0, abs(value)):
            break  # the model is exact around the center: converged
        new_value, _ = search.evaluate(lam, track=True)
        done += 1
        if value - new_value >= SERIOUS_STEP * predicted:  # serious step: move the center
            at_edge = np.abs(lam - center) >= box * (1 - 1e-9)
            center, value = lam, new_value
            box = np.where(at_edge, 2.0 * box, box)
        elif new_value > value:  # the model misled badly: trust it over a smaller box
            box = np.maximum(0.7 * box, 1e-9)
        # otherwise a null step: the new cut alone improves the model
    return done


def _master(cuts_f: list[float], cuts_g: list[np.ndarray], lower: np.ndarray,
            upper: np.ndarray) -> tuple[np.ndarray, float]:
    """min theta s.t. theta >= f_j + g_j.lam, lower <= lam <= upper."""
    k, m = len(lower), len(cuts_f)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = k + 1, m
    lp.col_cost_ = np.r_[np.zeros(k), 1.0]
    lp.col_lower_ = np.r_[lower, -highspy.kHighsInf]
    lp.col_upper_ = np.r_[upper, highspy.kHighsInf]
    csc = sp.csc_matrix(np.column_stack([-np.asarray(cuts_g), np.ones(m)]))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_ = csc.indptr, csc.indices
    lp.a_matrix_.value_ = csc.data
    lp.row_lower_ = np.asarray(cuts_f, dtype=np.float64)
    lp.row_upper_ = np.full(m, highspy.kHighsInf)
    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    values = np.asarray(h.getSolution().col_value)
    if len(values) < k + 1:  # no solution (numerical trouble): stay at the center
        return 0.5 * (lower + upper), np.inf
    return values[:k], float(values[k])


def _shift(search: _Search, limit: float, gap: float, bisections: int) -> str | None:
    """Raise the multipliers of overdrawn rows until the choice meets every row; bisect back.

    Segments answer prices smoothly when there are many of them, so a small raise on the
    rows a choice overdraws usually fixes it at little cost; the bisection then looks for
    the smallest raise that still works.
    """
    dual = search.dual
    mu = search.best_lam.copy()
    positive = mu[mu > 0]
    base = float(positive.mean()) if len(positive) else 1e-3
    step = np.full(len(mu), 0.05)
    low: np.ndarray | None = None  # the last raise that still overdrew a row
    high: np.ndarray | None = None
    for _ in range(SHIFT_ROUNDS):
        if search.stop or search.elapsed() > limit:
            return None
        _, g = search.evaluate(mu)
        if np.all(g >= -dual.tol):  # the choice meets every row
            high = mu
            break
        low = mu.copy()
        over = g < -dual.tol
        mu = mu.copy()
        mu[over] += step[over] * np.maximum(mu[over], base)
        step[over] *= 2.0
    if high is None:
        return None
    for _ in range(bisections if low is not None else 0):
        if search.stop or search.gap() <= gap or search.elapsed() > limit:
            break
        assert low is not None
        mid = 0.5 * (low + high)
        _, g = search.evaluate(mid)
        if np.all(g >= -dual.tol):
            high = mid
        else:
            low = mid
    return "raised the prices of overdrawn rows until the segments' choice met every row"
