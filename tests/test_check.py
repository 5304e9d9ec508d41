"""`check_plan` catches every kind of unsound plan."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from optimizer.check import check_plan
from optimizer.io import instance_from_document
from optimizer.plan import plan_document
from optimizer.solve import solve

Plan = dict[str, Any]


@pytest.fixture(scope="module")
def solved() -> tuple[Any, Plan]:
    import json

    from tests.conftest import DATA

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
