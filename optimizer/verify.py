"""No plan is called a success before the independent check accepts it.

`solve_verified` solves, then re-verifies the plan with `optimizer.check` (which shares
no code with the solver path). A plan that fails is not reported as `optimal` or
`feasible`: the solve's earlier plans are tried, best first, and the first that passes
is the result; if none passes, the result is an `error` with the violations.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from optimizer.check import check_plan
from optimizer.model import Instance
from optimizer.plan import plan_document
from optimizer.solve import Solution, SolveOptions, Status, relative_gap, solve
from optimizer.supervise import PlanMessage

# The checker derives every variant of every response as pandas rows; above this many
# responses it does not fit beside a solve (a columnar checker is planned for that size).
CHECK_MAX_RESPONSES = 2_000_000
SUCCESS = (Status.OPTIMAL, Status.FEASIBLE)
CHECK_SECONDS_PER_RESPONSE = 6e-5  # measured: 1.2 s for 30,000 responses on a loaded 2-core box


def solve_budget(instance: Instance, seconds: float) -> float:
    """What a solve may take of `seconds` so that checking and writing its plan still fit."""
    reserve = 0.5 + CHECK_SECONDS_PER_RESPONSE * min(len(instance.responses), CHECK_MAX_RESPONSES)
    return max(0.1, seconds - min(reserve, 0.4 * seconds))


def solve_verified(instance: Instance, options: SolveOptions | None = None) -> Solution:
    """Solve and verify within `options.time_limit`, the check included."""
    options = options or SolveOptions()
    if options.time_limit is not None:
        options = dataclasses.replace(options, time_limit=solve_budget(instance, options.time_limit))
    return verified(solve(instance, options), options)


def verified(solution: Solution, options: SolveOptions) -> Solution:
    """`solution` if its plan passes the check, else its best earlier plan that does."""
    if solution.status not in SUCCESS:
        return solution
    if len(solution.instance.responses) > CHECK_MAX_RESPONSES:
        return _with_check(solution, f"skipped: more than {CHECK_MAX_RESPONSES:,} responses")
    report = check_plan(solution.instance, plan_document(solution))
    if report.ok:
        return _with_check(solution, "passed")
    first = list(report.violations[:3])
    for plan in solution.earlier:
        fallback = _from_earlier(solution, plan, options)
        if check_plan(solution.instance, plan_document(fallback)).ok:
            return _with_check(dataclasses.replace(
                fallback, message=f"the final plan failed the independent check ({first[0]}); "
                                  f"an earlier plan that passes is used ({plan.how})"),
                "passed (earlier plan)")
    empty = solution.candidates.subset(np.zeros(0, dtype=np.int64))
    return dataclasses.replace(
        solution, status=Status.ERROR, candidates=empty, selected=np.zeros(0, dtype=bool),
        objective=None, offer_sets=None, earlier=(),
        message="no plan passed the independent check: " + "; ".join(first),
        extra={**solution.extra, "check": "failed"})


def _with_check(solution: Solution, outcome: str) -> Solution:
    return dataclasses.replace(solution, extra={**solution.extra, "check": outcome})


def _from_earlier(solution: Solution, plan: PlanMessage, options: SolveOptions) -> Solution:
    cands = dataclasses.replace(solution.candidates, segment=plan.segment, variant=plan.variant,
                                take_prob=plan.take_prob, value=plan.value)
    objective = plan.objective
    bound = None if solution.bound is None else max(solution.bound, objective)
    within = bound is not None and relative_gap(objective, bound) <= options.gap
    return dataclasses.replace(
        solution, candidates=cands, selected=np.ones(len(plan.value), dtype=bool),
        objective=objective, bound=bound, offer_sets=plan.sets,
        status=Status.OPTIMAL if within else Status.FEASIBLE,
        extra={**solution.extra, "recovery": plan.how})
