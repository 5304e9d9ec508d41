"""Plan stability: yesterday's offers against today's candidates, change counts, churn rows.

An *offer* is a (segment, bundle) pair with its variant. Against yesterday's plan, an offer
changes when its pair is shown today and was not yesterday (added), was shown yesterday and
is not today (removed), or is shown with another discount or perk (one change). Per
segment that is linear in the decisions:

    changes_s = previous_s - (yesterday's offers kept in s) + (offers of new pairs in s)

`change_penalty` charges each change in the objective; `max_churn` bounds the share of
segments whose offer set changes by choice. Segments forced to change (one of yesterday's
offers is no longer a candidate, or yesterday's offers no longer fill the minimum) are
counted apart and never limited.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.backends import MilpProblem
from optimizer.errors import InputError, Issue
from optimizer.formulation.candidates import Candidates, match_offers
from optimizer.model.instance import Instance


@dataclass(frozen=True)
class Stability:
    max_churn: float | None = None  # share of segments whose offer set may change by choice
    change_penalty: float = 0.0  # objective units per changed offer

    def __post_init__(self) -> None:
        issues = []
        if self.max_churn is not None and not 0 <= self.max_churn <= 1:
            issues.append(Issue("max_churn", "must be in [0, 1]", self.max_churn))
        if not (math.isfinite(self.change_penalty) and self.change_penalty >= 0):
            issues.append(Issue("change_penalty", "must be a finite number >= 0",
                                self.change_penalty))
        if issues:
            raise InputError(issues)

    @property
    def constrains(self) -> bool:
        return self.max_churn is not None or self.change_penalty > 0


@dataclass(frozen=True)
class Reference:
    """Yesterday's plan seen from today's candidates."""

    kept: np.ndarray  # sorted positions of the candidates that are yesterday's offers exactly
    kept_keys: np.ndarray  # sorted segment * n_variants + variant of those
    pair_keys: np.ndarray  # sorted segment * n_bundles + bundle of yesterday's offers
    previous: np.ndarray  # per segment: yesterday's offers
    lost: np.ndarray  # per segment: yesterday's offers that are no candidate today
    n_variants: int
    n_bundles: int

    def is_kept(self, plan: Candidates) -> np.ndarray:
        return np.isin(plan.segment.astype(np.int64) * self.n_variants + plan.variant,
                       self.kept_keys)

    def is_new(self, plan: Candidates) -> np.ndarray:
        """Per candidate: its (segment, bundle) was not shown yesterday."""
        return ~np.isin(plan.segment.astype(np.int64) * self.n_bundles + plan.bundle,
                        self.pair_keys)

    def changes(self, plan: Candidates) -> np.ndarray:
        """Per segment: changed offers when `plan` (chosen candidates) is today's plan."""
        n = len(self.previous)
        kept = np.bincount(plan.segment[self.is_kept(plan)], minlength=n)
        new = np.bincount(plan.segment[self.is_new(plan)], minlength=n)
        out: np.ndarray = self.previous - kept + new
        return out

    def forced(self, cands: Candidates) -> np.ndarray:
        """Per segment: must change (an offer was lost, or yesterday's offers are too few)."""
        out: np.ndarray = (self.lost > 0) | (self.previous - self.lost < cands.lo)
        return out

    def penalty(self, cands: Candidates, penalty: float) -> np.ndarray:
        """Objective adjustment per candidate, up to a constant: -penalty x changes."""
        out: np.ndarray = penalty * (self.is_kept(cands).astype(np.float64)
                                     - self.is_new(cands))
        return out


def reference(instance: Instance, cands: Candidates, offers: pd.DataFrame) -> Reference:
    """Match yesterday's offers (ids) to today's candidates; vectorized over both."""
    n_segments, v = len(instance.segments), cands.variants
    found = match_offers(instance, cands, offers)
    seg, bun, hit = found.segment, found.bundle, found.candidate >= 0
    here = seg >= 0  # offers of segments that no longer exist are dropped with them
    previous = np.bincount(seg[here], minlength=n_segments)
    kept = np.sort(found.candidate[hit])
    lost = previous - np.bincount(seg[hit], minlength=n_segments)
    paired = here & (bun >= 0)
    pairs = np.unique(seg[paired].astype(np.int64) * v.n_bundles + bun[paired])
    keys = cands.segment[kept].astype(np.int64) * len(v) + cands.variant[kept]
    return Reference(kept, np.unique(keys), pairs, previous, lost, len(v), v.n_bundles)


def churn_budget(n_segments: int, max_churn: float) -> int:
    return math.floor(max_churn * n_segments + 1e-9)


def stabilized(problem: MilpProblem, cands: Candidates, ref: Reference, stability: Stability,
               forced: np.ndarray, start: np.ndarray | None) -> MilpProblem:
    """The MIP with the change penalty in its objective and, with `max_churn`, one binary
    `changed_s` per segment not `forced` to change, and the budget row over them. The
    problem's first columns are the candidates'; any after them (takes) are left as they are."""
    n = problem.matrix.shape[1]
    penalty = ref.penalty(cands, stability.change_penalty)
    objective = problem.objective + np.r_[penalty, np.zeros(n - len(penalty))]
    x0 = start
    if stability.max_churn is None:
        return dataclasses.replace(problem, objective=objective, start=x0)
    free = np.flatnonzero(~forced)
    col_of = np.full(len(forced), -1)
    col_of[free] = np.arange(len(free))
    # changes_s <= M_s changed_s, i.e. new_s - kept_s - M_s changed_s <= -previous_s
    sign = ref.is_new(cands) - ref.is_kept(cands).astype(np.float64)
    mine = np.flatnonzero((col_of[cands.segment] >= 0) & (sign != 0))
    big = ref.previous[free] + cands.hi[free]
    link = sp.hstack([
        sp.csr_matrix((sign[mine], (col_of[cands.segment[mine]], mine)), shape=(len(free), n)),
        sp.diags(-big.astype(np.float64), format="csr"),
    ])
    budget = sp.hstack([sp.csr_matrix((1, n)), sp.csr_matrix(np.ones((1, len(free))))])
    widened = sp.hstack([problem.matrix, sp.csr_matrix((problem.matrix.shape[0], len(free)))])
    if start is not None:
        chosen = cands.subset(np.flatnonzero(problem.chosen(start)))
        x0 = np.r_[start, ref.changes(chosen)[free] > 0].astype(np.float64)
    limit = churn_budget(len(forced), stability.max_churn)
    return MilpProblem(
        objective=np.r_[objective, np.zeros(len(free))],
        matrix=sp.vstack([widened, link, budget], format="csr"),
        row_lower=np.r_[problem.row_lower, np.full(len(free), -np.inf), -np.inf],
        row_upper=np.r_[problem.row_upper, -ref.previous[free].astype(np.float64), limit],
        col_upper=np.r_[problem.col_upper, np.ones(len(free))],
        integer=np.r_[problem.integer, np.ones(len(free), dtype=bool)],
        start=x0, choices=problem.choices,
    )
