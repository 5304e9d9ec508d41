"""Solving against yesterday's plan: its offers matched to today's, the fallback plan (a
warm start and always a candidate), and the stability settings' objective and rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from optimizer.backends import MilpProblem
from optimizer.errors import OfferOptError
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.segment_choice import Chooser
from optimizer.model.instance import Instance
from optimizer.solve.reports import PreviousPlanReport, StabilityReport, StabilitySettingsReport
from optimizer.stability.fallback import made_feasible
from optimizer.stability.reference import Reference, Stability, churn_budget, reference, stabilized

FALLBACK_HOW = "yesterday's plan, made feasible"  # how the fallback is named among found plans


@dataclass(frozen=True)
class WarmStart:
    cands: Candidates
    ref: Reference
    fallback: np.ndarray | None  # candidate positions of yesterday's plan made feasible
    stability: Stability

    @classmethod
    def build(cls, instance: Instance, cands: Candidates, rows: VariantRows,
              chooser: Chooser, previous: pd.DataFrame, stability: Stability) -> WarmStart:
        ref = reference(instance, cands, previous)
        return cls(cands, ref, made_feasible(cands, chooser, rows, ref.kept), stability)

    def start(self) -> np.ndarray | None:
        if self.fallback is None:
            return None
        x = np.zeros(len(self.cands))
        x[self.fallback] = 1.0
        return x

    def problem(self, plain: MilpProblem, complete: Callable[[np.ndarray], np.ndarray]
                ) -> MilpProblem:
        """The MIP to solve: stabilized when asked, starting from the fallback (`complete`
        adds the problem's columns beyond the candidates to a start)."""
        start = self.start()
        full = None if start is None else complete(start)
        if self.stability.constrains:
            return stabilized(plain, self.cands, self.ref, self.stability, self.forced, full)
        return dataclasses.replace(plain, start=full)

    def adjusted_values(self) -> np.ndarray:
        """Candidate values with the change penalty (the decomposition's objective)."""
        if self.stability.max_churn is not None:
            raise OfferOptError("max_churn: must be used with --method exact (a churn budget "
                                "is not priced by the decomposition; change_penalty is), got "
                                "method decompose")
        return self.cands.value + self.ref.penalty(self.cands, self.stability.change_penalty)

    def penalized_bound(self, bound: float | None) -> float | None:
        """A solver's bound on value + penalty x (kept - new), as a bound on the penalized
        objective value - penalty x changes: the two differ by penalty x yesterday's offers."""
        if bound is None:
            return None
        return bound - self.stability.change_penalty * float(self.ref.previous.sum())

    def penalized(self, plan: Candidates) -> float:
        """A plan's objective under the change penalty: value - penalty x changes."""
        return float(plan.value.sum() - self.stability.change_penalty *
                     self.ref.changes(plan).sum())

    def fallback_plan(self) -> Candidates | None:
        return None if self.fallback is None else self.cands.subset(self.fallback)

    @cached_property
    def forced(self) -> np.ndarray:
        """Per segment: changes without counting against max_churn (see optimizer.stability.reference)."""
        forced = self.ref.forced(self.cands)
        fallback = self.fallback_plan()
        if fallback is None:
            return forced
        out: np.ndarray = forced | (self.ref.changes(fallback) > 0)
        return out

    def within_churn(self, plan: Candidates) -> bool:
        if self.stability.max_churn is None:
            return True
        voluntary = (self.ref.changes(plan) > 0) & ~self.forced
        return int(voluntary.sum()) <= churn_budget(len(self.ref.previous),
                                                    self.stability.max_churn)

    def report(self, plan: Candidates, penalized_bound: float | None) -> StabilityReport:
        """What the plan changed against yesterday's, for the plan's solver section."""
        changes = self.ref.changes(plan)
        fallback = self.fallback_plan()
        previous = PreviousPlanReport(
            offers=int(self.ref.previous.sum()),
            still_candidates=len(self.ref.kept),
            reevaluated_objective=float(self.cands.value[self.ref.kept].sum()),
            fallback_objective=None if fallback is None else float(fallback.value.sum()),
            changed_segments=int((changes > 0).sum()),
            changed_offers=int(changes.sum()),
            forced_segments=int(self.forced.sum()),
        )
        if not self.stability.constrains:
            return StabilityReport(previous, None)
        s = self.stability
        return StabilityReport(previous, StabilitySettingsReport(
            max_churn=s.max_churn, change_penalty=s.change_penalty,
            churn_budget=None if s.max_churn is None else
            churn_budget(len(self.ref.previous), s.max_churn),
            penalized_objective=self.penalized(plan),
            penalized_bound=penalized_bound,
        ))
