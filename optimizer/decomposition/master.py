"""The master LP over whole-unit choices (Dantzig-Wolfe), and a MIP around its optimum.

Every price the multiplier search tries gives every unit (a segment, or with audience caps
an audience) a choice that meets its local rows. A unit's distinct choices are the master's
columns: each with its value, its usage of every coupling row and the candidates it shows.
The LP mixes each unit's columns under the coupling rows; its duals are prices at which
every unit chooses again (column generation), and each such choice is a Lagrangian bound
too. On the 1,000,000-segment audience catalog (250,000 audiences) the LP over 13 prices'
choices came within 0.024% of the Lagrangian bound, after two rounds 0.011%, where the
greedy repair was 0.29% below it. The integral plan is a MIP over the units whose LP
choice differs from a known plan (RINS), and those whose next-best column is nearly as good at
the LP's prices, each free among its columns, every other unit held at the plan's choice
(the LP with every unit rounded, and the repair of that, lost 1.2-1.3% of the LP's value on a
100,000-segment catalog, where a unit's choice moves up to 29% of an item's stock). It starts
from the LP rounded exactly where that is better: the units the LP mixes, no more than its
coupling rows, re-chosen by a MIP among all their candidates within what the others leave.
Their new choices join its columns. A choice that breaks its audience's caps (the audience
step lists them) maps back onto columns but is never taken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from optimizer.backends import Backend, Limits
from optimizer.backends.highs import new_highs, run_within
from optimizer.decomposition.oracle import LocalOracle, fingerprint
from optimizer.decomposition.reassign import choice_mip, holds_every_row
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.milp import formulate_rows, milp_problem

PRICING_SHARE = 0.5  # of the master's time, at most, for the LP and its column generation
PRICING_ROUNDS = 4
# a round of column generation is a choice at the LP's duals and a warm re-solve: begun only
# with this many times the last solve's time left for pricing. At 1M segments the choice took
# 8-12 s, the first solve 12-35 s, and no re-solve ever finished: not in the 30-40 s left
# after a 20 s solve, nor in 30 s after a 12 s one
ROUND_COST = 6.0
# audiences freed beside those the LP moves: the ones whose next-best column is nearly as good
# at the LP's prices, so that rounding one audience's mix can be made up by another. At 1M
# segments, freeing 8,000 of them took the plan from 0.09% to 0.03% below the LP.
NEAR_UNITS = 8_000
MIN_MIP_SECONDS = 2.0
# of the MIP's time, at most, for rounding the units the LP mixes
ROUNDING_SHARE = 0.25
FRACTIONAL = 1e-6


class MasterError(RuntimeError):
    """HiGHS refused the master's columns: the master gives no plan."""


@dataclass(frozen=True)
class MasterFound:
    plan: Candidates | None  # a plan meeting every row, or None
    bound: float  # the least Lagrangian bound at the LP's duals (inf: none)
    lp_value: float | None
    rounds: int
    columns: int
    free_units: int


class ColumnPool:
    """The distinct choices of each unit, in the order first seen."""

    def __init__(self, oracle: LocalOracle, K: sp.csr_matrix) -> None:
        self.oracle, self.K = oracle, K
        self.units = np.unique(oracle.unit)  # units with candidates, by their leader segment
        self.index = np.full(len(oracle.signature), -1, dtype=np.int64)
        self.index[self.units] = np.arange(len(self.units))
        self.signatures: list[np.ndarray] = []  # per choice added: per unit
        self.column_of: list[np.ndarray] = []  # per choice added: per unit, its column
        self.unit = np.zeros(0, dtype=np.int64)  # per column: index into units
        self.usable = np.zeros(0, dtype=bool)  # per column: it meets its audience's caps
        self.value = np.zeros(0)
        self.usage = sp.csc_matrix((K.shape[0], 0))
        self._positions: list[np.ndarray] = []  # chosen positions, by column
        self._lengths: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.value)

    def add(self, chosen: np.ndarray, broken: np.ndarray) -> np.ndarray:
        """Add the choice `chosen` (candidate positions) in which the units `broken` (leader
        segments) break their caps; return the new columns' ids. Such columns are kept, for
        a choice to map onto its columns, but marked unusable."""
        at = self.index[self.oracle.unit[chosen]]
        n = len(self.units)
        signature = np.bincount(at, fingerprint(chosen), minlength=n)
        column = np.full(n, -1, dtype=np.int64)
        for earlier, seen in zip(self.signatures, self.column_of, strict=True):
            same = (column < 0) & (earlier == signature)
            column[same] = seen[same]
        new_units = np.flatnonzero(column < 0)
        ids = len(self.value) + np.arange(len(new_units))
        column[new_units] = ids
        self.signatures.append(signature)
        self.column_of.append(column)
        if not len(new_units):
            return ids
        keep = column[at] >= len(self.value)
        picked = chosen[keep]
        owner = column[at[keep]] - len(self.value)  # new column, 0-based
        order = np.argsort(owner, kind="stable")
        picked, owner = picked[order], owner[order]
        cands = self.oracle.cands
        self.value = np.r_[self.value, np.bincount(owner, cands.value[picked],
                                                   minlength=len(new_units))]
        self.unit = np.r_[self.unit, new_units]
        self.usable = np.r_[self.usable, ~np.isin(self.units[new_units], broken)]
        self.usage = sp.hstack([self.usage, self.oracle.usage_by(picked, owner, len(new_units),
                                                                  self.K)], format="csc")
        self._positions.append(picked)
        self._lengths.append(np.bincount(owner, minlength=len(new_units)))
        return ids

    def positions(self, columns: np.ndarray) -> np.ndarray:
        """The candidate positions the given columns show, sorted."""
        flat = np.concatenate(self._positions) if self._positions else np.zeros(0, np.int64)
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        start = np.cumsum(lengths) - lengths
        picked = np.repeat(start[columns], lengths[columns]) + _within(lengths[columns])
        return np.sort(flat[picked])


class MasterLP:
    """The LP over the pool's units with more than one column; the others held.

    Columns are added as they are generated; HiGHS re-solves from its last basis."""

    def __init__(self, pool: ColumnPool, limit: np.ndarray, threads: int | None) -> None:
        self.pool, self.limit = pool, limit
        peak = np.asarray(abs(pool.usage).max(axis=1).todense()).ravel()
        self.scale = np.where(peak > 0, peak, 1.0)  # a row no column uses yet: unscaled
        self.objective_scale = max(1.0, float(np.abs(pool.value).max(initial=0.0)))
        self.row_of_unit = np.full(len(pool.units), -1, dtype=np.int64)  # HiGHS row
        self.in_lp = np.zeros(0, dtype=bool)  # per pool column
        self.columns = np.zeros(0, dtype=np.int64)  # LP column -> pool column
        self.held = np.zeros(len(pool.units), dtype=bool)  # per unit: one column, not in the LP
        self.lone = np.zeros(0, dtype=np.int64)  # the held units' columns
        self.held_usage = np.zeros(len(limit))
        self.share, self.row_prices = np.zeros(0), np.zeros(len(limit))  # of the last solve
        self.h = new_highs(threads)
        self.h.setOptionValue("output_flag", False)
        m = len(limit)
        lp = highspy.HighsLp()
        lp.num_row_ = m
        lp.row_lower_ = np.full(m, -highspy.kHighsInf)
        lp.row_upper_ = np.full(m, highspy.kHighsInf)
        self.h.passModel(lp)
        self.extend()

    def extend(self) -> None:
        """Take in the pool's columns not in the LP yet; units with one column stay held."""
        pool, m = self.pool, len(self.limit)
        self.in_lp = np.r_[self.in_lp, np.zeros(len(pool) - len(self.in_lp), dtype=bool)]
        usable = pool.usable
        count = np.bincount(pool.unit[usable], minlength=len(pool.units))
        joining = np.flatnonzero((count > 1) & (self.row_of_unit < 0))
        if len(joining):
            first = self.h.getNumRow()
            self.h.addRows(len(joining), np.ones(len(joining)), np.ones(len(joining)), 0,
                           np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
            self.row_of_unit[joining] = first + np.arange(len(joining))
        self.held = count == 1
        self.lone = np.flatnonzero(usable & self.held[pool.unit])
        self.held_usage = np.asarray(pool.usage[:, self.lone].sum(axis=1)).ravel()
        new = np.flatnonzero(usable & ~self.in_lp & ~self.held[pool.unit])
        if len(new):
            usage = sp.coo_matrix(pool.usage[:, new])
            block = sp.csc_matrix(
                (np.r_[usage.data / self.scale[usage.row], np.ones(len(new))],
                 (np.r_[usage.row, self.row_of_unit[pool.unit[new]]],
                  np.r_[usage.col, np.arange(len(new))])),
                shape=(self.h.getNumRow(), len(new)))
            added = self.h.addCols(len(new), -pool.value[new] / self.objective_scale,
                                   np.zeros(len(new)), np.ones(len(new)), len(block.data),
                                   block.indptr.astype(np.int32),
                                   block.indices.astype(np.int32), block.data)
            if added == highspy.HighsStatus.kError:  # a warning: entries below 1e-9 dropped
                raise MasterError(f"HiGHS refused {len(new)} columns: {added}")
            self.in_lp[new] = True
            self.columns = np.r_[self.columns, new]
        room = (self.limit - self.held_usage) / self.scale
        self.h.changeRowsBounds(  # type: ignore[attr-defined]  # not in highspy's stubs
            m, np.arange(m, dtype=np.int32), np.full(m, -highspy.kHighsInf),
            np.where(np.isfinite(room), room, highspy.kHighsInf))

    def solve(self, time_limit: float | None) -> bool:
        """Re-solve; on success `share` and `row_prices` are this solve's, else the last's."""
        run_within(self.h, None if time_limit is None else max(0.1, time_limit))
        status = self.h.getModelStatus()
        if status == highspy.HighsModelStatus.kModelEmpty:  # every unit held: no columns
            over = self.held_usage - self.limit
            if np.any(over > 1e-9 * np.maximum(1.0, np.abs(self.limit))):
                return False
        elif status != highspy.HighsModelStatus.kOptimal:
            return False
        solution = self.h.getSolution()
        self.share = np.zeros(len(self.pool))  # per pool column; a held unit's column: 1
        self.share[self.columns] = np.asarray(solution.col_value)[:len(self.columns)]
        self.share[self.lone] = 1.0
        dual = np.zeros(len(self.limit))
        given = -np.asarray(solution.row_dual)[:len(self.limit)]
        dual[:len(given)] = given
        # a row without a limit has no price: its dual is 0, and must be for the bound
        self.row_prices = np.where(np.isfinite(self.limit),
                                   np.maximum(0.0, dual * self.objective_scale / self.scale), 0.0)
        return True

    def value(self) -> float:
        return float(self.pool.value[:len(self.share)] @ self.share)


def master_plan(oracle: LocalOracle, rows: VariantRows, prices: list[np.ndarray],
                choices: list[tuple[np.ndarray, np.ndarray]], start: np.ndarray,
                backend: Backend, limits: Limits, most: int) -> MasterFound:
    """The best plan the MIP finds around the master LP, within `limits`.

    `prices` give choices (the first two are those `start` mixes: per unit leader segment,
    the index of the price whose choice it has in a plan that meets every row); `choices`
    are more choices already made (candidate positions, and the units whose caps they break).
    At most `most` units are free."""
    started = time.perf_counter()
    K, limit = rows.as_le()
    pool = ColumnPool(oracle, K)
    for price in prices:
        chosen = oracle.choose(price)
        pool.add(chosen, oracle.broken_units())
    incumbent = np.where(start[pool.units] == 1, pool.column_of[1], pool.column_of[0])
    pool.usable[incumbent] = True  # the start plan meets every cap
    for chosen, broken in choices:
        pool.add(chosen, broken)
    try:
        return _priced_and_rounded(pool, rows, incumbent, limit, backend, limits, most,
                                   started)
    except MasterError:
        return MasterFound(None, np.inf, None, 0, len(pool), 0)


def _priced_and_rounded(pool: ColumnPool, rows: VariantRows, incumbent: np.ndarray,
                        limit: np.ndarray, backend: Backend, limits: Limits, most: int,
                        started: float) -> MasterFound:
    """Column generation from the LP's duals, then the MIP around the LP's choice."""
    oracle, K = pool.oracle, pool.K
    deadline = None if limits.time_limit is None else started + limits.time_limit
    lp = MasterLP(pool, limit, limits.threads)
    bound, rounds, lp_value = np.inf, 0, None
    pricing_end = None if limits.time_limit is None else \
        started + limits.time_limit * PRICING_SHARE
    while rounds <= PRICING_ROUNDS:
        solving = time.perf_counter()
        if not lp.solve(None if pricing_end is None else pricing_end - solving):
            break
        lp_value = lp.value()
        took = time.perf_counter() - solving
        if rounds == PRICING_ROUNDS or (pricing_end is not None and
                                        pricing_end - time.perf_counter() < ROUND_COST * took):
            break
        row_prices = lp.row_prices
        price = np.asarray(K.T @ row_prices).ravel()
        chosen = oracle.choose(price)
        bound = min(bound, float(row_prices @ np.where(np.isfinite(limit), limit, 0.0))
                    + oracle.last.bound)
        rounds += 1
        if not len(pool.add(chosen, oracle.broken_units())):
            break  # no unit chooses anew: the LP is optimal over every choice
        lp.extend()
    if lp_value is None:
        return MasterFound(None, bound, None, rounds, len(pool), 0)
    left = None if deadline is None else deadline - time.perf_counter()
    if left is not None and left < MIN_MIP_SECONDS:
        return MasterFound(None, bound, lp_value, rounds, len(pool), 0)
    share = _padded(lp.share, len(pool))
    rounded = mixes_rounded(pool, rows, share, backend,
                             Limits(None if left is None else left * ROUNDING_SHARE, limits.gap,
                                    limits.threads))
    share = _padded(share, len(pool))  # the rounding may add columns
    if rounded is not None and pool.value[rounded].sum() > pool.value[incumbent].sum():
        start = rounded
    else:
        start = incumbent
    left = None if deadline is None else deadline - time.perf_counter()
    chosen_columns, free = _rins(pool, share, lp.row_prices, incumbent, start, limit, backend,
                                 Limits(left, limits.gap, limits.threads), most)
    plan = oracle.cands.subset(pool.positions(chosen_columns))
    sound = holds_every_row(plan, K, limit) and plan.meets_caps()
    return MasterFound(plan if sound else None, bound, lp_value, rounds, len(pool), free)


def lp_choices(pool: ColumnPool, share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: the column the LP gives the largest share, and whether it mixes columns."""
    n = len(pool.units)
    order = np.lexsort((-share, pool.unit))
    first = np.r_[True, pool.unit[order][1:] != pool.unit[order][:-1]]
    lp_choice = np.full(n, -1, dtype=np.int64)
    lp_choice[pool.unit[order][first]] = order[first]
    mixed = np.zeros(n, dtype=bool)
    mixed[pool.unit[(share > FRACTIONAL) & (share < 1 - FRACTIONAL)]] = True
    return lp_choice, mixed


def mixes_rounded(pool: ColumnPool, rows: VariantRows, share: np.ndarray, backend: Backend,
                   limits: Limits) -> np.ndarray | None:
    """Per unit its column: the LP's where the LP takes one whole, and for the units it mixes,
    the best choice among all their candidates within what the whole ones leave of every
    row (an exact MIP); those choices join the pool. None when the MIP finds none in time.

    Few units mix (no more than the rows), but at a heavy-tailed catalog's top one audience
    can be worth 0.5% of the plan: held among its own columns it lost 0.16% of the whole."""
    largest, mixed = lp_choices(pool, share)
    if not mixed.any():
        return largest
    oracle = pool.oracle
    whole = pool.positions(largest[~mixed])
    free = np.flatnonzero(np.isin(oracle.unit, pool.units[mixed]))
    form = formulate_rows(oracle.cands.subset(free), rows, oracle.cands.subset(whole))
    problem = milp_problem(form)
    result = backend(problem, limits)
    if result.x is None:
        return None
    pool.add(np.sort(np.r_[whole, free[problem.chosen(result.x)]]), np.zeros(0, np.int64))
    return pool.column_of[-1]


def _rins(pool: ColumnPool, share: np.ndarray, row_prices: np.ndarray, incumbent: np.ndarray,
          start: np.ndarray, limit: np.ndarray, backend: Backend, limits: Limits, most: int
          ) -> tuple[np.ndarray, int]:
    """Per unit its column: the MIP over the units whose LP choice is not the incumbent's
    (the most valuable moves first) and the units nearest to choosing otherwise at the LP's
    `row_prices`, at most `most` in all, every other unit held at the incumbent's choice.
    It starts from `start`, a plan that differs from the incumbent on those units only."""
    n = len(pool.units)
    lp_choice, fractional = lp_choices(pool, share)
    differ = np.flatnonzero(fractional | (lp_choice != incumbent))
    if len(differ) > most:
        gain = pool.value[lp_choice[differ]] - pool.value[incumbent[differ]]
        differ = np.sort(differ[np.argsort(-gain, kind="stable")[:most]])
    differ = np.union1d(differ, near_units(pool, row_prices, differ,
                                           min(NEAR_UNITS, most - len(differ))))
    if not len(differ):
        return incumbent, 0
    is_free = np.zeros(n, dtype=bool)
    is_free[differ] = True
    if np.any((start != incumbent) & ~is_free):  # the moves were cut to `most`
        start = incumbent
    held = incumbent[~is_free]
    room = limit - np.asarray(pool.usage[:, held].sum(axis=1)).ravel()
    columns = np.flatnonzero(is_free[pool.unit] & pool.usable)
    objective_scale = max(1.0, float(np.abs(pool.value[columns]).max(initial=0.0)))
    problem = choice_mip(pool.value[columns] / objective_scale, pool.usage[:, columns],
                         np.searchsorted(differ, pool.unit[columns]), len(differ), room, limit,
                         np.isin(columns, start[differ]).astype(np.float64))
    if problem is None:
        return start, 0
    result = backend(problem, limits)
    if result.x is None:
        return start, len(differ)
    out = incumbent.copy()
    picked = columns[result.x > 0.5]
    out[pool.unit[picked]] = picked
    return out, len(differ)


def near_units(pool: ColumnPool, row_prices: np.ndarray, exclude: np.ndarray, count: int
               ) -> np.ndarray:
    """Up to `count` units (indices into `pool.units`) not in `exclude`, those whose
    next-best usable column at `row_prices` is closest to their best first."""
    n = len(pool.units)
    priced = np.where(pool.usable, pool.value - np.asarray(pool.usage.T @ row_prices).ravel(),
                      -np.inf)
    best = np.full(n, -np.inf)
    np.maximum.at(best, pool.unit, priced)
    behind = np.where(pool.usable & (priced < best[pool.unit]), best[pool.unit] - priced, np.inf)
    closest = np.full(n, np.inf)
    np.minimum.at(closest, pool.unit, behind)
    closest[exclude] = np.inf
    candidates = np.flatnonzero(np.isfinite(closest))
    return candidates[np.argsort(closest[candidates], kind="stable")[:max(0, count)]]


def _padded(share: np.ndarray, n: int) -> np.ndarray:
    """The LP's shares, 0 for columns added after its last solve."""
    return np.r_[share, np.zeros(n - len(share))]


def _within(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 for each n of `lengths`, concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
