"""The decomposition backend: a certified bound, and plans that meet every rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from cli.exit_codes import ExitCode
from cli.main import main
from optimizer.io import instance_from_document
from optimizer.model.generate import generate
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import SolveOptions, Status, solve
from tests.bruteforce import best_objective
from tests.constants import DATA, ROOT
from tests.plans import plan_document
from tests.strategies import tiny_instances


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_instances(max_segments=3))
def test_bound_is_a_true_upper_bound_and_plans_are_sound(doc: dict[str, Any]) -> None:
    optimum = best_objective(doc, rel_tol=1e-9)
    loose = best_objective(doc, rel_tol=1e-5)
    inst = instance_from_document(doc)
    solution = solve(inst, SolveOptions(method="decompose", gap=0.0, time_limit=20))
    if loose is None:
        assert solution.status == Status.INFEASIBLE
        return
    if optimum is None:
        return  # feasible only within solver tolerances: nothing exact to compare with
    assert solution.bound is not None
    assert solution.bound >= optimum - 1e-6 * max(1.0, abs(optimum))
    assert solution.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert solution.objective is not None
    assert solution.objective <= loose + 1e-6 * max(1.0, abs(loose))
    report = check_plan(inst, plan_document(solution))
    assert report.ok, report.violations


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_instances_with_every_family_active(seed: int) -> None:
    inst = generate(80, seed=seed, responses_per_segment=8)
    policy = inst.policy
    assert None not in (policy.max_discounted_share, policy.max_avg_discount,
                        policy.promotion_budget, policy.min_aggregate_margin_rate)
    assert inst.items["stock"].notna().any()
    decomposed = solve(inst, SolveOptions(method="decompose", time_limit=3))
    # any proven gap will do: the assertions bracket the two solves by each other's bounds
    exact = solve(inst, SolveOptions(method="exact", gap=1e-3, time_limit=60))
    assert decomposed.objective is not None and exact.objective is not None
    assert decomposed.bound is not None
    assert decomposed.bound >= exact.objective * (1 - 1e-9)  # certified: above the optimum
    assert decomposed.objective <= exact.bound * (1 + 1e-9)  # type: ignore[operator]
    plan = plan_document(decomposed)
    json.dumps(plan, allow_nan=False)  # strict JSON: a plan without a perk says null, never NaN
    assert {type(o["perk"]) for o in plan["offers"]} <= {str, type(None)}
    report = check_plan(inst, plan)
    assert report.ok, report.violations
    assert plan["solver"]["method"] == "decompose"
    assert plan["solver"]["multipliers"]  # some coupling rows are priced


def test_infeasible_instance_is_reported_and_diagnosed() -> None:
    doc = json.loads((DATA / "demo_infeasible.json").read_text())
    solution = solve(instance_from_document(doc), SolveOptions(method="decompose"))
    assert solution.status == Status.INFEASIBLE
    assert solution.diagnosis is not None and solution.diagnosis.conflicts


def test_auto_picks_by_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import optimizer.solve.dispatch as solve_module

    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    assert solve(inst).method == "lp"
    monkeypatch.setattr(solve_module, "LP_MAX_CANDIDATES", 10)
    assert solve(inst).method == "decompose"


def test_cli_method_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(ROOT / "instances" / "demo"), "--method", "decompose"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "Multipliers of the binding rows" in out
    assert "check: plan independently verified" in out


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_price_shifting_alone_reaches_a_sound_plan(seed: int) -> None:
    """From zero multipliers (rows overdrawn), raising prices meets every row, no MIP used."""
    import numpy as np

    from optimizer.decomposition.dual import decompose
    from optimizer.decomposition.oracle import LocalOracle
    from optimizer.formulation.candidates import expand
    from optimizer.formulation.milp import live_coupling
    from optimizer.solve.dispatch import Solution

    inst = generate(400, seed=seed, responses_per_segment=10)
    cands = expand(inst)
    rows = live_coupling(inst, cands)
    oracle = LocalOracle(cands)
    d = decompose(oracle, rows, None, 1e-4, max_iterations=0)
    assert d.history[0][1] is None  # the unpriced choice overdraws some row
    assert d.price is not None and d.objective is not None
    selected = np.zeros(len(cands), dtype=bool)
    selected[oracle.choose(d.price)] = True
    solution = Solution(inst, cands, rows, Status.FEASIBLE, selected, d.objective, d.bound,
                        "shift", "highs", method="decompose")
    report = check_plan(inst, plan_document(solution))
    assert report.ok, report.violations
    assert d.objective <= d.bound


def test_the_early_multipliers_are_the_best_of_the_first_evaluations(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first evaluation is at zero multipliers: kept alone, its prices are zero; kept
    over every evaluation, they are the best multipliers'; not asked for, there are none."""
    import numpy as np

    import optimizer.decomposition.dual as dual_module
    from optimizer.decomposition.dual import decompose
    from optimizer.decomposition.oracle import LocalOracle
    from optimizer.formulation.candidates import expand
    from optimizer.formulation.milp import live_coupling

    inst = generate(400, seed=2, responses_per_segment=10)
    cands = expand(inst)
    rows, oracle = live_coupling(inst, cands), LocalOracle(cands)
    first = decompose(oracle, rows, None, 1e-9, max_iterations=8, early_until=1)
    every = decompose(oracle, rows, None, 1e-9, max_iterations=8, early_until=10_000)
    none = decompose(oracle, rows, None, 1e-9, max_iterations=8)
    assert first.early_price is not None and not first.early_price.any()
    assert first.bound_price.any()  # the search moved past zero
    assert every.early_price is not None
    np.testing.assert_array_equal(every.early_price, every.bound_price)
    assert none.early_price is None
    seen: list[tuple[float, np.ndarray]] = []  # (L, prices) of each evaluation, in order
    evaluate = dual_module._Search.evaluate

    def recorded(search: Any, lam: np.ndarray, track: bool = False) -> tuple[float, np.ndarray]:
        value, g = evaluate(search, lam, track)
        seen.append((value, search.dual.price(lam)))
        return value, g

    monkeypatch.setattr(dual_module._Search, "evaluate", recorded)
    three = decompose(oracle, rows, None, 1e-9, max_iterations=8, early_until=3)
    assert three.early_price is not None and len(seen) > 3
    np.testing.assert_array_equal(three.early_price, min(seen[:3], key=lambda s: s[0])[1])


def test_the_search_starts_from_yesterdays_multipliers() -> None:
    """Named multipliers map back onto the same rows, and a search started from converged
    ones has, after three steps, the bound a search from zero needs two hundred for."""
    import numpy as np

    from optimizer.decomposition.dual import decompose
    from optimizer.decomposition.oracle import LocalOracle
    from optimizer.formulation.candidates import expand
    from optimizer.formulation.milp import live_coupling
    from optimizer.solve.reports import priced_rows, row_prices

    inst = generate(400, seed=2, responses_per_segment=10)
    cands = expand(inst)
    rows, oracle = live_coupling(inst, cands), LocalOracle(cands)
    cold = decompose(oracle, rows, None, 1e-6, max_iterations=200)
    named = priced_rows(inst, rows.family, rows.subject, cold.row_prices)
    assert len(named) >= 2  # several rows priced: the start is not trivial
    back = row_prices(inst, rows.family, rows.subject, named)
    np.testing.assert_allclose(back, np.where(cold.row_prices > 0, cold.row_prices, 0.0))
    warm = decompose(oracle, rows, None, 1e-6, max_iterations=3, start_prices=back)
    early = decompose(oracle, rows, None, 1e-6, max_iterations=3)
    assert warm.bound <= cold.bound * (1 + 1e-6)
    assert early.bound > cold.bound * (1 + 1e-3)  # three steps from zero are far from it
    # a row yesterday's plan does not name (a new item, a limit not binding) starts at 0
    assert not row_prices(inst, rows.family, rows.subject,
                          [{"constraint": "inventory", "item": "no-such-item",
                            "multiplier": 5.0}]).any()

