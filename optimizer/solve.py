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
from optimizer.backends.highs import after_fork
from optimizer.candidates import Candidates, expand
from optimizer.coupling import VariantRows
from optimizer.decompose import DUAL_SHARE, decompose, gap_of
from optimizer.diagnose import Diagnosis, diagnose
from optimizer.errors import OfferOptError
from optimizer.families import Family
from optimizer.formulation import Formulation, formulate, live_coupling, milp_problem
from optimizer.model import Instance
from optimizer.offer_sets import OfferSets
from optimizer.oracle import LocalOracle, Oracle
from optimizer.restricted import restricted_lp, split_lp
from optimizer.segment_choice import SegmentChooser
from optimizer.stability import Stability
from optimizer.supervise import Channel, Collector, PlanMessage, Sink, Supervised, supervise
from optimizer.warm import WarmStart


class Status(StrEnum):
    """Plan status as in spec section 4."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"  # the clock ran out before any feasible plan was found
    ERROR = "error"


AUTO_EXACT_MAX_CANDIDATES = 400_000  # with yesterday's plan, `auto` decomposes above this
# above this, `auto` decomposes (its LP step then runs over the candidates chosen near the
# best multipliers) instead of solving the whole LP
LP_MAX_CANDIDATES = 400_000
SPLIT_MAX_CANDIDATES = 5_000_000  # above this, the split plan's LP is built by column generation
QUICK_SHARE, QUICK_MAX_SECONDS = 0.1, 10.0  # of a time limit, for a first plan before the LP
RESTRICTED_MIN_SECONDS = 20.0  # time left below which the decomposition skips its LP step
LP_STEP_MAX_CANDIDATES = 20_000_000  # the decomposition's LP step, measured at 1M segments
DUAL_SHARE_BEFORE_LP = 0.2  # of the time limit for the multipliers, when the LP step follows
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
    split_traffic: bool = False  # the LP optimum as weighted offer sets (spec section 7)

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
    # split traffic: weighted sets per segment over `candidates`; None for an integral plan
    offer_sets: OfferSets | None = None
    # the solve's earlier plans, best first: what a caller falls back on when a check fails
    earlier: tuple[PlanMessage, ...] = ()

    @property
    def share(self) -> np.ndarray:
        """Per candidate: the share of its segment's views that see it (spec section 7)."""
        if self.offer_sets is None:
            return self.selected.astype(np.float64)
        return self.offer_sets.shares(len(self.candidates))

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        return max(0.0, (self.bound - self.objective) / max(abs(self.bound), 1.0))

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.solve_seconds


def solve(instance: Instance, options: SolveOptions | None = None) -> Solution:
    """Solve with the chosen method; map the result to candidates.

    Local solves with a time limit run in a supervised child process (`optimizer.supervise`)
    that is stopped at `time_limit` (counted from this call), so the limit holds whatever the
    solver does; the best plan found by then is the result.
    """
    options = options or SolveOptions()
    backend = get_backend(options.solver)
    start = time.perf_counter()
    if options.backend == "dask":
        if options.method in ("exact", "lp"):
            raise OfferOptError(f"--backend dask: must be used with --method decompose or auto "
                                f"(the {options.method} method runs in one process), "
                                f"got --method {options.method}")
        if options.previous is not None:
            raise OfferOptError("--backend dask: yesterday's plan (warm start, stability) must "
                                "be used with --backend local, got --backend dask")
        from optimizer.distributed import solve_on_dask

        return solve_on_dask(instance, options, backend, start)
    cands = expand(instance)
    method = _method(options, len(cands))
    if not len(cands) or options.time_limit is None:  # no deadline to hold: solve here
        here = Collector(options.progress)
        found = _solve_here(instance, cands, method, options, backend, start, here)
        earlier = sorted(here.plans, key=lambda p: -p.objective)
        return dataclasses.replace(found.solution_for(instance, cands), earlier=tuple(earlier))
    deadline = start + options.time_limit

    def work(channel: Channel) -> Final:
        after_fork()
        return _solve_here(instance, cands, method, options, backend, start, channel)

    run = supervise(work, deadline, options.progress)
    return _assemble(instance, cands, method, options, run, start)


def _method(options: SolveOptions, n_candidates: int) -> str:
    if options.method not in ("auto", "exact", "lp", "decompose"):
        raise OfferOptError(f"method: must be one of auto, exact, lp, decompose, got "
                            f"{options.method!r}")
    if options.split_traffic and options.stability.constrains:
        raise OfferOptError("split_traffic: must be used without max_churn and change_penalty "
                            "(the split plan is the LP optimum, which they do not shape), "
                            "got stability settings")
    if options.split_traffic and options.method == "exact":
        raise OfferOptError("split_traffic: must be used with --method auto, lp or decompose "
                            "(the LP optimum is the split plan), got --method exact")
    if options.split_traffic and options.method == "auto":
        return "lp" if n_candidates <= SPLIT_MAX_CANDIDATES else "decompose"
    if options.method != "auto":
        return options.method
    if options.previous is not None:  # the warm start and stability rows live in the exact MIP
        return "exact" if n_candidates <= AUTO_EXACT_MAX_CANDIDATES else "decompose"
    return "lp" if n_candidates <= LP_MAX_CANDIDATES else "decompose"


@dataclass(frozen=True)
class Final:
    """What a finished solve hands back across the process boundary: the Solution without
    the instance (the parent has it) and with its plan as compact arrays."""

    solution: Solution
    plan: PlanMessage | None

    @classmethod
    def of(cls, solution: Solution) -> Final:
        how = str(solution.extra.get("recovery", solution.method))
        plan = _plan_message(solution, how) if solution.objective is not None else None
        # the parent has the instance and the candidates: only the plan's rows travel
        light = dataclasses.replace(solution, instance=None, candidates=None,  # type: ignore[arg-type]
                                    selected=None, offer_sets=None)  # type: ignore[arg-type]
        return cls(light, plan)

    def solution_for(self, instance: Instance, cands: Candidates) -> Solution:
        if self.plan is None:
            return dataclasses.replace(self.solution, instance=instance,
                                       candidates=cands.subset(np.zeros(0, np.int64)),
                                       selected=np.zeros(0, dtype=bool))
        return dataclasses.replace(self.solution, instance=instance,
                                   candidates=_plan_candidates(cands, self.plan),
                                   selected=np.ones(len(self.plan.value), dtype=bool),
                                   offer_sets=self.plan.sets)


def _plan_message(solution: Solution, how: str) -> PlanMessage:
    c = solution.candidates
    pick = np.flatnonzero(solution.selected)
    sets = None
    if solution.offer_sets is not None:
        sets = dataclasses.replace(solution.offer_sets,
                                   member=np.searchsorted(pick, solution.offer_sets.member))
    return PlanMessage(c.segment[pick], c.variant[pick], c.take_prob[pick], c.value[pick], how, sets)


def _solve_here(instance: Instance, cands: Candidates, method: str, options: SolveOptions,
                backend: Backend, start: float, channel: Sink) -> Final:
    """The solve itself, in this process or the supervised child; plans go to `channel`."""
    history: list[list[float | None]] = []

    def progress(snapshot: Progress) -> bool:
        point = [round(time.perf_counter() - start, 3), snapshot.objective, snapshot.bound]
        if not history or history[-1][1:] != point[1:]:
            history.append(point)
        return channel.progress(snapshot)

    options = dataclasses.replace(options, progress=progress)

    def on_plan(plan: Candidates, how: str) -> None:
        channel.plan(PlanMessage(plan.segment, plan.variant, plan.take_prob, plan.value, how))

    if method == "decompose" and len(cands) and options.split_traffic:
        solution = _split_decomposed(instance, cands, options, backend, start, channel)
    elif method == "decompose" and len(cands):
        solution = _decomposed(instance, cands, options, backend, start, on_plan)
    elif method == "lp" and len(cands):
        solution = _lp_guided(instance, cands, options, backend, start, channel)
    else:
        solution = _exact(instance, cands, options, backend, start, on_plan)
    if "history" not in solution.extra:  # the objective-and-bound curve, for every method
        end = [round(time.perf_counter() - start, 3), solution.objective, solution.bound]
        solution = dataclasses.replace(solution, extra={**solution.extra,
                                                        "history": _thin([*history, end])})
    return Final.of(solution)


def _thin(points: list[list[float | None]], most: int = 200) -> list[list[float | None]]:
    step = max(1, len(points) // most)
    return [*points[:-1][::step], points[-1]]


def _lp_guided(instance: Instance, cands: Candidates, options: SolveOptions, backend: Backend,
               start: float, channel: Sink) -> Solution:
    from optimizer.lp_guided import Found, lp_guided

    form = formulate(instance, cands)
    built = time.perf_counter()
    best: list[Found] = []

    def on_plan(found: Found) -> None:
        best[:] = [found]
        plan = cands.subset(found.positions)
        channel.plan(PlanMessage(plan.segment, plan.variant, plan.take_prob, plan.value,
                                 found.how, found.sets))

    quick = None  # the whole MIP's first incumbent can come late even on small catalogs
    if options.time_limit is not None and not options.split_traffic:
        quick = _quick_plan(instance, cands, form, options, backend, start, channel)
    limits = dataclasses.replace(options.limits, time_limit=_remaining(options.time_limit, start))
    outcome = lp_guided(cands, form, backend, limits, on_plan, options.split_traffic)
    base = dict(instance=instance, coupling=form.per_take, solver=options.solver, method="lp",
                build_seconds=built - start, solve_seconds=time.perf_counter() - built,
                termination=outcome.termination.value)
    extra: dict[str, object] = {"steps": outcome.steps,
                                "history": _thin([list(h) for h in outcome.history] or [[0.0, None, None]])}
    if outcome.lp_objective is not None:
        extra["lp_bound"] = outcome.lp_objective
    if outcome.integral_objective is not None:
        extra["integral_objective"] = outcome.integral_objective
    if outcome.infeasible or not best:
        status = Status.INFEASIBLE if outcome.infeasible else (
            Status.TIME_LIMIT if outcome.termination == Termination.TIME_LIMIT else Status.ERROR)
        diagnosis = diagnose(instance, form, options.limits, backend) \
            if status == Status.INFEASIBLE and options.diagnose else None
        return Solution(candidates=cands, status=status, selected=np.zeros(len(cands), dtype=bool),
                        objective=None, bound=None if outcome.infeasible else outcome.bound,
                        diagnosis=diagnosis, extra=extra, **base)  # type: ignore[arg-type]
    found = best[0]
    if quick is not None and quick.objective is not None and quick.objective > found.objective:
        return dataclasses.replace(quick, bound=None if outcome.bound is None else
                                   max(outcome.bound, quick.objective), method="lp")
    objective = found.objective
    bound = None if outcome.bound is None else max(outcome.bound, objective)
    proved = outcome.termination == Termination.OPTIMAL or (
        bound is not None and relative_gap(objective, bound) <= options.gap)
    status = Status.OPTIMAL if proved else Status.FEASIBLE
    extra["recovery"] = found.how
    return Solution(candidates=cands.subset(found.positions), status=status,
                    selected=np.ones(len(found.positions), dtype=bool), objective=objective,
                    bound=bound, offer_sets=found.sets, extra=extra, **base)  # type: ignore[arg-type]


def _quick_plan(instance: Instance, cands: Candidates, form: Formulation, options: SolveOptions,
                backend: Backend, start: float, channel: Sink) -> Solution | None:
    """A plan within seconds, before the LP: a short decomposition and its greedy repair, so
    that a deadline that comes before the LP is solved still ends with a plan."""
    seconds = min(QUICK_MAX_SECONDS, QUICK_SHARE * float(options.time_limit or 0.0))
    quick_options = dataclasses.replace(options, time_limit=time.perf_counter() - start + seconds,
                                        diagnose=False)

    def on_plan(plan: Candidates, how: str) -> None:
        channel.plan(PlanMessage(plan.segment, plan.variant, plan.take_prob, plan.value,
                                 f"quick plan: {how}"))

    found = decomposed_solution(instance, LocalOracle(cands), form.per_take, len(cands),
                                quick_options, backend, start, time.perf_counter(), on_plan)
    return found if found.objective is not None else None


def _exact(instance: Instance, cands: Candidates, options: SolveOptions, backend: Backend,
           start: float, on_plan: Callable[[Candidates, str], None]) -> Solution:
    form = formulate(instance, cands)
    problem = milp_problem(form)
    warm = None
    if options.previous is not None:
        warm = WarmStart.build(instance, cands, form.per_take, SegmentChooser(cands),
                               options.previous, options.stability)
        problem = warm.problem(problem, form.start)
        fallback = warm.fallback_plan()
        if fallback is not None and warm.within_churn(fallback):
            on_plan(fallback, "yesterday's plan, made feasible")
    built = time.perf_counter()

    def on_solution(x: np.ndarray) -> None:
        on_plan(cands.subset(np.flatnonzero(x[: len(cands)] > 0.5)), "the exact MIP's incumbent")

    limits = dataclasses.replace(options.limits, time_limit=_remaining(options.time_limit, start),
                                 on_solution=on_solution)
    # No candidates means every lo_eff is 0: showing nothing is the one plan, and optimal.
    result = backend(problem, limits) if len(cands) else \
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


def _assemble(instance: Instance, cands: Candidates, method: str, options: SolveOptions,
              run: Supervised, start: float) -> Solution:
    """The Solution from what the supervised child sent: its own result when it finished,
    else (stopped at the deadline or cancelled) its best plan so far."""
    earlier = run.best_first()
    if run.result is not None:
        final: Final = run.result
        return dataclasses.replace(final.solution_for(instance, cands), earlier=tuple(earlier))
    rows = live_coupling(instance, cands)
    stopped = "stopped at the time limit" if run.stopped == "deadline" else "cancelled"
    base = dict(instance=instance, coupling=rows, solver=options.solver, method=method,
                build_seconds=0.0, solve_seconds=time.perf_counter() - start,
                termination=Termination.TIME_LIMIT.value)
    if not earlier:
        return Solution(candidates=cands.subset(np.zeros(0, np.int64)), status=Status.TIME_LIMIT,
                        selected=np.zeros(0, dtype=bool), objective=None, bound=None,
                        message=f"{stopped} before any plan was found",
                        **base)  # type: ignore[arg-type]
    best = earlier[0]
    # the last bound reported is on the whole problem, except under stability settings
    seen = None if run.last_progress is None or options.previous is not None else \
        run.last_progress.bound
    bound = seen if seen is not None and seen >= best.objective else None
    return Solution(candidates=_plan_candidates(cands, best), status=Status.FEASIBLE,
                    selected=np.ones(len(best.value), dtype=bool), objective=best.objective,
                    bound=bound, offer_sets=best.sets,
                    message=f"{stopped}: the best plan found so far ({best.how})",
                    extra={"recovery": best.how}, earlier=tuple(earlier[1:]),
                    **base)  # type: ignore[arg-type]


def _plan_candidates(cands: Candidates, plan: PlanMessage) -> Candidates:
    return dataclasses.replace(cands, segment=plan.segment, variant=plan.variant,
                               take_prob=plan.take_prob, value=plan.value)


def _remaining(time_limit: float | None, start: float) -> float | None:
    return None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - start))


def _decomposed(instance: Instance, cands: Candidates, options: SolveOptions, backend: Backend,
                start: float, on_plan: Callable[[Candidates, str], None]) -> Solution:
    rows = live_coupling(instance, cands)
    if options.previous is None:
        return decomposed_solution(instance, LocalOracle(cands), rows, len(cands), options,
                                   backend, start, time.perf_counter(), on_plan)
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


def _split_decomposed(instance: Instance, cands: Candidates, options: SolveOptions,
                      backend: Backend, start: float, channel: Sink) -> Solution:
    """Split traffic on a catalog too large for one LP: multipliers, then column
    generation from the candidates near them until the LP meets its Lagrangian bound."""
    rows = live_coupling(instance, cands)
    oracle = LocalOracle(cands)
    built = time.perf_counter()
    d = decompose(oracle, rows, _remaining(options.time_limit, start), options.gap,
                  dual_share=DUAL_SHARE_BEFORE_LP, on_progress=options.progress)
    found = split_lp(oracle, rows, d, backend, Limits(_remaining(options.time_limit, start),
                                                        options.gap, options.threads))
    base = dict(instance=instance, coupling=rows, solver=options.solver, method="decompose",
                build_seconds=built - start, solve_seconds=time.perf_counter() - built)
    bound = min(d.bound, found.bound)
    extra: dict[str, object] = {"iterations": d.iterations, "recovery": found.how,
                                "multipliers": priced_rows(instance, rows, d.row_prices)}
    if d.infeasible or found.plan is None or found.sets is None or found.value is None:
        infeasible = d.infeasible or found.infeasible
        status = Status.INFEASIBLE if infeasible else Status.TIME_LIMIT
        diagnosis = diagnose(instance, formulate(instance, cands), options.limits, backend) \
            if infeasible and options.diagnose else None
        return Solution(candidates=cands.subset(np.zeros(0, np.int64)), status=status,
                        selected=np.zeros(0, dtype=bool), objective=None,
                        bound=None if infeasible else bound, termination=status.value,
                        diagnosis=diagnosis, extra=extra, **base)  # type: ignore[arg-type]
    plan = found.plan
    channel.plan(PlanMessage(plan.segment, plan.variant, plan.take_prob, plan.value, found.how,
                             found.sets))
    if found.integral is not None:
        extra["integral_objective"] = found.integral
    bound = max(bound, found.value)
    optimal = found.converged or relative_gap(found.value, bound) <= options.gap
    return Solution(candidates=plan, status=Status.OPTIMAL if optimal else Status.FEASIBLE,
                    selected=np.ones(len(plan), dtype=bool), objective=found.value, bound=bound,
                    termination="converged" if optimal else "time_limit", offer_sets=found.sets,
                    extra=extra, **base)  # type: ignore[arg-type]


def decomposed_solution(instance: Instance, oracle: Oracle, rows: VariantRows, n_candidates: int,
                        options: SolveOptions, backend: Backend, start: float,
                        built: float, on_plan: Callable[[Candidates, str], None] | None = None
                        ) -> Solution:
    """Multipliers, then plans: a subproblem choice or price shift, its greedy repair, and
    the contested-segment MIP (growing to every segment on instances a MIP can take).
    Each plan found is handed to `on_plan` as soon as it is known."""
    from optimizer.recovery import recover, repair

    small = n_candidates <= AUTO_EXACT_MAX_CANDIDATES
    # with the restricted LP step to follow (its columns are a few per segment, about a
    # tenth of all candidates), the multipliers need not be exact; far above its size
    # (1M segments) its LP does not solve in the time left, and the repair is the plan
    lp_step = isinstance(oracle, LocalOracle) and not small and \
        n_candidates <= LP_STEP_MAX_CANDIDATES
    share = DUAL_SHARE_BEFORE_LP if lp_step else DUAL_SHARE
    d = decompose(oracle, rows, _remaining(options.time_limit, start), options.gap,
                  dual_share=share, on_progress=options.progress)
    plan = None if d.price is None else oracle.chosen(d.price)
    objective = None if plan is None else float(plan.value.sum())
    if plan is not None and on_plan is not None:
        on_plan(plan, d.recovery)
    how, infeasible = d.recovery, d.infeasible
    bound_seen = d.bound  # the Lagrangian bound, or a lower one proved later
    moved = np.zeros(0, dtype=np.int64)
    repair_moves = None if d.price is None else np.zeros(0, dtype=np.int64)  # the plan's
    if d.price is not None and gap_of(float(objective or 0.0), d.bound) > options.gap:
        repaired, moved = repair(oracle, rows, d.bound_price, d.price)
        if repaired.value.sum() > float(objective or 0.0):
            plan, objective = repaired, float(repaired.value.sum())
            how = f"greedy repair: {len(moved)} segments moved to prices that meet every row"
            repair_moves = moved
            if on_plan is not None:
                on_plan(plan, how)
    left = _remaining(options.time_limit, start)
    if lp_step and isinstance(oracle, LocalOracle) and not infeasible and \
            (objective is None or gap_of(objective, d.bound) > options.gap) and \
            (left is None or left > RESTRICTED_MIN_SECONDS):
        held = None if repair_moves is None or d.price is None else \
            oracle.mixed_positions(d.bound_price, [(d.price, repair_moves)])
        found_lp = restricted_lp(oracle, rows, d, held, moved, backend,
                                 Limits(_remaining(options.time_limit, start), options.gap,
                                        options.threads), on_plan)
        bound_seen = min(bound_seen, found_lp.bound)
        if found_lp.plan is not None and (objective is None or
                                          found_lp.plan.value.sum() > objective):
            plan, objective, how = found_lp.plan, float(found_lp.plan.value.sum()), found_lp.how
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
             objective: float | None, bound: float) -> list[list[float | None]]:
    """[seconds, objective, bound] along the multiplier search, ending with the final plan."""
    return _thin([*([round(t, 3), o, b] for t, o, b in history), [round(total, 3), objective, bound]])


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
