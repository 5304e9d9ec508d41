"""Infeasibility diagnosis by an elastic re-solve.

Structure rows (one per slot, offers per view) are always satisfiable on their own, and
every coupling row, and every audience's cap, is met by showing nothing; so a conflict is
always between the segments' minimum offers and some of those rows. Each coupling row gets a slack; the
cheapest relaxation (slack scaled by the row's size) names the rows that conflict, and
the segments whose required offers load them most.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optimizer.backends import Backend, Limits, MilpProblem
from optimizer.formulation.milp import Formulation
from optimizer.model.families import Family, row_subject
from optimizer.model.instance import Instance

MAX_SEGMENTS = 10


@dataclass(frozen=True)
class Conflict:
    family: str
    item: str | None
    activity: float  # row value in the least-relaxed plan
    limit: float
    segments: tuple[str, ...]  # with a minimum of offers, largest load first
    subject: tuple[tuple[str, str], ...] = ()  # a cap's audience, bundle or channel (spec 8)


@dataclass(frozen=True)
class Diagnosis:
    conflicts: tuple[Conflict, ...]
    message: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "conflicts": [
                {"constraint": c.family, "item": c.item, **dict(c.subject),
                 "needed": c.activity, "limit": c.limit, "segments": list(c.segments)}
                for c in self.conflicts
            ],
            "message": self.message,
        }


def diagnose(instance: Instance, form: Formulation, limits: Limits, backend: Backend) -> Diagnosis:
    coupling, structure = form.coupling.normalized(), form.structure
    n, k = len(form.objective), len(coupling)
    if k == 0:
        return Diagnosis((), "infeasible without coupling rows: the solver reported a numerical "
                             "problem in the per-segment rows")
    # One slack per normalized row (a x - s <= hi, or a x + s >= lo), each costing 1.
    sign = np.where(np.isfinite(coupling.upper), -1.0, 1.0)
    slack = sp.csr_matrix((sign, (np.arange(k), np.arange(k))), shape=(k, k))
    matrix = sp.vstack([
        sp.hstack([structure.matrix, sp.csr_matrix((len(structure), k))]),
        sp.hstack([coupling.matrix, slack]),
    ], format="csr")
    problem = MilpProblem(
        objective=np.concatenate([np.zeros(n), np.ones(k)]), matrix=matrix,
        row_lower=np.concatenate([structure.lower, coupling.lower]),
        row_upper=np.concatenate([structure.upper, coupling.upper]),
        col_upper=np.concatenate([np.ones(n), np.full(k, np.inf)]),
        integer=np.concatenate([np.ones(n, bool), np.zeros(k, bool)]), maximize=False,
        choices=n,
    )
    # its bounds are on the slack, not the plan: they must not reach the caller's progress
    result = backend(problem, dataclasses.replace(limits, progress=None))
    if result.x is None:
        return Diagnosis((), f"the elastic re-solve found no point ({result.termination})")
    x = problem.chosen(result.x)
    relaxed = np.flatnonzero(problem.added(result.x) > 1e-6)
    return Diagnosis(tuple(_conflict(instance, form, int(i), x) for i in relaxed),
                     "" if len(relaxed) else "no coupling row had to be relaxed")


def _conflict(instance: Instance, form: Formulation, row: int, x: np.ndarray) -> Conflict:
    coupling, cands = form.coupling, form.candidates
    family = Family(int(coupling.family[row]))
    coef = coupling.matrix.getrow(row).toarray().ravel()
    over_upper = np.isfinite(coupling.upper[row])
    load = np.where(x, coef if over_upper else -coef, 0.0)
    required = cands.lo[cands.segment] > 0
    by_segment = np.bincount(cands.segment[required], weights=load[required],
                             minlength=len(cands.lo))
    worst = [s for s in np.argsort(-by_segment)[:MAX_SEGMENTS] if by_segment[s] > 0]
    named = row_subject(instance, family, int(coupling.subject[row]))
    item = named.pop("item", None)
    limit = coupling.upper[row] if over_upper else coupling.lower[row]
    return Conflict(family.label, item, float(coef @ x), float(limit),
                    tuple(str(instance.segments["id"].iloc[s]) for s in worst),
                    tuple(named.items()))
