"""A real server in a subprocess on loopback, driven over HTTP: the whole flow, both roles,
ops endpoints on their own port, a kill -9 in the middle of a publish, and a fuzzer."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

# what `schemathesis.openapi.from_url` imports lazily, imported here at collection: compiled
# deep in a test's stack, after a test hit the recursion limit, CPython 3.11.7's AST
# validator can fail with "AST constructor recursion depth mismatch" (CPython gh-106905)
from schemathesis.specs.openapi import schemas as _openapi_schemas  # noqa: F401

from api.store import Store
from tests.server import (
    MERCHANDISER,
    STOREFRONT,
    Processes,
    Server,
    wait_for_open_write_transaction,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, processes: Processes) -> Server:
    return processes.server(tmp_path)  # stopped by the `processes` fixture, also on failure


def test_flow_over_http(server: Server, demo_doc: dict[str, Any]) -> None:
    run = server.solve(demo_doc)
    assert run["plan_status"] == "optimal"
    assert server.post(f"/v1/plans/{run['plan_id']}/publish",
                       headers=STOREFRONT).status_code == 403
    published = server.post(f"/v1/plans/{run['plan_id']}/publish", headers=MERCHANDISER)
    assert published.status_code == 200
    assert _served_version(server, "champions-cart", 1)["offers"]
    csv = server.get(f"/v1/runs/{run['id']}/plan", headers={**MERCHANDISER, "Accept": "text/csv"})
    assert csv.headers["Content-Type"].startswith("text/csv")


def test_ops_endpoints_answer_only_on_the_ops_port(server: Server) -> None:
    assert requests.get(f"{server.ops}/metrics", timeout=5).status_code == 200
    assert requests.get(f"{server.ops}/healthz", timeout=5).json()["status"] == "ok"
    assert server.get("/metrics").status_code == 404
    assert requests.get(f"{server.ops}/v1/offers?segment=x", headers=STOREFRONT,
                        timeout=5).status_code == 404
    server.get("/v1/offers?segment=x", headers=STOREFRONT)
    metrics = requests.get(f"{server.ops}/metrics", timeout=5).text
    assert 'offeropt_http_requests_total{method="GET",route="/v1/offers",status="200"}' in metrics


def test_kill_9_during_publish_leaves_a_whole_plan(tmp_path: Path, processes: Processes,
                                                   demo_doc: dict[str, Any]) -> None:
    # The pause holds the publish transaction open far longer than the test needs to see it
    # open and kill the server: the kill lands inside it, however slow the machine.
    server = processes.server(tmp_path, OFFEROPT_PUBLISH_PAUSE_SECONDS="600")
    old = server.solve(demo_doc)
    demo_doc["policy"]["max_offers_per_view"] = 1
    new = server.solve(demo_doc)
    database = tmp_path / "offeropt.db"
    Store.open(f"sqlite:///{database}").publish(old["plan_id"], "test")  # no pause here
    _served_version(server, "loyal-checkout", 1)
    outcome: list[Any] = []
    publishing = threading.Thread(target=lambda: outcome.append(_try_publish(server, new)),
                                  daemon=True)
    publishing.start()
    assert server.child is not None
    wait_for_open_write_transaction(database, server.child)  # the publish, paused mid-way
    during = server.get("/v1/offers?segment=loyal-checkout", headers=STOREFRONT).json()
    assert during["plan_version"] == 1  # readers see the old, whole plan meanwhile
    server.kill9()
    publishing.join(timeout=60)
    assert outcome == ["connection lost"]

    restarted = processes.server(tmp_path)
    active = restarted.get("/v1/plans/active", headers=STOREFRONT).json()
    assert active["plan_id"] == old["plan_id"] and active["version"] == 1
    assert active["plan"]["offers"] and active["plan"]["kpis"]
    for run in (old, new):  # the run history survived
        assert restarted.get(f"/v1/runs/{run['id']}",
                             headers=MERCHANDISER).json()["status"] == "succeeded"
    again = restarted.post(f"/v1/plans/{new['plan_id']}/publish", headers=MERCHANDISER)
    assert again.status_code == 200 and again.json()["version"] == 2


def _served_version(server: Server, segment: str, version: int,
                    timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:  # each web worker picks the new version up within its poll interval
        body: dict[str, Any] = server.get(f"/v1/offers?segment={segment}",
                                          headers=STOREFRONT).json()
        if body["plan_version"] == version:
            return body
        assert time.monotonic() < deadline, f"version {version} never served: {body}"
        time.sleep(0.1)


def _try_publish(server: Server, run: dict[str, Any]) -> str:
    try:
        server.post(f"/v1/plans/{run['plan_id']}/publish", headers=MERCHANDISER)
    except requests.ConnectionError:
        return "connection lost"
    return "completed"


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_never_get_5xx(server: Server, demo_doc: dict[str, Any], mode: str) -> None:
    """schemathesis draws requests from our OpenAPI document (valid ones, then invalid ones)."""
    run = server.solve(demo_doc)
    server.post(f"/v1/plans/{run['plan_id']}/publish", headers=MERCHANDISER)
    schema = schemathesis.openapi.from_url(f"{server.base}/openapi.json")
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        role = STOREFRONT if operation.path in ("/v1/offers", "/v1/plans/active") else MERCHANDISER
        try:
            calls += _fuzz(operation, generation, server.base, role)
        except Unsatisfiable:  # nothing in this operation can be made invalid (no inputs)
            assert mode == "negative"
    assert calls > 60, calls


def _fuzz(operation: Any, generation: GenerationMode, base: str, role: dict[str, str]) -> int:
    calls = 0

    @settings(max_examples=6, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=generation))
    def call(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(base_url=base, headers=role, checks=[not_a_server_error])

    call()
    return calls
