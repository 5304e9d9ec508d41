"""One test per constraint family, on an instance where that family binds.

Each test solves with and without the rule: the free plan breaks the rule (the
independent checker says so), the constrained plan keeps it, costs objective, and
equals brute force.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from optimizer.formulation.candidates import expand
from optimizer.io import instance_from_document
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import Solution, SolveOptions, Status, solve
from tests.bruteforce import best_objective
from tests.plans import plan_document


def base() -> dict[str, Any]:
    items = [{"id": "A", "price": 1000, "cost": 500, "stock": None},
             {"id": "B", "price": 2000, "cost": 1200, "stock": None},
             {"id": "C", "price": 500, "cost": 200, "stock": None}]
    bundles = [{"id": f"b{i['id']}", "kind": "cross_sell", "items": [{"item": i["id"], "qty": 1}],
                "discounts": [0, 0.1, 0.2]} for i in items]
    bundles[0]["perks"] = [{"id": "warranty", "cost": 40, "lift": 0.8}]
    segments = [{"id": "s1", "views": 1000}, {"id": "s2", "views": 500}]
    responses = [{"segment": s["id"], "bundle": b["id"], "take_rate": 0.1, "baseline_rate": 0.0,
                  "price_sensitivity": 8.0} for s in segments for b in bundles]
    return {"format": "offeropt/instance@1", "name": "bind", "items": items, "bundles": bundles,
            "segments": segments, "responses": responses, "policy": {"min_offers_per_view": 0}}


def run(doc: dict[str, Any]) -> tuple[Solution, dict[str, Any]]:
    solution = solve(instance_from_document(doc), SolveOptions(gap=0.0))
    assert solution.status == Status.OPTIMAL
    plan = plan_document(solution)
    assert check_plan(instance_from_document(doc), plan).ok
    expected = best_objective(doc)
    assert expected is not None and solution.objective == pytest.approx(expected, rel=1e-7)
    return solution, plan


def assert_binds(free: dict[str, Any], bound: dict[str, Any], rule: str) -> Solution:
    free_solution, free_plan = run(free)
    solution, _ = run(bound)
    violations = check_plan(instance_from_document(bound), free_plan).violations
    assert any(rule in v for v in violations), violations
    assert solution.objective is not None and free_solution.objective is not None
    assert solution.objective < free_solution.objective - 1e-6
    return solution


def with_policy(**fields: Any) -> dict[str, Any]:
    doc = base()
    doc["policy"].update(fields)
    return doc


def test_one_variant_per_bundle_binds() -> None:
    solution, plan = run(base())
    pairs = [(o["segment"], o["bundle"]) for o in plan["offers"]]
    assert len(pairs) == len(set(pairs)) == 6  # three variants of each pair had positive value
    per_pair_positive = (expand(solution.instance).value > 0).sum() / 6
    assert per_pair_positive > 1


def test_exclusion_group_binds() -> None:
    grouped = base()
    for b in grouped["bundles"][:2]:
        b["exclusion_group"] = "tier"
    solution = assert_binds(base(), grouped, "exclusion group 'tier'")
    assert solution.candidates.group_names == ("tier",)


def test_max_offers_per_view_binds() -> None:
    assert_binds(base(), with_policy(max_offers_per_view=1), "must show between 0 and 1 offers")


def test_segment_max_offers_override_binds() -> None:
    doc = base()
    doc["segments"][0]["max_offers"] = 2
    assert_binds(base(), doc, "segment 's1': must show between 0 and 2")


def test_min_offers_binds_with_negative_uplift() -> None:
    free = with_policy(allow_negative_uplift=True)
    for r in free["responses"]:
        r["baseline_rate"] = 0.3  # everyone buys anyway: every offer loses margin
    forced = copy.deepcopy(free)
    forced["policy"]["min_offers_per_view"] = 1
    solution = assert_binds(free, forced, "must show between 1 and 3 offers")
    assert solution.objective is not None and solution.objective < 0


def test_inventory_binds() -> None:
    doc = base()
    doc["items"][0]["stock"] = 60.0
    doc["items"][1]["stock"] = 100.0
    solution = assert_binds(base(), doc, "inventory of 'A'")
    plan = plan_document(solution)
    assert plan["kpis"]["inventory"]["A"]["used"] <= 60.0 + 1e-6


def test_max_discounted_share_binds() -> None:
    assert_binds(base(), with_policy(max_discounted_share=0.3), "max_discounted_share")


def test_max_avg_discount_binds() -> None:
    assert_binds(base(), with_policy(max_avg_discount=0.05), "max_avg_discount")


def test_promotion_budget_binds() -> None:
    solution = assert_binds(base(), with_policy(promotion_budget=5000.0), "promotion_budget")
    assert plan_document(solution)["kpis"]["promotion_spend"] <= 5000.0 + 1e-6


def test_aggregate_margin_binds() -> None:
    solution = assert_binds(base(), with_policy(min_aggregate_margin_rate=0.45),
                            "min_aggregate_margin_rate")
    assert plan_document(solution)["kpis"]["aggregate_margin_rate"] >= 0.45 - 1e-9


def test_margin_floor_excludes_deep_discounts() -> None:
    solution = assert_binds(base(), with_policy(min_margin_rate=0.4), "must be a candidate")
    kept = expand(solution.instance)
    assert ((kept.margin - 0.4 * kept.revenue) >= 0).all()


def test_bundle_margin_floor_overrides_policy() -> None:
    doc = base()
    doc["bundles"][2]["min_margin_rate"] = 0.58  # C: 60% margin at list price only
    solution = assert_binds(base(), doc, "must be a candidate")
    plan = plan_document(solution)
    assert all(o["discount"] == 0 for o in plan["offers"] if o["bundle"] == "bC")


def test_max_discount_binds() -> None:
    assert_binds(base(), with_policy(max_discount=0.1), "must be a candidate")


def test_silent_segment_gets_nothing() -> None:
    doc = base()
    doc["segments"][1]["silent"] = True
    solution = assert_binds(base(), doc, "must show between 0 and 0")
    assert "s2" not in {o["segment"] for o in plan_document(solution)["offers"]}


def test_negative_uplift_is_excluded_by_default() -> None:
    doc = base()
    doc["responses"][0]["baseline_rate"] = 0.5
    solution, plan = run(doc)
    assert ("s1", "bA") not in {(o["segment"], o["bundle"]) for o in plan["offers"]}
    allowed = copy.deepcopy(doc)
    allowed["policy"]["allow_negative_uplift"] = True
    allowed_solution, _ = run(allowed)
    assert len(expand(allowed_solution.instance)) > len(expand(solution.instance))


def test_unfilled_slots_are_warned_and_lo_is_capped() -> None:
    doc = with_policy(min_offers_per_view=3)
    doc["responses"] = [r for r in doc["responses"] if not (r["segment"] == "s2"
                                                            and r["bundle"] != "bA")]
    _, plan = run(doc)
    assert "segment 's2': 3 offers required, 1 candidate" in plan["warnings"]
    assert sum(o["segment"] == "s2" for o in plan["offers"]) == 1
