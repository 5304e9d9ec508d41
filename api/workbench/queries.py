"""What the pages read from the store, beside the store's own calls: recent runs, and a plan
with its catalog as the pages use them."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

import sqlalchemy as sa
from flask import current_app

from api.store import Store
from api.store.schema import catalog_plans, plans, runs
from api.workbench_job import is_frontier
from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan


def store() -> Store:
    found: Store = current_app.extensions["offeropt.store"]
    return found


def recent_runs(limit: int = 15) -> list[dict[str, Any]]:
    """The latest runs, newest first, with their catalog's name and plan id."""
    query = (sa.select(runs.c.id, runs.c.status, runs.c.options, runs.c.plan_status, runs.c.objective,
                       runs.c.created_at, runs.c.finished_at, runs.c.error,
                       catalog_plans.c.name.label("catalog_name"), plans.c.id.label("plan_id"))
             .join(catalog_plans, catalog_plans.c.id == runs.c.catalog_plan_id)
             .outerjoin(plans, plans.c.run_id == runs.c.id)
             .order_by(runs.c.created_at.desc()).limit(limit))
    with store().engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings().all()]
    for row in rows:
        row["frontier"] = is_frontier(json.loads(row.pop("options")))
    return rows


@dataclass(frozen=True)
class PlanBundle:
    """A stored plan as the pages read it: the plan document and its catalog document
    (both as parsed JSON), its status, and the versions it was published as."""

    plan_id: str
    run_id: str | None
    plan: dict[str, Any]
    catalog: dict[str, Any]
    status: str
    checked: bool
    versions: list[int]

    @property
    def currency(self) -> str | None:
        value = self.catalog.get("currency")
        return str(value) if value else None

    def bundle_names(self) -> dict[str, str]:
        return {str(b["id"]): str(b.get("name") or b["id"]) for b in self.catalog.get("bundles", [])}

    def item_names(self) -> dict[str, str]:
        return {str(i["id"]): str(i.get("name") or i["id"]) for i in self.catalog.get("items", [])}


def plan_bundle(plan_id: str) -> PlanBundle:
    """The plan and its catalog; `NotFound` for an unknown id."""
    s = store()
    row = s.plan_row(plan_id)
    both = s.plan_with_catalog(plan_id)
    return PlanBundle(plan_id, str(row["run_id"]), json.loads(both["plan"]),
                      json.loads(both["catalog"]), str(row["status"]), bool(row["checked"]),
                      both["versions"])


class _Loaded:
    """The last few (instance, plan) pairs built from the store, per web worker: a "why not"
    question asked again and again of one plan validates its catalog once."""

    def __init__(self, most: int = 2) -> None:
        self.most = most
        self.items: OrderedDict[str, tuple[Instance, Plan]] = OrderedDict()
        self.lock = Lock()

    def get(self, bundle: PlanBundle) -> tuple[Instance, Plan]:
        with self.lock:
            if bundle.plan_id in self.items:
                self.items.move_to_end(bundle.plan_id)
                return self.items[bundle.plan_id]
        loaded = (instance_from_document(bundle.catalog, origin="catalog"),
                  Plan.from_dict(bundle.plan))
        with self.lock:
            self.items[bundle.plan_id] = loaded
            while len(self.items) > self.most:
                self.items.popitem(last=False)
        return loaded


LOADED = _Loaded()
