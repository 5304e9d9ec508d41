"""Whole segments re-assigned between two prices' choices by one MIP: never worse than the
greedy repair it starts from, every row held, and at most the segments it may free moved."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from optimizer.backends import Limits, Termination, get_backend
from optimizer.decomposition.dual import Decomposition, decompose
from optimizer.decomposition.oracle import LocalOracle
from optimizer.decomposition.reassign import reassign
from optimizer.decomposition.recovery import repair
from optimizer.formulation.candidates import Candidates, expand
from optimizer.formulation.milp import live_coupling
from optimizer.model.generate import generate
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import Solution, SolveOptions, Status, solve
from tests.plans import plan_document


def _checked(inst: Instance, rows: Any, plan: Candidates) -> bool:
    value = float(plan.value.sum())
    solution = Solution(instance=inst, candidates=plan, coupling=rows, status=Status.FEASIBLE,
                        selected=np.ones(len(plan), dtype=bool), objective=value, bound=None,
                        termination=Termination.TIME_LIMIT, solver="highs")
    report = check_plan(inst, plan_document(solution))
    return report.ok


def _per_segment(plan: Candidates) -> np.ndarray:
    return np.bincount(plan.segment, plan.variant + 1.0, minlength=len(plan.lo))


@pytest.mark.parametrize("most", [10_000, 12])
def test_reassigned_plans_beat_the_repair_and_hold_every_row(most: int) -> None:
    inst = generate(150, seed=7, profile="realistic")
    cands = expand(inst)
    rows = live_coupling(inst, cands)
    oracle = LocalOracle(cands)
    d = decompose(oracle, rows, 10.0, 1e-6)
    assert d.price is not None
    repaired, moved = repair(oracle, rows, d.bound_price, d.price)
    at = np.zeros(len(cands.lo), dtype=np.int64)
    at[moved] = 1
    plan = reassign(oracle, rows, [d.bound_price, d.price], at, get_backend("highs"),
                    Limits(20.0, 1e-9, 1), most)
    assert plan is not None
    value, start = float(plan.value.sum()), float(repaired.value.sum())
    assert value >= start - 1e-9 * abs(start)
    assert _checked(inst, rows, plan)
    assert np.count_nonzero(_per_segment(plan) != _per_segment(repaired)) <= most


def test_the_decomposition_reassigns_above_the_lp_steps_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the LP step is off (1M segments), the repair is followed by the reassignment;
    made to take that path on a small catalog, its plan passes the check."""
    import optimizer.decomposition.reassign as module
    import optimizer.decomposition.run as run

    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Candidates | None:
        calls.append(1)
        return reassign(*args, **kwargs)

    import optimizer.decomposition.recovery as recovery

    duals: list[Decomposition] = []
    repaired_from: list[np.ndarray] = []

    def kept(*args: Any, **kwargs: Any) -> Decomposition:
        duals.append(decompose(*args, **kwargs))
        return duals[-1]

    def repair_from(oracle: Any, rows: Any, price_a: np.ndarray, safe: np.ndarray) -> Any:
        repaired_from.append(price_a)
        return repair(oracle, rows, price_a, safe)

    monkeypatch.setattr(run, "LP_STEP_MAX_CANDIDATES", 0)
    monkeypatch.setattr(run, "AUTO_EXACT_MAX_CANDIDATES", 0)
    monkeypatch.setattr(run, "decompose", kept)
    monkeypatch.setattr(recovery, "repair", repair_from)
    monkeypatch.setattr(module, "reassign", counted)
    inst = generate(80, seed=8, profile="realistic")
    solution = solve(inst, SolveOptions(method="decompose", gap=1e-9, threads=1))
    assert calls and solution.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert check_plan(inst, plan_document(solution)).ok
    # the repair started from the best multipliers of the sign-based descent
    assert duals[0].early_price is not None and repaired_from
    assert repaired_from[0] is duals[0].early_price
