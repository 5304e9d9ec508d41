"""No plan is called a success before the independent check accepts it.

`solve_verified` solves, then re-verifies the plan with `optimizer.plan.check` (which shares
no code with the solver path). A plan that fails is not reported as `optimal` or
`feasible`: the solve's earlier plans are tried, best first, and the first that passes
is the result; if none passes, the result is an `error` with the violations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from optimizer.model.instance import Instance
from optimizer.plan.check import CheckReport, check_plan
from optimizer.plan.document import build_plan
from optimizer.plan.model import Plan
from optimizer.solve.dispatch import Solution, SolveOptions, Status, relative_gap, solve
from optimizer.solve.reports import CheckOutcome
from optimizer.solve.supervise import PlanMessage

SUCCESS = (Status.OPTIMAL, Status.FEASIBLE)
# What checking, building and writing a plan costs per response of the instance (the check
# looks the plan's offers up in the tables, a few per segment, and never derives every
# variant of every response).
# Measured on a loaded 2-core box at 200k segments x 20 responses (4M responses, 579k offers,
# a real solve): check 2.8 s, plan document 5.3 s, writing 7.0 s, i.e. 3.8e-6 s per response;
# a split plan's offer sets add about 2 s there. At 1M x 20 (2.9M offers) the check took 15 s,
# 30 s for a split plan (1.1M offer sets).
# Up to 30,000 responses the three take under 0.25 s, within the fixed reserve, which also
# covers the interpreter's exit after the command (0.2-0.4 s measured on a loaded 2-core box).
FIXED_RESERVE_SECONDS = 0.9
CHECK_SECONDS_PER_RESPONSE = 5e-6
# Exploration sets (`optimizer.exploration`) come after the solve: measured at 2.4 s on a
# loaded 2-core box for 20,000 segments x 15 responses (55,000 offers), 8e-6 s per response.
EXPLORE_SECONDS_PER_RESPONSE = 1e-5


def solve_budget(instance: Instance, seconds: float, explore: float = 0.0) -> float:
    """What a solve may take of `seconds` so that exploring (when `explore` > 0), checking
    and writing its plan still fit."""
    per_response = CHECK_SECONDS_PER_RESPONSE + (EXPLORE_SECONDS_PER_RESPONSE if explore > 0 else 0)
    reserve = FIXED_RESERVE_SECONDS + per_response * len(instance.responses)
    return max(0.1, seconds - min(reserve, 0.4 * seconds))


def solve_verified(instance: Instance, options: SolveOptions | None = None) -> Solution:
    """Solve and verify within `options.time_limit`, the check included."""
    options = options or SolveOptions()
    if options.time_limit is not None:
        options = dataclasses.replace(options, time_limit=solve_budget(
            instance, options.time_limit, options.explore))
    return verified(solve(instance, options), options)


@dataclass(frozen=True)
class Verified:
    """A verified solution with the plan document the check read and the check's report
    (both None when the solve ended without a plan to check)."""

    solution: Solution
    plan: Plan | None = None
    report: CheckReport | None = None


def verified(solution: Solution, options: SolveOptions) -> Solution:
    """`solution` if its plan passes the check, else its best earlier plan that does."""
    return verify(solution, options).solution


def verify(solution: Solution, options: SolveOptions) -> Verified:
    """As `verified`, keeping the checked plan document and the report for the caller."""
    if solution.status not in SUCCESS:
        return Verified(solution)
    # the document checked is the one returned: the check's outcome and message change
    # neither its offers nor its figures
    passed = _with_check(solution, CheckOutcome.PASSED)
    plan = build_plan(passed)
    report = check_plan(solution.instance, plan.to_dict())
    if report.ok:
        return Verified(passed, plan, report)
    first = list(report.violations[:3])
    for earlier in solution.earlier:
        fallback = _with_check(dataclasses.replace(
            _from_earlier(solution, earlier, options),
            message=f"the final plan failed the independent check ({first[0]}); an earlier "
                    f"plan that passes is used ({earlier.how})"), CheckOutcome.PASSED_EARLIER)
        fallback_plan = build_plan(fallback)
        fallback_report = check_plan(solution.instance, fallback_plan.to_dict())
        if fallback_report.ok:
            return Verified(fallback, fallback_plan, fallback_report)
    empty = solution.candidates.subset(np.zeros(0, dtype=np.int64))
    return Verified(dataclasses.replace(
        solution, status=Status.ERROR, candidates=empty, selected=np.zeros(0, dtype=bool),
        objective=None, offer_sets=None, earlier=(),
        message="no plan passed the independent check: " + "; ".join(first),
        check=CheckOutcome.FAILED))


def _with_check(solution: Solution, outcome: CheckOutcome) -> Solution:
    return dataclasses.replace(solution, check=outcome)


def _from_earlier(solution: Solution, plan: PlanMessage, options: SolveOptions) -> Solution:
    cands = dataclasses.replace(solution.candidates, segment=plan.segment, variant=plan.variant,
                                take_prob=plan.take_prob, value=plan.value)
    objective = plan.objective
    bound = None if solution.bound is None else max(solution.bound, objective)
    within = bound is not None and relative_gap(objective, bound) <= options.gap
    return dataclasses.replace(
        solution, candidates=cands, selected=np.ones(len(plan.value), dtype=bool),
        objective=objective, bound=bound, offer_sets=plan.sets, exploration=None,
        status=Status.OPTIMAL if within else Status.FEASIBLE,
        stats=dataclasses.replace(solution.stats, recovery=plan.how))
