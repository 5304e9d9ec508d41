"""Solving against yesterday's plan: stability settings against brute force, each binding,
and the fallback (yesterday's plan made feasible) always passing the independent check."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from optimizer.backends import Progress
from optimizer.errors import InputError, OfferOptError
from optimizer.formulation.candidates import expand
from optimizer.formulation.milp import live_coupling
from optimizer.formulation.segment_choice import SegmentChooser
from optimizer.io import instance_from_document
from optimizer.io.json_form import instance_to_document
from optimizer.model.generate import generate
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.plan.diff import plan_diff
from optimizer.plan.document import build_plan
from optimizer.plan.model import OFFER_KEY, OfferTable, Plan
from optimizer.solve.dispatch import Solution, SolveOptions, Status, solve
from optimizer.solve.reports import PreviousPlanReport, StabilitySettingsReport
from optimizer.stability.reference import Stability, churn_budget
from optimizer.stability.warm import WarmStart
from tests.bruteforce import best_stable, enumerate_plans
from tests.strategies import tiny_instances

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _offers(variants: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([v.offer for v in variants], columns=list(OFFER_KEY))


def _with_offers(offers: list[dict[str, Any]]) -> Plan:
    """A plan of these offers and nothing else: yesterday's, as far as stability reads it."""
    return Plan(instance="yesterday", status=Status.FEASIBLE, objective=None, bound=None, gap=None,
                offers=OfferTable.from_records(offers))


def _previous(solution: Solution) -> PreviousPlanReport:
    """The solve's report on yesterday's plan: there is one whenever a plan was given."""
    assert solution.stability is not None
    return solution.stability.previous


def _settings(solution: Solution) -> StabilitySettingsReport:
    """The solve's report on its stability settings: there is one whenever they constrain."""
    assert solution.stability is not None and solution.stability.settings is not None
    return solution.stability.settings


@SETTINGS
@given(doc=tiny_instances(max_segments=3), pick=st.integers(0, 10**6),
       penalty=st.sampled_from([0.0, 1.0, 300.0, 1e5]),
       churn=st.sampled_from([None, 0.0, 0.34, 0.67, 1.0]))
def test_stable_optimum_equals_bruteforce(doc: dict[str, Any], pick: int, penalty: float,
                                          churn: float | None) -> None:
    """Yesterday's plan is any feasible plan; today's optimum of value - penalty x changes
    with at most the churn budget of changed segments matches enumeration."""
    strict, loose = enumerate_plans(doc, 1e-9), enumerate_plans(doc, 1e-5)
    assume(strict.ok.any() and np.array_equal(strict.ok, loose.ok))  # no borderline plans
    feasible = np.flatnonzero(strict.ok)
    previous = strict.plan(int(feasible[pick % len(feasible)]))
    budget = None if churn is None else churn_budget(len(doc["segments"]), churn)
    expected = best_stable(doc, previous, penalty, budget)
    assert expected is not None  # yesterday's plan itself qualifies

    inst = instance_from_document(doc)
    stability = Stability(churn, penalty)
    solution = solve(inst, SolveOptions(method="exact", gap=0.0, previous=_offers(previous),
                                        stability=stability))
    assert solution.status == Status.OPTIMAL
    got = _settings(solution).penalized_objective if stability.constrains else solution.objective
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
    plan = build_plan(solution)
    assert check_plan(inst, plan.to_dict()).ok
    if budget is not None:  # counted here from the two plans' offers, not by the solver
        yesterday = _with_offers([dict(zip(OFFER_KEY, v.offer, strict=True)) for v in previous])
        assert plan_diff(yesterday, plan)["segments_changed"] <= budget



def test_a_start_highs_maps_past_is_not_returned_as_optimal() -> None:
    """HiGHS 1.16 ends `Optimal` at 252,300 yet returns the start (252,250) it was given: two
    bundles here are the same offer, and presolve moves the start onto the better one."""
    doc = json.loads((Path(__file__).parents[1] / "data" / "highs_stale_start.json").read_text())
    previous = pd.DataFrame([("s1", "b0", 0.0, None)], columns=list(OFFER_KEY))
    solution = solve(instance_from_document(doc),
                     SolveOptions(method="exact", gap=0.0, previous=previous,
                                  stability=Stability(change_penalty=1e5)))
    assert solution.status == Status.OPTIMAL
    assert _settings(solution).penalized_objective == pytest.approx(152300.0)

def _generated(segments: int = 60, seed: int = 5) -> Instance:
    return generate(segments, seed, 8, 40, None, "stability")


def _shifted(inst: Instance, seed: int) -> Instance:
    """The same catalog with every take rate moved a little: a new night's estimates."""
    rng = np.random.default_rng(seed)
    responses = inst.responses.copy()
    responses["take_rate"] = np.clip(responses["take_rate"] * rng.uniform(0.6, 1.4, len(responses)),
                                     1e-4, 0.9)
    return dataclasses.replace(inst, responses=responses)


@pytest.fixture(scope="module")
def nights() -> tuple[Instance, Instance, Plan]:
    yesterday = _generated()
    plan = build_plan(solve(yesterday, SolveOptions(method="exact", gap=1e-6)))
    return yesterday, _shifted(yesterday, 1), plan


def _changed_segments(before: Plan, after: Plan) -> int:
    return int(plan_diff(before, after)["segments_changed"])


def test_change_penalty_binds(nights: tuple[Instance, Instance, Plan]) -> None:
    _, today, plan = nights
    options = SolveOptions(method="exact", gap=1e-6, previous=plan.offer_keys())
    free = build_plan(solve(today, options))
    held = solve(today, dataclasses.replace(options, stability=Stability(change_penalty=1e9)))
    assert _changed_segments(plan, free) > 0  # the new estimates move the free optimum
    # the fallback's own changes (an offer whose value turned < 0, stock) bound what must change
    forced = _previous(held).forced_segments
    assert forced < _changed_segments(plan, free)
    assert _changed_segments(plan, build_plan(held)) <= forced  # a prohibitive penalty
    assert held.objective is not None and free.objective is not None and free.objective >= held.objective
    mild = solve(today, dataclasses.replace(options, stability=Stability(change_penalty=1e4)))
    assert _previous(mild).changed_offers <= plan_diff(plan, free)["offers_added"] + \
        plan_diff(plan, free)["offers_removed"]


def test_max_churn_binds(nights: tuple[Instance, Instance, Plan]) -> None:
    _, today, plan = nights
    options = SolveOptions(method="exact", gap=1e-6, previous=plan.offer_keys())
    free = build_plan(solve(today, options))
    budget = churn_budget(len(today.segments), 0.05)
    stable = solve(today, dataclasses.replace(options, stability=Stability(max_churn=0.05)))
    forced = _previous(stable).forced_segments  # changes outside the budget
    assert _changed_segments(plan, free) > budget + forced  # the budget matters here
    doc = build_plan(stable)
    assert check_plan(today, doc.to_dict()).ok
    assert budget < _changed_segments(plan, doc) <= budget + forced
    assert stable.objective is not None and free.objective is not None
    assert stable.objective < free.objective  # it cost
    assert stable.bound is None  # a bound on the penalized problem bounds no plan's value


def test_fallback_meets_a_stock_collapse(nights: tuple[Instance, Instance, Plan]) -> None:
    yesterday, _, plan = nights
    items = yesterday.items.copy()
    items["stock"] = items["stock"] * 0.1
    today = dataclasses.replace(yesterday, items=items)
    solution = solve(today, SolveOptions(method="exact", gap=1e-6, previous=plan.offer_keys()))
    report = _previous(solution)
    assert report.fallback_objective is not None
    assert report.fallback_objective < report.reevaluated_objective  # stock now binds
    assert check_plan(today, build_plan(solution).to_dict()).ok
    assert solution.objective is not None and solution.objective >= report.fallback_objective


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=tiny_instances(max_segments=3), pick=st.integers(0, 10**6),
       shrink=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_fallback_always_passes_the_check(doc: dict[str, Any], pick: int, shrink: float) -> None:
    """Whatever yesterday's plan, stock and budget cut: a fallback, when there is one, is sound."""
    e = enumerate_plans(doc)
    assume(e.ok.any())
    feasible = np.flatnonzero(e.ok)
    previous = e.plan(int(feasible[pick % len(feasible)]))
    for item in doc["items"]:
        if item.get("stock") is not None:
            item["stock"] = item["stock"] * shrink
    if doc["policy"].get("promotion_budget") is not None:
        doc["policy"]["promotion_budget"] *= shrink
    today = instance_from_document(doc)
    cands = expand(today)
    warm = WarmStart.build(today, cands, live_coupling(today, cands), SegmentChooser(cands),
                           _offers(previous), Stability())
    fallback = warm.fallback_plan()
    if fallback is None:
        return
    solution = Solution(instance=today, candidates=fallback, coupling=live_coupling(today, cands),
                        status=Status.FEASIBLE, selected=np.ones(len(fallback), dtype=bool),
                        objective=float(fallback.value.sum()), bound=None, termination="",
                        solver="fallback")
    report = check_plan(today, build_plan(solution).to_dict())
    assert report.ok, report.violations


def test_max_churn_needs_the_exact_method(nights: tuple[Instance, Instance, Plan]) -> None:
    _, today, plan = nights
    with pytest.raises(OfferOptError, match="max_churn: must be used with --method exact"):
        solve(today, SolveOptions(method="decompose", previous=plan.offer_keys(),
                                  stability=Stability(max_churn=0.1)))
    with pytest.raises(OfferOptError, match="--backend dask: yesterday's plan"):
        solve(today, SolveOptions(backend="dask", previous=plan.offer_keys()))


def test_change_penalty_with_decomposition(nights: tuple[Instance, Instance, Plan]) -> None:
    """The decomposition prices the penalty into candidate values; the plan reports true values."""
    _, today, plan = nights
    solution = solve(today, SolveOptions(method="decompose", time_limit=20, previous=plan.offer_keys(),
                                         stability=Stability(change_penalty=1e9)))
    doc = build_plan(solution)
    assert check_plan(today, doc.to_dict()).ok  # the objective checked is the plain incremental margin
    assert _changed_segments(plan, doc) <= _previous(solution).forced_segments


def test_stability_settings_are_validated() -> None:
    with pytest.raises(InputError, match=r"max_churn: must be in \[0, 1\], got 2"):
        Stability(max_churn=2)
    with pytest.raises(InputError, match="change_penalty: must be a finite number >= 0, got -1"):
        Stability(change_penalty=-1)


def test_previous_offers_of_vanished_segments_and_bundles_are_dropped() -> None:
    inst = _generated(10, 3)
    doc = instance_to_document(inst)
    offers = build_plan(solve(inst, SolveOptions(method="exact"))).offers.records()
    ghost = {"segment": "gone", "bundle": doc["bundles"][0]["id"], "discount": 0.0, "perk": None}
    lost = {**offers[0], "bundle": "retired-bundle"}
    previous = _with_offers([*offers, ghost, lost]).offer_keys()
    solution = solve(inst, SolveOptions(method="exact", previous=previous))
    report = _previous(solution)
    assert report.offers == len(offers) + 1  # the vanished segment's offer is gone
    assert report.still_candidates == len(offers)
    assert report.forced_segments >= 1  # the retired bundle's segment must change


@pytest.mark.parametrize("penalty", [0.0, 1e9])
def test_a_warm_started_decomposition_stopped_at_its_deadline_keeps_its_best_plan(
        monkeypatch: pytest.MonkeyPatch, nights: tuple[Instance, Instance, Plan],
        penalty: float) -> None:
    """The decomposition sends yesterday's plan made feasible first, then its own plans with
    true values; stopped at the deadline, the solve keeps the best under the change penalty.
    The stand-in decomposition sends today's optimum (on penalized values), then hangs."""
    import time

    import optimizer.decomposition.run as run_module

    _, today, plan = nights
    exact_solution = solve(today, SolveOptions(method="exact", gap=1e-6))
    exact = exact_solution.candidates
    sent_bound = 1.5 * float(exact_solution.objective or 0.0)
    cands = expand(today)
    optimum = pd.MultiIndex.from_arrays([cands.segment, cands.variant]).get_indexer(
        pd.MultiIndex.from_arrays([exact.segment, exact.variant]))

    def send_then_hang(instance: Any, oracle: Any, rows: Any, n: int, options: Any, backend: Any,
                       start: float, built: float, on_plan: Any = None) -> Any:
        on_plan(oracle.cands.subset(optimum), "today's optimum", multipliers=priced)
        options.progress(Progress(None, sent_bound, None, 0.0))  # the multipliers' bound
        time.sleep(60)

    priced = [{"constraint": "promotion_budget", "item": None, "multiplier": 0.25}]
    monkeypatch.setattr(run_module, "decomposed_solution", send_then_hang)
    solution = solve(today, SolveOptions(method="decompose", time_limit=5,
                                         previous=plan.offer_keys(),
                                         stability=Stability(change_penalty=penalty)))
    assert solution.status == Status.FEASIBLE and solution.objective is not None
    found = solution.stats.plans or []
    assert [p["how"] for p in found] == ["yesterday's plan, made feasible", "today's optimum"]
    fallback, best = (p["objective"] for p in found)
    assert fallback < best  # the plans sent carry true values, not penalized ones
    if penalty:  # yesterday's plan changes only what it must: under this penalty it is best
        assert "yesterday's plan" in (solution.message or "")
        assert solution.objective == pytest.approx(fallback)
        assert solution.bound is None  # a bound on the penalized problem bounds no plan's value
    else:  # a warm start alone leaves the values as they are: the bound holds for the plan
        assert solution.objective == pytest.approx(best)
        assert solution.bound == pytest.approx(sent_bound)
    # the latest multipliers the search reached, whichever plan is kept: the next night's
    # search starts there
    assert build_plan(solution).solver["multipliers"] == priced
    assert check_plan(today, build_plan(solution).to_dict()).ok
