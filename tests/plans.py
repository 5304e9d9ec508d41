"""Plans for tests: a solution's plan document as JSON, and a bare plan for store tests."""

from __future__ import annotations

from typing import Any

from optimizer.plan.document import build_plan
from optimizer.plan.model import OfferTable, Plan, Status
from optimizer.solve.result import Solution


def plan_document(solution: Solution) -> dict[str, Any]:
    """The plan of `solution` as the JSON document `offeropt solve -o` writes."""
    return build_plan(solution).to_dict()


def bare_plan(status: str = "optimal") -> Plan:
    """A plan with no offers and no figures: what a store keeps, as far as it cares."""
    return Plan(instance="catalog", status=Status(status), objective=None, bound=None, gap=None,
                offers=OfferTable.empty())
