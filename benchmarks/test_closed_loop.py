"""The closed loop over simulated nights, with exploration against the same loop without it.

See `benchmarks/closed_loop.py` for the loop. Both loops start from the same rough catalog,
see the same customers (the same seed) and run the real service and the real nightly job;
one solves with `explore` = 0.1, the other with none. The figure is the served plan's value
under the truth, night by night, as a share of the truth's optimum (solved in the same
run), and its cumulative share over the nights.
Run: `OFFEROPT_BENCH_SIZE=full python -m pytest benchmarks/test_closed_loop.py -s`
(10 nights, 24 segments, 1,500 views per segment and night). At smoke size (the test run):
1 night, 4 segments, 100 views.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks.closed_loop import LoopSettings, Night, run_loop
from benchmarks.conftest import sized
from optimizer.model.generate import generate
from optimizer.model.instance import Instance
from optimizer.solve.verify import solve_verified

NIGHTS = sized(1, 10)
SEGMENTS = sized(4, 24)
VIEWS = sized(100, 1500)
EXPLORE = 0.1


def _truth() -> Instance:
    """A generated catalog without rows that a plan's take rates fill (stock, budget,
    discount dependence, aggregate margin): under wrong estimates a plan would break them
    under the truth, and its value there would be no value it can earn. Candidate rules
    (margin floors, max discount) stay."""
    inst = generate(SEGMENTS, seed=5, responses_per_segment=sized(3, 5), items=sized(12, 40),
                    bundles=sized(6, 16))
    policy = dataclasses.replace(inst.policy, holdout_fraction=0.1, max_discounted_share=None,
                                 max_avg_discount=None, promotion_budget=None,
                                 min_aggregate_margin_rate=None)
    return dataclasses.replace(inst, policy=policy, items=inst.items.assign(stock=np.nan))


def test_exploration_learns_price_response(tmp_path: Path) -> None:
    truth = _truth()
    optimum = solve_verified(truth).objective
    assert optimum is not None and optimum > 0
    runs: dict[str, list[Night]] = {}
    for name, explore in (("without exploration", 0.0), (f"explore {EXPLORE}", EXPLORE)):
        settings = LoopSettings(NIGHTS, VIEWS, explore, seed=1, time_limit=sized(20.0, 60.0))
        runs[name] = run_loop(truth, settings, tmp_path / name.replace(" ", "-"))
    for name, nights in runs.items():
        assert [n.night for n in nights] == list(range(1, NIGHTS + 1))
        assert all(n.purchases > 0 and n.views == SEGMENTS * VIEWS for n in nights), name
        report = json.loads(next((tmp_path / name.replace(" ", "-") / "reports")
                                 .glob("night-1.json")).read_text())
        assert report["inputs"]["exposures"] == "recorded logs"  # the loop is closed
        assert report["yesterday"]["version"] == 1 and "headline" in report["yesterday"]
    table = {name: {"share_of_optimum_per_night": [round(n.value_under_truth / optimum, 4)
                                                   for n in nights],
                    "cumulative_share": round(sum(n.value_under_truth for n in nights)
                                              / (optimum * len(nights)), 4)}
             for name, nights in runs.items()}
    print(f"\nclosed loop, {SEGMENTS} segments, {VIEWS} views per segment and night, truth "
          f"optimum {optimum:,.0f} (same run):", json.dumps(table, indent=2))
