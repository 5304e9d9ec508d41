"""Candidate expansion, model build and solve: offeropt against a plain PuLP model.

Run with `make bench` (OFFEROPT_BENCH_SIZE=full). Ratios are printed at the end;
benchmarks/README.md records them. At smoke size (the test run) expansion and build run on
small, the solve on the generated smoke instance, once each.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import plain_pulp
from benchmarks.conftest import SMOKE_INSTANCE, Instances, measure, sized
from optimizer.backends.highs import new_highs, to_highs_lp
from optimizer.formulation.candidates import expand
from optimizer.formulation.milp import formulate
from optimizer.model.instance import Instance
from optimizer.solve.dispatch import SolveOptions, milp_problem, solve

SIZES = sized(["small"], ["small", "medium"])
SOLVED = sized(SMOKE_INSTANCE, "small")  # solved end to end by both
GAP = 1e-3


@pytest.mark.parametrize("size", SIZES)
def test_expand_ours(benchmark: Any, instances: Instances, size: str) -> None:
    cands = measure(benchmark, f"expand {size}", "ours", expand, instances[size], rounds=5,
                    warmup_rounds=1)
    benchmark.extra_info["candidates"] = len(cands)


@pytest.mark.parametrize("size", SIZES)
def test_expand_baseline(benchmark: Any, instances: Instances, size: str) -> None:
    value, _ = measure(benchmark, f"expand {size}", "baseline", plain_pulp.variants,
                       instances[size], rounds=2)
    assert len(value) == len(expand(instances[size]))


def _build_ours(inst: Instance) -> Any:
    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.passModel(to_highs_lp(milp_problem(formulate(inst, expand(inst)))))
    return h


@pytest.mark.parametrize("size", SIZES)
def test_build_ours(benchmark: Any, instances: Instances, size: str) -> None:
    measure(benchmark, f"build to HiGHS {size}", "ours", _build_ours, instances[size], rounds=3,
            warmup_rounds=1)


@pytest.mark.parametrize("size", SIZES)
def test_build_baseline(benchmark: Any, instances: Instances, size: str) -> None:
    measure(benchmark, f"build to HiGHS {size}", "baseline", plain_pulp.build_for_highs,
            instances[size])


OPTIONS = SolveOptions(gap=GAP, threads=1)
OURS: dict[str, float] = {}  # our objective, for the baseline's check


def test_solve_ours(benchmark: Any, instances: Instances) -> None:
    solution = measure(benchmark, f"solve {SOLVED} to 0.1%", "ours", solve, instances[SOLVED],
                       OPTIONS)
    assert solution.objective is not None
    OURS[SOLVED] = solution.objective
    benchmark.extra_info["objective"] = solution.objective
    benchmark.extra_info["gap"] = solution.gap


def test_solve_baseline(benchmark: Any, instances: Instances) -> None:
    objective = measure(benchmark, f"solve {SOLVED} to 0.1%", "baseline", plain_pulp.solve,
                        instances[SOLVED], GAP)
    ours = OURS.get(SOLVED) or solve(instances[SOLVED], OPTIONS).objective
    assert ours is not None and abs(objective - ours) <= 2 * GAP * abs(ours)
