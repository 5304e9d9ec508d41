"""Measurement from served logs: figures converge on a known truth within their intervals,
the intervals cover it at about their level, per-group rows add up, and the plan's own
expectation is carried over to the logged views."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from optimizer.measure import measure, measurement_html
from optimizer.measure.measure import default_grouping
from optimizer.measure.simulate import simulate_served
from optimizer.model.instance import Instance
from tests.measure.helpers import INTEGRAL, SPLIT, demo, make_plan, realized_truth


@pytest.fixture(scope="module")
def inst() -> Instance:
    return demo()


def test_figures_converge_on_the_truth_within_their_intervals(inst: Instance) -> None:
    plan = make_plan(inst, INTEGRAL)
    logs = simulate_served(inst, plan, scale=40, seed=5)  # about 3.3M views
    m = measure(logs, inst, plan)
    truth = realized_truth(inst, logs)
    views = m.views
    assert m.take_rate.covers(truth["takes"] / truth["impressions"])
    assert m.attach_rate.covers(truth["takes"] / views)
    assert m.incremental_margin_per_view.covers(truth["margin"] / views)
    assert abs(m.incremental_margin.value / truth["margin"] - 1) < 0.03  # type: ignore[operator]
    assert m.incremental_margin_per_view.se < 0.015 * truth["margin"] / views  # type: ignore[operator]
    # the plan's expectation on the same views is the truth's (the plan was made from it)
    assert m.expected_incremental_margin == pytest.approx(truth["margin"], rel=1e-9)
    assert m.expected_takes == pytest.approx(truth["takes"], rel=1e-9)
    assert m.realized_over_expected == pytest.approx(1.0, abs=0.03)


def test_intervals_cover_the_truth_at_about_their_level(inst: Instance) -> None:
    plan = make_plan(inst, INTEGRAL)
    seeds = range(20)  # over 200 seeds the three cover 96%, 96.5% and 96%
    hits = np.zeros((len(seeds), 3), dtype=bool)
    for k, seed in enumerate(seeds):
        logs = simulate_served(inst, plan, scale=0.5, seed=seed)
        m = measure(logs, inst, plan)
        truth = realized_truth(inst, logs)
        hits[k] = (m.take_rate.covers(truth["takes"] / truth["impressions"]),
                   m.attach_rate.covers(truth["takes"] / m.views),
                   m.incremental_margin_per_view.covers(truth["margin"] / m.views))
    coverage = hits.mean(axis=0)
    assert (coverage >= 17 / 20).all() and hits.mean() < 1.0, coverage  # not wider than needed


def test_groups_add_up_to_the_totals_and_follow_the_audiences(inst: Instance) -> None:
    plan = make_plan(inst, SPLIT)
    m = measure(simulate_served(inst, plan, seed=2, version=7), inst, plan)
    g = m.groups
    assert m.version == 7 and m.group_by == "audience" == default_grouping(inst)
    assert set(g["group"]) == {"champions", "loyal", "saas-trial"}
    for column, total in (("views", m.views), ("takes", m.takes), ("impressions", m.impressions),
                          ("expected_incremental_margin", m.expected_incremental_margin),
                          ("promotion_spend", m.promotion_spend), ("contact_cost", m.contact_cost)):
        assert g[column].sum() == pytest.approx(total, rel=1e-12), column
    assert g["incremental_margin"].sum() == pytest.approx(m.incremental_margin.value, rel=1e-9)
    lo, hi = g["incremental_margin_per_view_lo"], g["incremental_margin_per_view_hi"]
    assert ((lo <= g["incremental_margin_per_view"]) & (g["incremental_margin_per_view"] <= hi)).all()
    # views served the empty sets are not logged: estimated from the propensities
    assert m.baseline["unlogged_views"] > 0
    assert m.contact_cost > 0  # the renewal talk and the emails cost per impression


def test_segments_without_audience_channel_or_timing_are_their_own_group(inst: Instance) -> None:
    bare = dataclasses.replace(inst, segments=inst.segments.assign(audience=None, channel=None,
                                                                   timing=None))
    plan = make_plan(bare, INTEGRAL)
    m = measure(simulate_served(bare, plan, seed=1), bare, plan)
    assert m.group_by == "segment" and set(m.groups["group"]) == set(INTEGRAL)
    by_timing = measure(simulate_served(inst, plan, seed=1), inst, plan, group_by="timing")
    assert set(by_timing.groups["group"]) == {"cart", "product-page", "post-purchase"}


def test_the_measurement_is_json_safe_and_its_page_self_contained(inst: Instance) -> None:
    plan = make_plan(inst, SPLIT)
    m = measure(simulate_served(inst, plan, seed=3), inst, plan)
    doc = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert doc["format"] == "offeropt/measurement@1" and doc["level"] == 0.95
    assert {"value", "se", "lo", "hi"} == set(doc["incremental_margin_per_view"])
    assert doc["roi"]["value"] is None or doc["roi"]["lo"] < doc["roi"]["value"] < doc["roi"]["hi"]
    assert len(doc["groups"]) == len(m.groups) and doc["groups"][0]["group"] == "champions"
    page = measurement_html(m, title="<b>spring</b>")
    assert page.count("<svg") == 2 and "&lt;b&gt;spring" in page and "<b>spring" not in page
    assert not any(f"{a}='http" in page or f'{a}="http' in page for a in ("src", "href"))
    assert "<script" not in page and "<link" not in page
    assert "id='groups'" in page and "id='figures'" in page


def test_logs_without_holdout_rest_on_the_instance_baseline_and_say_so(inst: Instance) -> None:
    plan = make_plan(inst, INTEGRAL)
    logs = simulate_served(inst, plan, seed=4, holdout=0.0)
    m = measure(logs[logs["shown"] == 1], inst, plan)
    assert m.holdout_views == 0 and m.baseline["pairs_without_holdout"] == m.baseline["pairs"]
    assert any("no holdout views" in w for w in m.warnings)
    truth = realized_truth(inst, logs)
    assert m.incremental_margin_per_view.covers(truth["margin"] / m.views)
