"""Lagrangian decomposition: relax the coupling rows, solve every segment exactly at once.

Coupling rows (normalized, written as G x <= h) get multipliers lam >= 0. For any lam,
L(lam) = lam.h + max over structure-feasible x of (c - G'lam).x is a proven upper bound on
the optimum, and the inner max separates by segment (`segment_choice.best_choice`).
L is convex and piecewise linear; it is minimized with a trust-region cutting-plane
(stabilized Kelley) method whose master LP HiGHS solves. The master's duals weight the
subproblem points around the best multipliers show which segments are contested; the rest
are fixed, and the contested ones are solved exactly by the MIP backend under every row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import highspy
import numpy as np
import scipy.sparse as sp

from optimizer.backends import Backend, Limits, MilpProblem, Progress, Termination
from optimizer.formulation import Formulation
from optimizer.segment_choice import SegmentChooser

SERIOUS_STEP = 0.1  # accept a step that achieves this share of the predicted decrease
DUAL_SHARE = 0.5  # share of the time budget for the multipliers; the rest for recovery


@dataclass
class Decomposition:
    bound: float  # best Lagrangian value: a proven upper bound
    multipliers: np.ndarray  # at the best bound, one per coupling row (normalized units)
    x: np.ndarray | None  # the best plan found, meeting every row
    objective: float | None
    iterations: int
    history: list[tuple[float, float | None, float]] = field(default_factory=list)
    recovery: str = ""  # how the plan was found
    infeasible: bool = False  # the MIP over every segment proved no plan exists
    prices: np.ndarray = field(default_factory=lambda: np.zeros(0))  # margin per unit of row


def _as_le(form: Formulation) -> tuple[sp.csr_matrix, np.ndarray]:
    """Coupling rows as G x <= h (a >= row is negated), normalized."""
    rows = form.coupling.normalized()
    upper = np.isfinite(rows.upper)
    sign = np.where(upper, 1.0, -1.0)
    G = sp.diags(sign) @ rows.matrix
    h = np.where(upper, rows.upper, -rows.lower)
    return sp.csr_matrix(G), h


@dataclass
class _Dual:
    form: Formulation
    G: sp.csr_matrix
    h: np.ndarray
    c: np.ndarray  # objective scaled to max |c| = 1
    GT: sp.csr_matrix = field(init=False)
    chooser: SegmentChooser = field(init=False)

    def __post_init__(self) -> None:
        self.GT = sp.csr_matrix(self.G.T)
        self.chooser = SegmentChooser(self.form.candidates)  # sorted once, reused per lam

    def evaluate(self, lam: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """L(lam), the maximizing x, and the subgradient h - G x."""
        adjusted = self.c - self.GT @ lam
        x = self.chooser.choose(adjusted)
        return float(lam @ self.h + adjusted[x].sum()), x, self.h - self.usage(x)

    def usage(self, x: np.ndarray) -> np.ndarray:
        """G x, as a sparse product: no copy of the selected columns."""
        out: np.ndarray = self.G @ x.astype(np.float64)
        return out

    def feasible(self, x: np.ndarray, tol: float = 1e-9) -> bool:
        return bool(np.all(self.usage(x) <= self.h + tol * np.maximum(1.0, np.abs(self.h))))


def _master(cuts_f: list[float], cuts_g: list[np.ndarray], center: np.ndarray,
            radius: float) -> tuple[np.ndarray, float]:
    """min theta s.t. theta >= f_j + g_j.lam, lam >= 0 within the box around the center."""
    k, m = len(center), len(cuts_f)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = k + 1, m
    lp.col_cost_ = np.r_[np.zeros(k), 1.0]
    lp.col_lower_ = np.r_[np.maximum(0.0, center - radius), -highspy.kHighsInf]
    lp.col_upper_ = np.r_[center + radius, highspy.kHighsInf]
    rows = np.column_stack([-np.asarray(cuts_g), np.ones(m)]) if k else np.ones((m, 1))
    csc = sp.csc_matrix(rows)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_ = csc.indptr, csc.indices
    lp.a_matrix_.value_ = csc.data
    lp.row_lower_ = np.asarray(cuts_f, dtype=np.float64)
    lp.row_upper_ = np.full(m, highspy.kHighsInf)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    values = np.asarray(h.getSolution().col_value)
    return values[:k], float(values[k])


def decompose(form: Formulation, limits: Limits, backend: Backend,
              max_iterations: int = 500, on_progress: Callable[[Progress], bool] | None = None
              ) -> Decomposition:
    start = time.perf_counter()
    G, h = _as_le(form)
    scale = max(1.0, float(np.abs(form.objective).max())) if len(form.objective) else 1.0
    dual = _Dual(form, G, h, form.objective / scale)
    k = len(h)
    budget = limits.time_limit if limits.time_limit is not None else float("inf")

    center = np.zeros(k)
    value, x, g = dual.evaluate(center)
    cuts_f, cuts_g, points = [value - center @ g], [g], [x]
    best_bound, best_lam = value, center
    best_x, best_obj = (x, float(dual.c[x].sum())) if dual.feasible(x) else (None, -np.inf)
    radius = 1.0
    history: list[tuple[float, float | None, float]] = [
        (time.perf_counter() - start, None, best_bound * scale)]
    iteration = 0
    for iteration in range(1, max_iterations + 1):  # noqa: B007 - reported after the loop
        if k == 0 or time.perf_counter() - start > DUAL_SHARE * budget:
            break
        if best_x is not None and _gap(best_obj, best_bound) <= limits.gap:
            break
        lam, model = _master(cuts_f, cuts_g, center, radius)
        predicted = value - model
        if predicted <= 0.01 * limits.gap * max(1e-12, abs(value)):
            break  # the model agrees with L around the center: converged
        new_value, x, g = dual.evaluate(lam)
        cuts_f.append(new_value - lam @ g)
        cuts_g.append(g)
        points.append(x)
        if new_value < best_bound:
            best_bound, best_lam = new_value, lam
        if dual.feasible(x) and dual.c[x].sum() > best_obj:
            best_x, best_obj = x, float(dual.c[x].sum())
        if value - new_value >= SERIOUS_STEP * predicted:  # serious step: move the center
            at_edge = np.any(np.abs(lam - center) >= radius * (1 - 1e-9))
            center, value = lam, new_value
            radius *= 2.0 if at_edge else 1.0
        elif new_value > value:  # the model misled badly: trust it over a smaller box
            radius *= 0.7
        # otherwise a null step: the new cut alone improves the model
        elapsed = time.perf_counter() - start
        objective = best_obj * scale if best_x is not None else None
        history.append((elapsed, objective, best_bound * scale))
        if on_progress is not None and on_progress(Progress(
                objective, best_bound * scale,
                None if objective is None else _gap(best_obj, best_bound), elapsed)):
            break

    remaining = None if limits.time_limit is None else \
        max(1.0, limits.time_limit - (time.perf_counter() - start))
    if best_x is None:
        repaired = _repair(dual, dual.evaluate(best_lam)[1])
        if repaired is not None:
            best_x, best_obj = repaired, float(dual.c[repaired].sum())
    if best_x is not None and _gap(best_obj, best_bound) <= limits.gap:
        found, how, infeasible = None, "", False  # nothing left to recover
    else:
        relay = None if on_progress is None else _relay(on_progress, best_bound * scale, start)
        found, how, infeasible = _recover(form, dual, points, best_lam, best_bound,
                                          Limits(remaining, limits.gap, limits.threads, relay),
                                          backend)
    if found is not None and (best_x is None or dual.c[found].sum() > best_obj):
        best_x, best_obj = found, float(dual.c[found].sum())
    else:
        how = "a subproblem point met every row" if best_x is not None else how
    peak = np.asarray(abs(form.coupling.matrix).max(axis=1).todense()).ravel() if k else \
        np.zeros(0)
    return Decomposition(
        bound=best_bound * scale, multipliers=best_lam, x=best_x,
        objective=None if best_x is None else float(form.objective[best_x].sum()),
        iterations=iteration, history=history, recovery=how, infeasible=infeasible,
        prices=best_lam * scale / np.where(peak > 0, peak, 1.0))


def _relay(on_progress: Callable[[Progress], bool], bound: float,
           start: float) -> Callable[[Progress], bool]:
    """Report a recovery MIP's progress against the Lagrangian bound and the total time."""
    def forward(p: Progress) -> bool:
        gap = None if p.objective is None else _gap(p.objective, bound)
        return on_progress(Progress(p.objective, bound, gap, time.perf_counter() - start))
    return forward


def _gap(objective: float, bound: float) -> float:
    return max(0.0, (bound - objective) / max(abs(bound), 1e-12))


def _recover(form: Formulation, dual: _Dual, points: list[np.ndarray], lam: np.ndarray,
             bound: float, limits: Limits, backend: Backend, recent: int = 30
             ) -> tuple[np.ndarray | None, str, bool]:
    """Fix the settled segments at their choice under the best multipliers; solve the rest.

    Contested first: segments the last subproblem points disagree on (near-ties at lam),
    then the segments that load the priced coupling rows most. The contested set grows
    fourfold until the plan is within the gap of the bound, all segments are free, or the
    time is spent; the best plan found is kept.
    """
    cands = form.candidates
    n_segments = len(cands.lo)
    _, anchor, _ = dual.evaluate(lam)
    contested = np.zeros(n_segments, dtype=bool)
    for x in points[-recent:]:
        contested[cands.segment[x != anchor]] = True
    ranked = _ranked_by_load(dual, lam, cands.segment, anchor, n_segments)
    size = max(20, 2 * len(lam), n_segments // 100)
    rows = form.rows
    columns = rows.matrix.tocsc()  # one copy; each round then slices columns cheaply
    started = time.perf_counter()
    best: np.ndarray | None = None
    how = "no plan met every row in time"
    infeasible = False
    while True:
        contested[ranked[:size]] = True
        free = np.flatnonzero(contested[cands.segment])
        problem = _restricted(form.objective, columns, rows.lower, rows.upper, free, anchor)
        left = None if limits.time_limit is None else \
            limits.time_limit - (time.perf_counter() - started)
        if left is not None and left <= 0.5:
            break
        last = bool(contested.all())
        slice_ = left if left is None or last else max(0.5, left / 2)
        result = backend(problem, Limits(slice_, limits.gap, limits.threads, limits.progress))
        if result.x is not None:
            x = anchor.copy()
            x[free] = result.x > 0.5
            if best is None or dual.c[x].sum() > dual.c[best].sum():
                best = x
                how = (f"fixed {n_segments - int(contested.sum())} segments, solved "
                       f"{int(contested.sum())} contested ones exactly")
            if _gap(float(dual.c[best].sum()), bound) <= limits.gap:
                break
        if last:
            infeasible = result.termination == Termination.INFEASIBLE
            break
        size *= 4
    return best, how, infeasible


def _restricted(objective: np.ndarray, matrix: sp.csc_matrix, lower: np.ndarray,
                upper: np.ndarray, free: np.ndarray, anchor: np.ndarray) -> MilpProblem:
    """The MIP over the free columns only; the fixed columns' usage moves each row's bounds."""
    fixed = anchor.copy()
    fixed[free] = False
    used = matrix @ fixed.astype(np.float64)
    sub = sp.csr_matrix(matrix[:, free])
    lo, hi = lower - used, upper - used
    empty = np.diff(sub.indptr) == 0
    keep = ~(empty & (lo <= 1e-9) & (hi >= -1e-9))  # rows only the fixed columns touched
    m = len(free)
    return MilpProblem(objective[free], sub[keep], lo[keep], hi[keep], np.ones(m),
                       np.ones(m, dtype=bool))


def _repair(dual: _Dual, x: np.ndarray, max_rounds: int = 200) -> np.ndarray | None:
    """Greedy feasibility repair of a structure-feasible choice.

    While a coupling row is violated, take the moves with the least margin lost per unit of
    violation removed: downgrade an offer to its slot's variant with the smallest row
    coefficient, or drop it where the segment keeps its minimum. Both only lower the row,
    so the mixed-sign rows are repaired too. None when the moves run out.
    """
    chooser, cands = dual.chooser, dual.form.candidates
    x = x.copy()
    for _ in range(max_rounds):
        usage = dual.usage(x)
        excess = usage - dual.h
        tol = 1e-9 * np.maximum(1.0, np.abs(dual.h))
        if np.all(excess <= tol):
            return x
        r = int(np.argmax(excess / np.maximum(1.0, np.abs(dual.h))))
        coef = np.asarray(dual.G[r].todense()).ravel()
        # the lowest-coefficient variant of every (segment, slot) group
        ordered = coef[chooser.order]
        low = np.minimum.reduceat(ordered, chooser.starts)
        hit = ordered == np.repeat(low, chooser.lengths)
        first = np.minimum.reduceat(np.where(hit, chooser.positions, chooser.n), chooser.starts)
        lowest = chooser.order[first]  # per group: its lowest-coefficient candidate
        alternative = np.empty(chooser.n, dtype=np.int64)
        alternative[chooser.order] = np.repeat(lowest, chooser.lengths)
        chosen = np.flatnonzero(x)
        counts = np.bincount(cands.segment[chosen], minlength=len(cands.lo))
        can_drop = counts[cands.segment[chosen]] > cands.lo[cands.segment[chosen]]
        alt = alternative[chosen]
        group_used = np.zeros(len(chooser.starts), dtype=bool)
        group_used[chooser.group_of[chosen]] = True
        # per segment, the unused slot whose lowest-coefficient variant is lowest
        unused = np.flatnonzero(~group_used)
        useg = cands.segment[lowest[unused]]
        by_coef = np.lexsort((coef[lowest[unused]], useg))
        heads = by_coef[np.r_[True, useg[by_coef][1:] != useg[by_coef][:-1]]] if len(unused) \
            else by_coef
        replacement = np.full(len(cands.lo), -1, dtype=np.int64)
        replacement[useg[heads]] = lowest[unused[heads]]
        other = replacement[cands.segment[chosen]]
        # moves on chosen offers: swap within the slot, drop, or trade for another slot
        moves_gain = np.column_stack([
            coef[chosen] - coef[alt],
            np.where(can_drop, coef[chosen], 0.0),
            np.where(other >= 0, coef[chosen] - coef[np.maximum(other, 0)], 0.0)])
        moves_loss = np.column_stack([
            dual.c[chosen] - dual.c[alt], dual.c[chosen],
            dual.c[chosen] - dual.c[np.maximum(other, 0)]])
        pick = np.argmax(moves_gain, axis=1)
        rows_ = np.arange(len(chosen))
        removed = chosen
        added = np.choose(pick, [alt, np.full(len(chosen), -1), other])
        gain = moves_gain[rows_, pick]
        loss = moves_loss[rows_, pick]
        # adding an offer lowers a mixed-sign row where its coefficient is negative
        room = counts[cands.segment[lowest]] < cands.hi[cands.segment[lowest]]
        addable = np.flatnonzero(~group_used & room & (coef[lowest] < -1e-12))
        addable = addable[np.unique(cands.segment[lowest[addable]], return_index=True)[1]]
        removed = np.r_[removed, np.full(len(addable), -1)]
        added = np.r_[added, lowest[addable]]
        gain = np.r_[gain, -coef[lowest[addable]]]
        loss = np.r_[loss, -dual.c[lowest[addable]]]
        useful = np.flatnonzero(gain > 1e-12)
        if len(useful) == 0:
            return None
        ranked = useful[np.argsort(loss[useful] / gain[useful], kind="stable")]
        covered = np.cumsum(gain[ranked])
        take = ranked[: int(np.searchsorted(covered, excess[r] - tol[r])) + 1]
        take = take[np.unique(cands.segment[np.where(removed[take] >= 0, removed[take],
                                                      added[take])], return_index=True)[1]]
        x[removed[take][removed[take] >= 0]] = False
        x[added[take][added[take] >= 0]] = True
    return None


def _ranked_by_load(dual: _Dual, lam: np.ndarray, segment: np.ndarray, x: np.ndarray,
                    n_segments: int) -> np.ndarray:
    """Segments ordered by how much their chosen offers load the priced coupling rows."""
    load = np.asarray(abs(dual.G).T @ lam).ravel() * x if len(lam) else np.zeros(len(x))
    per_segment = np.bincount(segment, weights=load, minlength=n_segments)
    return np.argsort(-per_segment, kind="stable")
