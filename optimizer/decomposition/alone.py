"""Units whose choice alone overdraws a coupling row, chosen again within that row.

A coupling row without negative coefficients (an item's stock, the promotion budget, a
channel's capacity) holds in a plan only if every unit's own usage of it is within its
limit, since no other unit uses less than nothing. So each unit's local problem may take
such a row as its own without losing a plan, and every Lagrangian value stays a bound. It
matters at a heavy-tailed catalog's top: on the 1,000,000-segment audience catalog one
audience's best choice used 19,976 of an item's 14,261 units. The master LP mixed 0.45 of
that choice, and without it the LP over the same columns fell by 0.06% (20M JPY): value no
plan can reach, counted in the bound.

The base chooser chooses for every unit; the units whose choice overdraws such a row alone
(rarely more than a few; at most MAX_UNITS, the most overdrawn first) are chosen again by one
MIP over their candidates, each unit within every such row on its own (and its rows 1-3 and
8-9), at the same values. Its bound, where lower, replaces their share of the base bound.
Where it finds no choice (in MIP_SECONDS, or at all), every one of them keeps its base choice
and bound: still a bound, as before. `optimizer.decomposition.run` uses it above a size
where a choice takes seconds (ALONE_MIN_CANDIDATES).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from optimizer.backends import Limits, MilpProblem, MilpSolution, get_backend
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.milp import formulate_rows, milp_problem
from optimizer.formulation.segment_choice import Chooser

MAX_UNITS = 200  # re-chosen per call, the most overdrawn first
MIP_SECONDS = 5.0
MIP_GAP = 1e-9
TOLERANCE = 1e-9  # relative, as the checker's


class RowLimited:
    """A `Chooser`: `inner`'s choice, with the units that overdraw a row alone (a row of
    `rows` without negative coefficients) chosen again within it."""

    def __init__(self, inner: Chooser, cands: Candidates, rows: VariantRows) -> None:
        self.inner, self.cands = inner, cands
        K, limit = rows.as_le()
        alone = np.isfinite(limit) & (np.asarray(K.min(axis=1).todense()).ravel() >= 0) & \
            (np.diff(K.indptr) > 0)
        self.K, self.limit, self.family = sp.csr_matrix(K[alone]), limit[alone], rows.family[alone]
        self.no_rows = VariantRows(sp.csr_matrix((0, K.shape[1])), np.zeros(0), np.zeros(0),
                                   np.zeros(0, np.int8), np.zeros(0, np.int64))
        self.leader = cands.contacts.leader()  # per segment: its unit
        self.backend = get_backend("highs")
        self.bound, self.meets_caps = 0.0, inner.meets_caps
        self.segment_bound = np.zeros(len(cands.lo))
        self.infeasible_audiences: np.ndarray | None = None
        self.rechosen = np.zeros(0, dtype=np.int64)  # of the last call: units (leaders)

    def choose(self, value: np.ndarray) -> np.ndarray:
        selected = self.inner.choose(value)
        self.bound, self.meets_caps = self.inner.bound, self.inner.meets_caps
        self.segment_bound = self.inner.segment_bound
        self.infeasible_audiences = getattr(self.inner, "infeasible_audiences", None)
        self.rechosen = np.zeros(0, dtype=np.int64)
        units = self._overdrawing(np.flatnonzero(selected)) if len(self.limit) else self.rechosen
        if not len(units):
            return selected
        c = self.cands
        mine = np.isin(self.leader, units)  # per segment
        free = np.flatnonzero(mine[c.segment] & np.isfinite(value))
        result, problem = self._solved(dataclasses.replace(c.subset(free), value=value[free]),
                                       np.sort(units))
        if result.x is None or result.bound is None:
            return selected
        picked = free[problem.chosen(result.x)]
        selected = selected.copy()
        selected[np.flatnonzero(selected)[mine[c.segment[selected]]]] = False
        selected[picked] = True
        # both bound these units' best choice: a MIP stopped early may bound it worse
        share = min(result.bound, float(self.segment_bound[mine].sum()))
        segment_bound = np.where(mine, 0.0, self.segment_bound)
        segment_bound += np.bincount(c.segment[picked], value[picked], minlength=len(mine))
        segment_bound[units[0]] += share - float(value[picked].sum())
        self.segment_bound, self.bound = segment_bound, float(segment_bound.sum())
        if self.infeasible_audiences is not None:  # the MIP meets the caps of its audiences
            self.infeasible_audiences = np.setdiff1d(
                self.infeasible_audiences, c.contacts.audience[np.flatnonzero(mine)])
            self.meets_caps = not len(self.infeasible_audiences)
        self.rechosen = units
        return selected

    def _solved(self, sub: Candidates, units: np.ndarray) -> tuple[MilpSolution, MilpProblem]:
        """The MIP over `sub`, the candidates of `units` (sorted), with each unit's own usage
        of every row within the row's limit: one block per unit, as many units as there are."""
        problem = milp_problem(formulate_rows(sub, self.no_rows))  # rows 1-3 and 8-9
        columns, amount, position = sub.usage_entries()
        use = sp.coo_matrix(self.K @ sp.csr_matrix((amount, (columns, position)),
                                                   shape=(sub.n_columns, len(sub))))
        n_rows = len(self.limit)
        key = np.searchsorted(units, self.leader[sub.segment[use.col]]) * n_rows + use.row
        keys, row = np.unique(key, return_inverse=True)
        peak = np.zeros(len(keys))  # each row scaled to a largest coefficient of 1
        np.maximum.at(peak, row, np.abs(use.data))
        peak = np.where(peak > 0, peak, 1.0)
        own = sp.csr_matrix((use.data / peak[row], (row, use.col)),
                            shape=(len(keys), problem.matrix.shape[1]))
        family = None if problem.row_family is None else \
            np.r_[problem.row_family, self.family[keys % n_rows]].astype(np.int8)
        problem = dataclasses.replace(
            problem, matrix=sp.vstack([problem.matrix, own], format="csr"),
            row_lower=np.r_[problem.row_lower, np.full(len(keys), -np.inf)],
            row_upper=np.r_[problem.row_upper, self.limit[keys % n_rows] / peak],
            row_family=family)
        return self.backend(problem, Limits(MIP_SECONDS, MIP_GAP)), problem

    def _overdrawing(self, chosen: np.ndarray) -> np.ndarray:
        """The units (leader segments) whose offers in `chosen` alone use more of a row than
        its limit, the most overdrawn first, at most MAX_UNITS."""
        units, unit = np.unique(self.leader[self.cands.segment[chosen]], return_inverse=True)
        use = sp.coo_matrix((self.K @ self.cands.usage_by_owner(chosen, unit, len(units))).T)
        room = self.limit[use.col]
        over = use.data > room + TOLERANCE * np.maximum(1.0, np.abs(room))
        if not over.any():
            return np.zeros(0, dtype=np.int64)
        ratio = np.zeros(len(units))
        np.maximum.at(ratio, use.row[over], use.data[over] / np.maximum(room[over], 1e-300))
        found = np.flatnonzero(ratio > 0)
        return units[found[np.argsort(-ratio[found], kind="stable")][:MAX_UNITS]]
