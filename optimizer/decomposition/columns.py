"""Column generation: the LP optimum of a catalog too large for one LP.

A restricted LP holds the candidates of the *free* segments; every other segment is held
at an anchor plan, its usage taken off the limits. The LP's duals price every variant, and
the segment step (`LocalOracle.choose`) at those prices gives each segment's best choice
over all its candidates; with the duals' value of the limits, that is a Lagrangian bound
on the whole problem. Segments whose best choice is not yet in the LP join it (a held
segment is freed with its anchor choice kept as a column), and the LP is solved again.
When the bound meets the LP's value, the restricted LP's optimum is the whole problem's
(Dantzig-Wolfe with the segment step pricing, columns added per candidate).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from optimizer.backends import Termination
from optimizer.decomposition.dual import gap_of
from optimizer.decomposition.lp_guided import Relaxation, Solved
from optimizer.decomposition.oracle import LocalOracle
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.milp import Formulation, formulate_rows, milp_problem
from optimizer.formulation.segment_choice import SegmentBest

MAX_ROUNDS = 30
CONVERGED = 1e-7  # relative distance of the bound to the LP's value


@dataclass(frozen=True)
class Restricted:
    """The last restricted LP solved: its candidates and the held ones (positions in the
    oracle's table), and what it proved."""

    positions: np.ndarray  # the free segments' candidates
    held: np.ndarray  # the anchor's candidates of the held segments
    form: Formulation  # over `positions`, the held usage taken off the limits
    solved: Solved | None  # its relaxation at the optimum (None: not solved in time)
    held_value: float
    bound: float  # the best Lagrangian bound at the LPs' duals (inf: none)
    rounds: int
    converged: bool  # the LP optimum is the whole problem's
    infeasible: bool = False  # the last LP tried has no solution

    @property
    def lp_value(self) -> float | None:
        """The whole problem's value at the LP optimum: the LP's plus the held plan's."""
        return None if self.solved is None else self.solved.value + self.held_value


def generate_columns(oracle: LocalOracle, rows: VariantRows, positions: np.ndarray,
                     anchor: np.ndarray, free: np.ndarray, deadline: float | None,
                     threads: int | None, rounds: int | None = MAX_ROUNDS,
                     fractional: bool = False) -> Restricted:
    """Columns for the free segments (`free`, bool per segment) until the LP is optimal
    for the whole problem, `rounds` LPs are solved or the deadline comes (the first LP is
    always solved); `positions` holds the free segments' starting candidates and `anchor`
    a plan (positions) for every segment. The bound is on integral plans, unless
    `fractional` (split traffic): then it bounds the LP, audiences' caps priced by its duals."""
    free = free.copy()
    current = _solve(oracle, rows, positions, anchor, free, deadline, threads)
    best_bound, done = np.inf, 1
    relaxed = SegmentBest(oracle.cands) if fractional and oracle.cands.contacts.audience_capped \
        else None
    while current.solved is not None:
        chosen, bound = _priced(oracle, rows, current.solved.lp) if relaxed is None else \
            _priced_fractional(oracle, relaxed, rows, current.solved.lp)
        best_bound = min(best_bound, bound)
        lp_value = current.solved.value + current.held_value
        if gap_of(lp_value, best_bound) <= CONVERGED:
            return _with(current, best_bound, done, True)
        cands = oracle.cands
        new = chosen[~_members(chosen, positions)]
        past = deadline is not None and time.perf_counter() >= deadline
        if not len(new) or (rounds is not None and done >= rounds) or past:
            break  # (no new column: the duals' choice is in the LP, numerically optimal)
        joining = np.unique(cands.segment[new])
        joining = joining[~free[joining]]
        free[joining] = True
        freed = anchor[np.isin(cands.segment[anchor], joining)]
        positions = np.union1d(positions, np.r_[new, freed])
        following = _solve(oracle, rows, positions, anchor, free, deadline, threads)
        if following.solved is None:
            break  # out of time inside the LP: the last solved one stands
        current, done = following, done + 1
    return _with(current, best_bound, done, False)


def _solve(oracle: LocalOracle, rows: VariantRows, positions: np.ndarray, anchor: np.ndarray,
           free: np.ndarray, deadline: float | None, threads: int | None) -> Restricted:
    cands = oracle.cands
    held = anchor[~free[cands.segment[anchor]]]
    held_plan = cands.subset(held)
    form = formulate_rows(cands.subset(positions), rows, held_plan)
    lp = Relaxation(form, milp_problem(form), threads)
    termination, x, value = lp.solve(None if deadline is None else
                                     max(0.1, deadline - time.perf_counter()))
    solved = Solved(lp, x, value) if termination == Termination.OPTIMAL and x is not None \
        and value is not None else None
    return Restricted(positions, held, form, solved, float(held_plan.value.sum()), np.inf, 1,
                      False, termination == Termination.INFEASIBLE)


def _with(r: Restricted, bound: float, rounds: int, converged: bool) -> Restricted:
    return dataclasses.replace(r, bound=bound, rounds=rounds, converged=converged)


def _priced(oracle: LocalOracle, rows: VariantRows, lp: Relaxation) -> tuple[np.ndarray, float]:
    """Every segment's best choice at the prices of the LP's duals, and the
    Lagrangian bound there: the best priced values plus the duals' value of the limits
    (an upper limit for a positive dual, a lower one for a negative)."""
    duals = lp.row_duals()
    price = np.asarray(rows.K.T @ duals).ravel()
    chosen = oracle.choose(price)
    priced = oracle.last.bound  # the best priced value (bounded, under audience caps)
    limit = np.where(duals > 0, rows.upper, np.where(duals < 0, rows.lower, 0.0))
    if not np.all(np.isfinite(limit)):  # a dual on a side without a limit: no bound
        return chosen, np.inf
    return chosen, priced + float(duals @ limit)


def _priced_fractional(oracle: LocalOracle, chooser: SegmentBest, rows: VariantRows,
                       lp: Relaxation) -> tuple[np.ndarray, float]:
    """`_priced` for the LP with audience caps: rows 8-9 priced too, at the LP's duals of
    those rows it holds (0 for the others, which is a valid multiplier), so that each
    segment chooses alone (Dantzig-Wolfe over segments, not audiences)."""
    cands = oracle.cands
    duals = lp.row_duals()
    price = np.asarray(rows.K.T @ duals).ravel()
    held, dual = lp.contact_duals()
    keys, coef, pos = cands.contacts.entries(cands.segment, cands.bundle)
    at = np.minimum(np.searchsorted(held, keys), max(len(held) - 1, 0))
    per_key = np.where(held[at] == keys, dual[at], 0.0) if len(held) else np.zeros(len(keys))
    value = cands.value - cands.priced(price, oracle.takes) - \
        np.bincount(pos, coef * per_key, minlength=len(cands))
    chosen = np.flatnonzero(chooser.choose(value))
    limit = np.where(duals > 0, rows.upper, np.where(duals < 0, rows.lower, 0.0))
    if not np.all(np.isfinite(limit)):
        return chosen, np.inf
    return chosen, chooser.bound + float(duals @ limit) + \
        float(dual @ cands.contacts.limit(held))


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    out: np.ndarray = sorted_set[at] == values
    return out
