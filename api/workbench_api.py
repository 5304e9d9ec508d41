"""Why-not and what-if over HTTP (issue 17): a plan's explanation, and frontiers run in the
background like solves (`api.workbench_job`, read back by `api.frontier_runs`).

- `GET /v1/plans/{id}/explain?segment=S[&bundle=B]`: `optimizer.explain` against the catalog
  the plan was solved from. Solves never run on a request thread, so nothing is re-solved
  here: the proofs are the multipliers' (the plan's own, else the LP relaxation's duals,
  computed within EXPLAIN_SECONDS the first time a plan is asked about, then kept per plan
  by each web worker). `offeropt explain` re-solves for tighter proofs.
- `POST /v1/frontiers`: a frontier (`optimizer.frontier`) queued as a run on the catalog of
  `plan_id` (default: the active plan), `202` with its id; `GET /v1/frontiers/{id}`: its
  status and the points solved so far; `.../plot`: the curve as SVG; `DELETE`: cancel.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel, Field

from api.auth import MERCHANDISER, requires
from api.body import read_body
from api.frontier_runs import frontier_body, frontier_curve, frontier_links, frontier_run
from api.openapi import Param, doc
from api.problems import Problem, input_problem
from api.store import Store
from api.workbench_job import KIND
from optimizer.errors import InputError, Issue
from optimizer.io.safe_json import parse_json
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan

if TYPE_CHECKING:  # the library's explanations are imported at the first question
    from optimizer.explain import Explanation, Prices

workbench_api = Blueprint("workbench_api", __name__)
EXPLAIN_SECONDS = 5.0  # for the LP relaxation's duals, when the plan carries no multipliers
FRONTIER_FIELDS = ("vary", "values", "time_limit", "plan_id", "method")
# The 422 of each endpoint: what was refused (the app's own title is the catalog's).
REFUSED = {"workbench_api.explain_plan": "The question cannot be answered for this plan",
           "workbench_api.start_frontier": "The frontier request was refused"}


@workbench_api.errorhandler(InputError)
def _refused(exc: InputError) -> Response:
    return input_problem(exc, REFUSED.get(request.endpoint or "", "The request was refused"))


class _PricesKept:
    """The multipliers of the last few plans explained, per web worker, by plan id (a plan
    and its catalog never change): a plan without multipliers of its own (the exact MIP, the
    nightly job's warm starts) is priced by an LP once, and every later question about it
    is answered without solving anything."""

    def __init__(self, most: int = 16) -> None:
        self.most = most
        self.items: OrderedDict[str, Prices] = OrderedDict()
        self.lock = Lock()

    def get(self, plan_id: str) -> Prices | None:
        with self.lock:
            found = self.items.get(plan_id)
            if found is not None:
                self.items.move_to_end(plan_id)
            return found

    def keep(self, plan_id: str, prices: Prices) -> None:
        with self.lock:
            self.items[plan_id] = prices
            self.items.move_to_end(plan_id)
            while len(self.items) > self.most:
                self.items.popitem(last=False)


PRICES = _PricesKept()


def explain_stored(plan_id: str, instance: Instance, plan: Plan, segment: str,
                   bundle: str | None) -> Explanation:
    """`optimizer.explain.explain` of a stored plan, as the API and the workbench ask it: no
    re-solve (nothing but an LP runs on a request thread, within EXPLAIN_SECONDS, and only
    the first time a plan without multipliers is asked about: its duals are kept)."""
    from optimizer.explain import NONE, explain

    kept = PRICES.get(plan_id)
    answer = explain(instance, plan, segment, bundle, resolve=False, time_limit=EXPLAIN_SECONDS,
                     prices=kept)
    if kept is None and answer.prices is not None and answer.prices.source != NONE:
        PRICES.keep(plan_id, answer.prices)  # an LP stopped by its limit is tried again
    return answer


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
    loss_at_least: float | None = Field(description="a plan making the opposite choice earns at "
                                        "most the objective less this: a proven cost when "
                                        "`proof` is set (then > 0); 0 or less proves nothing "
                                        "(see gain_at_most)")
    gain_at_most: float | None = Field(description="not proven (no `proof`): what a plan making "
                                       "the opposite choice could earn more at most")
    proof: str | None = Field(description="multipliers | resolve | row_limit; null when no cost "
                              "is proven")
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
    check: str | None = Field(description="passed | passed (earlier plan) | failed (the solve's "
                              "plans all failed the independent check); null without a plan")


class FrontierRun(BaseModel):
    """A frontier's status and the points solved so far (by increasing value)."""

    id: str
    status: str = Field(description="queued | running | succeeded | failed (error: a plan "
                        "failed the independent check, or no value has a plan) | cancelled")
    plan_id: str | None
    vary: str
    values: list[float]
    time_limit: float
    method: str | None
    points: list[FrontierPointModel]
    stops_costing_at: float | None = Field(description="the first value past which every "
                                           "looser value's proven bound is at most its margin; "
                                           "null when not proven")
    stops_costing: str = Field(description="where the limit stops costing money, in words, or "
                               "why that is not proven")
    complete: bool = Field(description="false while running, and when the time limit (or a "
                           "cancel) stopped the curve before every value was solved")
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
    segment = request.args.get("segment")
    if not segment:
        raise Problem(400, "Bad Request", "segment: must be given (a segment id of the plan's "
                      "catalog)")
    bundle = request.args.get("bundle") or None
    record = _store().plan_record(plan_id)
    instance, plan = record.catalog.instance(), record.plan.plan()
    explanation = explain_stored(plan_id, instance, plan, segment, bundle)
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
    record = _store().plan_record(plan_id)  # an unknown plan is a 404
    cfg = current_app.config
    time_limit = body.get("time_limit", cfg["SOLVE_TIME_LIMIT"])
    most = cfg["MAX_SOLVE_TIME_LIMIT"]
    if isinstance(time_limit, int | float) and not isinstance(time_limit, bool) and \
            time_limit > most:
        issues.append(Issue("time_limit", f"must be at most {most:g} seconds", time_limit))
    instance = record.catalog.instance()
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
    links = frontier_links(run_id)
    return ({"frontier_id": run_id, "status": "queued", "plan_id": plan_id, "links": links}, 202,
            {"Location": links["self"]})


@workbench_api.get("/v1/frontiers/<frontier_id>")
@doc("A frontier's status and its points so far", "workbench", {200: FrontierRun})
@requires(MERCHANDISER)
def get_frontier(frontier_id: str) -> dict[str, Any]:
    return frontier_body(frontier_run(_store(), frontier_id))


@workbench_api.get("/v1/frontiers/<frontier_id>/plot")
@doc("The frontier's curve so far, as an SVG plot", "workbench",
     {200: "image/svg+xml: incremental margin and its bound against the limit"})
@requires(MERCHANDISER)
def frontier_plot(frontier_id: str) -> Response:
    from optimizer.frontier import frontier_svg

    run = frontier_run(_store(), frontier_id)
    return Response(frontier_svg(frontier_curve(run)), mimetype="image/svg+xml")


@workbench_api.delete("/v1/frontiers/<frontier_id>")
@doc("Cancel a frontier: a queued one at once, a running one within about a second (the "
     "points solved so far stay)", "workbench", {202: FrontierRun})
@requires(MERCHANDISER)
def cancel_frontier(frontier_id: str) -> tuple[dict[str, Any], int]:
    frontier_run(_store(), frontier_id)
    return frontier_body(_store().cancel(frontier_id)), 202


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
