"""`optimizer.frontier`: every point a plan the independent checker accepts, the margin never
falling as the limit is relaxed, the whole curve within its time limit; hostile inputs."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from optimizer.errors import InputError
from optimizer.frontier import Frontier, FrontierPoint, Vary, checked_inputs, frontier, frontier_svg
from optimizer.frontier.frontier import STOP_TOLERANCE
from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.plan.model import Plan
from tests.constants import DATA


@pytest.fixture(scope="module")
def demo() -> Instance:
    return instance_from_document(json.loads((DATA / "demo.json").read_text()))


def _curve(instance: Instance, vary: str, values: list[float], seconds: float
           ) -> tuple[Frontier, list[tuple[FrontierPoint, Plan]], float]:
    plans: list[tuple[FrontierPoint, Plan]] = []
    started = time.monotonic()
    curve = frontier(instance, vary, values, time_limit=seconds,
                     on_plan=lambda p, plan: plans.append((p, plan)))
    return curve, plans, time.monotonic() - started


# Each curve's tightest value binds on the demo: the loosest value's plan uses more of the
# limit than it allows (the demo's plan: 0.38% average discount, 3.5% of revenue discounted).
@pytest.mark.parametrize(("vary", "values"), [
    ("promotion_budget", [900_000.0, 100_000.0, 400_000.0]),  # solved in increasing order
    ("stock:sleeve-14", [1_500.0, 4_000.0, 12_000.0]),
    ("max_avg_discount", [0.06, 0.001, 0.003]),
    ("max_discounted_share", [0.5, 0.005, 0.02]),
])
def test_every_point_is_checked_and_the_margin_never_falls(demo: Instance, vary: str,
                                                           values: list[float]) -> None:
    curve, plans, _ = _curve(demo, vary, values, 12.0)
    assert [p.value for p in curve.points] == sorted(values) and curve.complete
    limit, _ = checked_inputs(demo, vary, values, 12.0)
    for point, plan in plans:
        assert point.status in ("optimal", "feasible") and point.checked
        # the independent checker, against the instance with this point's limit
        report = check_plan(limit.applied(demo, point.value), plan.to_dict())
        assert report.ok, report.violations
        assert report.objective == pytest.approx(point.objective, rel=1e-9)
        assert point.bound is not None and point.bound >= point.objective - 1e-6
        assert point.used is not None and point.used <= point.value * (1 + 1e-9) + 1e-6
    for before, after in zip(curve.points, curve.points[1:], strict=False):
        assert before.objective is not None and after.objective is not None
        assert after.objective >= before.objective - max(before.abs_gap, after.abs_gap, 1e-6)
    # not vacuous: the tightest limit binds, and relaxing it earns more than the gaps
    tightest, loosest = curve.points[0], curve.points[-1]
    assert tightest.objective is not None and loosest.objective is not None
    assert loosest.used is not None and loosest.used > tightest.value * 1.01
    rise = loosest.objective - tightest.objective
    assert rise > tightest.abs_gap + loosest.abs_gap + STOP_TOLERANCE * abs(loosest.objective)
    doc = curve.to_dict()
    assert doc["vary"] == vary and len(doc["points"]) == 3 and doc["points"][0]["marginal"] is None
    assert all(isinstance(p["marginal"], float) for p in doc["points"][1:])
    svg = frontier_svg(curve)
    assert svg.startswith("<svg") and vary in svg


def test_each_point_starts_from_the_previous_points_plan(demo: Instance,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The first point starts cold; every later one is handed the plan of the point before
    it (`SolveOptions.previous`), not the first point's nor none."""
    from pandas.testing import assert_frame_equal

    from optimizer.solve import dispatch

    real = dispatch.solve
    handed: list[Any] = []  # each solve's `options.previous`

    def recording(instance: Instance, options: Any) -> Any:
        handed.append(options.previous)
        return real(instance, options)

    monkeypatch.setattr(dispatch, "solve", recording)
    curve, plans, _ = _curve(demo, "promotion_budget", [100_000.0, 400_000.0, 900_000.0], 12.0)
    assert len(handed) == len(plans) == 3 and all(p.checked for p in curve.points)
    keys = [plan.optimized_offer_keys() for _, plan in plans]
    assert handed[0] is None
    for previous, before in zip(handed[1:], keys, strict=False):
        assert previous is not None and len(previous) > 0
        assert_frame_equal(previous.reset_index(drop=True), before.reset_index(drop=True))
    # the plans differ, so the third solve got the second point's plan, not the first's
    assert not keys[0].equals(keys[1])


def test_a_limit_that_stops_binding_stops_costing_money(demo: Instance) -> None:
    """Past the stock the plan wants, more stock earns nothing: the curve says where."""
    curve, _, _ = _curve(demo, "stock:camera-a6", [100.0, 2_000.0, 5_000.0], 9.0)
    low, mid, high = curve.points
    assert low.objective is not None and mid.objective is not None
    assert mid.objective > low.objective  # 100 A6 bodies are too few
    assert high.objective == pytest.approx(mid.objective, rel=1e-6)
    assert curve.stops_costing_at == 2_000.0
    assert low.used == 0.0  # the kit needs 330 bodies: with 100, none is offered


def test_stops_costing_at_reads_the_gaps() -> None:
    """`stops_costing_at` is a proof: every looser value's bound at most the margin at it."""
    def point(value: float, objective: float | None, bound: float | None) -> FrontierPoint:
        return FrontierPoint(value, objective, bound, None, "optimal", True, (), 0.1)

    rising = Frontier("promotion_budget", (point(1, 10, 10), point(2, 20, 20), point(3, 30, 30)))
    assert rising.stops_costing_at is None
    assert rising.stop_words().startswith("The margin still rises at the largest value (3)")
    proven = Frontier("promotion_budget", (point(1, 10, 10), point(2, 20, 20.5),
                                           point(3, 20.0, 20.001)))
    assert proven.stops_costing_at == 2  # 3's bound: within 0.01% of the margin at 2
    assert proven.stop_words().startswith("The limit stops costing money at 2: ")
    # 0.5 more at 3 is within the gaps, but more: the gaps prove nothing
    within = Frontier("promotion_budget", (point(1, 10, 10), point(2, 20, 21), point(3, 20.5, 21)))
    assert within.stops_costing_at is None
    assert within.stop_words().startswith("The margin still rises at the largest value (3)")
    # the same margin at 3, but its bound is 1 above: not proven
    above = Frontier("promotion_budget", (point(1, 10, 10), point(2, 20, 21), point(3, 20, 21)))
    assert above.stops_costing_at is None
    assert above.stop_words() == (
        "Not proven that the limit stops costing money at 2: no looser value's plan earns more, "
        "but the bound at 3 is above that margin (by 1 at 3), so a looser limit may earn more.")
    # the review's case: the looser points solved only to the warm start, bound unknown
    unknown = Frontier("max_avg_discount", (point(0.02, 1.6e9, 1.8e9), point(0.04, 1.6e9, None),
                                            point(0.06, 1.6e9, None)))
    assert unknown.stops_costing_at is None
    assert "Not proven that the limit stops costing money at 0.02" in unknown.stop_words()
    assert "the bounds at 0.04, 0.06 are unknown" in unknown.stop_words()
    assert unknown.to_dict()["stops_costing_at"] is None
    no_plan_past = Frontier("max_avg_discount", (point(0.02, 5, 6), point(0.04, None, None)))
    assert no_plan_past.stops_costing_at is None
    assert "the bound at 0.04 is unknown" in no_plan_past.stop_words()
    infeasible_first = Frontier("promotion_budget", (point(0, None, None), point(1, 5, 5),
                                                     point(2, 5, 5)))
    assert infeasible_first.stops_costing_at == 1
    assert infeasible_first.marginal() == [None, None, 0.0]
    # a curve stopped before its looser values proves nothing past its last one
    cut = Frontier("promotion_budget", (point(1, 5, 5), point(2, 5, 5)), complete=False,
                   unsolved=(3.0, 4.0))
    assert cut.stops_costing_at is None
    assert cut.stop_words() == (
        "Not proven that the limit stops costing money at 1: no looser value's plan earns more, "
        "but values 3, 4 were not solved, so a looser limit may earn more.")
    assert cut.unsolved_words() == "incomplete: values 3, 4 not solved within the time limit"
    nothing = Frontier("promotion_budget", (point(1, None, None),), complete=False,
                       unsolved=(2.0,))
    assert nothing.stops_costing_at is None and not nothing.has_plan
    assert nothing.stop_words().startswith("No value has a plan")
    assert point(1, 5, None).abs_gap == math.inf and point(1, 5, 6).abs_gap == 1
    # a solve whose plans failed the check proves nothing with its bound
    failed = FrontierPoint(2, None, 5, None, "error", False, (), 0.1, check="failed")
    unchecked = Frontier("promotion_budget", (point(1, 5, 5), failed))
    assert unchecked.stops_costing_at is None and unchecked.check_failed == (2,)
    assert "the plans at 2 failed the independent check" in unchecked.stop_words()


class _Clock:
    """`time` for the frontier's module: a solve takes what the test says it takes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_the_curve_keeps_its_deadline(demo: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each point starts only if what is left covers its least solve and its check; a solve
    never gets more than what is left less that reserve; the values left are named. (The
    clock is the test's: each solve takes twice its budget, as a solver that overruns.)"""
    import dataclasses
    import importlib

    from optimizer.solve import dispatch

    module = importlib.import_module("optimizer.frontier.frontier")  # the module, not the function
    clock = _Clock()
    monkeypatch.setattr(module, "time", clock)
    real = dispatch.solve
    handed: list[tuple[float, float]] = []  # (seconds left at the solve's start, its budget)
    deadline = clock.now + 1.5 - 0.5
    solved: list[Any] = []  # one real solve, handed back for every point (the test's speed)

    def slow(instance: Instance, options: Any) -> Any:
        handed.append((deadline - clock.now, options.time_limit))
        clock.now += 2 * options.time_limit
        if not solved:
            solved.append(real(instance, dataclasses.replace(options, time_limit=5.0)))
        return solved[0]

    monkeypatch.setattr(dispatch, "solve", slow)
    values = [100_000.0, 200_000.0, 300_000.0, 400_000.0, 500_000.0]
    curve = frontier(demo, "promotion_budget", values, time_limit=1.5, reserve=0.5,
                     started=clock.now)
    reserve = module.point_reserve(demo)
    least = module.MIN_SOLVE_SECONDS
    assert 0 < len(handed) < len(values) and not curve.complete
    assert [p.value for p in curve.points] == values[:len(handed)]
    assert list(curve.unsolved) == values[len(handed):]
    for left, budget in handed:
        assert budget >= least - 1e-9 and budget + reserve <= left + 1e-9
    assert deadline - clock.now < least + reserve  # the next point could not have been covered
    assert all(p.checked and p.objective is not None for p in curve.points)
    assert curve.to_dict()["unsolved"] == values[len(handed):]
    assert curve.stops_costing_at is None


def test_a_deadline_already_past_solves_nothing(demo: Instance) -> None:
    curve = frontier(demo, "promotion_budget", [100_000.0, 200_000.0], time_limit=5.0,
                     started=time.monotonic() - 10.0)
    assert curve.points == () and curve.unsolved == (100_000.0, 200_000.0)
    assert not curve.complete and not curve.has_plan
    svg = frontier_svg(curve)  # a curve without a point still draws
    assert svg.startswith("<svg")


@pytest.mark.parametrize(("vary", "values", "time_limit", "paths"), [
    ("budget", [1.0], 5.0, ["vary"]),
    ("stock:no-such-item", [1.0], 5.0, ["vary"]),
    (None, "1,2", 5.0, ["vary", "values"]),
    ("promotion_budget", [], 5.0, ["values"]),
    ("promotion_budget", [1000, 2000, -1, "x", math.nan, 2000], 5.0,
     ["values[2]", "values[3]", "values[4]", "values[5]"]),
    ("max_avg_discount", [0.1, 1.5, True], 5.0, ["values[1]", "values[2]"]),
    ("promotion_budget", [1.0, 2.0], 0.0, ["time_limit"]),
    ("promotion_budget", [1.0, 2.0], 0.1, ["time_limit"]),  # under 0.2 s per value
    ("promotion_budget", list(range(51)), 60.0, ["values"]),
])
def test_hostile_inputs_are_input_errors_with_paths(demo: Instance, vary: Any, values: Any,
                                                    time_limit: float, paths: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        frontier(demo, vary, values, time_limit=time_limit)
    assert [i.path for i in caught.value.issues] == paths
    text = str(caught.value)
    if "values[2]" in paths and vary == "promotion_budget":
        assert "values[2]: must be >= 0, got -1" in text
    if paths == ["vary"] and vary == "budget":
        assert text.startswith("vary: must be one of promotion_budget, max_avg_discount, "
                               "max_discounted_share or stock:ITEM, got 'budget'")


def test_vary_applies_to_a_copy(demo: Instance) -> None:
    budget = Vary("promotion_budget").applied(demo, 5.0)
    stock = Vary("stock", "sd-128").applied(demo, 7.0)  # an unlimited item gets a stock
    assert budget.policy.promotion_budget == 5.0 and demo.policy.promotion_budget == 900_000
    assert stock.items.set_index("id").loc["sd-128", "stock"] == 7.0
    assert math.isnan(demo.items.set_index("id").loc["sd-128", "stock"])
