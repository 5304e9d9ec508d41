"""`GET /v1/plans/{id}/explain` and `/v1/frontiers`: answers, errors with field names, and a
frontier run in the background by the solve dispatcher (202, poll, done)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.jobs import execute_run
from api.store import Store
from optimizer.io import instance_from_document
from optimizer.io.json_form import instance_to_document
from tests.constants import DATA, MERCHANDISER, STOREFRONT
from tests.server import kill_strays

PROBLEM = "application/problem+json"


def wait_for_frontier(client: FlaskClient, location: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(location, headers=MERCHANDISER).get_json()
        if body["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def solved_in_store(folder: Path) -> tuple[str, str]:
    """The demo catalog solved into a fresh store, in this process (as `offeropt demo` does):
    its run id and plan id."""
    url = f"sqlite:///{folder / 'offeropt.db'}"
    store = Store.open(url)
    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    document = json.dumps(instance_to_document(inst), sort_keys=True)
    options = {"time_limit": 20.0, "gap": 1e-4, "solver": "highs", "threads": 1}
    run_id, _ = store.submit(inst.name, document, hashlib.sha256(document.encode()).hexdigest(),
                             options, "test", None)
    assert store.claim_next("test") == run_id
    execute_run(url, run_id)
    return run_id, str(store.run(run_id)["plan_id"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str, str]]:
    """One app (with its solve dispatcher) for the module, and a solved demo plan in its store."""
    folder = tmp_path_factory.mktemp("workbench-api")
    run_id, plan_id = solved_in_store(folder)
    app = create_app({"TESTING": True, "DATA_DIR": str(folder), "MERCHANDISER_TOKENS": "m-token",
                      "STOREFRONT_TOKENS": "s-token", "INDEX_POLL_SECONDS": 0.0})
    yield app, run_id, plan_id
    runner = app.extensions.get("offeropt.jobs")
    if runner is not None:
        runner.stop()
    kill_strays(f"{folder}{os.sep}")


@pytest.fixture
def client(served: tuple[Flask, str, str]) -> FlaskClient:
    return served[0].test_client()


@pytest.fixture
def plan_id(served: tuple[Flask, str, str]) -> str:
    return served[2]


def test_explain_and_a_frontier_through_the_api(client: FlaskClient, plan_id: str) -> None:
    answer = client.get(f"/v1/plans/{plan_id}/explain?segment=champions-product",
                        headers=MERCHANDISER)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["plan_id"] == plan_id and body["segment"] == "champions-product"
    assert body["multipliers_source"] == "plan" and body["currency"] == "JPY"
    entries = {e["bundle"]: e for e in body["entries"]}
    assert entries["laptop-care"]["in_plan"] and entries["laptop-care"]["reason_code"] == "in_plan"
    assert entries["camera-a7-upgrade"]["reason_code"] == "beaten"
    assert "JPY" in entries["lens-and-card"]["text"]
    assert entries["lens-and-card"]["forced"] is None  # nothing is re-solved on a request thread
    one = client.get(f"/v1/plans/{plan_id}/explain?segment=champions-product&bundle=hair-duo",
                     headers=MERCHANDISER).get_json()
    assert [e["reason_code"] for e in one["entries"]] == ["not_candidate"]
    assert one["entries"][0]["rule"] == "no_response"

    started = client.post("/v1/frontiers", headers=MERCHANDISER, json={
        "vary": "promotion_budget", "values": [900_000, 100_000, 400_000], "time_limit": 20,
        "plan_id": plan_id})
    assert started.status_code == 202, started.get_json()
    created = started.get_json()
    assert started.headers["Location"] == created["links"]["self"]
    assert created["status"] == "queued" and created["plan_id"] == plan_id
    done = wait_for_frontier(client, created["links"]["self"])
    assert done["status"] == "succeeded", done
    assert [p["value"] for p in done["points"]] == [100_000, 400_000, 900_000]
    assert all(p["checked"] and p["status"] in ("optimal", "feasible") for p in done["points"])
    # a looser limit never earns less, within the points' gaps (several plans may be optimal)
    points = done["points"]
    for i, before in enumerate(points):
        for after in points[i + 1:]:
            slack = max(before["bound"] - before["objective"],
                        after["bound"] - after["objective"], 1e-6 * abs(before["objective"]))
            assert after["objective"] >= before["objective"] - slack, (before, after)
    assert done["complete"]
    assert done["points"][1]["marginal"] > 0
    plot = client.get(created["links"]["plot"], headers=MERCHANDISER)
    assert plot.status_code == 200 and plot.mimetype == "image/svg+xml"
    assert plot.get_data(as_text=True).startswith("<svg")


def test_explain_errors_name_their_fields(client: FlaskClient, plan_id: str) -> None:
    missing = client.get(f"/v1/plans/{plan_id}/explain", headers=MERCHANDISER)
    assert missing.status_code == 400 and missing.mimetype == PROBLEM
    assert missing.get_json()["detail"].startswith("segment: must be given")
    unknown = client.get("/v1/plans/nope/explain?segment=x", headers=MERCHANDISER)
    assert unknown.status_code == 404 and "plan 'nope'" in unknown.get_json()["detail"]
    bad = client.get(f"/v1/plans/{plan_id}/explain?segment=x&bundle=y", headers=MERCHANDISER)
    assert bad.status_code == 422
    assert [e["path"] for e in bad.get_json()["errors"]] == ["segment", "bundle"]
    assert bad.get_json()["title"] == "The question cannot be answered for this plan"
    assert client.get(f"/v1/plans/{plan_id}/explain?segment=x",
                      headers=STOREFRONT).status_code == 403


def test_frontier_requests_refused_with_field_names(client: FlaskClient, plan_id: str,
                                                    served: tuple[Flask, str, str]) -> None:
    nothing = client.post("/v1/frontiers", headers=MERCHANDISER,
                          json={"vary": "promotion_budget", "values": [1.0], "time_limit": 5})
    assert nothing.status_code == 409 and "plan_id" in nothing.get_json()["detail"]
    assert client.post("/v1/frontiers", headers=MERCHANDISER, data="not json",
                       content_type="application/json").status_code == 400
    assert client.post("/v1/frontiers", headers=MERCHANDISER,
                       json={"vary": "promotion_budget", "values": [1.0], "plan_id": "nope"}
                       ).status_code == 404
    hostile = client.post("/v1/frontiers", headers=MERCHANDISER, json={
        "vary": "stock:nothing", "values": [1, -1, "x"], "time_limit": 1e9, "colour": "red",
        "plan_id": plan_id})
    assert hostile.status_code == 422
    paths = [e["path"] for e in hostile.get_json()["errors"]]
    assert paths == ["colour", "time_limit", "vary", "values[1]", "values[2]"], paths
    assert hostile.get_json()["title"] == "The frontier request was refused"
    assert client.post("/v1/frontiers", headers=STOREFRONT, json={}).status_code == 403
    # a solve's run is no frontier
    assert client.get(f"/v1/frontiers/{served[1]}", headers=MERCHANDISER).status_code == 404
    assert client.get("/v1/frontiers/nope", headers=MERCHANDISER).status_code == 404


def test_a_frontier_is_cancelled_like_a_run(client: FlaskClient, plan_id: str) -> None:
    started = client.post("/v1/frontiers", headers=MERCHANDISER, json={
        "vary": "max_avg_discount", "values": [0.01, 0.02], "time_limit": 30, "plan_id": plan_id})
    frontier_id = started.get_json()["frontier_id"]
    cancelled = client.delete(f"/v1/frontiers/{frontier_id}", headers=MERCHANDISER)
    assert cancelled.status_code == 202 and cancelled.get_json()["cancel_requested"]
    done = wait_for_frontier(client, f"/v1/frontiers/{frontier_id}")
    assert done["status"] in ("cancelled", "succeeded")  # it may finish before it sees the cancel


def test_a_frontier_run_has_no_plan_and_says_where_its_points_are(
        client: FlaskClient, plan_id: str) -> None:
    started = client.post("/v1/frontiers", headers=MERCHANDISER, json={
        "vary": "promotion_budget", "values": [100_000, 900_000], "time_limit": 10,
        "plan_id": plan_id})
    frontier_id = started.get_json()["frontier_id"]
    for _ in range(2):  # queued or running, then finished: never "no plan yet"
        plan = client.get(f"/v1/runs/{frontier_id}/plan", headers=MERCHANDISER)
        assert plan.status_code == 404 and plan.mimetype == PROBLEM
        detail = plan.get_json()["detail"]
        assert "is a frontier run" in detail and f"GET /v1/frontiers/{frontier_id}" in detail
        assert "no plan yet" not in detail
        wait_for_frontier(client, f"/v1/frontiers/{frontier_id}")


def test_explanations_keep_the_lp_duals_of_a_plan(client: FlaskClient, plan_id: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan without multipliers of its own is priced by the LP once per web worker: every
    later question about it, for any segment, is answered without solving anything."""
    from api import workbench_api

    library = importlib.import_module("optimizer.explain.explain")  # the module, not the function

    solved: list[float | None] = []
    real = library.lp_prices

    def counted(instance: Any, form: Any, time_limit: float | None = None) -> Any:
        solved.append(time_limit)
        return real(instance, form, time_limit)

    monkeypatch.setattr(library, "plan_prices", lambda *_: None)  # as the exact MIP's plans
    monkeypatch.setattr(library, "lp_prices", counted)
    monkeypatch.setattr(workbench_api, "PRICES", workbench_api._PricesKept(most=2))
    for segment in ("champions-product", "bargain-hunters-cart", "champions-product"):
        answer = client.get(f"/v1/plans/{plan_id}/explain?segment={segment}",
                            headers=MERCHANDISER)
        assert answer.status_code == 200 and answer.get_json()["multipliers_source"] == "lp"
    assert solved == [workbench_api.EXPLAIN_SECONDS]  # the first question only, within its cap
    bad = client.get(f"/v1/plans/{plan_id}/explain?segment=nobody", headers=MERCHANDISER)
    assert bad.status_code == 422 and len(solved) == 1  # refused before anything is priced
    kept = workbench_api.PRICES
    prices = kept.get(plan_id)
    assert prices is not None and prices.source == "lp"
    kept.keep("a", prices)
    kept.keep("b", prices)  # at most two plans: the oldest asked about goes
    assert kept.get(plan_id) is None and kept.get("a") is prices and kept.get("b") is prices


def test_a_frontier_run_without_a_plan_fails_with_its_reason(tmp_path: Path) -> None:
    """The run's body, in this process, on a store of its own: 0.2 s (the least for one
    value) is all the run's own reserve, so no value is solved; the run fails and says why,
    and GET answers it (never a 5xx)."""
    from api.workbench_job import KIND, execute_frontier

    url = f"sqlite:///{tmp_path / 'offeropt.db'}"
    store = Store.open(url)
    document = json.dumps(instance_to_document(instance_from_document(
        json.loads((DATA / "demo.json").read_text()))), sort_keys=True)
    options = {"kind": KIND, "vary": "promotion_budget", "values": [100_000.0],
               "time_limit": 0.2, "method": None, "plan_id": None, "currency": "JPY"}
    run_id, _ = store.submit("demo-shop", document, hashlib.sha256(document.encode()).hexdigest(),
                             options, "test", None)
    assert store.claim_next("test") == run_id
    execute_frontier(store, run_id)
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "RUN_JOBS": False,
                      "MERCHANDISER_TOKENS": "m-token", "STOREFRONT_TOKENS": "s-token",
                      "INDEX_POLL_SECONDS": 0.0})
    answer = app.test_client().get(f"/v1/frontiers/{run_id}", headers=MERCHANDISER)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    done = answer.get_json()
    assert done["status"] == "failed", done
    assert done["error"] == ("no plan at any value of promotion_budget (incomplete: values "
                             "100,000 not solved within the time limit)")
    assert done["points"] == [] and not done["complete"] and done["stops_costing_at"] is None


def test_frontier_run_outcomes() -> None:
    """A failed check or no plan is a failed run with its reason; an incomplete curve with
    plans succeeds (its `complete` says the rest); a cancel is a cancel."""
    from api.store import RunStatus
    from api.workbench_job import outcome
    from optimizer.frontier import Frontier, FrontierPoint

    def point(value: float, objective: float | None, status: str = "optimal",
              check: str | None = "passed") -> FrontierPoint:
        return FrontierPoint(value, objective, objective, 0.0 if objective else None, status,
                             check is not None and check != "failed", (), 0.1, check=check)

    good = Frontier("promotion_budget", (point(1e5, 10.0), point(2e5, 12.0)))
    assert outcome(good, cancelled=False) == (RunStatus.SUCCEEDED, None)
    cut = Frontier("promotion_budget", (point(1e5, 10.0),), complete=False, unsolved=(2e5,))
    assert outcome(cut, cancelled=False) == (RunStatus.SUCCEEDED, None)
    assert outcome(cut, cancelled=True) == (RunStatus.CANCELLED, None)
    failed = Frontier("promotion_budget", (point(1e5, 10.0), point(2e5, None, "error", "failed")))
    assert outcome(failed, cancelled=False) == (
        RunStatus.FAILED, "the plans at promotion_budget = 200,000 failed the independent check")
    none = Frontier("max_avg_discount", (point(0.02, None, "time_limit", None),), complete=False,
                    unsolved=(0.04,))
    assert outcome(none, cancelled=False) == (
        RunStatus.FAILED, "no plan at any value of max_avg_discount (0.02: time_limit; "
                          "incomplete: values 0.04 not solved within the time limit)")
