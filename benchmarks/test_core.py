"""Candidate expansion, model build and solve: offeropt against a plain PuLP model.

Run with `make bench`. Ratios are printed at the end; benchmarks/README.md records them.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import plain_pulp
from benchmarks.conftest import record
from optimizer.backends.highs import _to_lp
from optimizer.candidates import expand
from optimizer.formulation import formulate
from optimizer.model import Instance
from optimizer.solve import SolveOptions, milp_problem, solve

SIZES = ["small", "medium"]


@pytest.mark.parametrize("size", SIZES)
def test_expand_ours(benchmark: Any, instances: dict[str, Instance], size: str) -> None:
    cands = benchmark.pedantic(expand, args=(instances[size],), rounds=5, warmup_rounds=1)
    record(benchmark, f"expand {size}", "ours")
    benchmark.extra_info["candidates"] = len(cands)


@pytest.mark.parametrize("size", SIZES)
def test_expand_baseline(benchmark: Any, instances: dict[str, Instance], size: str) -> None:
    value, _ = benchmark.pedantic(plain_pulp.variants, args=(instances[size],), rounds=2)
    record(benchmark, f"expand {size}", "baseline")
    assert len(value) == len(expand(instances[size]))


def _build_ours(inst: Instance) -> Any:
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(_to_lp(milp_problem(formulate(inst, expand(inst)))))
    return h


@pytest.mark.parametrize("size", SIZES)
def test_build_ours(benchmark: Any, instances: dict[str, Instance], size: str) -> None:
    benchmark.pedantic(_build_ours, args=(instances[size],), rounds=3, warmup_rounds=1)
    record(benchmark, f"build to HiGHS {size}", "ours")


@pytest.mark.parametrize("size", SIZES)
def test_build_baseline(benchmark: Any, instances: dict[str, Instance], size: str) -> None:
    benchmark.pedantic(plain_pulp.build_for_highs, args=(instances[size],), rounds=1)
    record(benchmark, f"build to HiGHS {size}", "baseline")


GAP = 1e-3


def test_solve_small_ours(benchmark: Any, instances: dict[str, Instance]) -> None:
    options = SolveOptions(gap=GAP, threads=1)
    solution = benchmark.pedantic(solve, args=(instances["small"], options), rounds=1)
    record(benchmark, "solve small to 0.1%", "ours")
    benchmark.extra_info["objective"] = solution.objective
    benchmark.extra_info["gap"] = solution.gap


def test_solve_small_baseline(benchmark: Any, instances: dict[str, Instance]) -> None:
    objective = benchmark.pedantic(plain_pulp.solve, args=(instances["small"], GAP), rounds=1)
    record(benchmark, "solve small to 0.1%", "baseline")
    ours = solve(instances["small"], SolveOptions(gap=GAP, threads=1)).objective
    assert ours is not None and abs(objective - ours) <= 2 * GAP * abs(ours)
