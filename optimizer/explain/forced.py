"""A pair forced into the plan: the whole MIP re-solved with the pair required.

Where the multipliers prove little (an instance whose LP relaxation is far above its best
integral plan, as the demo's is), the MIP itself proves more: its bound with the pair
required bounds every plan that holds the pair, so the plan's objective less that bound is
what forcing the pair in costs at least. The solve runs within a time limit; stopped
early, its bound still holds (the loss it proves is only smaller).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optimizer.backends import Limits, Termination, get_backend
from optimizer.formulation.milp import Formulation, milp_problem
from optimizer.model.families import Family

FORCED_GAP = 1e-6


@dataclass(frozen=True)
class Forced:
    """The MIP with one pair required: the best plan found (None: none), its proven bound
    (None: none), and the status: optimal, feasible (stopped at the limit with a plan),
    infeasible (no plan holds the pair), time_limit (no plan found in time) or error."""

    status: str
    objective: float | None
    bound: float | None
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def forced_solve(form: Formulation, pair: np.ndarray, time_limit: float) -> Forced:
    """The MIP of `form` with at least one of the candidates at `pair` (one pair's
    variants) chosen, within `time_limit` seconds."""
    started = time.perf_counter()
    problem = milp_problem(form)
    n = problem.matrix.shape[1]
    row = sp.csr_matrix((np.ones(len(pair)), (np.zeros(len(pair), dtype=np.int64), pair)),
                        shape=(1, n))
    family = None if problem.row_family is None else \
        np.r_[problem.row_family, Family.OFFERS_PER_VIEW].astype(np.int8)
    forced = dataclasses.replace(
        problem, matrix=sp.vstack([problem.matrix, row], format="csr"),
        row_lower=np.r_[problem.row_lower, 1.0], row_upper=np.r_[problem.row_upper, np.inf],
        row_family=family)
    result = get_backend("highs")(forced, Limits(max(time_limit, 0.05), FORCED_GAP, 1))
    seconds = time.perf_counter() - started
    if result.termination == Termination.INFEASIBLE:
        return Forced("infeasible", None, None, seconds)
    objective = None if result.x is None else \
        float(form.objective[forced.chosen(result.x)].sum())
    bound = None if result.bound is None or not np.isfinite(result.bound) else float(result.bound)
    if bound is not None and objective is not None:
        bound = max(bound, objective)
    if result.termination == Termination.OPTIMAL and objective is not None:
        status = "optimal"
    elif objective is not None:
        status = "feasible"
    elif result.termination == Termination.ERROR:
        status = "error"
    else:
        status = "time_limit"
    return Forced(status, objective, bound, seconds)
