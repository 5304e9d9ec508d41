"""Spec section 8 on a small catalog, one family at a time: each binds, and the plan says so."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from optimizer.formulation.candidates import expand
from optimizer.io import instance_from_document
from optimizer.plan.check import check_plan
from optimizer.plan.document import build_plan
from optimizer.plan.model import Plan
from optimizer.solve.dispatch import SolveOptions, Status, solve

METHODS = ["exact", "lp", "decompose"]

BASE: dict[str, Any] = {
    "format": "offeropt/instance@1", "name": "contacts", "currency": "JPY",
    "items": [{"id": "i0", "price": 1000, "cost": 400}, {"id": "i1", "price": 3000, "cost": 1500},
              {"id": "i2", "price": 500, "cost": 100}],
    "bundles": [{"id": f"b{k}", "kind": "cross_sell", "items": [{"item": f"i{k}", "qty": 1}],
                 "discounts": [0]} for k in range(3)],
    "audiences": [{"id": "A", "customers": 1000}],
    "channels": [{"id": "site"}, {"id": "email"}, {"id": "talk"}],
    "segments": [{"id": "A-cart", "views": 1000, "audience": "A", "channel": "site",
                  "timing": "cart"},
                 {"id": "A-email", "views": 1000, "audience": "A", "channel": "email",
                  "timing": "post-purchase"},
                 {"id": "A-talk", "views": 100, "audience": "A", "channel": "talk",
                  "timing": "renewal"}],
    "responses": [{"segment": s, "bundle": f"b{k}", "take_rate": 0.2}
                  for s in ("A-cart", "A-email", "A-talk") for k in range(3)],
    "policy": {"min_offers_per_view": 0, "max_offers_per_view": 3},
}


def _with(audience: dict[str, Any] | None = None, channel: tuple[str, dict[str, Any]] | None = None,
          policy: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["audiences"][0].update(audience or {})
    if channel is not None:
        next(c for c in doc["channels"] if c["id"] == channel[0]).update(channel[1])
    doc["policy"].update(policy or {})
    return doc


def _solved(doc: dict[str, Any], method: str) -> Plan:
    inst = instance_from_document(doc)
    plan = build_plan(solve(inst, SolveOptions(method=method, gap=0.0)))
    report = check_plan(inst, plan.to_dict())
    assert report.ok, report.violations
    return plan


def _binding(plan: Plan, constraint: str) -> list[dict[str, Any]]:
    return [b for b in plan.binding or () if b["constraint"] == constraint]


@pytest.mark.parametrize("method", METHODS)
def test_the_frequency_cap_binds(method: str) -> None:
    """Uncapped, A sees 3 offers in each context: 6.3 offers per customer; capped at 2."""
    free = _solved(_with(), method)
    plan = _solved(_with({"max_offers_per_customer": 2}), method)
    assert plan.status == Status.OPTIMAL and plan.objective is not None
    assert free.objective is not None and plan.objective < free.objective
    use = (plan.kpis or {})["audiences"]["A"]
    assert use["cap"] == 2 and use["offers_per_customer"] == pytest.approx(2.0)
    assert [b["audience"] for b in _binding(plan, "max_offers_per_customer")] == ["A"]


@pytest.mark.parametrize("method", METHODS)
def test_the_repeat_cap_binds(method: str) -> None:
    """With max_repeats 1, each bundle is offered in one of A's contexts only."""
    plan = _solved(_with({"max_repeats": 1}), method)
    assert plan.status == Status.OPTIMAL
    bundles = plan.offers.frame()["bundle"]
    assert sorted(bundles) == ["b0", "b1", "b2"]
    assert {b["bundle"] for b in _binding(plan, "max_repeats")} == {"b0", "b1", "b2"}


@pytest.mark.parametrize("method", METHODS)
def test_a_channel_capacity_binds(method: str) -> None:
    """1,500 email impressions allow one offer to A-email's 1,000 views."""
    plan = _solved(_with(channel=("email", {"capacity": 1500})), method)
    assert plan.status == Status.OPTIMAL
    offers = plan.offers.frame()
    assert (offers["segment"] == "A-email").sum() == 1
    email = (plan.kpis or {})["channels"]["email"]
    assert email["impressions"] == pytest.approx(1000.0) and email["capacity"] == 1500.0
    # the binding row is the one offer's 1,000 impressions: 500 short of the capacity
    assert not _binding(plan, "channel capacity")


def test_a_binding_capacity_is_named_with_its_multiplier() -> None:
    """At 2,000 impressions the capacity binds exactly; the LP's dual prices it."""
    plan = _solved(_with(channel=("email", {"capacity": 2000})), "lp")
    rows = _binding(plan, "channel capacity")
    assert [b["channel"] for b in rows] == ["email"]
    assert rows[0]["used"] == pytest.approx(2000.0) and rows[0]["limit"] == 2000.0
    assert rows[0].get("multiplier", 0.0) > 0


def test_contact_cost_removes_a_candidate() -> None:
    """b2 earns 80 per talk view (0.2 x 400), b0 120: at 100 per impression only b0 and b1
    are worth a talk."""
    doc = _with(channel=("talk", {"cost_per_impression": 100.0}))
    inst = instance_from_document(doc)
    cands = expand(inst)
    talk = inst.segments["id"].tolist().index("A-talk")
    offered = set(inst.bundles["id"].to_numpy()[cands.bundle[cands.segment == talk]])
    assert offered == {"b0", "b1"}
    plan = _solved(doc, "exact")
    talk_offers = plan.offers.frame().query("segment == 'A-talk'")
    assert set(talk_offers["bundle"]) == {"b0", "b1"}
    assert (plan.kpis or {})["contact_cost"] == pytest.approx(2 * 100 * 100.0)
    margin = talk_offers["expected_incremental_margin"].to_numpy()
    assert margin == pytest.approx([0.2 * 100 * 1500 - 100 * 100, 0.2 * 100 * 600 - 100 * 100])


@pytest.mark.parametrize("method", METHODS)
def test_a_cap_that_conflicts_with_minimum_offers_is_diagnosed(method: str) -> None:
    """Two offers in each of A's contexts need 4.2 offers per customer; the cap is 3."""
    doc = _with({"max_offers_per_customer": 3}, policy={"min_offers_per_view": 2})
    plan = build_plan(solve(instance_from_document(doc), SolveOptions(method=method)))
    assert plan.status == Status.INFEASIBLE
    conflicts = (plan.diagnosis or {})["conflicts"]
    assert [(c["constraint"], c.get("audience")) for c in conflicts] == \
        [("max_offers_per_customer", "A")]
    assert conflicts[0]["needed"] == pytest.approx(4.2) and conflicts[0]["limit"] == 3
