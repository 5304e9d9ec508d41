"""Our off-policy estimates against the Open Bandit Pipeline's (`obp`), on the same logs.

The served logs are expanded into one round per view (`optimizer.measure.feedback`), and
obp's estimators get the target plan's action distribution and our direct-method model's
rewards. IPS, SNIPS, DM and DR must agree to 1e-9, relative.

requirements.lock installs obp 0.4.1, with the CPU build of torch that this machine kind
keeps in /opt/wheels, on Linux x86_64 with Python 3.11 (its markers). There a missing obp
fails the run; elsewhere the lock leaves obp out and this module is skipped.
"""

from __future__ import annotations

import platform
import re
import sys

import numpy as np
import pytest

from optimizer.measure import off_policy
from optimizer.measure.feedback import bandit_feedback
from optimizer.measure.simulate import simulate_served
from optimizer.model.instance import Instance
from tests.constants import ROOT
from tests.measure.helpers import INTEGRAL, SPLIT, SetSpec, demo, make_plan

LOCKED_HERE = sys.platform == "linux" and platform.machine() == "x86_64" and \
    sys.version_info[:2] == (3, 11) and \
    re.search(r"^obp==", (ROOT / "requirements.lock").read_text(), re.MULTILINE) is not None
if LOCKED_HERE:
    import obp.ope as ope  # the lock installs it here: its absence is an error, not a skip
else:
    ope = pytest.importorskip("obp.ope", reason="the lock installs obp on Linux x86_64, "
                              "Python 3.11 only")

UNSEEN: dict[str, list[SetSpec]] = {"champions-cart": [("z", 1.0, [("hair-duo", 0.2, None)])],
          "loyal-cart": [("a", 0.5, [("hair-duo", 0.0, None), ("laptop-care", 0.05, None)]),
                         ("b", 0.5, [])]}


@pytest.fixture(scope="module")
def inst() -> Instance:
    return demo()


@pytest.mark.parametrize(("target", "holdout"), [(INTEGRAL, None), (SPLIT, None), (UNSEEN, 0.0)],
                         ids=["logging-plan", "split-plan", "unseen-sets"])
def test_obp_agrees_with_our_estimates_on_the_same_logs(
        inst: Instance, target: dict[str, list[SetSpec]], holdout: float | None) -> None:
    logs = simulate_served(inst, make_plan(inst, INTEGRAL), scale=0.3, seed=12)
    plan = make_plan(inst, target)
    ours = off_policy(logs, inst, plan, holdout=holdout)
    rounds = bandit_feedback(logs, inst, plan, holdout=holdout)
    assert len(rounds["reward"]) == ours.views
    logged = dict(reward=rounds["reward"], action=rounds["action"], pscore=rounds["pscore"],
                  action_dist=rounds["action_dist"], position=rounds["position"])
    model = rounds["estimated_rewards_by_reg_model"]
    theirs = {
        "ips": ope.InverseProbabilityWeighting().estimate_policy_value(**logged),
        "snips": ope.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**logged),
        "dr": ope.DoublyRobust().estimate_policy_value(**logged, estimated_rewards_by_reg_model=model),
        "dm": ope.DirectMethod().estimate_policy_value(
            position=rounds["position"], action_dist=rounds["action_dist"],
            estimated_rewards_by_reg_model=model),
    }
    for name, value in theirs.items():
        assert getattr(ours, name).value == pytest.approx(float(value), rel=1e-9, abs=1e-9), name
    assert ours.on_policy.value == pytest.approx(float(np.mean(rounds["reward"])), rel=1e-9)
