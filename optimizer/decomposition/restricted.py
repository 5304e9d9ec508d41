"""The LP step of the decomposition: an LP over the candidates near the best multipliers.

The segments choose a few candidates each at prices near the best multipliers; an LP over
those alone is a few times the plan's size, and its plans are plans of the whole problem.
Where even those are too many, the segments that choose the same near every multiplier are
held at an earlier plan and the LP decides the rest: the repair's moves and the segments
that waver, heaviest on the priced rows first. Columns are then generated
(`optimizer.decomposition.columns`) while the LP falls short of its Lagrangian bound. From that LP come
integral plans (`optimizer.decomposition.lp_guided`) or, for split traffic, the LP optimum as offer sets.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optimizer.backends import Backend, Limits
from optimizer.decomposition.columns import MAX_ROUNDS, Restricted, generate_columns
from optimizer.decomposition.dual import Decomposition
from optimizer.decomposition.lp_guided import Found, lp_guided
from optimizer.decomposition.oracle import LocalOracle
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.offer_sets import OfferSets, offer_sets

PRICE_FACTORS = (0.0, 0.8, 1.0, 1.25)  # multiples of the best multipliers
MAX_CANDIDATES = 2_000_000  # in the restricted LP, beside the solve's own memory
COLUMNS_SHARE = 0.4  # of the time left, at most, for column generation before the plans


@dataclass(frozen=True)
class RestrictedFound:
    plan: Candidates | None
    how: str
    bound: float  # a Lagrangian bound at the restricted LPs' duals (inf: none)


@dataclass(frozen=True)
class SplitFound:
    """The LP optimum as offer sets over `plan` (None: no LP solved in time, or none
    exists)."""

    plan: Candidates | None
    sets: OfferSets | None
    value: float | None
    bound: float
    converged: bool  # the value is the whole problem's LP optimum
    integral: float | None  # the best integral plan found from the same LP
    how: str
    infeasible: bool = False  # the LP over every candidate has no solution


def restricted_lp(oracle: LocalOracle, rows: VariantRows, d: Decomposition,
                  anchor: np.ndarray | None, moved: np.ndarray, backend: Backend,
                  limits: Limits, on_plan: Callable[[Candidates, str], None] | None
                  ) -> RestrictedFound:
    """Integral plans from the restricted LP; `anchor` (positions) holds the segments the
    LP does not decide, `moved` are the repair's moves."""
    started = time.perf_counter()
    chosen = _near_multipliers(oracle, rows, d, anchor, moved)
    if chosen is None:
        return RestrictedFound(None, "", np.inf)
    positions, free, anchor = chosen
    deadline = None if limits.time_limit is None else \
        started + limits.time_limit * COLUMNS_SHARE
    columns = generate_columns(oracle, rows, positions, anchor, free, deadline, limits.threads,
                               MAX_ROUNDS)
    restricted = oracle.cands.subset(columns.positions)
    held = oracle.cands.subset(columns.held)
    best: list[Found] = []

    def found(f: Found) -> None:
        best[:] = [f]
        if on_plan is not None:
            on_plan(held.join(restricted.subset(f.positions)), f"restricted LP: {f.how}")

    left = None if limits.time_limit is None else \
        limits.time_limit - (time.perf_counter() - started)
    lp_guided(restricted, columns.form, backend, Limits(left, limits.gap, limits.threads), found,
              solved=columns.solved)
    if not best:
        return RestrictedFound(None, "", columns.bound)
    return RestrictedFound(held.join(restricted.subset(best[0].positions)),
                           f"{_described(oracle, columns)}: {best[0].how}", columns.bound)


def split_lp(oracle: LocalOracle, rows: VariantRows, d: Decomposition, backend: Backend,
             limits: Limits) -> SplitFound:
    """The LP optimum as offer sets: columns until the LP meets its Lagrangian bound (or
    the deadline), then an integral plan from the same LP for comparison."""
    started = time.perf_counter()
    none = SplitFound(None, None, None, np.inf, False, None, "no LP solved in time")
    chosen = _near_multipliers(oracle, rows, d, None, np.zeros(0, dtype=np.int64))
    if chosen is None:
        return none
    positions, free, anchor = chosen
    deadline = None if limits.time_limit is None else started + limits.time_limit
    columns = generate_columns(oracle, rows, positions, anchor, free, deadline, limits.threads,
                               rounds=None, fractional=True)
    everything = np.arange(len(oracle.cands))
    if columns.infeasible and free.all() and len(everything) <= MAX_CANDIDATES:
        # the restricted LP may lack the columns that meet every row: try them all
        columns = generate_columns(oracle, rows, everything, anchor, free, deadline,
                                   limits.threads, rounds=1, fractional=True)
        if columns.infeasible:
            return dataclasses.replace(none, how="the LP has no solution", infeasible=True)
    if columns.solved is None:
        return none
    every = np.union1d(columns.positions, columns.held)
    share = np.zeros(len(every))
    share[np.searchsorted(every, columns.positions)] = columns.solved.x
    share[np.searchsorted(every, columns.held)] = 1.0
    sets = offer_sets(oracle.cands.subset(every), share)
    used = np.unique(sets.member)
    plan = oracle.cands.subset(every[used])
    sets = OfferSets(sets.segment, sets.weight, sets.start, np.searchsorted(used, sets.member))
    value = float(plan.value @ sets.shares(len(plan)))
    integral = _integral(oracle, columns, backend, limits, started)
    return SplitFound(plan, sets, value, columns.bound, columns.converged, integral,
                      f"the LP optimum as offer sets, by {_described(oracle, columns)}")


def _integral(oracle: LocalOracle, columns: Restricted, backend: Backend, limits: Limits,
              started: float) -> float | None:
    """The best integral plan from the final LP in the time left (what splitting gains)."""
    left = None if limits.time_limit is None else \
        limits.time_limit - (time.perf_counter() - started)
    if columns.solved is None or (left is not None and left <= 0):
        return None
    best: list[float] = []
    restricted = oracle.cands.subset(columns.positions)
    lp_guided(restricted, columns.form, backend, Limits(left, limits.gap, limits.threads),
              lambda f: best.append(f.objective), solved=columns.solved)
    return max(best) + columns.held_value if best else None


def _near_multipliers(oracle: LocalOracle, rows: VariantRows, d: Decomposition,
                      anchor: np.ndarray | None, moved: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The restricted LP's first candidates, which segments it decides, and the plan
    (positions) holding the others: `anchor`, else the choice at the safe price `d.price`;
    None when too many candidates and no plan to hold."""
    picks = [oracle.choose(d.bound_price * f) for f in PRICE_FACTORS]
    if d.price is not None:
        picks.append(oracle.choose(d.price))
        anchor = picks[-1] if anchor is None else anchor
    positions = np.unique(np.concatenate(picks))
    if len(positions) <= MAX_CANDIDATES:
        return positions, np.ones(len(oracle.cands.lo), dtype=bool), picks[-1]
    if anchor is None:
        return None
    weight = np.asarray(abs(rows.K).T @ d.row_prices).ravel()
    free = _wavering_segments(oracle.cands.segment, positions, picks[-1], moved,
                              oracle.load(d.bound_price, weight))
    return positions[free[oracle.cands.segment[positions]]], free, anchor


def _wavering_segments(segment: np.ndarray, positions: np.ndarray, safe: np.ndarray,
                       moved: np.ndarray, load: np.ndarray) -> np.ndarray:
    """Per segment, whether the restricted LP decides it: the repair's moves first, then the
    segments with more than one choice near the multipliers by load, while the columns fit."""
    n = len(load)
    columns = np.bincount(segment[positions], minlength=n)
    wavering = np.flatnonzero(columns > np.bincount(segment[safe], minlength=n))
    ranked = wavering[np.argsort(-load[wavering], kind="stable")]
    order = np.r_[moved, ranked].astype(np.int64)
    order = order[np.sort(np.unique(order, return_index=True)[1])]
    fits = order[np.cumsum(columns[order]) <= MAX_CANDIDATES]
    out = np.zeros(n, dtype=bool)
    out[fits] = True
    return out


def _described(oracle: LocalOracle, columns: Restricted) -> str:
    held = len(np.unique(oracle.cands.segment[columns.held]))
    kept = f"; {held:,} other segments kept their earlier choice" if held else ""
    proof = ", proved optimal for the whole LP" if columns.converged else ""
    return (f"an LP over {len(columns.positions):,} candidates near the multipliers "
            f"({columns.rounds} round{'s' if columns.rounds > 1 else ''} of column generation"
            f"{proof}{kept})")
