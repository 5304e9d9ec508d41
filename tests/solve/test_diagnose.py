"""Infeasible instances are diagnosed: conflicting families, items and segments."""

from __future__ import annotations

import json
from typing import Any

import pytest

from optimizer.io import instance_from_document
from optimizer.solve.dispatch import SolveOptions, Status, solve
from tests.constants import DATA


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_stock_conflict_is_named_by_both_backends(solver: str) -> None:
    # A regression guard too: unnormalized elastic rows made HiGHS's presolve return a
    # wrong "optimal" relaxation here (three rows relaxed instead of one).
    doc = json.loads((DATA / "demo_infeasible.json").read_text())
    solution = solve(instance_from_document(doc), SolveOptions(solver=solver))
    assert solution.status == Status.INFEASIBLE
    assert solution.diagnosis is not None
    conflicts = solution.diagnosis.conflicts
    assert [(c.family, c.item) for c in conflicts] == [("inventory", "lens-35")]
    assert conflicts[0].limit == 40
    assert set(conflicts[0].segments) == {"champions-product", "champions-cart"}


def test_budget_conflict_is_named(demo_doc: dict[str, Any]) -> None:
    for bundle in demo_doc["bundles"]:
        bundle["discounts"] = [0.1, 0.2]  # every offer costs promotion money
    demo_doc["policy"]["promotion_budget"] = 1000
    for item in demo_doc["items"]:
        item["stock"] = None
    solution = solve(instance_from_document(demo_doc))
    assert solution.status == Status.INFEASIBLE
    assert solution.diagnosis is not None
    families = {c.family for c in solution.diagnosis.conflicts}
    assert "promotion_budget" in families
    budget = next(c for c in solution.diagnosis.conflicts if c.family == "promotion_budget")
    assert budget.activity > 1000 and budget.segments
