"""Estimation: speed against statsmodels, parameter recovery, and decision quality.

Decision quality is the number that matters: solve on estimated responses, evaluate the
plan under the truth, and report its share of the true optimum, for pooled and naive
(per-cell) estimates at sparse and rich data. Run with `make bench` (OFFEROPT_BENCH_SIZE=full:
instances/small.json); at smoke size (the test run) the truth is the generated smoke instance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from benchmarks.conftest import SMOKE_INSTANCE, measure, sized
from optimizer.estimation.estimate import estimate
from optimizer.estimation.exposures import Exposures, exposures_from_frame
from optimizer.estimation.glm import logit
from optimizer.estimation.simulate import simulate
from optimizer.io.fields import Locator
from optimizer.model.instance import Instance
from optimizer.plan.check import evaluate_plan
from optimizer.plan.document import build_plan
from optimizer.solve.dispatch import SolveOptions, solve

LOCATOR = Locator("logs", "csv")
SOLVE = SolveOptions(gap=1e-3, method="exact", time_limit=sized(20, 120))
TRUTH = sized(SMOKE_INSTANCE, "small")


def _logs(inst: Instance, views: int, seed: int = 1) -> tuple[pd.DataFrame, Exposures]:
    frame = simulate(inst, views, holdout=0.1, seed=seed)
    return frame, exposures_from_frame(frame, inst, LOCATOR)


def test_naive_fit_ours(benchmark: Any, instances: dict[str, Instance]) -> None:
    inst = instances[TRUTH]
    _, logs = _logs(inst, 2000)
    measure(benchmark, f"per-cell MLE, {TRUTH}", "ours", estimate, inst, logs, "naive", rounds=3,
            warmup_rounds=1)


@pytest.mark.filterwarnings("ignore:Perfect separation")  # cells with no or every view bought
def test_naive_fit_statsmodels(benchmark: Any, instances: dict[str, Instance]) -> None:
    """One statsmodels GLM per cell, perk lifts held at our estimates as offsets."""
    sm = pytest.importorskip("statsmodels.api")
    inst = instances[TRUTH]
    frame, logs = _logs(inst, 2000)
    lifts = estimate(inst, logs, "naive").perks.set_index(["bundle", "perk"])["lift"]
    shown = frame[(frame["shown"] == 1) & (frame["views"] > 0)]
    offset = lifts.reindex(pd.MultiIndex.from_arrays([shown["bundle"], shown["perk"]])).fillna(0.0)
    shown = shown.assign(offset=offset.to_numpy())

    def per_cell() -> None:
        for _, cell in shown.groupby(["segment", "bundle"]):
            y = np.column_stack([cell["purchases"], cell["views"] - cell["purchases"]])
            x = sm.add_constant(cell["discount"].to_numpy(), has_constant="add")
            sm.GLM(y, x, family=sm.families.Binomial(), offset=cell["offset"].to_numpy()).fit()

    measure(benchmark, f"per-cell MLE, {TRUTH}", "baseline", per_cell)


def test_recovery_and_decision_quality(instances: dict[str, Instance]) -> None:
    inst = instances[TRUTH]
    best = solve(inst, SOLVE).objective
    assert best is not None
    truth = inst.responses
    lines = [f"true optimum {best:,.0f} ({TRUTH}, gap <= 0.1%)",
             f"{'views/cell':>10} {'method':>7} {'rmse logit take':>16} {'cover take':>10} "
             f"{'cover base':>10} {'cover sens':>10} {'share of optimum':>17} {'violations':>10}"]
    shares: dict[tuple[int, str], float] = {}
    for views in (200, 2000, 20000):
        _, logs = _logs(inst, views)
        for method in ("pooled", "naive"):
            est = estimate(inst, logs, method)  # type: ignore[arg-type]
            r = est.responses.merge(truth, on=["segment", "bundle"], suffixes=("", "_true"))
            rmse = float(np.sqrt(np.mean((logit(r["take_rate"]) - logit(r["take_rate_true"])) ** 2)))
            cover = [float(((r[f"{c}_lo"] <= r[f"{c}_true"]) & (r[f"{c}_true"] <= r[f"{c}_hi"])).mean())
                     for c in ("take_rate", "baseline_rate", "price_sensitivity")]
            share, broken = float("nan"), 0
            if views in (200, 20000):
                report = evaluate_plan(inst, build_plan(solve(est.to_instance(inst), SOLVE)).to_dict())
                share, broken = (report.objective or 0.0) / best, len(report.violations)
                shares[(views, method)] = share
            lines.append(f"{views:>10} {method:>7} {rmse:>16.3f} {cover[0]:>10.3f} {cover[1]:>10.3f} "
                         f"{cover[2]:>10.3f} {share:>17.4f} {broken:>10}")
    print("\n" + "\n".join(lines))
    assert shares[(200, "pooled")] > shares[(200, "naive")]
