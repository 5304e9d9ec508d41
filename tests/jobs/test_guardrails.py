"""Every guardrail passes on a normal night and fails, by name, where its rule is broken."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from jobs.nightly.guardrails import Thresholds, Yesterday, evaluate, no_offer_share
from optimizer.errors import InputError
from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.plan.model import Plan
from optimizer.solve.dispatch import SolveOptions, solve
from tests.nightly_helpers import base_catalog, corrupted_estimates
from tests.plans import plan_document


@pytest.fixture(scope="module")
def normal() -> tuple[Instance, dict[str, Any]]:
    inst = instance_from_document(base_catalog(30, 9))
    return inst, plan_document(solve(inst, SolveOptions(gap=1e-6)))


def _failed(doc: dict[str, Any], inst: Instance, yesterday: Yesterday, gap: float | None = 0.0,
            limits: Thresholds | None = None) -> set[str]:
    plan = Plan.from_dict(doc)
    rails = evaluate(plan, check_plan(inst, doc), inst, gap, yesterday, limits or Thresholds())
    return {g.name for g in rails if not g.passed}


def _yesterday(doc: dict[str, Any], inst: Instance, fallback: float | None) -> Yesterday:
    return Yesterday(Plan.from_dict(doc), inst, fallback)


def test_a_normal_night_passes_every_guardrail(normal: tuple[Instance, dict[str, Any]]) -> None:
    inst, plan = normal
    assert _failed(plan, inst, _yesterday(plan, inst, plan["objective"])) == set()


def test_each_guardrail_binds(normal: tuple[Instance, dict[str, Any]]) -> None:
    inst, plan = normal
    same = _yesterday(plan, inst, plan["objective"])
    broken = copy.deepcopy(plan)
    broken["offers"][0]["price"] *= 2
    assert _failed(broken, inst, same) == {"plan_check"}
    assert _failed(plan, inst, same, gap=0.05) == {"solver_status"}
    assert _failed(plan, inst, same, gap=None) == {"solver_status"}
    better_yesterday = _yesterday(plan, inst, plan["objective"] * 1.02)
    assert _failed(plan, inst, better_yesterday) == {"objective_vs_active"}
    assert _failed(plan, inst, better_yesterday, limits=Thresholds(objective_tolerance=0.05)) == set()
    poorer = _yesterday({**plan, "objective": plan["objective"] / 4}, inst, plan["objective"])
    assert _failed(plan, inst, poorer) == {"objective_jump"}
    fuller = copy.deepcopy(plan)  # yesterday every segment had an offer; today a sixth have none
    dropped = {o["segment"] for o in plan["offers"]}
    cut = sorted(dropped)[: len(dropped) // 6]
    fewer = {**plan, "offers": [o for o in plan["offers"] if o["segment"] not in cut]}
    fewer_plan, fuller_plan = Plan.from_dict(fewer), Plan.from_dict(fuller)
    assert no_offer_share(fewer_plan, inst) > no_offer_share(fuller_plan, inst) + 0.05
    rails = evaluate(fewer_plan, check_plan(inst, fewer), inst, 0.0,
                     Yesterday(fuller_plan, inst, None), Thresholds())
    assert {g.name for g in rails if not g.passed} >= {"no_offer_share"}
    corrupted = instance_from_document(corrupted_estimates(base_catalog(30, 9)))
    parsed = Plan.from_dict(plan)
    rails = evaluate(parsed, check_plan(inst, plan), corrupted, 0.0, same, Thresholds())
    assert {g.name for g in rails if not g.passed} == {"estimate_drift"}


def test_without_an_active_plan_only_the_plan_itself_is_guarded(
        normal: tuple[Instance, dict[str, Any]]) -> None:
    inst, doc = normal
    plan = Plan.from_dict(doc)
    rails = evaluate(plan, check_plan(inst, doc), inst, 0.0, None, Thresholds())
    assert [g.name for g in rails] == ["plan_check", "solver_status"]


def test_thresholds_are_validated() -> None:
    with pytest.raises(InputError, match="max_gap: must be a finite number >= 0, got -1"):
        Thresholds(max_gap=-1)
    with pytest.raises(InputError, match=r"max_objective_ratio: must be >= 1, got 0\.5"):
        Thresholds(max_objective_ratio=0.5)


def test_yesterdays_fallback_objective_is_found_when_the_solve_stopped_without_its_report(
        ) -> None:
    """A solve stopped at its deadline reports no `previous` section; the fallback's value
    then comes from the plans it found on the way (it is sent first)."""
    import dataclasses

    from jobs.nightly.run import _fallback_objective
    from optimizer.stability.warm import FALLBACK_HOW
    from tests.plans import bare_plan

    plan = bare_plan("feasible")
    found = [{"seconds": 1.0, "objective": 90.0, "how": FALLBACK_HOW},
             {"seconds": 9.0, "objective": 95.0, "how": "greedy repair"}]
    assert _fallback_objective(dataclasses.replace(plan, solver={"plans": found})) == 90.0
    assert _fallback_objective(dataclasses.replace(
        plan, solver={"previous": {"fallback_objective": 80.0}, "plans": found})) == 80.0
    assert _fallback_objective(dataclasses.replace(plan, solver={"plans": found[1:]})) is None
    assert _fallback_objective(plan) is None
