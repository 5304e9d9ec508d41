"""Column generation and the restricted LP step: the LP optimum from a few columns, and
plans that hold on every row when most segments are held at an earlier plan."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.backends import Limits, Termination, get_backend
from optimizer.decomposition.columns import generate_columns
from optimizer.decomposition.dual import decompose
from optimizer.decomposition.lp_guided import Found, Relaxation, lp_guided
from optimizer.decomposition.oracle import LocalOracle
from optimizer.decomposition.recovery import repair
from optimizer.formulation.candidates import expand
from optimizer.formulation.milp import formulate_rows, live_coupling, milp_problem
from optimizer.model.generate import generate
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import Solution, SolveOptions, Status, solve
from tests.plans import plan_document


def _catalog(seed: int):  # type: ignore[no-untyped-def]
    inst = generate(150, seed=seed, profile="realistic")
    cands = expand(inst)
    rows = live_coupling(inst, cands)
    return inst, cands, rows, LocalOracle(cands)


def _within(rows, usage: np.ndarray) -> bool:  # type: ignore[no-untyped-def]
    tol = 1e-6 * np.maximum(1.0, np.abs(np.where(np.isfinite(rows.upper), rows.upper, 0.0)))
    return bool(np.all(usage <= rows.upper + tol) and np.all(usage >= rows.lower - tol))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columns_from_a_few_segments_reach_the_whole_lp_optimum(seed: int) -> None:
    """Most segments start held at a plan that meets every row; pricing frees those whose
    best choice is missing until the LP meets its Lagrangian bound: the whole LP's optimum."""
    _, cands, rows, oracle = _catalog(seed)
    whole = formulate_rows(cands, rows)
    lp = Relaxation(whole, milp_problem(whole), None)
    _, _, optimum = lp.solve(None)
    d = decompose(oracle, rows, 10.0, 1e-6)
    assert optimum is not None and d.price is not None
    n = len(cands.lo)
    free = np.zeros(n, dtype=bool)
    free[np.random.default_rng(seed).random(n) < 0.2] = True
    anchor = oracle.choose(d.price)
    start = oracle.choose(d.bound_price)
    found = generate_columns(oracle, rows, start[free[cands.segment[start]]], anchor, free,
                             None, None, rounds=None)
    assert found.converged and found.lp_value is not None
    assert found.lp_value == pytest.approx(optimum, rel=1e-7)
    assert found.bound >= found.lp_value - 1e-7 * abs(optimum)
    assert len(found.positions) < len(cands)


def test_plans_of_a_restricted_lp_hold_the_rows_with_the_held_usage() -> None:
    """The closing and neighbourhood MIPs inside the restricted LP take the held segments'
    usage off every limit (a sub-MIP that forgot it once overdrew the budget by 4.7%)."""
    _, cands, rows, oracle = _catalog(4)
    d = decompose(oracle, rows, 10.0, 1e-6)
    assert d.price is not None
    held = oracle.chosen(d.price)
    held = held.subset(np.flatnonzero(held.segment % 2 == 0))
    free = oracle.of_segments(np.arange(1, len(cands.lo), 2))
    usage = rows.K @ held.usage_per_column()
    found: list[Found] = []
    lp_guided(free, formulate_rows(free, rows, held), get_backend("highs"),
              Limits(5.0, 1e-3, None), found.append)
    assert found
    for f in found:
        plan = free.subset(f.positions)
        assert _within(rows, usage + rows.K @ plan.usage_per_column())


def test_the_lp_step_holding_most_segments_gives_checked_plans(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for only 500 columns, the LP step starts holding the steady segments at
    the repaired plan (pricing frees those it should not hold); its plan passes the
    independent check and is no worse than the repair."""
    import optimizer.decomposition.restricted as restricted

    inst, _, rows, oracle = _catalog(5)
    d = decompose(oracle, rows, 10.0, 1e-6)
    assert d.price is not None
    repaired, moved = repair(oracle, rows, d.bound_price, d.price)
    held = oracle.mixed_positions(d.bound_price, [(d.price, moved)])
    monkeypatch.setattr(restricted, "MAX_CANDIDATES", 500)
    found = restricted.restricted_lp(oracle, rows, d, held, moved, get_backend("highs"),
                                     Limits(5.0, 1e-9, None), None)
    assert found.plan is not None and "of column generation" in found.how
    plan = found.plan
    value = float(plan.value.sum())
    assert value >= float(repaired.value.sum()) - 1e-6 * abs(value)
    assert found.bound >= value
    solution = Solution(instance=inst, candidates=plan, coupling=rows, status=Status.FEASIBLE,
                        selected=np.ones(len(plan), dtype=bool), objective=value,
                        bound=found.bound, termination=Termination.TIME_LIMIT, solver="highs")
    report = check_plan(inst, plan_document(solution))
    assert report.ok, report.violations


def test_split_traffic_by_columns_passes_the_check() -> None:
    """`--method decompose --split-traffic`: the LP optimum as offer sets, checked."""
    inst, cands, rows, _ = _catalog(6)
    whole = formulate_rows(cands, rows)
    _, _, optimum = Relaxation(whole, milp_problem(whole), None).solve(None)
    solution = solve(inst, SolveOptions(method="decompose", split_traffic=True, gap=1e-4))
    assert solution.status == Status.OPTIMAL and solution.objective is not None
    assert solution.objective == pytest.approx(optimum, rel=1e-6)
    assert solution.offer_sets is not None
    assert check_plan(inst, plan_document(solution)).ok
    assert solution.stats.integral_objective is not None
    assert solution.stats.integral_objective <= solution.objective * (1 + 1e-9)
