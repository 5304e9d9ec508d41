"""`check_plan` catches every kind of unsound plan."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from optimizer.io import instance_from_document
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import solve
from tests.plans import plan_document

Plan = dict[str, Any]


@pytest.fixture(scope="module")
def solved() -> tuple[Any, Plan]:
    import json

    from tests.constants import DATA

    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    return inst, plan_document(solve(inst))


def test_solver_plan_passes(solved: tuple[Any, Plan]) -> None:
    inst, plan = solved
    report = check_plan(inst, plan)
    assert report.ok, report.violations
    assert report.objective == pytest.approx(plan["objective"])
    assert report.kpis["expected_takes"] == pytest.approx(plan["kpis"]["expected_takes"])


def _offer(i: int, **fields: Any) -> Callable[[Plan], None]:
    return lambda p: p["offers"][i].update(fields)


TAMPERING: list[tuple[str, Callable[[Plan], None], str]] = [
    ("objective inflated", lambda p: p.update(objective=p["objective"] * 1.01), "objective: must be"),
    ("bound below objective", lambda p: p.update(bound=p["objective"] * 0.9), "bound: must be >="),
    ("price changed", _offer(0, price=1.0), "offers[0].price: must be"),
    ("reference price", _offer(0, reference_price=1.0), "offers[0].reference_price: must be"),
    ("discount off ladder", _offer(0, discount=0.33), "offers[0]: must be a variant"),
    ("unknown perk", _offer(0, perk="jetpack"), "offers[0]: must be a variant"),
    ("share above 1", _offer(0, share=1.5), "offers[0].share: must be in (0, 1]"),
    ("duplicate offer", lambda p: p["offers"].append(copy.deepcopy(p["offers"][0])),
     "at most one variant"),
    ("kpi wrong", lambda p: p["kpis"].update(take_rate=0.9), "kpis.take_rate: must be"),
    ("inventory wrong", lambda p: p["kpis"]["inventory"]["lens-35"].update(used=0.0),
     "kpis.inventory.lens-35"),
    ("wrong instance", lambda p: p.update(instance="other"), "instance: must be 'demo-shop'"),
    ("offers with infeasible status", lambda p: p.update(status="infeasible"),
     "must have no offers"),
    ("too many offers", lambda p: p["offers"].extend(
        [dict(p["offers"][0], bundle=b) for b in ("hair-duo", "lens-and-card", "laptop-pro-upgrade")]),
     "must show between"),
]


@pytest.mark.parametrize(("name", "tamper", "message"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampered_plan_fails(solved: tuple[Any, Plan], name: str, tamper: Callable[[Plan], None],
                             message: str) -> None:
    inst, plan = solved
    plan = copy.deepcopy(plan)
    tamper(plan)
    report = check_plan(inst, plan)
    assert any(message in v for v in report.violations), report.violations


def test_stock_violation_is_caught(solved: tuple[Any, Plan]) -> None:
    inst, plan = solved
    tight = instance_from_document({**_doc_with_stock(inst, "sleeve-14", 10.0)})
    report = check_plan(tight, plan)
    assert any("inventory of 'sleeve-14': must be <= stock 10" in v for v in report.violations)


def _doc_with_stock(inst: Any, item: str, stock: float) -> dict[str, Any]:
    from optimizer.io.json_form import instance_to_document

    doc = instance_to_document(inst)
    for entry in doc["items"]:
        if entry["id"] == item:
            entry["stock"] = stock
    return doc


# -- split traffic (spec section 7): offer sets ------------------------------------------------


@pytest.fixture(scope="module")
def split() -> tuple[Any, Plan]:
    from tests.split_helpers import split_solution, tight_demo

    inst = tight_demo()
    return inst, plan_document(split_solution(inst))


def _set_index(plan: Plan, segment: str, set_id: str) -> int:
    return next(i for i, e in enumerate(plan["offer_sets"])
                if e["segment"] == segment and e["set"] == set_id)


def test_split_plan_passes(split: tuple[Any, Plan]) -> None:
    inst, plan = split
    assert any(e["weight"] < 1 for e in plan["offer_sets"])  # the fixture does split traffic
    report = check_plan(inst, plan)
    assert report.ok, report.violations
    assert report.objective == pytest.approx(plan["objective"])


def test_split_plan_with_an_empty_set_passes() -> None:
    """An empty set is a valid set where the segment may show nothing (lo_eff = 0)."""
    from tests.split_helpers import split_solution, tight_demo_document

    doc = tight_demo_document()
    doc["policy"]["min_offers_per_view"] = 0
    inst = instance_from_document(doc)
    plan = plan_document(split_solution(inst))
    assert any(not e["offers"] for e in plan["offer_sets"])
    report = check_plan(inst, plan)
    assert report.ok, report.violations


def _in_set(segment: str, set_id: str, change: Callable[[dict[str, Any]], None]
            ) -> Callable[[Plan], int]:
    def tamper(plan: Plan) -> int:
        i = _set_index(plan, segment, set_id)
        change(plan["offer_sets"][i])
        return i
    return tamper


def _weights(segment: str, **weights: float) -> Callable[[Plan], int]:
    def tamper(plan: Plan) -> int:
        for set_id, w in weights.items():
            plan["offer_sets"][_set_index(plan, segment, set_id)]["weight"] = w
        return -1
    return tamper


def _add(offers: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    return lambda entry: entry["offers"].extend(offers)


def _plan_level(change: Callable[[Plan], None]) -> Callable[[Plan], int]:
    def tamper(plan: Plan) -> int:
        change(plan)
        return -1
    return tamper


SAAS_10 = {"bundle": "saas-pro-upgrade", "discount": 0.1, "perk": None}
SPLIT_TAMPERING: list[tuple[str, Callable[[Plan], int], str]] = [
    ("weight above 1", _in_set("new-customers-product", "a", lambda e: e.update(weight=1.2)),
     "offer_sets[{i}].weight: must be in (0, 1], got 1.2"),
    ("weight zero", _in_set("champions-cart", "b", lambda e: e.update(weight=0)),
     "offer_sets[{i}].weight: must be in (0, 1], got 0"),
    ("weights sum below 1", _weights("champions-cart", b=0.05),
     "segment 'champions-cart': offer set weights must sum to 1, got 0.957"),
    ("weights moved between sets", _weights("champions-cart", a=0.8, b=0.2),
     "share: must be the total weight of the offer sets holding it, 0.8, got 0.907"),
    ("set id twice", _in_set("champions-cart", "b", lambda e: e.update(set="a")),
     "offer_sets[{i}].set: must be unique within segment 'champions-cart', got 'a' again"),
    ("set id empty", _in_set("champions-cart", "b", lambda e: e.update(set="")),
     "offer_sets[{i}].set: must be a non-empty string, got ''"),
    ("unknown segment", _in_set("champions-cart", "b", lambda e: e.update(segment="nobody")),
     "offer_sets[{i}].segment: must be a segment of the instance, got 'nobody'"),
    ("explore not a boolean", _in_set("champions-cart", "a", lambda e: e.update(explore="no")),
     "offer_sets[{i}].explore: must be true or false, got 'no'"),
    ("offers not a list", _in_set("champions-cart", "a", lambda e: e.update(offers="x")),
     "offer_sets[{i}].offers: must be a list of objects"),
    ("not a candidate", _in_set("hibernating-email", "a",
                                lambda e: e["offers"][0].update(discount=0.33)),
     "offer_sets[{i}].offers[0]: must be a candidate of segment 'hibernating-email', got "
     "('hair-duo', 0.33, None)"),
    ("not one of the plan's offers", _in_set("loyal-checkout", "a",
                                             lambda e: e["offers"][1].update(discount=0.1)),
     "offer_sets[{i}].offers[1]: must be one of the plan's offers, got ('loyal-checkout', "
     "'hair-duo', 0.1, None)"),
    ("two variants of a bundle", _in_set("loyal-checkout", "a",
                                         lambda e: e["offers"].__setitem__(0, SAAS_10)),
     "offer_sets[{i}]: at most one variant per bundle, got 2 of bundle 'saas-pro-upgrade'"),
    ("two bundles of an exclusion group", _in_set("champions-product", "a", _add([
        {"bundle": "camera-a7-upgrade", "discount": 0.0, "perk": None},
        {"bundle": "camera-lens-kit", "discount": 0.0, "perk": None}])),
     "offer_sets[{i}]: at most one bundle per exclusion group, got 2 in group 'camera-tier' "
     "(camera-a7-upgrade, camera-lens-kit)"),
    ("empty set where an offer is required", _in_set("new-customers-product", "a",
                                                     lambda e: e.update(offers=[])),
     "offer_sets[{i}]: must hold between 1 and 2 offers, got 0"),
    ("too many offers in a set", _in_set("at-risk-account", "a", _add([
        {"bundle": "lens-and-card", "discount": 0.0, "perk": None}])),
     "offer_sets[{i}]: must hold between 1 and 3 offers, got 4"),
    ("segment with offers but no sets", _plan_level(lambda p: p.update(offer_sets=[
        e for e in p["offer_sets"] if e["segment"] != "saas-trial-account"])),
     "segment 'saas-trial-account': has offers, so must have offer sets"),
    ("offer_sets not a list", _plan_level(lambda p: p.update(offer_sets={})),
     "offer_sets: must be a list of objects"),
    ("sets on a plan without offers", _plan_level(lambda p: p.update(status="infeasible",
                                                                     offers=[])),
     "offer_sets: a plan with status 'infeasible' must have no offer sets"),
]


@pytest.mark.parametrize(("name", "tamper", "message"), SPLIT_TAMPERING,
                         ids=[t[0] for t in SPLIT_TAMPERING])
def test_tampered_split_plan_fails(split: tuple[Any, Plan], name: str,
                                   tamper: Callable[[Plan], int], message: str) -> None:
    inst, plan = split
    plan = copy.deepcopy(plan)
    i = tamper(plan)
    expected = message.format(i=i)
    report = check_plan(inst, plan)
    assert any(expected in v for v in report.violations), report.violations
