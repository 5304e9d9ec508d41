"""build -> solve -> invert: from a validated instance to a typed `Solution`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from optimizer.backends import (
    Backend,
    Limits,
    MilpProblem,
    MilpSolution,
    Progress,
    Termination,
    get_backend,
)
from optimizer.candidates import Candidates, expand
from optimizer.decompose import decompose
from optimizer.diagnose import Diagnosis, diagnose
from optimizer.formulation import Family, Formulation, formulate
from optimizer.model import Instance


class Status(StrEnum):
    """Plan status as in spec section 4."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"  # the clock ran out before any feasible plan was found
    ERROR = "error"


AUTO_EXACT_MAX_CANDIDATES = 400_000  # above this, `auto` decomposes instead of one MIP


@dataclass(frozen=True)
class SolveOptions:
    solver: str = "highs"
    method: str = "auto"  # exact | decompose | auto
    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    diagnose: bool = True
    progress: Callable[[Progress], bool] | None = None  # see Limits.progress

    @property
    def limits(self) -> Limits:
        return Limits(self.time_limit, self.gap, self.threads, self.progress)


@dataclass(frozen=True)
class Solution:
    instance: Instance
    candidates: Candidates
    formulation: Formulation
    status: Status
    selected: np.ndarray  # bool per candidate
    objective: float | None
    bound: float | None
    termination: str
    solver: str
    method: str = "exact"
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    log_tail: tuple[str, ...] = ()
    diagnosis: Diagnosis | None = None
    message: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        return max(0.0, (self.bound - self.objective) / max(abs(self.bound), 1.0))

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.solve_seconds


def milp_problem(form: Formulation) -> MilpProblem:
    """The arrays a backend solves. Rows without coefficients (a coupling row whose
    candidates all have zero takes) are dropped when 0 meets them: some solvers crash on
    empty rows (CBC's clique strengthening does)."""
    rows = form.rows
    n = len(form.objective)
    empty = np.diff(rows.matrix.indptr) == 0
    keep = ~(empty & (rows.lower <= 0) & (rows.upper >= 0))
    return MilpProblem(form.objective, rows.matrix[keep], rows.lower[keep], rows.upper[keep],
                       np.ones(n), np.ones(n, dtype=bool))


def solve(instance: Instance, options: SolveOptions | None = None) -> Solution:
    """Solve with the chosen method (exact MIP or decomposition); map the result to candidates."""
    options = options or SolveOptions()
    backend = get_backend(options.solver)
    start = time.perf_counter()
    cands = expand(instance)
    form = formulate(instance, cands)
    built = time.perf_counter()
    method = options.method
    if method == "auto":
        method = "exact" if len(cands) <= AUTO_EXACT_MAX_CANDIDATES else "decompose"
    if method == "decompose" and len(cands):
        return _decomposed(instance, form, options, backend, built - start)
    problem = milp_problem(form)
    built = time.perf_counter()
    # No candidates means every lo_eff is 0: showing nothing is the one plan, and optimal.
    result = backend(problem, options.limits) if len(cands) else \
        MilpSolution(Termination.OPTIMAL, np.zeros(0), 0.0)
    solved = time.perf_counter()
    timing = {"build_seconds": built - start, "solve_seconds": solved - built}
    none = np.zeros(len(cands), dtype=bool)
    base = dict(instance=instance, candidates=cands, formulation=form, solver=options.solver,
                log_tail=result.log_tail, termination=result.termination.value, **timing)

    if result.termination == Termination.INFEASIBLE:
        diagnosis = diagnose(instance, form, options.limits, backend) if options.diagnose else None
        return Solution(status=Status.INFEASIBLE, selected=none, objective=None, bound=None,
                        diagnosis=diagnosis, **base)  # type: ignore[arg-type]
    if result.termination == Termination.ERROR or (
        result.x is None and result.termination == Termination.OPTIMAL
    ):
        return Solution(status=Status.ERROR, selected=none, objective=None, bound=None,
                        message=result.message or "the solver returned no solution",
                        **base)  # type: ignore[arg-type]
    if result.x is None:
        return Solution(status=Status.TIME_LIMIT, selected=none, objective=None,
                        bound=result.bound, **base)  # type: ignore[arg-type]
    selected = result.x > 0.5
    objective = float(form.objective[selected].sum())
    # The solver's bound is proven up to its tolerances; never report one below the plan itself.
    bound = None if result.bound is None else max(result.bound, objective)
    status = Status.OPTIMAL if result.termination == Termination.OPTIMAL else Status.FEASIBLE
    return Solution(status=status, selected=selected, objective=objective, bound=bound,
                    **base)  # type: ignore[arg-type]


def _decomposed(instance: Instance, form: Formulation, options: SolveOptions, backend: Backend,
                build_seconds: float) -> Solution:
    started = time.perf_counter()
    d = decompose(form, options.limits, backend, on_progress=options.progress)
    cands = form.candidates
    selected = d.x if d.x is not None else np.zeros(len(cands), dtype=bool)
    objective = d.objective
    bound = d.bound if objective is None else max(d.bound, objective)
    if d.infeasible:
        status = Status.INFEASIBLE
    elif objective is None:
        status = Status.TIME_LIMIT
    else:
        gap = max(0.0, (bound - objective) / max(abs(bound), 1.0))
        status = Status.OPTIMAL if gap <= options.gap else Status.FEASIBLE
    diagnosis = diagnose(instance, form, options.limits, backend) \
        if status == Status.INFEASIBLE and options.diagnose else None
    rows = form.coupling
    priced = [
        {"constraint": Family(int(rows.family[i])).label,
         "item": (str(instance.items["id"].iloc[int(rows.subject[i])])
                  if rows.family[i] == Family.INVENTORY else None),
         "multiplier": float(d.prices[i])}
        for i in np.flatnonzero(d.prices > 0)
    ]
    return Solution(
        instance=instance, candidates=cands, formulation=form, status=status, selected=selected,
        objective=objective, bound=None if status == Status.INFEASIBLE else bound,
        termination="converged" if status == Status.OPTIMAL else "time_limit",
        solver=options.solver, method="decompose", build_seconds=build_seconds,
        solve_seconds=time.perf_counter() - started, diagnosis=diagnosis,
        extra={"iterations": d.iterations, "recovery": d.recovery, "multipliers": priced})
