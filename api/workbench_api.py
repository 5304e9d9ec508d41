"""Why-not and what-if over HTTP (issue 17): a plan's explanation, and frontiers run in the
background like solves (`api.workbench_job`).

- `GET /v1/plans/{id}/explain?segment=S[&bundle=B]`: `optimizer.explain` against the catalog
  the plan was solved from. Solves never run on a request thread, so nothing is re-solved
  here: the proofs are the multipliers' (the plan's own, else the LP relaxation's duals,
  computed within EXPLAIN_SECONDS). `offeropt explain` re-solves for tighter proofs.
- `POST /v1/frontiers`: a frontier (`optimizer.frontier`) queued as a run on the catalog of
  `plan_id` (default: the active plan), `202` with its id; `GET /v1/frontiers/{id}`: its
  status and the points solved so far; `.../plot`: the curve as SVG; `DELETE`: cancel.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from pydantic import BaseModel, Field

from api.auth import MERCHANDISER, requires
from api.body import read_body
from api.openapi import Param, doc
from api.problems import Problem
from api.store import NotFound, Store
from api.workbench_job import KIND, is_frontier
from optimizer.errors import InputError, Issue
from optimizer.io import instance_from_document
from optimizer.io.safe_json import parse_json
from optimizer.plan.model import Plan

workbench_api = Blueprint("workbench_api", __name__)
EXPLAIN_SECONDS = 5.0  # for the LP relaxation's duals, when the plan carries no multipliers
FRONTIER_FIELDS = ("vary", "values", "time_limit", "plan_id", "method")


class RowChargeModel(BaseModel):
    row: str
    constraint: str
    multiplier: float
    use: float
    charge: float


class BundleExplanationModel(BaseModel):
    """One bundle of the segment: in the plan or not, and why (docs/workbench.md)."""

    bundle: str
    bundle_name: str | None
    in_plan: bool
    reason_code: str = Field(description="in_plan | not_candidate | no_room | beaten | "
                             "beaten_within_gap | favoured_at_multipliers")
    rule: str | None = Field(description="not_candidate: silent_segment | no_response | "
                             "empty_ladder | max_discount | margin_floor | negative_uplift | "
                             "contact_cost")
    text: str
    variant: dict[str, Any] | None
    value: float | None
    charges: list[RowChargeModel]
    priced_value: float | None
    chosen_priced_value: float | None
    alternative_priced_value: float | None
    replaces: list[str]
    loss_at_least: float | None = Field(description="what the opposite choice provably costs")
    gain_at_most: float | None = Field(description="left out, not proven beaten: what a plan "
                                       "with it could earn more at most")
    proof: str | None = Field(description="multipliers | resolve | row_limit")
    forced: dict[str, Any] | None
    exceeds: list[dict[str, Any]]
    variants: list[dict[str, Any]]


class ExplanationModel(BaseModel):
    """Why a segment's bundles are or are not in the plan."""

    plan_id: str
    segment: str
    bundle: str | None
    currency: str | None
    objective: float
    bound: float
    multipliers_source: str = Field(description="plan | lp | none")
    multipliers: list[dict[str, Any]]
    segment_views: float
    min_offers: int
    max_offers: int
    chosen: list[str]
    text: str
    entries: list[BundleExplanationModel]


class FrontierLinks(BaseModel):
    self: str
    plot: str


class FrontierCreated(BaseModel):
    """A frontier queued: poll `links.self`."""

    frontier_id: str
    status: str
    plan_id: str
    links: FrontierLinks


class FrontierPointModel(BaseModel):
    value: float
    objective: float | None
    bound: float | None
    gap: float | None
    status: str
    checked: bool = Field(description="the plan passed the independent check")
    binding: list[str]
    seconds: float
    used: float | None = Field(description="what the plan uses of the varied limit")
    marginal: float | None = Field(description="margin gained per unit of the limit since the "
                                   "previous point")


class FrontierRun(BaseModel):
    """A frontier's status and the points solved so far (by increasing value)."""

    id: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    plan_id: str | None
    vary: str
    values: list[float]
    time_limit: float
    method: str | None
    points: list[FrontierPointModel]
    stops_costing_at: float | None
    complete: bool
    current: dict[str, Any] | None = Field(description="the solve in course: objective, bound, "
                                           "gap, elapsed")
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    cancel_requested: bool
    links: FrontierLinks


def _store() -> Store:
    store: Store = current_app.extensions["offeropt.store"]
    return store


@workbench_api.get("/v1/plans/<plan_id>/explain")
@doc("Why each bundle of a segment is or is not in the plan: the candidate rule that dropped it, "
     "or its value at the binding rows' multipliers against the chosen offers' "
     "(docs/workbench.md)", "workbench", {200: ExplanationModel},
     params=(Param("segment", "query", "a segment id of the plan's catalog", required=True),
             Param("bundle", "query", "one bundle id (default: every bundle with a response for "
                   "the segment, and any the plan shows)")))
@requires(MERCHANDISER)
def explain_plan(plan_id: str) -> dict[str, Any]:
    from optimizer.explain import explain

    segment = request.args.get("segment")
    if not segment:
        raise Problem(400, "Bad Request", "segment: must be given (a segment id of the plan's "
                      "catalog)")
    bundle = request.args.get("bundle") or None
    found = _store().plan_with_catalog(plan_id)
    instance = instance_from_document(json.loads(found["catalog"]), origin="the plan's catalog")
    plan = Plan.from_dict(json.loads(found["plan"]))
    explanation = explain(instance, plan, segment, bundle, resolve=False,
                          time_limit=EXPLAIN_SECONDS)
    return {"plan_id": plan_id, **explanation.to_dict()}


@workbench_api.post("/v1/frontiers")
@doc("Start a frontier: the plan's catalog re-solved, warm-started, across values of one limit "
     "(a JSON body: vary = promotion_budget | max_avg_discount | max_discounted_share | "
     "stock:ITEM, values = a list of numbers, time_limit = seconds for every point together, "
     "optional plan_id (default: the active plan) and method); it runs in the background like "
     "a solve", "workbench", {202: FrontierCreated, 409: "No plan_id and no plan published"})
@requires(MERCHANDISER)
def start_frontier() -> tuple[dict[str, Any], int, dict[str, str]]:
    from optimizer.frontier import checked_inputs

    body = _json_object()
    issues = [Issue(k, f"must be one of the request's fields ({', '.join(FRONTIER_FIELDS)})",
                    has_value=False) for k in body if k not in FRONTIER_FIELDS]
    plan_id = body.get("plan_id")
    if plan_id is not None and not isinstance(plan_id, str):
        raise InputError([*issues, Issue("plan_id", "must be a string (a plan id)", plan_id)])
    if plan_id is None:
        active = _store().active()
        if active is None:
            raise Problem(409, "Conflict", "plan_id: must be given when no plan has been "
                          "published (the frontier re-solves a plan's catalog)")
        plan_id = str(active["plan_id"])
    found = _store().plan_with_catalog(plan_id)  # an unknown plan is a 404
    cfg = current_app.config
    time_limit = body.get("time_limit", cfg["SOLVE_TIME_LIMIT"])
    most = cfg["MAX_SOLVE_TIME_LIMIT"]
    if isinstance(time_limit, int | float) and not isinstance(time_limit, bool) and \
            time_limit > most:
        issues.append(Issue("time_limit", f"must be at most {most:g} seconds", time_limit))
    instance = instance_from_document(json.loads(found["catalog"]), origin="the plan's catalog")
    try:
        _, values = checked_inputs(instance, body.get("vary"), body.get("values"), time_limit,
                                   body.get("method"))
    except InputError as exc:
        issues += exc.issues
    if issues:
        raise InputError(issues)
    options = {"kind": KIND, "vary": body["vary"], "values": values,
               "time_limit": float(time_limit), "method": body.get("method"), "plan_id": plan_id,
               "currency": instance.currency}
    run_id = _store().queue_on_plan_catalog(plan_id, options)
    links = _links(run_id)
    return ({"frontier_id": run_id, "status": "queued", "plan_id": plan_id, "links": links}, 202,
            {"Location": links["self"]})


@workbench_api.get("/v1/frontiers/<frontier_id>")
@doc("A frontier's status and its points so far", "workbench", {200: FrontierRun})
@requires(MERCHANDISER)
def get_frontier(frontier_id: str) -> dict[str, Any]:
    return _frontier_body(_frontier_run(frontier_id))


@workbench_api.get("/v1/frontiers/<frontier_id>/plot")
@doc("The frontier's curve so far, as an SVG plot", "workbench",
     {200: "image/svg+xml: incremental margin and its bound against the limit"})
@requires(MERCHANDISER)
def frontier_plot(frontier_id: str) -> Response:
    from optimizer.frontier import frontier_svg

    run = _frontier_run(frontier_id)
    return Response(frontier_svg(_curve(run)), mimetype="image/svg+xml")


@workbench_api.delete("/v1/frontiers/<frontier_id>")
@doc("Cancel a frontier: a queued one at once, a running one within about a second (the "
     "points solved so far stay)", "workbench", {202: FrontierRun})
@requires(MERCHANDISER)
def cancel_frontier(frontier_id: str) -> tuple[dict[str, Any], int]:
    _frontier_run(frontier_id)
    return _frontier_body(_store().cancel(frontier_id)), 202


def _json_object() -> dict[str, Any]:
    data = read_body()
    try:
        body = parse_json(data, "body") if request.is_json and data else None
    except InputError:  # not JSON, or past a limit (too deep, a lone surrogate)
        body = None
    if not isinstance(body, dict):
        raise Problem(400, "Bad Request", "body: must be a JSON object (Content-Type: "
                      "application/json) with vary, values and time_limit")
    return body


def _frontier_run(frontier_id: str) -> dict[str, Any]:
    try:
        run = _store().run(frontier_id)
    except NotFound:
        raise NotFound(f"frontier {frontier_id!r}") from None
    if not is_frontier(json.loads(run["options"])):
        raise NotFound(f"frontier {frontier_id!r}")
    return run


def _curve(run: dict[str, Any]) -> Any:
    from optimizer.frontier import Frontier, FrontierPoint

    options = json.loads(run["options"])
    state = json.loads(run["progress"]) if run["progress"] else {}
    names = FrontierPoint.__dataclass_fields__
    points = tuple(FrontierPoint(**{**{k: v for k, v in p.items() if k in names},
                                    "binding": tuple(p.get("binding") or ())})
                   for p in state.get("points") or ())
    return Frontier(options["vary"], points, str(run["catalog_name"]), options.get("currency"),
                    options["time_limit"], complete=bool(state.get("complete")))


def _frontier_body(run: dict[str, Any]) -> dict[str, Any]:
    options = json.loads(run["options"])
    state = json.loads(run["progress"]) if run["progress"] else {}
    curve = _curve(run)
    return {
        "id": run["id"], "status": run["status"], "plan_id": options.get("plan_id"),
        "vary": options["vary"], "values": options["values"], "time_limit": options["time_limit"],
        "method": options.get("method"),
        "points": [{**p.to_dict(), "marginal": m}
                   for p, m in zip(curve.points, curve.marginal(), strict=True)],
        "stops_costing_at": curve.stops_costing_at, "complete": curve.complete,
        "current": state.get("current"), "error": run["error"], "created_at": run["created_at"],
        "started_at": run["started_at"], "finished_at": run["finished_at"],
        "cancel_requested": bool(run["cancel_requested"]), "links": _links(run["id"]),
    }


def _links(run_id: str) -> dict[str, str]:
    return {"self": url_for("workbench_api.get_frontier", frontier_id=run_id),
            "plot": url_for("workbench_api.frontier_plot", frontier_id=run_id)}
