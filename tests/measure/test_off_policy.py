"""Off-policy estimates from served logs: the logging plan's own value comes back as the
on-policy average; DR has less variance than IPS; a never-logged target action is valued by
the model and flagged."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from optimizer.measure import off_policy
from optimizer.measure.simulate import simulate_served
from optimizer.model.instance import Instance
from tests.measure.helpers import (
    EXPLOIT,
    EXPLORE,
    INTEGRAL,
    SPLIT,
    SetSpec,
    demo,
    make_plan,
    true_value_per_view,
)


@pytest.fixture(scope="module")
def inst() -> Instance:
    return demo()


@pytest.mark.parametrize("spec", [SPLIT, INTEGRAL], ids=["split", "integral"])
def test_the_logging_plan_is_estimated_at_its_on_policy_average(
        inst: Instance, spec: dict[str, list[SetSpec]]) -> None:
    plan = make_plan(inst, spec)
    e = off_policy(simulate_served(inst, plan, seed=8), inst, plan)
    on = e.on_policy.value
    assert on is not None and on > 0
    # every importance weight is 1: IPS and SNIPS are the logged average, to rounding
    assert e.ips.value == pytest.approx(on, rel=1e-12)
    assert e.snips.value == pytest.approx(on, rel=1e-12)
    assert e.ips.se == pytest.approx(e.on_policy.se, rel=1e-9)
    # DR adds the model's correction mean(DM(s) - q(s, a_i)), zero but for the realized split
    assert e.dr.value == pytest.approx(on, abs=0.1 * e.dr.se)  # type: ignore[operator]
    assert e.unsupported_share == 0 and e.effective_views == pytest.approx(e.views)
    assert e.holdout == inst.policy.holdout_fraction and not e.warnings


def test_dr_has_less_variance_than_ips_and_both_find_the_truth(inst: Instance) -> None:
    # Where takes are common (40%), what an action earns on average is a large part of the
    # rewards' spread: IPS carries it, weighted up to 1 / 0.15, and DR takes it out.
    truth_inst = dataclasses.replace(inst, responses=inst.responses.assign(take_rate=0.4))
    logging, target = make_plan(truth_inst, EXPLORE), make_plan(truth_inst, EXPLOIT)
    estimates = [off_policy(simulate_served(truth_inst, logging, scale=0.5, seed=seed),
                            truth_inst, target) for seed in range(12)]
    views = inst.segments.set_index("id")["views"].loc[list(EXPLORE)]
    truth = true_value_per_view(truth_inst, EXPLOIT, views, inst.policy.holdout_fraction)
    ips = np.array([e.ips.value for e in estimates])
    dr = np.array([e.dr.value for e in estimates])
    assert dr.std() < 0.8 * ips.std(), (dr.std(), ips.std())
    assert all(e.dr.se < 0.8 * e.ips.se for e in estimates)  # type: ignore[operator]
    assert abs(dr.mean() - truth) < 3 * dr.std() / np.sqrt(len(dr))
    assert sum(e.dr.covers(truth) for e in estimates) >= 10
    assert sum(e.ips.covers(truth) for e in estimates) >= 10
    assert estimates[0].unsupported_share == 0
    assert estimates[0].expected_per_view == pytest.approx(truth, rel=1e-9)


def test_a_target_action_never_logged_is_valued_by_the_model_and_flagged(inst: Instance) -> None:
    logging = make_plan(inst, INTEGRAL)
    unseen = {"champions-cart": [("z", 1.0, [("hair-duo", 0.2, None)])],
              "loyal-cart": INTEGRAL["loyal-cart"]}
    target = make_plan(inst, unseen)
    logs = simulate_served(inst, logging, scale=4, seed=3)
    e = off_policy(logs, inst, target)
    views = inst.segments.set_index("id")["views"].loc[list(INTEGRAL)]
    truth = true_value_per_view(inst, unseen, views, inst.policy.holdout_fraction)
    share = views["champions-cart"] * (1 - inst.policy.holdout_fraction) / views.sum()
    assert e.unsupported_share == pytest.approx(share, rel=0.02)  # logged views, not planned
    assert any("never served" in w for w in e.warnings)
    assert e.dr.covers(truth) and e.dm.value == pytest.approx(truth, rel=0.02)
    assert e.dm.se is None and e.dm.lo is None
    assert not e.ips.covers(truth)  # it cannot see champions-cart's new set
    doc = json.loads(json.dumps(e.to_dict(), allow_nan=False))
    assert doc["format"] == "offeropt/off-policy@1" and doc["dm"]["lo"] is None


def test_segments_the_target_serves_nothing_earn_nothing(inst: Instance) -> None:
    logging = make_plan(inst, INTEGRAL)
    only = {"loyal-cart": INTEGRAL["loyal-cart"]}
    e = off_policy(simulate_served(inst, logging, seed=6), inst, make_plan(inst, only),
                   holdout=0.0)
    views = inst.segments.set_index("id")["views"].loc[list(INTEGRAL)]
    truth = true_value_per_view(inst, only, views, 0.0)
    assert e.dr.covers(truth) and e.holdout == 0.0
    assert e.unsupported_share == 0  # showing nothing was logged: the holdout
