"""The typed plan: what the writer makes reads back the same, its schema names the same
fields, and a reader gets every wrong field of a document named with its path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from optimizer.errors import InputError
from optimizer.io import instance_from_document
from optimizer.plan import model, schema
from optimizer.plan.document import build_plan
from optimizer.plan.model import OFFER_FIELDS, Plan, Status
from optimizer.plan.schema import Kpis, PlanDocument, PlanOffer
from optimizer.solve.dispatch import SolveOptions, solve
from tests.constants import DATA
from tests.split_helpers import split_solution, tight_demo


def _solved(name: str, **options: Any) -> Plan:
    inst = instance_from_document(json.loads((DATA / name).read_text()))
    return build_plan(solve(inst, SolveOptions(**options)))


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {"integral": _solved("demo.json"), "split": build_plan(split_solution(tight_demo())),
            "infeasible": _solved("demo_infeasible.json"),
            "no time": _solved("demo.json", time_limit=1e-9, method="exact")}


@pytest.mark.parametrize("kind", ["integral", "split", "infeasible", "no time"])
def test_the_writers_plans_read_back_unchanged(plans: dict[str, Plan], kind: str) -> None:
    text = json.dumps(plans[kind].to_dict(), indent=2)
    assert json.dumps(Plan.from_dict(json.loads(text)).to_dict(), indent=2) == text
    assert Plan.from_dict(json.loads(text)) == Plan.from_dict(json.loads(text))
    PlanDocument.model_validate_json(text)  # the documented schema accepts it


def test_the_statuses_cover_every_kind_of_plan(plans: dict[str, Plan]) -> None:
    assert {p.status for p in plans.values()} == {Status.OPTIMAL, Status.INFEASIBLE,
                                                   Status.TIME_LIMIT}
    assert plans["infeasible"].diagnosis is not None and not len(plans["infeasible"].offers)


def test_the_schema_names_the_fields_the_plan_has(plans: dict[str, Plan]) -> None:
    assert tuple(PlanOffer.model_fields) == OFFER_FIELDS
    section_8 = {"contact_cost", "roi", "channels", "audiences"}  # with audiences or channels
    assert set(Kpis.model_fields) == set(plans["integral"].kpis or {}) | section_8
    assert set(Kpis.model_fields) == set(_solved("demo_contacts.json").kpis or {})
    assert tuple(schema.SetOffer.model_fields) == model.SetOffer._fields
    assert tuple(schema.OfferSet.model_fields) == model.OfferSet._fields
    assert tuple(PlanDocument.model_fields) == (*plans["split"].to_dict(), "exploration",
                                                "diagnosis", "message")


def test_unknown_top_level_fields_survive_a_round_trip(plans: dict[str, Plan]) -> None:
    doc = {**plans["integral"].to_dict(), "x-merchandiser-note": "spring sale"}
    assert Plan.from_dict(doc).to_dict()["x-merchandiser-note"] == "spring sale"


def test_a_reader_gets_every_wrong_field_named(plans: dict[str, Plan]) -> None:
    doc = copy.deepcopy(plans["split"].to_dict())
    doc.update(format="offeropt/plan@2", status="done", objective="high", warnings=[3])
    doc["offers"][0].update(share="1", price=None)
    doc["offers"][1] = 7
    doc["offer_sets"][0]["weight"] = "half"
    with pytest.raises(InputError) as caught:
        Plan.from_dict(doc)
    shown = [str(i) for i in caught.value.issues]
    assert shown == [
        "format: must be 'offeropt/plan@1', got 'offeropt/plan@2'",
        "status: must be one of ['error', 'feasible', 'infeasible', 'optimal', 'time_limit'], "
        "got 'done'",
        "objective: must be a finite number or null, got 'high'",
        "offers[0].share: must be a number in (0, 1], got '1'",
        "offers[0].price: must be a finite number, got None",
        "offers[1]: must be an object, got 7",
        "warnings: must be a list of strings, got [3]",
        "offer_sets[0].weight: must be a number in (0, 1], got 'half'",
    ]
    with pytest.raises(InputError, match="plan: must be a JSON object, got"):
        Plan.from_dict([doc])


def test_the_offer_table_types_its_columns(plans: dict[str, Plan]) -> None:
    frame = plans["integral"].offers.frame()
    assert list(frame.columns) == list(OFFER_FIELDS)
    assert frame["share"].dtype == float and frame["segment"].dtype == object
    assert plans["integral"].offer_keys().columns.tolist() == ["segment", "bundle", "discount",
                                                               "perk"]
