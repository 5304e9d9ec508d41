"""Estimation from experiment logs: parameter recovery, coverage, decision quality, peers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from optimizer.estimation.estimate import Estimates, estimate
from optimizer.estimation.exposures import exposures_from_frame
from optimizer.estimation.glm import logit
from optimizer.estimation.simulate import arms, simulate
from optimizer.io.fields import Locator
from optimizer.model.generate import generate
from optimizer.model.instance import Instance
from optimizer.plan.check import evaluate_plan
from optimizer.solve.dispatch import SolveOptions, solve
from tests.plans import plan_document

LOCATOR = Locator("logs", "csv")


def _estimate(inst: Instance, views: int, seed: int, method: str = "pooled") -> Estimates:
    logs = simulate(inst, views, holdout=0.1, seed=seed)
    return estimate(inst, exposures_from_frame(logs, inst, LOCATOR), method)  # type: ignore[arg-type]


def _joined(inst: Instance, est: Estimates) -> pd.DataFrame:
    return est.responses.merge(inst.responses, on=["segment", "bundle"], suffixes=("", "_true"))


@pytest.fixture(scope="module")
def truth() -> Instance:
    return generate(150, seed=11, responses_per_segment=10)


@pytest.fixture(scope="module")
def fits(truth: Instance) -> dict[int, pd.DataFrame]:
    return {n: _joined(truth, _estimate(truth, n, seed=n)) for n in (200, 2000, 20000)}


def test_error_falls_as_views_per_cell_grow(fits: dict[int, pd.DataFrame]) -> None:
    def rmse(frame: pd.DataFrame, col: str, scale: object = np.asarray) -> float:
        diff = scale(frame[col].to_numpy()) - scale(frame[f"{col}_true"].to_numpy())  # type: ignore[operator]
        return float(np.sqrt(np.mean(diff**2)))

    for col, scale in (("take_rate", logit), ("price_sensitivity", np.asarray),
                       ("baseline_rate", lambda p: logit(np.clip(p, 1e-9, 1)))):
        errors = [rmse(fits[n], col, scale) for n in (200, 2000, 20000)]
        assert errors[0] > errors[1] > errors[2], (col, errors)


@pytest.mark.parametrize("views", [2000, 20000])
@pytest.mark.parametrize("column", ["take_rate", "baseline_rate", "price_sensitivity"])
def test_90_percent_intervals_cover_the_truth_in_85_to_95_percent_of_cells(
    fits: dict[int, pd.DataFrame], views: int, column: str
) -> None:
    f = fits[views]
    covered = (f[f"{column}_lo"] <= f[f"{column}_true"]) & (f[f"{column}_true"] <= f[f"{column}_hi"])
    assert 0.85 <= covered.mean() <= 0.95, covered.mean()


def test_pooling_beats_naive_estimates_on_decisions_at_sparse_data() -> None:
    """Solve on estimates, evaluate under the truth: the share of the best plan found.
    At a 1% gap the two methods stay about 5 points apart, and the solves take seconds."""
    options = SolveOptions(gap=1e-2, method="exact")
    shares: dict[str, list[float]] = {"pooled": [], "naive": []}
    for seed in (5, 6):
        inst = generate(40, seed=seed, responses_per_segment=10)
        best = solve(inst, options).objective
        assert best is not None and best > 0
        logs = exposures_from_frame(simulate(inst, 200, holdout=0.1, seed=seed), inst, LOCATOR)
        for method in shares:
            est = estimate(inst, logs, method)  # type: ignore[arg-type]
            plan = plan_document(solve(est.to_instance(inst), options))
            realized = evaluate_plan(inst, plan).objective
            assert realized is not None
            shares[method].append(realized / best)
    assert np.mean(shares["pooled"]) > np.mean(shares["naive"]), shares


def test_per_cell_mle_agrees_with_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.api")
    inst = generate(12, seed=3, responses_per_segment=6)
    logs = simulate(inst, 3000, holdout=0.1, seed=4)
    est = estimate(inst, exposures_from_frame(logs, inst, LOCATOR), "naive")
    lift = est.perks.set_index(["bundle", "perk"])["lift"]
    shown = logs[(logs["shown"] == 1) & (logs["views"] > 0)]
    offset = lift.reindex(pd.MultiIndex.from_arrays([shown["bundle"], shown["perk"]])).fillna(0.0)
    shown = shown.assign(offset=offset.to_numpy())
    ours = est.responses.set_index(["segment", "bundle"])
    compared = 0
    for (s, b), cell in shown.groupby(["segment", "bundle"]):
        y = np.column_stack([cell["purchases"], cell["views"] - cell["purchases"]])
        x = sm.add_constant(cell["discount"].to_numpy(), has_constant="add")
        res = sm.GLM(y, x, family=sm.families.Binomial(), offset=cell["offset"].to_numpy()).fit(
            tol=1e-12)
        a, beta = res.params
        if beta < 0 or not np.isfinite(res.bse).all():
            continue  # the constrained estimate (beta >= 0) differs from the unconstrained one there
        row = ours.loc[(s, b)]
        assert logit(row["take_rate"]) == pytest.approx(a, abs=1e-4)
        assert row["price_sensitivity"] == pytest.approx(beta, abs=1e-4)
        assert row["take_rate_se"] == pytest.approx(row["take_rate"] * (1 - row["take_rate"])
                                                    * res.bse[0], rel=1e-3)
        compared += 1
    assert compared >= 30


def test_perk_lifts_agree_with_a_joint_statsmodels_fit() -> None:
    sm = pytest.importorskip("statsmodels.api")
    inst = generate(10, seed=8, responses_per_segment=5)
    # Clearly positive sensitivities, so that the constraint beta >= 0 does not bind.
    responses = inst.responses.assign(price_sensitivity=inst.responses["price_sensitivity"] + 8)
    inst = dataclasses.replace(inst, responses=responses)
    logs = simulate(inst, 4000, holdout=0.0, seed=9)
    est = estimate(inst, exposures_from_frame(logs, inst, LOCATOR), "naive")
    bundle = est.perks["bundle"].value_counts().index[0]
    rows = logs[(logs["bundle"] == bundle) & (logs["views"] > 0)]
    cells = pd.get_dummies(rows["segment"], dtype=float)
    slopes = cells.mul(rows["discount"].to_numpy(), axis=0).add_suffix(":d")
    perks = pd.get_dummies(rows["perk"], dtype=float).drop(columns="", errors="ignore")
    x = pd.concat([cells, slopes, perks], axis=1)
    y = np.column_stack([rows["purchases"], rows["views"] - rows["purchases"]])
    res = sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-12)
    assert (res.params[slopes.columns] > 0).all()
    ours = est.perks[est.perks["bundle"] == bundle].set_index("perk")["lift"]
    for perk in perks.columns:
        assert ours[perk] == pytest.approx(res.params[perk], abs=1e-4)


def test_row_level_logs_estimate_the_same_as_aggregated(truth: Instance) -> None:
    small = generate(8, seed=2, responses_per_segment=4)
    aggregated = simulate(small, 300, holdout=0.2, seed=1)
    rows = simulate(small, 300, holdout=0.2, seed=1, row_level=True)
    assert len(rows) == aggregated["views"].sum()
    a = estimate(small, exposures_from_frame(aggregated, small, LOCATOR))
    b = estimate(small, exposures_from_frame(rows, small, LOCATOR))
    pd.testing.assert_frame_equal(a.responses, b.responses)


def test_simulated_logs_drawn_in_chunks_hold_every_view_on_a_real_arm(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Arms are drawn a few responses at a time (large catalogs): every response still gets
    exactly its views, on arms of its own bundle, and purchases never exceed views."""
    import optimizer.estimation.simulate as simulation

    inst = generate(12, seed=4, responses_per_segment=5)
    monkeypatch.setattr(simulation, "CHUNK_RESPONSES", 7)
    logs = simulate(inst, 9, holdout=0.3, seed=2)
    per_pair = logs.groupby(["segment", "bundle"])["views"].sum()
    assert len(per_pair) == len(inst.responses) and (per_pair == 9).all()
    known = arms(inst).set_index(["segment", "bundle", "discount", "perk"]).index
    shown = logs[logs["shown"] == 1]
    assert shown.set_index(["segment", "bundle", "discount", "perk"]).index.isin(known).all()
    assert (logs["purchases"] <= logs["views"]).all() and (logs["views"] > 0).all()


def test_simulated_purchase_rates_match_the_true_probabilities() -> None:
    inst = generate(5, seed=1, responses_per_segment=3)
    logs = simulate(inst, 400_000, holdout=0.25, seed=7)
    held = logs[logs["shown"] == 0]
    assert held["views"].sum() / logs["views"].sum() == pytest.approx(0.25, abs=0.005)
    truth = arms(inst).set_index(["segment", "bundle", "discount", "perk"])["prob"]
    shown = logs[logs["shown"] == 1].set_index(["segment", "bundle", "discount", "perk"])
    rate = shown["purchases"] / shown["views"]
    se = np.sqrt(truth.reindex(rate.index) * (1 - truth.reindex(rate.index)) / shown["views"])
    assert (np.abs(rate - truth.reindex(rate.index)) <= 5 * se + 1e-9).all()


def test_conservative_quantile_lowers_incremental_rate_by_its_quantile(truth: Instance) -> None:
    logs = exposures_from_frame(simulate(truth, 500, seed=3), truth, LOCATOR)
    mean = estimate(truth, logs).responses
    low = estimate(truth, logs, conservative=0.1).responses
    prices = truth.bundle_prices()
    m0 = (prices["price"] - prices["unit_cost"]).reindex(mean["bundle"]).to_numpy()
    sd = np.sqrt(mean["take_rate_se"] ** 2 + mean["baseline_rate_se"] ** 2).to_numpy()
    inner = (low["take_rate"] > 1e-6) & (low["baseline_rate"] > 0) & (m0 > 0)
    expected = (mean["take_rate"] - mean["baseline_rate"]) - 1.2815515655 * sd
    got = low["take_rate"] - low["baseline_rate"]
    assert inner.mean() > 0.5
    np.testing.assert_allclose(got[inner], expected[inner], rtol=1e-6, atol=1e-9)
    assert (got[m0 > 0] <= (mean["take_rate"] - mean["baseline_rate"])[m0 > 0] + 1e-12).all()


def test_cells_without_data_fall_back_to_pooled_estimates_and_are_flagged(truth: Instance) -> None:
    logs = simulate(truth, 1000, seed=2)
    first = truth.responses.iloc[0]
    logs = logs[~((logs["segment"] == first["segment"]) & (logs["bundle"] == first["bundle"]))]
    est = estimate(truth, exposures_from_frame(logs, truth, LOCATOR)).responses
    row = est[(est["segment"] == first["segment"]) & (est["bundle"] == first["bundle"])].iloc[0]
    assert row["take_source"] == "pooled" and row["baseline_source"] == "pooled"
    assert row["shown_views"] == 0 and row["take_rate_hi"] > row["take_rate_lo"]
    assert (est.drop(index=row.name)["take_source"] == "data").all()


def test_price_sensitivity_is_never_negative() -> None:
    inst = generate(20, seed=4, responses_per_segment=5)
    logs = simulate(inst, 300, seed=5)
    # More discount, fewer purchases: the unconstrained fit would go negative.
    logs["purchases"] = np.where(logs["discount"] > 0, 0, logs["purchases"])
    for method in ("pooled", "naive"):
        est = estimate(inst, exposures_from_frame(logs, inst, LOCATOR), method)  # type: ignore[arg-type]
        assert (est.responses["price_sensitivity"] >= 0).all()
        assert (est.responses["price_sensitivity_lo"] >= 0).all()


def test_estimated_instance_is_valid_and_solvable(truth: Instance) -> None:
    from optimizer.io import instance_from_document
    from optimizer.io.json_form import instance_to_document

    est = _estimate(truth, 1000, seed=1)
    new = instance_from_document(instance_to_document(est.to_instance(truth)))
    assert len(new.responses) == len(truth.responses)
    plan = plan_document(solve(new, SolveOptions(gap=1e-2, method="exact")))
    assert plan["status"] in ("optimal", "feasible")


def test_evaluate_under_its_own_instance_matches_the_plan(truth: Instance) -> None:
    plan = plan_document(solve(truth, SolveOptions(gap=1e-2, method="exact")))
    report = evaluate_plan(truth, plan)
    assert report.ok
    assert report.objective == pytest.approx(plan["objective"], rel=1e-9)
    assert report.kpis["expected_takes"] == pytest.approx(plan["kpis"]["expected_takes"], rel=1e-9)


def test_evaluate_recomputes_value_under_another_truth(truth: Instance) -> None:
    plan = plan_document(solve(truth, SolveOptions(gap=1e-2, method="exact")))
    offer = plan["offers"][0]
    plan["offers"] = [offer]
    responses = truth.responses.copy()
    hit = (responses["segment"] == offer["segment"]) & (responses["bundle"] == offer["bundle"])
    responses.loc[hit, ["take_rate", "baseline_rate", "price_sensitivity"]] = [0.5, 0.1, 0.0]
    other = dataclasses.replace(truth, responses=responses)
    prices = truth.bundle_prices().loc[offer["bundle"]]
    perks = truth.perks.set_index(["bundle", "id"])
    perk_cost, lift = (0.0, 0.0) if pd.isna(offer["perk"]) else \
        perks.loc[(offer["bundle"], offer["perk"]), ["cost", "lift"]]
    p = 1 / (1 + np.exp(-lift))  # logit(0.5) = 0, sensitivity 0
    views = float(truth.segments.set_index("id").loc[offer["segment"], "views"])
    m = prices["price"] * (1 - offer["discount"]) - prices["unit_cost"] - perk_cost
    value = views * (p * m - 0.1 * (prices["price"] - prices["unit_cost"]))
    assert evaluate_plan(other, plan).objective == pytest.approx(value, rel=1e-9)
