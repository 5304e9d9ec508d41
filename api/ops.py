"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from api import openapi
from api.openapi import doc
from api.schemas import Health, Ready
from optimizer import __version__

ops_api = Blueprint("ops", __name__)
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

REQUESTS = Counter("offeropt_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("offeropt_http_request_seconds", "HTTP request latency", ["route"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
SOLVES = Histogram("offeropt_solve_seconds", "Solve run durations", ["status"],
                   buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600))


def observe_solve(run_id: str, seconds: float, status: str) -> None:
    SOLVES.labels(status=status).observe(seconds)


def install_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> Response | None:
        g.started = time.perf_counter()
        ops_port = app.config.get("OPS_PORT")
        if ops_port is not None:  # ops and API answer on separate listeners
            on_ops = str(request.environ.get("SERVER_PORT")) == str(ops_port)
            if on_ops != (request.path in OPS_PATHS):
                from api.problems import problem_response

                return problem_response(404, "Not Found", "not served on this port")
        return None

    @app.after_request
    def _observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        return response


@ops_api.get("/healthz")
@doc("Liveness: the process answers", "operations", {200: Health})
def healthz() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


@ops_api.get("/readyz")
@doc("Readiness: the store is reachable", "operations", {200: Ready, 503: Ready})
def readyz() -> tuple[dict[str, Any], int]:
    store = current_app.extensions["offeropt.store"]
    try:
        return {"status": "ready", "store": "reachable",
                "schema_version": store.schema_version()}, 200
    except Exception as exc:  # any store failure means not ready
        return {"status": "not ready", "store": f"unreachable: {type(exc).__name__}"}, 503


@ops_api.get("/metrics")
@doc("Prometheus metrics: request counts, latencies, solve durations", "operations",
     {200: "Prometheus text format"})
def metrics() -> Response:
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # gunicorn: sum over worker processes
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@ops_api.get("/openapi.json")
@doc("This API's OpenAPI 3.1 document, generated from the code", "operations",
     {200: "OpenAPI document"})
def openapi_json() -> dict[str, Any]:
    return openapi.build(current_app)
