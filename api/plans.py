"""Publication: make a plan active, roll back, read the active plan."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, g, request, stream_with_context

from api.auth import MERCHANDISER, STOREFRONT, requires
from api.body import read_body
from api.offers import served_plan_changed
from api.openapi import doc
from api.problems import Problem
from api.runs import PLAN_FORMATS, PLAN_TYPES, plan_download
from api.schemas import ActivePlan, Publication
from api.store import Store
from api.store.columnar import (
    PARQUET_TYPE,
    SET_COLUMNS,
    csv_chunks,
    parquet_bytes,
    sets_from_table,
)
from optimizer.errors import InputError
from optimizer.io.safe_json import parse_json

plans_api = Blueprint("plans", __name__)


def _store() -> Store:
    store: Store = current_app.extensions["offeropt.store"]
    return store


def _publication(version: int) -> dict[str, Any]:
    return _store().history(limit=1, version=version)[0]


@plans_api.post("/v1/plans/<plan_id>/publish")
@doc("Publish a plan: it becomes the active plan in one transaction", "publication",
     {200: Publication, 409: "The plan is not publishable (infeasible, unchecked)"})
@requires(MERCHANDISER)
def publish(plan_id: str) -> dict[str, Any]:
    version = _store().publish(plan_id, g.actor, current_app.config["PUBLISH_PAUSE_SECONDS"])
    served_plan_changed()
    return _publication(version)


@plans_api.post("/v1/plans/rollback")
@doc("Roll back to the previous plan, or to a given publication version", "publication",
     {200: Publication, 409: "Nothing to roll back to"}, body={"application/json": "RollbackRequest"})
@requires(MERCHANDISER)
def rollback() -> dict[str, Any]:
    data = read_body()
    try:
        body = (parse_json(data, "body") if request.is_json else None) if data else {}
    except InputError:  # not JSON, or past a limit (too deep, a lone surrogate)
        body = None
    if not isinstance(body, dict):
        raise Problem(400, "Bad Request", "body: must be a JSON object or empty")
    to_version = body.get("to_version")
    if to_version is not None and (isinstance(to_version, bool) or not isinstance(to_version, int)
                                   or not 1 <= to_version < 2**63):
        raise Problem(400, "Bad Request",
                      f"to_version: must be a positive 64-bit integer, got {to_version!r}")
    version = _store().rollback(g.actor, to_version)
    served_plan_changed()
    return _publication(version)


@plans_api.get("/v1/plans/active")
@doc("The active plan and its publication; its offers as CSV (Accept: text/csv) or Parquet "
     f"(Accept: {PARQUET_TYPE}), streamed", "publication",
     {200: ActivePlan, 406: "Not acceptable"}, extra_content=PLAN_FORMATS)
@requires(STOREFRONT, MERCHANDISER)
def active_plan() -> Response:
    active = _store().active()
    if active is None:
        raise Problem(404, "Not Found", "no plan has been published yet")
    version, plan_id = int(active["version"]), str(active["plan_id"])
    publication = _publication(version)
    return plan_download(_store(), plan_id, {"X-Offeropt-Plan-Id": plan_id,
                                             "X-Offeropt-Plan-Version": str(version)},
                         lambda plan: {"version": version, "plan_id": plan_id,
                                       "published_at": publication["created_at"],
                                       "published_by": publication["actor"], "plan": plan})


@plans_api.get("/v1/plans/<plan_id>/offer-sets")
@doc("A split plan's offer sets, one row per (set, offer): JSON (as the plan's `offer_sets`) up "
     f"to OFFEROPT_MAX_JSON_PLAN_OFFERS rows, CSV (Accept: text/csv) or Parquet (Accept: "
     f"{PARQUET_TYPE})", "publication",
     {200: "The offer sets", 404: "No such plan, or a plan without offer sets",
      406: "Not acceptable"},
     extra_content={200: {"text/csv": "one row per (set, offer); an empty set is one row "
                                      "without bundle", PARQUET_TYPE: "the same, as Parquet"}})
@requires(MERCHANDISER)
def offer_sets(plan_id: str) -> Response:
    table = _store().stored_plan(plan_id).sets_table()
    if table is None:
        raise Problem(404, "Not Found", f"plan {plan_id!r}: has no offer sets (it shows every "
                      f"view its offers; only a split-traffic plan has sets)")
    headers = {"X-Offeropt-Plan-Id": plan_id}
    wanted = request.accept_mimetypes.best_match(PLAN_TYPES) or "application/json"
    if wanted == "text/csv":
        batches = table.to_batches(max_chunksize=65_536)
        return Response(stream_with_context(csv_chunks(batches, SET_COLUMNS)),
                        mimetype="text/csv", headers=headers)
    if wanted != "application/json":
        return Response(parquet_bytes(table), mimetype=PARQUET_TYPE, headers={
            **headers, "Content-Disposition": f'attachment; filename="sets-{plan_id}.parquet"'})
    most = current_app.config["MAX_JSON_PLAN_OFFERS"]
    if table.num_rows > most:
        raise Problem(406, "Not Acceptable",
                      f"Accept: {table.num_rows:,} rows of offer sets are more than "
                      f"OFFEROPT_MAX_JSON_PLAN_OFFERS ({most:,}) for JSON; ask for "
                      f"Accept: text/csv or Accept: {PARQUET_TYPE}")
    sets = [entry.to_dict() for entry in sets_from_table(table)]
    return Response(json.dumps({"plan_id": plan_id, "offer_sets": sets}),
                    mimetype="application/json", headers=headers)
