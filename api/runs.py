"""Catalog-plan submission and solve runs: submit, follow, cancel, fetch the plan."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from flask import Blueprint, Response, current_app, g, request, stream_with_context, url_for

from api.auth import MERCHANDISER, requires
from api.body import read_body, save_body
from api.openapi import Param, doc
from api.problems import Problem
from api.schemas import Run, RunCreated
from api.store import Store
from api.store.columnar import PARQUET_TYPE, csv_chunks
from api.workbench_job import is_frontier
from optimizer.errors import InputError, Issue
from optimizer.io import ZipLimits, instance_from_document, load_instance
from optimizer.io.safe_json import JsonSyntaxError, parse_json
from optimizer.model.instance import Instance
from optimizer.plan.schema import PlanDocument
from optimizer.solve.methods import MAX_EXPLORE, Solver

runs_api = Blueprint("runs", __name__)
ZIP_TYPES = ("application/zip", "application/x-zip-compressed")
PLAN_TYPES = ("application/json", "text/csv", PARQUET_TYPE, "application/x-parquet")
PLAN_FORMATS = {200: {"text/csv": "the offers, one row per offer (streamed)",
                      PARQUET_TYPE: "the offers as a Parquet file (streamed)"},
                406: {"application/problem+json": "JSON asked for a plan above "
                                                  "OFFEROPT_MAX_JSON_PLAN_OFFERS offers"}}


def _store() -> Store:
    store: Store = current_app.extensions["offeropt.store"]
    return store


def _parse_instance() -> Instance:
    ctype = (request.mimetype or "").lower()
    if ctype in ZIP_TYPES:
        cfg = current_app.config
        limits = ZipLimits(cfg["MAX_ZIP_ENTRIES"], cfg["MAX_UNZIPPED_BYTES"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "catalog.zip"
            save_body(path)
            return load_instance(path, limits)
    if ctype != "application/json":
        raise Problem(415, "Unsupported Media Type",
                      f"Content-Type: must be application/json or application/zip, got {ctype!r}")
    data = read_body()
    try:
        doc_ = parse_json(data, "body") if data else None
    except JsonSyntaxError as exc:
        raise Problem(400, "Bad Request", exc.describe()) from None
    return instance_from_document(doc_, origin="catalog")


def _options() -> dict[str, Any]:
    cfg = current_app.config
    args = request.args
    issues: list[Issue] = []

    def number(name: str, default: float, ok: Callable[[float], bool], rule: str) -> float:
        raw = args.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            issues.append(Issue(name, "must be a number", raw))
            return default
        if not ok(value):
            issues.append(Issue(name, rule, value))
        return value

    most = cfg["MAX_SOLVE_TIME_LIMIT"]
    time_limit = number("time_limit", cfg["SOLVE_TIME_LIMIT"], lambda v: 0 < v <= most,
                        f"must be in (0, {most:g}] seconds")
    gap = number("gap", 1e-4, lambda v: 0 <= v < 1, "must be in [0, 1)")
    solver = args.get("solver", "highs")
    if solver not in list(Solver):
        issues.append(Issue("solver", f"must be one of {', '.join(Solver)}", solver))
    split = args.get("split_traffic", "false")
    if split not in ("true", "false"):
        issues.append(Issue("split_traffic", "must be 'true' or 'false'", split))
    explore = number("explore", 0.0, lambda v: 0 <= v <= MAX_EXPLORE,
                     f"must be a number in [0, {MAX_EXPLORE:g}]")
    if issues:
        raise InputError(issues)
    return {"time_limit": time_limit, "gap": gap, "solver": solver, "threads": 1,
            "split_traffic": split == "true", **({"explore": explore} if explore else {})}


@runs_api.post("/v1/catalog-plans")
@doc("Submit a catalog plan and start its solve", "catalog plans", {202: RunCreated},
     body={"application/json": "Instance", "application/zip": "zip"},
     params=(Param("Idempotency-Key", "header", "retries with the same key return the same run"),
             Param("time_limit", "query", "solver seconds", "number"),
             Param("gap", "query", "relative gap at which to stop", "number"),
             Param("solver", "query", "highs (default) or cbc"),
             Param("split_traffic", "query", "true: the plan may split a segment's views "
                   "between weighted offer sets (spec section 7); default false", "boolean"),
             Param("explore", "query", "exploration sets (spec section 9): at most this share "
                   f"of each segment's views, in [0, {MAX_EXPLORE:g}], sees other variants of "
                   "its cells, as far as every rule allows; default 0", "number")))
@requires(MERCHANDISER)
def submit() -> tuple[dict[str, Any], int, dict[str, str]]:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 200:
        raise Problem(400, "Bad Request", "Idempotency-Key: must be 1 to 200 characters")
    options = _options()
    instance = _parse_instance()
    run_id, created = _store().submit(instance.name, instance, None, options, g.actor, key)
    run = _store().run(run_id)
    location = url_for("runs.get_run", run_id=run_id)
    body = {"run_id": run_id, "status": run["status"], "created": created,
            "links": {"self": location}}
    return body, 202, {"Location": location}


def _run_body(run: dict[str, Any]) -> dict[str, Any]:
    plan_link = url_for("runs.get_run_plan", run_id=run["id"]) if run["plan_id"] else None
    return {
        "id": run["id"], "status": run["status"], "catalog_plan": run["catalog_name"],
        "options": json.loads(run["options"]),
        "progress": json.loads(run["progress"]) if run["progress"] else None,
        "plan_status": run["plan_status"], "plan_id": run["plan_id"],
        "objective": run["objective"], "bound": run["bound"], "error": run["error"],
        "log_tail": (run["log_tail"] or "").splitlines()[-20:],
        "created_at": run["created_at"], "started_at": run["started_at"],
        "finished_at": run["finished_at"], "cancel_requested": bool(run["cancel_requested"]),
        "links": {"self": url_for("runs.get_run", run_id=run["id"]), "plan": plan_link},
    }


@runs_api.get("/v1/runs/<run_id>")
@doc("A run's status and progress", "runs", {200: Run})
@requires(MERCHANDISER)
def get_run(run_id: str) -> dict[str, Any]:
    return _run_body(_store().run(run_id))


@runs_api.delete("/v1/runs/<run_id>")
@doc("Cancel a run", "runs", {202: Run})
@requires(MERCHANDISER)
def cancel_run(run_id: str) -> tuple[dict[str, Any], int]:
    return _run_body(_store().cancel(run_id)), 202


@runs_api.get("/v1/runs/<run_id>/plan")
@doc("The plan a run produced: JSON, or its offers as CSV (Accept: text/csv) or Parquet "
     f"(Accept: {PARQUET_TYPE}), streamed", "runs", {200: PlanDocument, 406: "Not acceptable"},
     extra_content=PLAN_FORMATS)
@requires(MERCHANDISER)
def get_run_plan(run_id: str) -> Response:
    run = _store().run(run_id)
    if run["plan_id"] is None and is_frontier(json.loads(run["options"])):
        raise Problem(404, "Not Found", f"run {run_id!r}: is a frontier run, which makes no plan: "
                      f"its points are at GET /v1/frontiers/{run_id}")
    if run["plan_id"] is None:
        raise Problem(404, "Not Found", f"run {run_id!r}: has no plan yet (status {run['status']})")
    plan_id = str(run["plan_id"])
    return plan_download(_store(), plan_id, {"X-Offeropt-Plan-Id": plan_id})


def plan_download(store: Store, plan_id: str, headers: dict[str, str],
                  envelope: Callable[[Any], dict[str, Any]] | None = None) -> Response:
    """The plan in the form the request's Accept asks for: CSV or Parquet streamed from the
    stored columns (a chunk at a time: never the whole plan as text in memory), or JSON
    (wrapped by `envelope`, when given) up to MAX_JSON_PLAN_OFFERS offers, 406 above."""
    wanted = request.accept_mimetypes.best_match(PLAN_TYPES) or "application/json"
    if wanted == "text/csv":
        data = b"".join(store.offers_parquet(plan_id))
        batches = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=65_536)
        return Response(stream_with_context(csv_chunks(batches)), mimetype="text/csv",
                        headers=headers)
    if wanted != "application/json":
        return Response(stream_with_context(store.offers_parquet(plan_id)),
                        mimetype=PARQUET_TYPE, headers={
                            **headers, "Content-Disposition":
                                f'attachment; filename="plan-{plan_id}.parquet"'})
    most = current_app.config["MAX_JSON_PLAN_OFFERS"]
    count = store.offer_count(plan_id)
    if count > most:
        raise Problem(406, "Not Acceptable",
                      f"Accept: a plan of {count:,} offers is more than "
                      f"OFFEROPT_MAX_JSON_PLAN_OFFERS ({most:,}) for JSON; ask for "
                      f"Accept: text/csv or Accept: {PARQUET_TYPE} (streamed)")
    document = store.plan(plan_id)["document"]
    if envelope is not None:
        return Response(json.dumps(envelope(json.loads(document))), mimetype="application/json",
                        headers=headers)
    return Response(document, mimetype="application/json", headers=headers)
