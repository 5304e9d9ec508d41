"""Solver optimum == brute-force optimum on random tiny instances, for both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from optimizer.io import instance_from_document
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import SolveOptions, Status, solve
from tests.bruteforce import best_objective, lp_optimum
from tests.constants import DATA
from tests.plans import plan_document
from tests.strategies import tiny_contact_instances, tiny_instances

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_matches_bruteforce(doc: dict[str, Any], solver: str, method: str = "auto") -> None:
    inst = instance_from_document(doc)
    solution = solve(inst, SolveOptions(solver=solver, gap=0.0, method=method))
    # Solvers accept plans within feasibility tolerances: bracket by a strict and a loose oracle.
    strict, loose = best_objective(doc, rel_tol=1e-9), best_objective(doc, rel_tol=1e-5)
    if loose is None:
        assert solution.status == Status.INFEASIBLE
        return
    if strict is None:
        assert solution.status in (Status.INFEASIBLE, Status.OPTIMAL)
        return
    assert solution.status == Status.OPTIMAL
    assert solution.objective is not None and solution.bound is not None
    scale = max(1.0, abs(strict))
    assert strict - 1e-6 * scale <= solution.objective <= loose + 1e-6 * scale
    assert solution.bound >= solution.objective
    report = check_plan(inst, plan_document(solution))
    assert report.ok, report.violations


def _assert_split_earns_the_lp_optimum(doc: dict[str, Any], method: str
                                       ) -> dict[str, Any] | None:
    """The split plan earns the LP optimum of the enumeration and passes the checker (which
    validates every set, the weights and the marginals); None when the LP is infeasible."""
    inst = instance_from_document(doc)
    solution = solve(inst, SolveOptions(split_traffic=True, method=method, gap=1e-9))
    optimum = lp_optimum(doc)
    if optimum is None:
        assert solution.status == Status.INFEASIBLE
        return None
    assert solution.status == Status.OPTIMAL and solution.objective is not None
    assert solution.objective == pytest.approx(optimum, rel=1e-6, abs=1e-6)
    plan = plan_document(solution)
    report = check_plan(inst, plan)
    assert report.ok, report.violations
    return plan


@SETTINGS
@given(tiny_instances())
def test_highs_equals_bruteforce(doc: dict[str, Any]) -> None:
    _assert_matches_bruteforce(doc, "highs", "exact")


@SETTINGS
@given(tiny_instances())
def test_lp_guided_equals_bruteforce(doc: dict[str, Any]) -> None:
    """The LP-guided path (relaxation, dive, closing MIP, full MIP) reaches the optimum."""
    _assert_matches_bruteforce(doc, "highs", "lp")


@pytest.mark.parametrize("method", ["lp", "decompose"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=tiny_instances())
def test_split_traffic_earns_the_lp_optimum(method: str, doc: dict[str, Any]) -> None:
    """Every set is valid, each segment's weights sum to 1, and the value is the LP optimum
    of the instance, computed from the enumeration of every segment's plans: from the
    whole LP (lp) and by column generation from the multipliers (decompose)."""
    plan = _assert_split_earns_the_lp_optimum(doc, method)
    if plan is None:
        return
    weights: dict[str, float] = {}
    for offer_set in plan.get("offer_sets") or []:
        weights[offer_set["segment"]] = weights.get(offer_set["segment"], 0.0) + offer_set["weight"]
    assert all(w == pytest.approx(1.0, abs=1e-9) for w in weights.values())


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_instances())
def test_cbc_equals_bruteforce(doc: dict[str, Any]) -> None:
    _assert_matches_bruteforce(doc, "cbc")


def test_denormal_policy_limit_regression() -> None:
    """max_avg_discount = 5e-324 once made row normalization overflow into NaN rows."""
    doc = {
        "format": "offeropt/instance@1", "name": "tiny",
        "items": [{"id": "i0", "price": 50.0, "cost": 25.0}],
        "bundles": [{"id": "b0", "kind": "upsell", "items": [{"item": "i0", "qty": 1}],
                     "discounts": [0]}],
        "segments": [{"id": "s0", "views": 1.0}],
        "responses": [{"segment": "s0", "bundle": "b0", "take_rate": 0.5}],
        "policy": {"min_offers_per_view": 0, "max_avg_discount": 5e-324},
    }
    _assert_matches_bruteforce(doc, "highs")


def test_tiny_coefficients_beside_large_values_regression() -> None:
    """Found by hypothesis: max_avg_discount = 1e-10 leaves a row of 1e-9 coefficients
    beside values of 1e5, on which HiGHS's dual simplex stops with "excessive dual values";
    the LP-guided path then had no LP (it re-solves with the primal simplex now)."""
    _assert_matches_bruteforce(json.loads((DATA / "tiny_avg_discount_row.json").read_text()),
                               "highs", "lp")


@pytest.mark.parametrize("method", ["lp", "decompose"])
def test_split_traffic_with_nothing_to_show_regression(method: str) -> None:
    """Found by hypothesis: a segment that may show nothing leaves an LP without columns,
    which HiGHS reports as an empty model: its optimum is the empty plan, not "no LP"."""
    inst = instance_from_document(json.loads((DATA / "silent_segment_split.json").read_text()))
    solution = solve(inst, SolveOptions(split_traffic=True, method=method))
    assert solution.status == Status.OPTIMAL and solution.objective == 0.0


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_empty_coupling_row_regression(solver: str) -> None:
    """Found by hypothesis: views = 0 leaves the aggregate-margin row with no coefficients,
    and CBC crashed (SIGSEGV in clique strengthening) on the empty row."""
    doc = json.loads((DATA / "cbc_empty_row.json").read_text())
    _assert_matches_bruteforce(doc, solver)


@pytest.mark.parametrize("method", ["lp", "decompose"])
def test_a_slot_the_lp_overfills_within_its_tolerance_regression(method: str) -> None:
    """Found by Hypothesis: a promotion budget of 5.5e-5 leaves a discount variant a share of
    1.2e-8 beside its list-price twin at 1, so the bundle's shares summed past 1 and one set
    held both (with max_offers_per_view 1). The segment's shares are now scaled into its
    limits before the sets are cut."""
    doc = json.loads((DATA / "split_overfull_slot.json").read_text())
    inst = instance_from_document(doc)
    solution = solve(inst, SolveOptions(split_traffic=True, method=method, gap=1e-9))
    assert solution.status == Status.OPTIMAL and solution.objective is not None
    optimum = lp_optimum(doc)
    assert optimum is not None and solution.objective == pytest.approx(optimum, rel=1e-6)
    report = check_plan(inst, plan_document(solution))
    assert report.ok, report.violations


CONTACT_SETTINGS = settings(max_examples=12, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("method", ["exact", "lp", "decompose"])
@CONTACT_SETTINGS
@given(doc=tiny_contact_instances())
def test_audiences_and_channels_equal_bruteforce(method: str, doc: dict[str, Any]) -> None:
    """Spec section 8 (contact cost, frequency and repeat caps, channel capacity) on every
    method: the optimum of the enumeration, and a plan the checker passes."""
    _assert_matches_bruteforce(doc, "highs", method)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_contact_instances())
def test_audiences_and_channels_on_cbc_equal_bruteforce(doc: dict[str, Any]) -> None:
    _assert_matches_bruteforce(doc, "cbc", "exact")


@pytest.mark.parametrize("method", ["lp", "decompose"])
@CONTACT_SETTINGS
@given(doc=tiny_contact_instances())
def test_split_traffic_with_audiences_earns_the_lp_optimum(method: str, doc: dict[str, Any]
                                                           ) -> None:
    """With rows 8-10 linear in share (spec sections 7-8), split traffic earns the LP optimum."""
    _assert_split_earns_the_lp_optimum(doc, method)
