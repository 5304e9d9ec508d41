"""A real server in a subprocess on loopback, driven over HTTP: the whole flow, both roles,
ops endpoints on their own port, a kill -9 in the middle of a publish, and a fuzzer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.server import MERCHANDISER, STOREFRONT, Server

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    live = Server(tmp_path).start()
    yield live
    live.stop()


def test_flow_over_http(server: Server, demo_doc: dict[str, Any]) -> None:
    run = server.solve(demo_doc)
    assert run["plan_status"] == "optimal"
    assert server.post(f"/v1/plans/{run['plan_id']}/publish",
                       headers=STOREFRONT).status_code == 403
    published = server.post(f"/v1/plans/{run['plan_id']}/publish", headers=MERCHANDISER)
    assert published.status_code == 200
    deadline = time.monotonic() + 10
    while True:  # each worker picks the new version up within its poll interval
        body = server.get("/v1/offers?segment=champions-cart", headers=STOREFRONT).json()
        if body["plan_version"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert body["plan_version"] == 1 and body["offers"]
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


def test_kill_9_during_publish_leaves_a_whole_plan(tmp_path: Path,
                                                   demo_doc: dict[str, Any]) -> None:
    server = Server(tmp_path, OFFEROPT_PUBLISH_PAUSE_SECONDS="4").start()
    try:
        old = server.solve(demo_doc)
        demo_doc["policy"]["max_offers_per_view"] = 1
        new = server.solve(demo_doc)
        server.env = {}  # the first publish must complete: no pause on restart below
        assert server.post(f"/v1/plans/{old['plan_id']}/publish",
                           headers=MERCHANDISER).status_code == 200
        outcome: list[Any] = []
        publishing = threading.Thread(target=lambda: outcome.append(_try_publish(server, new)))
        publishing.start()
        time.sleep(1.5)  # the publish transaction is now open, paused before the pointer moves
        during = server.get("/v1/offers?segment=loyal-checkout", headers=STOREFRONT).json()
        assert during["plan_version"] == 1  # readers see the old, whole plan meanwhile
        server.kill9()
        publishing.join()
        assert outcome == ["connection lost"]
    finally:
        server.stop()

    restarted = Server(tmp_path).start()
    try:
        active = restarted.get("/v1/plans/active", headers=STOREFRONT).json()
        assert active["plan_id"] == old["plan_id"] and active["version"] == 1
        assert active["plan"]["offers"] and active["plan"]["kpis"]
        for run in (old, new):  # the run history survived
            assert restarted.get(f"/v1/runs/{run['id']}",
                                 headers=MERCHANDISER).json()["status"] == "succeeded"
        again = restarted.post(f"/v1/plans/{new['plan_id']}/publish", headers=MERCHANDISER)
        assert again.status_code == 200 and again.json()["version"] == 2
    finally:
        restarted.stop()


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
    assert calls > 60


def _fuzz(operation: Any, generation: GenerationMode, base: str, role: dict[str, str]) -> int:
    calls = 0

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=generation))
    def call(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(base_url=base, headers=role, checks=[not_a_server_error])

    call()
    return calls
