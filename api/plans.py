"""Publication: make a plan active, roll back, read the active plan."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, request

from api.auth import MERCHANDISER, STOREFRONT, requires
from api.body import read_body
from api.openapi import doc
from api.problems import Problem
from api.runs import PLAN_FORMATS, plan_download
from api.schemas import ActivePlan, Publication
from api.store import Store
from api.store.columnar import PARQUET_TYPE
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
    return _publication(_store().rollback(g.actor, to_version))


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
