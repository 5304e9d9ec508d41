"""`GET /v1/plans/{id}/measurement`: what a published plan realized in the recorded logs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from api.auth import MERCHANDISER, requires
from api.openapi import Param, doc
from api.problems import Problem
from api.store import Store
from api.store.logs import recorded_logs
from optimizer.io.fields import Locator

measurement_api = Blueprint("measurement", __name__)


@measurement_api.get("/v1/plans/<plan_id>/measurement")
@doc("What a published plan realized in the recorded logs: take and attach rates, incremental "
     "margin against the holdout, AOV increment and ROI with 95% intervals, per segment group "
     "against the plan's expectation; with `against`, another plan's value estimated off-policy "
     "from the same views (docs/measurement.md)", "publication",
     {200: "The measurement (JSON), or the report page with Accept: text/html",
      409: "The plan has no recorded views yet"},
     params=(Param("version", "query", "the publication version to measure (default: the "
                   "plan's latest)"),
             Param("against", "query", "a plan id: estimate its value from these logs")))
@requires(MERCHANDISER)
def plan_measurement(plan_id: str) -> Any:
    from optimizer.measure import measure, measurement_html, off_policy

    store: Store = current_app.extensions["offeropt.store"]
    record = store.plan_record(plan_id)
    version = _version(list(record.versions))
    logs = recorded_logs(store, since_version=version)
    logs = logs[logs["plan_version"] == version].reset_index(drop=True)
    if logs.empty:
        raise Problem(409, "Conflict", f"plan {plan_id!r}: must have recorded views to be "
                      f"measured, got none for version {version}")
    instance = record.catalog.instance()
    where = Locator("recorded_logs", "json")
    result = measure(logs, instance, record.plan.plan(), version,
                     locator=where, name="recorded logs")
    other = request.args.get("against")
    estimate = None
    if other:
        target = store.plan_object(other)
        estimate = off_policy(logs, instance, target, locator=where, name="recorded logs",
                              label=f"plan {other}")
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return Response(measurement_html(result, estimate), mimetype="text/html")
    return {"plan_id": plan_id, **result.to_dict(),
            **({"off_policy": estimate.to_dict()} if estimate is not None else {})}


def _version(versions: list[int]) -> int:
    asked = request.args.get("version")
    if asked is None:
        if not versions:
            raise Problem(409, "Conflict", "plan: must have been published to be measured, "
                          "got a plan never published")
        return versions[-1]
    if not (asked.isascii() and asked.isdigit() and len(asked) <= 18) or int(asked) not in versions:
        raise Problem(400, "Bad Request", f"version: must be a version this plan was published "
                      f"as ({', '.join(map(str, versions)) or 'none'}), got {asked!r}")
    return int(asked)
