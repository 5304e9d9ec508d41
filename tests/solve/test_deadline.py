"""The time limit holds whatever the solver does, and no failing plan is called a success.

The backends here are stand-ins that hang (as HiGHS does inside a long root LP, where no
callback runs): if the supervisor did not stop them, a test would take ten minutes, not
seconds, so the bounds asserted are far from any machine's speed.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import optimizer.solve.dispatch as solve_module
from optimizer.backends import Limits, MilpProblem, MilpSolution, Progress, Termination
from optimizer.backends.highs import solve_highs
from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import SolveOptions, Status, solve
from optimizer.solve.reports import CheckOutcome
from optimizer.solve.verify import verified
from tests.plans import plan_document

HANG_SECONDS = 600.0
WITHIN = 60.0  # a stopped solve ends in about its limit; a hung one would take HANG_SECONDS


def _one_offer_each(problem: MilpProblem) -> np.ndarray:
    """A feasible point: HiGHS's own plan for the problem, found before the stand-in hangs."""
    x = solve_highs(problem, Limits(gap=1e-2)).x
    assert x is not None
    return x


def _hanging(plan_first: bool, then: MilpSolution | None = None) -> Any:
    def backend(problem: MilpProblem, limits: Limits) -> MilpSolution:
        x = _one_offer_each(problem)
        if plan_first and limits.on_solution is not None:
            limits.on_solution(x)
        if limits.progress is not None:
            limits.progress(Progress(float(problem.objective @ x), None, None, 0.0))
        if then is not None:
            return then
        time.sleep(HANG_SECONDS)
        raise AssertionError("the supervisor should have stopped this solve")
    return lambda name: backend


@pytest.fixture
def demo(demo_doc: dict[str, Any]) -> Instance:
    demo_doc["policy"]["min_offers_per_view"] = 0
    return instance_from_document(demo_doc)


def test_a_hung_solver_is_stopped_with_its_best_plan(monkeypatch: pytest.MonkeyPatch,
                                                     demo: Instance) -> None:
    monkeypatch.setattr(solve_module, "get_backend", _hanging(plan_first=True))
    started = time.monotonic()
    solution = solve(demo, SolveOptions(method="exact", time_limit=2))
    assert time.monotonic() - started < WITHIN
    assert solution.status == Status.FEASIBLE and solution.termination == "time_limit"
    assert solution.objective is not None and solution.objective > 0
    assert "stopped at the time limit" in solution.message
    assert check_plan(demo, plan_document(solution)).ok
    found = plan_document(solution)["solver"]["plans"]  # what the stopped child had found
    assert [p["objective"] for p in found] == pytest.approx([solution.objective])
    assert 0 <= found[0]["seconds"] <= time.monotonic() - started


def test_a_hung_solver_without_a_plan_ends_without_one(monkeypatch: pytest.MonkeyPatch,
                                                       demo: Instance) -> None:
    monkeypatch.setattr(solve_module, "get_backend", _hanging(plan_first=False))
    started = time.monotonic()
    solution = solve(demo, SolveOptions(method="exact", time_limit=2))
    assert time.monotonic() - started < WITHIN
    assert solution.status == Status.TIME_LIMIT and solution.objective is None
    assert plan_document(solution)["offers"] == []


def test_cancelling_stops_a_hung_solver(monkeypatch: pytest.MonkeyPatch, demo: Instance) -> None:
    monkeypatch.setattr(solve_module, "get_backend", _hanging(plan_first=True))
    started = time.monotonic()
    solution = solve(demo, SolveOptions(method="exact", time_limit=HANG_SECONDS,
                                        progress=lambda p: True))
    assert time.monotonic() - started < WITHIN
    assert solution.status == Status.FEASIBLE and "cancelled" in solution.message


def test_a_plan_failing_the_check_falls_back_to_an_earlier_one(monkeypatch: pytest.MonkeyPatch,
                                                               demo: Instance) -> None:
    """The final 'optimal' point shows every candidate (many variants per bundle): the check
    refuses it, and the incumbent reported before it is the result."""
    def backend(problem: MilpProblem, limits: Limits) -> MilpSolution:
        assert limits.on_solution is not None
        limits.on_solution(_one_offer_each(problem))
        return MilpSolution(Termination.OPTIMAL, np.ones(len(problem.objective)), 1e12)

    monkeypatch.setattr(solve_module, "get_backend", lambda name: backend)
    options = SolveOptions(method="exact", time_limit=30)
    solution = verified(solve(demo, options), options)
    assert solution.status in (Status.FEASIBLE, Status.OPTIMAL)
    assert solution.check == CheckOutcome.PASSED_EARLIER
    assert "failed the independent check" in solution.message
    assert check_plan(demo, plan_document(solution)).ok


def test_no_passing_plan_is_an_error(monkeypatch: pytest.MonkeyPatch, demo: Instance) -> None:
    def backend(problem: MilpProblem, limits: Limits) -> MilpSolution:
        return MilpSolution(Termination.OPTIMAL, np.ones(len(problem.objective)), 1e12)

    monkeypatch.setattr(solve_module, "get_backend", lambda name: backend)
    options = SolveOptions(method="exact", time_limit=30)
    solution = verified(solve(demo, options), options)
    assert solution.status == Status.ERROR and solution.objective is None
    assert solution.message.startswith("no plan passed the independent check")
    assert plan_document(solution)["offers"] == []


def test_lp_guided_has_a_plan_when_stopped_early() -> None:
    """`auto` builds a quick plan before the LP; a limit shorter than the whole run still
    ends with a plan that passes the check (the limit is only reached on slow machines:
    the assertion holds either way)."""
    from optimizer.model.generate import generate

    inst = generate(300, seed=4)
    options = SolveOptions(time_limit=3, threads=1)
    started = time.monotonic()
    solution = verified(solve(inst, options), options)
    assert time.monotonic() - started < WITHIN
    assert solution.status in (Status.FEASIBLE, Status.OPTIMAL)
    assert solution.check is not None and solution.check.passed


def test_a_re_solve_gets_its_own_time_limit() -> None:
    """HiGHS counts its time limit over every run of the object; `run_within` gives each run
    its own seconds. Without it a re-solve allowed less than the first run took stops at once
    (the master LP's column generation never solved a second time)."""
    import highspy
    import scipy.sparse as sp

    from optimizer.backends.highs import new_highs, run_within

    n, rng = 800, np.random.default_rng(0)
    matrix = sp.csc_matrix(sp.random(n, n, density=0.01, random_state=1) + sp.eye(n))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, n
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = -rng.random(n), np.zeros(n), np.ones(n)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_ = matrix.indptr, matrix.indices
    lp.a_matrix_.value_ = matrix.data
    lp.row_lower_, lp.row_upper_ = np.full(n, -highspy.kHighsInf), rng.random(n)
    h = new_highs(1)
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    run_within(h, None)
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    h.changeColCost(0, -2.0)  # a warm re-solve of a changed LP, far faster than the first
    run_within(h, 0.9 * h.getRunTime())
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
