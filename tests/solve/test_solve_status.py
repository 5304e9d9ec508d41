"""How backend terminations map to plan statuses: a stopped solve is never `optimal`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import optimizer.solve.dispatch as solve_module
from optimizer.backends import Limits, MilpProblem, MilpSolution, Progress, Termination
from optimizer.errors import OfferOptError
from optimizer.io import instance_from_document
from optimizer.solve.dispatch import SolveOptions, Status, solve
from optimizer.solve.supervise import PlanMessage
from tests.plans import plan_document


def _stub(termination: Termination, with_point: bool, bound: float | None) -> Any:
    def backend(problem: MilpProblem, limits: Limits) -> MilpSolution:
        x = np.zeros(len(problem.objective)) if with_point else None
        if x is not None:  # the best single offer of the first segment: a feasible point
            x[int(np.argmax(problem.objective))] = 1.0
        return MilpSolution(termination, x, bound, ("stub log",))
    return lambda name: backend


@pytest.mark.parametrize(("termination", "with_point", "status"), [
    (Termination.TIME_LIMIT, True, Status.FEASIBLE),
    (Termination.TIME_LIMIT, False, Status.TIME_LIMIT),
    (Termination.INTERRUPTED, True, Status.FEASIBLE),  # a cancel keeps the best plan so far
    (Termination.INTERRUPTED, False, Status.TIME_LIMIT),
    (Termination.OPTIMAL, True, Status.OPTIMAL),
    (Termination.ERROR, False, Status.ERROR),
])
def test_termination_maps_to_status(monkeypatch: pytest.MonkeyPatch, demo_doc: dict[str, Any],
                                    termination: Termination, with_point: bool,
                                    status: Status) -> None:
    demo_doc["policy"]["min_offers_per_view"] = 0
    monkeypatch.setattr(solve_module, "get_backend", _stub(termination, with_point, 1e12))
    solution = solve(instance_from_document(demo_doc), SolveOptions(method="exact", time_limit=1))
    assert solution.status == status
    doc = plan_document(solution)
    assert doc["status"] == status.value
    assert doc["solver"]["termination"] == termination.value
    if status == Status.FEASIBLE:
        assert doc["gap"] > 0 and doc["bound"] == 1e12


def test_stopped_solve_never_claims_optimal() -> None:
    """A real HiGHS solve stopped at its first plan with a bound: the same on any machine."""
    from optimizer.model.generate import generate

    def stop_at_first_plan(progress: Progress) -> bool:
        return progress.objective is not None and progress.bound is not None

    inst = generate(400, seed=9)
    solution = solve(inst, SolveOptions(method="exact", gap=0.0, threads=1, progress=stop_at_first_plan))
    assert solution.status == Status.FEASIBLE
    assert solution.termination == Termination.INTERRUPTED  # stopped by the caller, not the clock
    assert solution.gap is not None and solution.gap > 0


@pytest.mark.parametrize(("field", "value"), [("method", "foo"), ("solver", "gurobi"),
                                              ("backend", "spark"), ("method", 3)])
def test_options_refuse_unknown_names_where_they_are_made(field: str, value: object) -> None:
    """`method="foo"` once solved exact in silence: every name is an enum member or an error."""
    with pytest.raises(OfferOptError, match=rf"^{field}: must be one of .*, got {value!r}$"):
        SolveOptions(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "time_limit"),  # solved here, and in a supervised child
                         [("lp", None), ("lp", 60.0), ("decompose", None), ("decompose", 60.0)])
def test_the_plans_found_on_the_way_are_reported_in_order(demo_doc: dict[str, Any], method: str,
                                                           time_limit: float | None) -> None:
    solution = solve(instance_from_document(demo_doc),
                     SolveOptions(method=method, time_limit=time_limit))
    found = plan_document(solution)["solver"]["plans"]
    seconds = [p["seconds"] for p in found]
    assert seconds == sorted(seconds) and all(p["how"] for p in found)
    assert max(p["objective"] for p in found) == pytest.approx(solution.objective)


def test_at_most_the_first_ten_and_the_last_twenty_plans_are_reported(
        demo_doc: dict[str, Any]) -> None:
    solution = solve(instance_from_document(demo_doc), SolveOptions())
    plans = [PlanMessage(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.full(1, k),
                         f"step {k}") for k in range(40)]
    reported = solve_module._with_found(solution, plans, [float(k) for k in range(40)], 0.0)
    assert reported.stats.plans is not None
    assert [p["how"] for p in reported.stats.plans] == \
        [f"step {k}" for k in (*range(10), *range(20, 40))]


@pytest.mark.parametrize(("bound_over", "status"), [(0.0, Status.OPTIMAL), (0.05, Status.FEASIBLE)])
def test_a_plan_stopped_at_the_deadline_is_optimal_only_when_its_bound_proves_it(
        monkeypatch: pytest.MonkeyPatch, demo_doc: dict[str, Any], bound_over: float,
        status: Status) -> None:
    """The child sends a plan and a bound, then outlives the deadline: the parent's status
    comes from what was sent just before it stopped the child (the last progress too)."""
    import time

    from optimizer.formulation.candidates import expand

    def send_then_hang(instance: Any, cands: Any, method: str, options: SolveOptions,
                       backend: Any, start: float, channel: Any) -> Any:
        plan = PlanMessage.of(cands, np.arange(len(cands)) == 0, None, "the first candidate")
        channel.plan(plan)
        bound = plan.objective * (1 + bound_over)
        channel.progress(Progress(plan.objective, bound, None, 0.0))
        time.sleep(60)

    inst = instance_from_document(demo_doc)
    assert len(expand(inst))
    monkeypatch.setattr(solve_module, "_solve_here", send_then_hang)
    solution = solve(inst, SolveOptions(method="lp", time_limit=1.0, gap=1e-4))
    assert solution.status == status
    assert solution.termination == Termination.TIME_LIMIT
    assert solution.bound == pytest.approx(solution.objective * (1 + bound_over))


def test_the_verified_plan_document_is_the_one_returned(demo_doc: dict[str, Any]) -> None:
    """What the nightly job stores is the document the check read, with the check's
    outcome in it: the same as building the plan of the verified solution."""
    from optimizer.plan.document import build_plan
    from optimizer.solve.verify import verify

    options = SolveOptions()
    checked = verify(solve(instance_from_document(demo_doc), options), options)
    assert checked.plan is not None and checked.report is not None and checked.report.ok
    assert checked.plan.solver["check"] == "passed"
    assert checked.plan.to_dict() == build_plan(checked.solution).to_dict()
