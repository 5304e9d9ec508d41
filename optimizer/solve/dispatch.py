"""build -> solve -> invert: from a validated instance to a typed `Solution`.

The options and the result are `optimizer.solve.result`'s; the methods are `optimizer.decomposition.lp_guided`
(LP-guided), the whole MIP here, and `optimizer.decomposition.run` (the decomposition).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from optimizer.backends import STOPPED, Backend, MilpSolution, Progress, Termination, get_backend
from optimizer.backends.highs import after_fork
from optimizer.decomposition.oracle import LocalOracle
from optimizer.decomposition.run import (
    AUTO_EXACT_MAX_CANDIDATES,
    against_previous,
    decomposed,
    decomposed_solution,
    split_decomposed,
)
from optimizer.errors import OfferOptError
from optimizer.exploration.run import explored
from optimizer.formulation.candidates import Candidates, expand
from optimizer.formulation.choice import chooser_for
from optimizer.formulation.milp import Formulation, formulate, live_coupling, milp_problem
from optimizer.model.instance import Instance
from optimizer.solve.diagnose import diagnose
from optimizer.solve.reports import FoundPlan, LpGuidedStats, PricedRow, SolveStats, priced_rows
from optimizer.solve.result import Solution as Solution
from optimizer.solve.result import SolveOptions as SolveOptions
from optimizer.solve.result import Status as Status
from optimizer.solve.result import relative_gap as relative_gap
from optimizer.solve.result import thin, time_left
from optimizer.solve.supervise import (
    Channel,
    Collector,
    OnPlan,
    PlanMessage,
    Sink,
    Supervised,
    best_first,
    supervise,
)
from optimizer.stability.warm import FALLBACK_HOW, WarmStart

# above this, `auto` decomposes (its LP step then runs over the candidates chosen near the
# best multipliers) instead of solving the whole LP
LP_MAX_CANDIDATES = 400_000
SPLIT_MAX_CANDIDATES = 5_000_000  # above this, the split plan's LP is built by column generation
QUICK_SHARE, QUICK_MAX_SECONDS = 0.1, 10.0  # of a time limit, for a first plan before the LP
# steps of the quick plan's multiplier search: on a 40-segment catalog its 940 steps took 5 of
# a 6 s solve whose LP-guided part took 0.9 s; a first plan needs no converged multipliers
QUICK_ITERATIONS = 40


def solve(instance: Instance, options: SolveOptions | None = None) -> Solution:
    """Solve with the chosen method; map the result to candidates; add exploration sets
    when `options.explore` asks for them (`optimizer.exploration`).

    Local solves with a time limit run in a supervised child process (`optimizer.solve.supervise`)
    that is stopped at `time_limit` (counted from this call), so the limit holds whatever the
    solver does; the best plan found by then is the result.
    """
    options = options or SolveOptions()
    return explored(_solve(instance, options), options)


def _solve(instance: Instance, options: SolveOptions) -> Solution:
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
        from optimizer.decomposition.distributed import solve_on_dask

        return solve_on_dask(instance, options, backend, start)
    cands = expand(instance)
    method = _method(options, len(cands))
    if not len(cands) or options.time_limit is None:  # no deadline to hold: solve here
        here = Collector(options.progress)
        found = _solve_here(instance, cands, method, options, backend, start, here)
        earlier = best_first(here.plans)
        return _with_found(dataclasses.replace(found.solution_for(instance, cands),
                                               earlier=tuple(earlier)),
                           here.plans, here.found_at, start)
    deadline = start + options.time_limit

    def work(channel: Channel) -> Final:
        after_fork()
        return _solve_here(instance, cands, method, options, backend, start, channel)

    run = supervise(work, deadline, options.progress)
    return _with_found(_assemble(instance, cands, method, options, run, start), run.plans,
                       run.found_at, start)


MAX_FOUND_PLANS = 30  # reported: the first ten and the last twenty


def _with_found(solution: Solution, plans: list[PlanMessage], found_at: list[float],
                start: float) -> Solution:
    """The solution, its stats listing the plans found on the way and when."""
    found = [FoundPlan(seconds=round(t - start, 3), objective=p.objective, how=p.how)
             for p, t in zip(plans, found_at, strict=True)]
    if len(found) > MAX_FOUND_PLANS:
        found = found[:10] + found[10 - MAX_FOUND_PLANS:]
    return dataclasses.replace(solution, stats=dataclasses.replace(solution.stats,
                                                                   plans=found or None))


def _method(options: SolveOptions, n_candidates: int) -> str:
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
        how = solution.stats.recovery or solution.method
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
    return PlanMessage.of(solution.candidates, solution.selected, solution.offer_sets, how)


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

    on_plan = _sender(channel)
    if method == "decompose" and len(cands) and options.split_traffic:
        solution = split_decomposed(instance, cands, options, backend, start, channel)
    elif method == "decompose" and len(cands):
        solution = decomposed(instance, cands, options, backend, start, on_plan)
    elif method == "lp" and len(cands):
        solution = _lp_guided(instance, cands, options, backend, start, channel)
    else:
        solution = _exact(instance, cands, options, backend, start, on_plan)
    if solution.stats.history is None:  # the objective-and-bound curve, for every method
        end = [round(time.perf_counter() - start, 3), solution.objective, solution.bound]
        stats = dataclasses.replace(solution.stats, history=thin([*history, end]))
        solution = dataclasses.replace(solution, stats=stats)
    return Final.of(solution)


def _sender(channel: Sink, prefix: str = "") -> OnPlan:
    """Each plan found, as a message to `channel` (its step named after `prefix`)."""
    def send(plan: Candidates, how: str, score: float | None = None,
             multipliers: list[PricedRow] | None = None) -> None:
        channel.plan(PlanMessage(plan.segment, plan.variant, plan.take_prob, plan.value,
                                 prefix + how, score=score, multipliers=multipliers))

    return send


def _lp_guided(instance: Instance, cands: Candidates, options: SolveOptions, backend: Backend,
               start: float, channel: Sink) -> Solution:
    from optimizer.decomposition.lp_guided import Found, lp_guided

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
    limits = dataclasses.replace(options.limits, time_limit=time_left(options.time_limit, start))
    outcome = lp_guided(cands, form, backend, limits, on_plan, options.split_traffic)
    base = dict(instance=instance, coupling=form.per_take, solver=options.solver, method="lp",
                build_seconds=built - start, solve_seconds=time.perf_counter() - built,
                termination=outcome.termination)
    stats = LpGuidedStats(steps=outcome.steps,
                          history=thin([list(h) for h in outcome.history] or [[0.0, None, None]]),
                          lp_bound=outcome.lp_objective,
                          integral_objective=outcome.integral_objective,
                          multipliers=None if outcome.row_prices is None else priced_rows(
                              instance, np.r_[form.per_take.family, form.contact.family],
                              np.r_[form.per_take.subject, form.contact.subject],
                              outcome.row_prices))
    if outcome.infeasible or not best:
        status = Status.INFEASIBLE if outcome.infeasible else (
            Status.TIME_LIMIT if outcome.termination in STOPPED else Status.ERROR)
        diagnosis = diagnose(instance, form, options.limits, backend) \
            if status == Status.INFEASIBLE and options.diagnose else None
        return Solution(candidates=cands, status=status, selected=np.zeros(len(cands), dtype=bool),
                        objective=None, bound=None if outcome.infeasible else outcome.bound,
                        diagnosis=diagnosis, stats=stats, **base)  # type: ignore[arg-type]
    found = best[0]
    if quick is not None and quick.objective is not None and quick.objective > found.objective:
        return dataclasses.replace(quick, bound=None if outcome.bound is None else
                                   max(outcome.bound, quick.objective), method="lp")
    objective = found.objective
    bound = None if outcome.bound is None else max(outcome.bound, objective)
    proved = outcome.termination == Termination.OPTIMAL or (
        bound is not None and relative_gap(objective, bound) <= options.gap)
    status = Status.OPTIMAL if proved else Status.FEASIBLE
    return Solution(candidates=cands.subset(found.positions), status=status,
                    selected=np.ones(len(found.positions), dtype=bool), objective=objective,
                    bound=bound, offer_sets=found.sets,
                    stats=dataclasses.replace(stats, recovery=found.how),
                    **base)  # type: ignore[arg-type]


def _quick_plan(instance: Instance, cands: Candidates, form: Formulation, options: SolveOptions,
                backend: Backend, start: float, channel: Sink) -> Solution | None:
    """A plan within seconds, before the LP: a short decomposition and its greedy repair, so
    that a deadline that comes before the LP is solved still ends with a plan."""
    seconds = min(QUICK_MAX_SECONDS, QUICK_SHARE * float(options.time_limit or 0.0))
    quick_options = dataclasses.replace(options, time_limit=time.perf_counter() - start + seconds,
                                        diagnose=False)

    on_plan = _sender(channel, "quick plan: ")
    found = decomposed_solution(instance, LocalOracle(cands), form.per_take, len(cands),
                                quick_options, backend, start, time.perf_counter(), on_plan,
                                max_iterations=QUICK_ITERATIONS)
    return found if found.objective is not None else None


def _exact(instance: Instance, cands: Candidates, options: SolveOptions, backend: Backend,
           start: float, on_plan: OnPlan) -> Solution:
    form = formulate(instance, cands)
    problem = milp_problem(form)
    warm = None
    if options.previous is not None:
        warm = WarmStart.build(instance, cands, form.per_take, chooser_for(cands),
                               options.previous, options.stability)
        problem = warm.problem(problem, form.start)
        fallback = warm.fallback_plan()
        if fallback is not None and warm.within_churn(fallback):
            on_plan(fallback, FALLBACK_HOW, warm.penalized(fallback))
    built = time.perf_counter()

    def on_solution(x: np.ndarray) -> None:
        plan = cands.subset(np.flatnonzero(problem.chosen(x)))
        on_plan(plan, "the exact MIP's incumbent", None if warm is None else warm.penalized(plan))

    limits = dataclasses.replace(options.limits, time_limit=time_left(options.time_limit, start),
                                 on_solution=on_solution)
    # No candidates means every lo_eff is 0: showing nothing is the one plan, and optimal.
    result = backend(problem, limits) if len(cands) else \
        MilpSolution(Termination.OPTIMAL, np.zeros(0), 0.0)
    solved = time.perf_counter()
    timing = {"build_seconds": built - start, "solve_seconds": solved - built}
    none = np.zeros(len(cands), dtype=bool)
    base = dict(instance=instance, candidates=cands, coupling=form.per_take, solver=options.solver,
                log_tail=result.log_tail, termination=result.termination, **timing)

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
        selected = problem.chosen(result.x)
        objective = float(form.objective[selected].sum())
        # The solver's bound is proven up to its tolerances; never report one below the plan.
        bound = None if result.bound is None else max(result.bound, objective)
        status = Status.OPTIMAL if result.termination == Termination.OPTIMAL else Status.FEASIBLE
        found = Solution(status=status, selected=selected, objective=objective, bound=bound,
                         **base)  # type: ignore[arg-type]
    if warm is None:
        return found
    return against_previous(found, warm, warm.penalized_bound(result.bound))


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
                termination=Termination.TIME_LIMIT if run.stopped == "deadline"
                else Termination.INTERRUPTED)
    if not earlier:
        return Solution(candidates=cands.subset(np.zeros(0, np.int64)), status=Status.TIME_LIMIT,
                        selected=np.zeros(0, dtype=bool), objective=None, bound=None,
                        message=f"{stopped} before any plan was found",
                        **base)  # type: ignore[arg-type]
    best = earlier[0]
    # the last bound reported is on the whole problem, except under stability settings (a
    # warm start alone leaves the values, and so the bound, as they are)
    seen = None if run.last_progress is None or options.stability.constrains else \
        run.last_progress.bound
    below = 1e-9 * max(1.0, abs(best.objective))  # a bound a tolerance below the plan counts
    bound = max(seen, best.objective) if seen is not None and seen >= best.objective - below \
        else None
    proved = bound is not None and relative_gap(best.objective, bound) <= options.gap
    return Solution(candidates=_plan_candidates(cands, best),
                    status=Status.OPTIMAL if proved else Status.FEASIBLE,
                    selected=np.ones(len(best.value), dtype=bool), objective=best.objective,
                    bound=bound, offer_sets=best.sets,
                    message=f"{stopped}: the best plan found "
                            f"{'is proven within the gap' if proved else 'so far'} ({best.how})",
                    # the latest multipliers the search reached, whichever plan is kept:
                    # where the next night's search starts
                    stats=SolveStats(recovery=best.how, multipliers=next(
                        (p.multipliers for p in reversed(run.plans) if p.multipliers),
                        list(options.previous_multipliers) or None)),
                    earlier=tuple(earlier[1:]),
                    **base)  # type: ignore[arg-type]


def _plan_candidates(cands: Candidates, plan: PlanMessage) -> Candidates:
    return dataclasses.replace(cands, segment=plan.segment, variant=plan.variant,
                               take_prob=plan.take_prob, value=plan.value)


