"""The nightly re-solve: warm start from yesterday's plan against a cold solve, and what the
stability settings cost. Both baselines are measured in the same run.

A "night" is the shipped instance with new estimates (every take rate scaled by a random
factor in [0.7, 1.3]) or with stock cut to 20%; yesterday's plan is the instance's own plan.
Run: `OFFEROPT_BENCH_SIZE=full python -m pytest benchmarks/test_nightly.py -s` (small and medium;
OFFEROPT_BENCH_TIME_LIMIT, default 30 s). At smoke size (the test run) the nights are made
of the generated smoke instance, with a 20 s limit it does not reach.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from benchmarks.conftest import SMOKE_INSTANCE, knob, sized
from optimizer.model.instance import Instance
from optimizer.plan.diff import plan_diff
from optimizer.plan.document import build_plan
from optimizer.plan.model import Plan
from optimizer.solve.dispatch import SolveOptions, solve
from optimizer.stability.reference import Stability

TIME_LIMIT = float(knob("OFFEROPT_BENCH_TIME_LIMIT", "20", "30"))
SIZES = sized([SMOKE_INSTANCE], ["small", "medium"])
STABLE = sized(SMOKE_INSTANCE, "small")  # the instance of the stability rows


def _new_estimates(inst: Instance, seed: int = 1) -> Instance:
    rng = np.random.default_rng(seed)
    responses = inst.responses.copy()
    responses["take_rate"] = np.clip(responses["take_rate"] * rng.uniform(0.7, 1.3, len(responses)),
                                     1e-4, 0.95)
    return dataclasses.replace(inst, responses=responses)


def _stock_cut(inst: Instance) -> Instance:
    items = inst.items.copy()
    items["stock"] = items["stock"] * 0.2
    return dataclasses.replace(inst, items=items)


def _percent(share: float | None) -> str:
    return "None" if share is None else f"{share:.4%}"


class Yesterday(dict[str, Plan]):
    """Each instance's own plan, solved when first asked for."""

    def __init__(self, instances: dict[str, Instance]) -> None:
        super().__init__()
        self.instances = instances

    def __missing__(self, name: str) -> Plan:
        plan = build_plan(solve(self.instances[name], SolveOptions(time_limit=TIME_LIMIT,
                                                                     threads=1)))
        self[name] = plan
        return plan


@pytest.fixture(scope="module")
def yesterday(instances: dict[str, Instance]) -> Yesterday:
    return Yesterday(instances)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("night", ["new estimates", "stock cut"])
def test_warm_start_against_cold(benchmark: Any, instances: dict[str, Instance],
                                 yesterday: Yesterday, size: str,
                                 night: str) -> None:
    today = (_new_estimates if night == "new estimates" else _stock_cut)(instances[size])
    options = SolveOptions(time_limit=TIME_LIMIT, threads=1, method="exact")
    cold = solve(today, options)
    warm = benchmark.pedantic(solve, args=(today, dataclasses.replace(
        options, previous=yesterday[size].offer_keys())), rounds=1)
    # a solve stopped at its limit reports nothing on yesterday's plan
    fallback = None if warm.stability is None else warm.stability.previous.fallback_objective
    print(f"\n{size}, {night}, {TIME_LIMIT:.0f} s: cold {cold.status} {cold.objective} gap "
          f"{cold.gap} in {cold.seconds:.1f} s | warm {warm.status} {warm.objective} gap "
          f"{warm.gap} in {warm.seconds:.1f} s | fallback {fallback} | warm/cold objective "
          f"{(warm.objective or 0) / (cold.objective or 1):.4f}")
    assert warm.objective is not None
    assert cold.objective is None or warm.objective >= min(cold.objective, fallback or 0) * 0.999


@pytest.mark.parametrize("stability", [Stability(max_churn=0.2), Stability(max_churn=0.05),
                                       Stability(change_penalty=1e4), Stability(change_penalty=1e5)],
                         ids=["churn 20%", "churn 5%", "penalty 1e4", "penalty 1e5"])
def test_stability_cost(benchmark: Any, instances: dict[str, Instance],
                        yesterday: Yesterday, stability: Stability) -> None:
    today = _new_estimates(instances[STABLE])
    options = SolveOptions(time_limit=TIME_LIMIT, threads=1, method="exact",
                           previous=yesterday[STABLE].offer_keys())
    free = solve(today, options)
    stable = benchmark.pedantic(solve, args=(today, dataclasses.replace(options,
                                                                         stability=stability)),
                                rounds=1)
    changed = {name: plan_diff(yesterday[STABLE], build_plan(s))["segments_changed"]
               for name, s in (("free", free), ("stable", stable))}
    assert free.objective is not None and stable.objective is not None
    cost = (free.objective - stable.objective) / free.objective
    penalized = None if stable.stability is None else stable.stability.settings
    gap = (penalized.penalized_bound - penalized.penalized_objective) / abs(
        penalized.penalized_bound) if penalized is not None and penalized.penalized_bound else None
    print(f"\n{STABLE}, new estimates, {stability}: segments changed free {changed['free']} -> "
          f"{changed['stable']}, objective cost {cost:.4%} (free gap {_percent(free.gap)}, "
          f"stable gap {_percent(gap)}), stable {stable.status} in "
          f"{stable.seconds:.1f} s")
    assert changed["stable"] <= changed["free"]
