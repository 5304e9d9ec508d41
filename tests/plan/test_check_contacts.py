"""`check_plan` on audiences, channels and contact costs (spec section 8): rows 8-10, the
contact cost inside each offer's value and the candidate rule, and the section 8 KPIs.

Plans come from the solver on the demo catalog without section 8 (integral) and from the
split-traffic helper (shares < 1); the section 8 figures are then added by hand here, from the
spec's formulas, so neither side of a test is the checker itself.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan, evaluate_plan
from optimizer.solve.dispatch import solve
from tests.constants import DATA
from tests.plans import plan_document

Plan = dict[str, Any]
NAN = math.nan
AUDIENCE = {"champions-cart": "champions", "champions-product": "champions",
            "loyal-checkout": "loyal", "at-risk-account": "loyal",
            "bargain-hunters-cart": "bargain"}
CHANNEL = {"champions-cart": "site", "champions-product": "site", "loyal-checkout": "site",
           "potential-loyalists-product": "site", "new-customers-product": "site",
           "bargain-hunters-cart": "site", "hibernating-email": "email",
           "at-risk-account": "account", "saas-trial-account": "account",
           "saas-power-users-account": "account"}


def _with_contacts(inst: Instance, audiences: dict[str, tuple[float, float, float]] | None = None,
                   channels: dict[str, tuple[float, float]] | None = None) -> Instance:
    """`inst` with audiences {id: (customers, max_offers_per_customer, max_repeats)} and
    channels {id: (capacity, cost_per_impression)}, NaN for no cap; segments as above."""
    audiences = {"champions": (4000, NAN, NAN), "loyal": (6000, NAN, NAN), "bargain": (5000, NAN, NAN),
                 **(audiences or {})}
    channels = {"site": (NAN, 0.5), "email": (NAN, 2.0), "account": (NAN, 0.0),
                "cs-talk": (800, 350.0), **(channels or {})}  # cs-talk: referenced by no segment
    ids = inst.segments["id"].tolist()
    return dataclasses.replace(
        inst,
        segments=inst.segments.assign(audience=pd.Series([AUDIENCE.get(s) for s in ids], dtype=object),
                                      channel=pd.Series([CHANNEL.get(s) for s in ids], dtype=object)),
        audiences=pd.DataFrame([(i, float(n), float(f), float(k)) for i, (n, f, k) in audiences.items()],
                               columns=["id", "customers", "max_offers_per_customer", "max_repeats"]),
        channels=pd.DataFrame([(i, float(c), float(p)) for i, (c, p) in channels.items()],
                              columns=["id", "capacity", "cost_per_impression"]))


def _section_8(inst: Instance, plan: Plan, kpis: bool = True) -> Plan:
    """`plan` (solved without section 8) with the contact cost in its values, and, with `kpis`,
    the section 8 KPIs: the spec's formulas, one offer at a time."""
    plan = copy.deepcopy(plan)
    views = dict(zip(inst.segments["id"], inst.segments["views"], strict=True))
    seg_channel = dict(zip(inst.segments["id"], inst.segments["channel"], strict=True))
    seg_audience = dict(zip(inst.segments["id"], inst.segments["audience"], strict=True))
    chans = inst.channels.set_index("id")
    auds = inst.audiences.set_index("id")
    contact, impressions = 0.0, {c: 0.0 for c in set(seg_channel.values()) - {None}}
    per_customer = {a: 0.0 for a in set(seg_audience.values()) - {None}}
    for o in plan["offers"]:
        seen = o["share"] * views[o["segment"]]
        channel, audience = seg_channel[o["segment"]], seg_audience[o["segment"]]
        if channel is not None:
            o["expected_incremental_margin"] -= seen * chans.at[channel, "cost_per_impression"]
            contact += seen * chans.at[channel, "cost_per_impression"]
            impressions[channel] += seen
        if audience is not None:
            per_customer[audience] += seen / auds.at[audience, "customers"]
    objective = sum(o["expected_incremental_margin"] for o in plan["offers"])
    plan["objective"] = objective
    plan["bound"] = plan["gap"] = None
    plan["kpis"]["expected_incremental_margin"] = objective
    if kpis:
        def cap(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        plan["kpis"].update(
            contact_cost=contact, roi=objective / (plan["kpis"]["promotion_spend"] + contact),
            channels={c: {"impressions": n, "capacity": cap(chans.at[c, "capacity"])}
                      for c, n in impressions.items()},
            audiences={a: {"offers_per_customer": n, "cap": cap(auds.at[a, "max_offers_per_customer"])}
                       for a, n in per_customer.items()})
    return plan


@pytest.fixture(scope="module")
def demo() -> tuple[Instance, Plan]:
    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    return inst, plan_document(solve(inst))


@pytest.fixture(scope="module")
def split() -> tuple[Instance, Plan]:
    from tests.split_helpers import split_solution, tight_demo

    inst = tight_demo()
    return inst, plan_document(split_solution(inst))


@pytest.fixture(params=["integral", "split"])
def base(request: pytest.FixtureRequest, demo: tuple[Instance, Plan],
         split: tuple[Instance, Plan]) -> tuple[Instance, Plan]:
    return demo if request.param == "integral" else split


def test_plan_with_contact_costs_and_kpis_passes(base: tuple[Instance, Plan]) -> None:
    inst, plan = _with_contacts(base[0]), base[1]
    doc = _section_8(inst, plan)
    report = check_plan(inst, doc)
    assert report.ok, report.violations
    assert report.objective == pytest.approx(doc["objective"], rel=1e-9)
    assert report.kpis["contact_cost"] == pytest.approx(doc["kpis"]["contact_cost"], rel=1e-9)
    assert report.kpis["roi"] == pytest.approx(doc["kpis"]["roi"], rel=1e-9)
    assert set(report.kpis["channels"]) == {"site", "email", "account"}  # not cs-talk
    assert report.kpis["channels"]["email"] == {"impressions": 15000.0, "capacity": None}
    assert set(report.kpis["audiences"]) == {"champions", "loyal", "bargain"}
    assert report.kpis["audiences"]["champions"]["cap"] is None


def test_section_8_kpis_are_compared_only_when_claimed(demo: tuple[Instance, Plan]) -> None:
    inst = _with_contacts(demo[0])
    report = check_plan(inst, _section_8(inst, demo[1], kpis=False))
    assert report.ok, report.violations
    assert {"contact_cost", "roi", "channels", "audiences"} <= set(report.kpis)


def test_instance_without_section_8_is_checked_as_before(demo: tuple[Instance, Plan]) -> None:
    inst, plan = demo
    report = check_plan(inst, plan)
    assert report.ok, report.violations
    assert not {"contact_cost", "roi", "channels", "audiences"} & set(report.kpis)


# -- rows 8-10: just within passes, just over is named with its row and id ----------------------

# (row, the instance's caps at the plan's own figure times `factor`, the message just over)
ROWS: list[tuple[str, Callable[[float], dict[str, Any]], dict[str, float], str]] = [
    # champions: (12000 * 1 + 30000 * 2) / 4000 = 18 offers per customer in the integral plan
    ("row 8", lambda f: {"audiences": {"champions": (4000, 18.0 * f, NAN)}},
     {"within": 1.0, "over": 0.999}, "frequency cap (row 8) of audience 'champions'"),
    # laptop-care is offered in both champions segments
    ("row 9", lambda f: {"audiences": {"champions": (4000, NAN, 2 if f >= 1 else 1)}},
     {"within": 1.0, "over": 0.5}, "repeat cap (row 9) of audience 'champions', bundle 'laptop-care'"),
    # hibernating-email shows one offer to all of its 15000 views
    ("row 10", lambda f: {"channels": {"email": (15000.0 * f, 2.0)}},
     {"within": 1.0, "over": 0.999}, "capacity (row 10) of channel 'email'"),
]


@pytest.mark.parametrize(("row", "caps", "factors", "message"), ROWS, ids=[r[0] for r in ROWS])
def test_rows_8_to_10(demo: tuple[Instance, Plan], row: str, caps: Callable[[float], dict[str, Any]],
                      factors: dict[str, float], message: str) -> None:
    within = _with_contacts(demo[0], **caps(factors["within"]))
    doc = _section_8(within, demo[1])
    report = check_plan(within, doc)
    assert report.ok, report.violations
    over = _with_contacts(demo[0], **caps(factors["over"]))
    violations = check_plan(over, _section_8(over, demo[1])).violations
    assert [v for v in violations if "(row " in v] == [v for v in violations if v.startswith(message)]
    assert any(v.startswith(message) for v in violations), violations
    assert any(v.startswith(message) for v in evaluate_plan(over, doc).violations)


def test_frequency_cap_message_gives_the_amounts(demo: tuple[Instance, Plan]) -> None:
    inst = _with_contacts(demo[0], audiences={"champions": (4000, 17.5, NAN)})
    assert ("frequency cap (row 8) of audience 'champions': offers per customer must be <= 17.5, "
            "got 18") in check_plan(inst, _section_8(inst, demo[1])).violations


def test_split_rows_are_linear_in_share(split: tuple[Instance, Plan]) -> None:
    """laptop-care has shares 0.907 and 0.752 in the champions segments: 1.66 contexts."""
    inst, plan = split
    shares = {(o["segment"], o["bundle"]): o["share"] for o in plan["offers"]}
    repeats = shares["champions-cart", "laptop-care"] + shares["champions-product", "laptop-care"]
    assert 1 < repeats < 2
    # loyal: saas-pro-upgrade as two variants (shares summing to 1) plus at-risk's 1.0
    loose = _with_contacts(inst, audiences={"champions": (4000, NAN, 2), "loyal": (6000, NAN, 2)})
    assert check_plan(loose, _section_8(loose, plan)).ok
    tight = _with_contacts(inst, audiences={"champions": (4000, NAN, 1), "loyal": (6000, NAN, 1)})
    violations = check_plan(tight, _section_8(tight, plan)).violations
    assert any(v.startswith("repeat cap (row 9) of audience 'champions', bundle 'laptop-care': "
                            f"must be offered in <= 1 of its segments, got {repeats:.6g}")
               for v in violations), violations
    assert any(v.startswith("repeat cap (row 9) of audience 'loyal', bundle 'saas-pro-upgrade'")
               for v in violations), violations
    site = sum(o["share"] * float(inst.segments.set_index("id").at[o["segment"], "views"])
               for o in plan["offers"] if CHANNEL[o["segment"]] == "site")
    full = _with_contacts(inst, channels={"site": (site, 0.5)})
    assert check_plan(full, _section_8(full, plan)).ok
    short = _with_contacts(inst, channels={"site": (site * 0.999, 0.5)})
    assert any(v.startswith("capacity (row 10) of channel 'site'")
               for v in check_plan(short, _section_8(short, plan)).violations)


# -- contact cost in the value and the candidate rule ---------------------------------------------


def test_offer_value_must_net_the_contact_cost(base: tuple[Instance, Plan]) -> None:
    inst = _with_contacts(base[0])
    violations = check_plan(inst, base[1]).violations  # claims computed without contact costs
    at = next(i for i, o in enumerate(base[1]["offers"]) if o["segment"] == "hibernating-email")
    assert any(v.startswith(f"offers[{at}].expected_incremental_margin: must be") for v in violations)
    assert any(v.startswith("objective: must be") for v in violations)
    # an offer on a free channel is unaffected
    free = next(i for i, o in enumerate(base[1]["offers"]) if CHANNEL[o["segment"]] == "account")
    assert not any(v.startswith(f"offers[{free}].") for v in violations)


def test_contact_cost_can_make_an_offer_no_candidate(demo: tuple[Instance, Plan]) -> None:
    """hibernating-email's hair-duo is worth 489,600 before 15,000 emails at 40 each."""
    inst = _with_contacts(demo[0], channels={"email": (NAN, 40.0)})
    at = next(i for i, o in enumerate(demo[1]["offers"]) if o["segment"] == "hibernating-email")
    doc = _section_8(inst, demo[1])
    assert doc["offers"][at]["expected_incremental_margin"] < 0
    violations = check_plan(inst, doc).violations
    assert any(v.startswith(f"offers[{at}]: must be a candidate") for v in violations), violations
    allowed = dataclasses.replace(inst, policy=dataclasses.replace(inst.policy, allow_negative_uplift=True))
    assert check_plan(allowed, doc).ok, check_plan(allowed, doc).violations


# -- KPI claims -------------------------------------------------------------------------------------


def _kpi(change: Callable[[dict[str, Any]], Any]) -> Callable[[Plan], None]:
    return lambda p: change(p["kpis"])


KPI_TAMPERING: list[tuple[str, Callable[[Plan], None], str]] = [
    ("contact cost", _kpi(lambda k: k.update(contact_cost=k["contact_cost"] * 1.01)),
     "kpis.contact_cost: must be"),
    ("contact cost not a number", _kpi(lambda k: k.update(contact_cost="12")), "kpis.contact_cost: must be"),
    ("roi", _kpi(lambda k: k.update(roi=k["roi"] * 1.01)), "kpis.roi: must be"),
    ("roi null", _kpi(lambda k: k.update(roi=None)), "kpis.roi: must be"),
    ("roi without contact cost", _kpi(lambda k: k.update(
        roi=k["expected_incremental_margin"] / k["promotion_spend"])), "kpis.roi: must be"),
    ("channel impressions", _kpi(lambda k: k["channels"]["site"].update(impressions=1.0)),
     "kpis.channels.site: must be"),
    ("channel capacity", _kpi(lambda k: k["channels"]["email"].update(capacity=0.0)),
     "kpis.channels.email: must be"),
    ("channel missing", _kpi(lambda k: k["channels"].pop("email")), "kpis.channels: must list exactly"),
    ("unreferenced channel", _kpi(lambda k: k["channels"].update(
        {"cs-talk": {"impressions": 0.0, "capacity": 800.0}})), "kpis.channels: must list exactly"),
    ("audience figure", _kpi(lambda k: k["audiences"]["champions"].update(offers_per_customer=9.0)),
     "kpis.audiences.champions: must be"),
    ("audience cap", _kpi(lambda k: k["audiences"]["loyal"].update(cap=3.0)),
     "kpis.audiences.loyal: must be"),
    ("audience entry not an object", _kpi(lambda k: k["audiences"].update(bargain=1.0)),
     "kpis.audiences.bargain: must be"),
    ("audiences not an object", _kpi(lambda k: k.update(audiences=[])), "kpis.audiences: must list exactly"),
]


@pytest.mark.parametrize(("name", "tamper", "message"), KPI_TAMPERING, ids=[t[0] for t in KPI_TAMPERING])
def test_wrong_section_8_kpi_claims_fail(base: tuple[Instance, Plan], name: str,
                                         tamper: Callable[[Plan], None], message: str) -> None:
    inst = _with_contacts(base[0])
    doc = _section_8(inst, base[1])
    tamper(doc)
    violations = check_plan(inst, doc).violations
    assert violations and all(v.startswith(message) for v in violations), violations


def test_roi_is_null_without_spend_or_contact_cost(demo: tuple[Instance, Plan]) -> None:
    inst = _with_contacts(demo[0])
    inst = dataclasses.replace(inst, segments=inst.segments.assign(min_offers=0.0))
    report = check_plan(inst, dict(demo[1], offers=[], objective=0.0, bound=None, gap=None, kpis={}))
    assert report.kpis["roi"] is None and report.kpis["contact_cost"] == 0.0
    assert report.kpis["channels"]["site"] == {"impressions": 0.0, "capacity": None}
    empty = dict(demo[1], offers=[], objective=0.0, bound=None, gap=None, kpis=report.kpis)
    assert check_plan(inst, empty).ok, check_plan(inst, empty).violations
    claimed = dict(empty, kpis=dict(report.kpis, roi=0.0))
    assert check_plan(inst, claimed).violations == ("kpis.roi: must be None, got 0.0",)
