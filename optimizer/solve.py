"""build -> solve -> invert: from a validated instance to a typed `Solution`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from optimizer.backends import (
    Backend,
    Limits,
    MilpSolution,
    Progress,
    Termination,
    get_backend,
)
from optimizer.candidates import Candidates, expand
from optimizer.coupling import VariantRows
from optimizer.decompose import decompose, gap_of
from optimizer.diagnose import Diagnosis, diagnose
from optimizer.errors import OfferOptError
from optimizer.families import Family
from optimizer.formulation import formulate, live_coupling, milp_problem
from optimizer.model import Instance
from optimizer.oracle import LocalOracle, Oracle
from optimizer.segment_choice import SegmentChooser
from optimizer.stability import Stability
from optimizer.warm import WarmStart


class Status(StrEnum):
    """Plan status as in spec section 4."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"  # the clock ran out before any feasible plan was found
    ERROR = "error"


AUTO_EXACT_MAX_CANDIDATES = 400_000  # above this, `auto` decomposes instead of one MIP
MAX_CONTESTED_SEGMENTS = 2_000  # the recovery MIP's first round, above that size


@dataclass(frozen=True)
class SolveOptions:
    solver: str = "highs"
    method: str = "auto"  # exact | decompose | auto
    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    diagnose: bool = True
    progress: Callable[[Progress], bool] | None = None  # see Limits.progress
    backend: str = "local"  # local | dask: where the decomposition's segment step runs
    scheduler: str | None = None  # a Dask scheduler address; None starts a local cluster
    partitions: int | None = None  # Dask partitions (default: two per worker)
    previous: pd.DataFrame | None = None  # yesterday's offers: warm start, fallback, stability
    stability: Stability = field(default_factory=Stability)

    @property
    def limits(self) -> Limits:
        return Limits(self.time_limit, self.gap, self.threads, self.progress)


@dataclass(frozen=True)
class Solution:
    instance: Instance
    candidates: Candidates  # every candidate, or (decomposition) those of the plan
    coupling: VariantRows  # the coupling rows per unit of takes (KPIs, binding rows)
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


def solve(instance: Instance, options: SolveOptions | None = None) -> Solution:
    """Solve with the chosen method (exact MIP or decomposition); map the result to candidates."""
    options = options or SolveOptions()
    backend = get_backend(options.solver)
    start = time.perf_counter()
    if options.backend == "dask":
        if options.method == "exact":
            raise OfferOptError("--backend dask: must be used with --method decompose or auto "
                                "(the exact MIP runs in one process), got --method exact")
        if options.previous is not None:
            raise OfferOptError("--backend dask: yesterday's plan (warm start, stability) must "
                                "be used with --backend local, got --backend dask")
        from optimizer.distributed import solve_on_dask

        return solve_on_dask(instance, options, backend, start)
    cands = expand(instance)
    method = options.method
    if method == "auto":
        method = "exact" if len(cands) <= AUTO_EXACT_MAX_CANDIDATES else "decompose"
    if method == "decompose" and len(cands):
        return _decomposed(instance, cands, options, backend, start)
    form = formulate(instance, cands)
    problem = milp_problem(form)
    warm = None
    if options.previous is not None:
        warm = WarmStart.build(instance, cands, form.per_take, SegmentChooser(cands),
                               options.previous, options.stability)
        problem = warm.problem(problem)
    built = time.perf_counter()
    # No candidates means every lo_eff is 0: showing nothing is the one plan, and optimal.
    result = backend(problem, options.limits) if len(cands) else \
        MilpSolution(Termination.OPTIMAL, np.zeros(0), 0.0)
    solved = time.perf_counter()
    timing = {"build_seconds": built - start, "solve_seconds": solved - built}
    none = np.zeros(len(cands), dtype=bool)
    base = dict(instance=instance, candidates=cands, coupling=form.per_take, solver=options.solver,
                log_tail=result.log_tail, termination=result.termination.value, **timing)

    if result.termination == Termination.INFEASIBLE:
        # under a churn budget the plain problem may well be feasible: nothing to diagnose
        diagnosis = diagnose(instance, form, options.limits, backend) \
            if options.diagnose and not options.stability.constrains else None
        return Solution(status=Status.INFEASIBLE, selected=none, objective=None, bound=None,
                        diagnosis=diagnosis, **base)  # type: ignore[arg-type]
    if result.termination == Termination.ERROR or (
        result.x is None and result.termination == Termination.OPTIMAL
    ):
        return Solution(status=Status.ERROR, selected=none, objective=None, bound=None,
                        message=result.message or "the solver returned no solution",
                        **base)  # type: ignore[arg-type]
    if result.x is None:
        found = Solution(status=Status.TIME_LIMIT, selected=none, objective=None,
                         bound=result.bound, **base)  # type: ignore[arg-type]
    else:
        selected = result.x[: len(cands)] > 0.5
        objective = float(form.objective[selected].sum())
        # The solver's bound is proven up to its tolerances; never report one below the plan.
        bound = None if result.bound is None else max(result.bound, objective)
        status = Status.OPTIMAL if result.termination == Termination.OPTIMAL else Status.FEASIBLE
        found = Solution(status=status, selected=selected, objective=objective, bound=bound,
                         **base)  # type: ignore[arg-type]
    if warm is None:
        return found
    return _against_previous(found, warm, warm.penalized_bound(result.bound))


def _against_previous(found: Solution, warm: WarmStart, penalized_bound: float | None
                      ) -> Solution:
    """The solve's plan or yesterday's made feasible, whichever is better under the stability
    settings; with those settings the bound (on the penalized problem) moves to `extra`."""
    c = found.candidates
    plan = c.subset(np.flatnonzero(found.selected))
    fallback = warm.fallback_plan()
    use_fallback = fallback is not None and found.status != Status.INFEASIBLE and \
        warm.within_churn(fallback) and \
        (found.objective is None or warm.penalized(fallback) > warm.penalized(plan) + 1e-9)
    if use_fallback:
        assert fallback is not None
        plan = fallback
        found = dataclasses.replace(
            found, candidates=fallback, selected=np.ones(len(fallback), dtype=bool),
            objective=float(fallback.value.sum()), status=Status.FEASIBLE,
            bound=None if found.bound is None else max(found.bound, float(fallback.value.sum())),
            message="yesterday's plan, made feasible, beat the solve's plan")
    extra = {**found.extra, **warm.report(plan, penalized_bound)}
    if warm.stability.constrains:  # a bound on the penalized objective bounds no plan's value
        return dataclasses.replace(found, bound=None, extra=extra)
    return dataclasses.replace(found, extra=extra)


def _remaining(time_limit: float | None, start: float) -> float | None:
    return None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - start))


def _decomposed(instance: Instance, cands: Candidates, options: SolveOptions, backend: Backend,
                start: float) -> Solution:
    rows = live_coupling(instance, cands)
    if options.previous is None:
        return decomposed_solution(instance, LocalOracle(cands), rows, len(cands), options,
                                   backend, start, time.perf_counter())
    chooser = SegmentChooser(cands)  # the segments' structure: the same for adjusted values
    warm = WarmStart.build(instance, cands, rows, chooser, options.previous, options.stability)
    adjusted = dataclasses.replace(cands, value=warm.adjusted_values())
    found = decomposed_solution(instance, LocalOracle(adjusted, chooser), rows, len(cands),
                                options, backend, start, time.perf_counter())
    plan = found.candidates
    penalty = options.stability.change_penalty
    true_plan = dataclasses.replace(plan, value=plan.value - warm.ref.penalty(plan, penalty))
    objective = None if found.objective is None else float(true_plan.value.sum())
    return _against_previous(dataclasses.replace(found, candidates=true_plan, objective=objective),
                             warm, warm.penalized_bound(found.bound))


def decomposed_solution(instance: Instance, oracle: Oracle, rows: VariantRows, n_candidates: int,
                        options: SolveOptions, backend: Backend, start: float,
                        built: float) -> Solution:
    """Multipliers, then plans: a subproblem choice or price shift, its greedy repair, and
    the contested-segment MIP (growing to every segment on instances a MIP can take)."""
    from optimizer.recovery import recover, repair

    d = decompose(oracle, rows, _remaining(options.time_limit, start), options.gap,
                  on_progress=options.progress)
    plan = None if d.price is None else oracle.chosen(d.price)
    objective = None if plan is None else float(plan.value.sum())
    how, infeasible = d.recovery, d.infeasible
    bound_seen = d.bound  # the Lagrangian bound, or a MIP's over every segment if lower
    moved = np.zeros(0, dtype=np.int64)
    if d.price is not None and gap_of(float(objective or 0.0), d.bound) > options.gap:
        repaired, moved = repair(oracle, rows, d.bound_price, d.price)
        if repaired.value.sum() > float(objective or 0.0):
            plan, objective = repaired, float(repaired.value.sum())
            how = f"greedy repair: {len(moved)} segments moved to prices that meet every row"
    small = n_candidates <= AUTO_EXACT_MAX_CANDIDATES
    left = _remaining(options.time_limit, start)
    if not infeasible and (objective is None or gap_of(objective, d.bound) > options.gap) and \
            (left is None or left > 1.0):
        first = np.union1d(oracle.contested(), moved)
        if not small:
            first = first[:MAX_CONTESTED_SEGMENTS]
        weight = np.asarray(abs(rows.K).T @ d.row_prices).ravel()
        ranked = np.argsort(-oracle.load(d.bound_price, weight), kind="stable")
        anchor = plan if plan is not None else oracle.chosen(d.bound_price)
        found = recover(oracle, rows, anchor, first, ranked, d.bound,
                        Limits(left, options.gap, options.threads, options.progress), backend,
                        grow=small)
        infeasible = found.infeasible
        if found.bound is not None:
            bound_seen = min(bound_seen, found.bound)
        if found.plan is not None and (objective is None or found.plan.value.sum() > objective):
            plan, objective, how = found.plan, float(found.plan.value.sum()), found.how
    if plan is None:
        plan = oracle.chosen(d.bound_price).subset(np.zeros(0, dtype=np.int64))
    bound = bound_seen if objective is None else max(bound_seen, objective)
    if infeasible:
        status = Status.INFEASIBLE
    elif objective is None:
        status = Status.TIME_LIMIT
    else:
        status = Status.OPTIMAL if relative_gap(objective, bound) <= options.gap else Status.FEASIBLE
    diagnosis = None
    if status == Status.INFEASIBLE and options.diagnose:
        diagnosis = diagnose(instance, formulate(instance, expand(instance)), options.limits,
                             backend)
    return Solution(
        instance=instance, candidates=plan, coupling=rows, status=status,
        selected=np.ones(len(plan), dtype=bool),
        objective=objective, bound=None if status == Status.INFEASIBLE else bound,
        termination="converged" if status == Status.OPTIMAL else "time_limit",
        solver=options.solver, method="decompose", build_seconds=built - start,
        solve_seconds=time.perf_counter() - built, diagnosis=diagnosis,
        extra={"iterations": d.iterations, "recovery": how,
               "multipliers": priced_rows(instance, rows, d.row_prices),
               "history": _thinned(d.history, time.perf_counter() - start, objective, bound)})


def _thinned(history: list[tuple[float, float | None, float]], total: float,
             objective: float | None, bound: float, points: int = 200) -> list[list[float | None]]:
    """[seconds, objective, bound] along the multiplier search, at most `points` of them,
    ending with the final plan (the gap-over-time curve)."""
    step = max(1, len(history) // points)
    out: list[list[float | None]] = [[round(t, 3), o, b] for t, o, b in history[::step]]
    return [*out, [round(total, 3), objective, bound]]


def priced_rows(instance: Instance, rows: VariantRows, prices: np.ndarray) -> list[dict[str, object]]:
    """The coupling rows with a positive multiplier: margin per unit of the row."""
    return [
        {"constraint": Family(int(rows.family[i])).label,
         "item": (str(instance.items["id"].iloc[int(rows.subject[i])])
                  if rows.family[i] == Family.INVENTORY else None),
         "multiplier": float(prices[i])}
        for i in np.flatnonzero(prices > 0)
    ]


def relative_gap(objective: float, bound: float) -> float:
    return max(0.0, (bound - objective) / max(abs(bound), 1.0))
