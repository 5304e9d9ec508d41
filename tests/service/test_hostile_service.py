"""Hostile and awkward use of the HTTP service: clean 4xx problems, never a 5xx; a cancelled
solve stops promptly; progress moves every second; a storefront worker never answers an
older plan than one it has answered, and answers a published plan from its first request.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.store import RunStatus, Store
from optimizer.io import instance_from_document, load_instance
from optimizer.io.json_form import instance_to_document
from optimizer.plan.document import build_plan
from optimizer.solve.dispatch import SolveOptions, solve
from tests.constants import MERCHANDISER, ROOT, STOREFRONT
from tests.server import Processes, Server

PROBLEM = "application/problem+json"


def _app(tmp_path: Path, **config: Any) -> Flask:
    """An app that never starts solves; INDEX_POLL_SECONDS stays at its default."""
    return create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "RUN_JOBS": False,
                       "MERCHANDISER_TOKENS": "m-token", "STOREFRONT_TOKENS": "s-token",
                       **config})


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body: dict[str, Any] = response.get_json()
    assert "Traceback" not in json.dumps(body)
    return body


# -- Idempotency-Key: the options are part of the request's identity ----------------------


def test_a_reused_idempotency_key_with_other_options_is_a_conflict(
        tmp_path: Path, demo_doc: dict[str, Any]) -> None:
    client = _app(tmp_path).test_client()
    headers = {**MERCHANDISER, "Idempotency-Key": "order-8"}
    first = client.post("/v1/catalog-plans?time_limit=30", json=demo_doc, headers=headers)
    again = client.post("/v1/catalog-plans?time_limit=30", json=demo_doc, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["run_id"] == first.get_json()["run_id"]
    assert not again.get_json()["created"]
    for query, changed in (("time_limit=60", "time_limit=60.0"),
                           ("time_limit=30&gap=0.01", "gap=0.01"),
                           ("time_limit=30&split_traffic=true", "split_traffic=True"),
                           ("", "time_limit=300.0")):
        detail = _problem(client.post(f"/v1/catalog-plans?{query}", json=demo_doc,
                                      headers=headers), 409)["detail"]
        assert "Idempotency-Key 'order-8': must be reused only with the same options" in detail
        assert changed in detail
    demo_doc["segments"][0]["views"] = 1
    detail = _problem(client.post("/v1/catalog-plans?time_limit=30", json=demo_doc,
                                  headers=headers), 409)["detail"]
    assert "Idempotency-Key 'order-8': must be reused only with the same catalog plan" in detail


# -- Rollback to a version that does not exist ---------------------------------------------


def _store_plans(store: Store, docs: list[dict[str, Any]]) -> list[str]:
    """Each catalog solved here (not by a solve process) and stored as a checked plan."""
    plan_ids = []
    for k, doc in enumerate(docs):
        inst = instance_from_document(doc)
        document = json.dumps(instance_to_document(inst), sort_keys=True)
        run_id, _ = store.submit(inst.name, document, f"{k:064d}", {"time_limit": 60.0},
                                 "test", None)
        plan = build_plan(solve(inst, SolveOptions(method="exact", gap=1e-2)))
        store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True)
        plan_ids.append(store.run(run_id)["plan_id"])
    return plan_ids


@pytest.fixture
def two_plans(demo_doc: dict[str, Any]) -> list[dict[str, Any]]:
    other = json.loads(json.dumps(demo_doc))
    other["policy"]["max_offers_per_view"] = 1
    return [demo_doc, other]


def test_rollback_to_an_unknown_version_names_the_published_ones(
        tmp_path: Path, two_plans: list[dict[str, Any]]) -> None:
    app = _app(tmp_path)
    client = app.test_client()
    first, second = _store_plans(app.extensions["offeropt.store"], two_plans)
    for plan_id in (first, second):
        assert client.post(f"/v1/plans/{plan_id}/publish", headers=MERCHANDISER).status_code == 200
    detail = _problem(client.post("/v1/plans/rollback", json={"to_version": 99},
                                  headers=MERCHANDISER), 404)["detail"]
    assert detail == "to_version: must be a published version (1-2), got 99: no publication 99 " \
                     "exists"


# -- The storefront after a publish ----------------------------------------------------------


def _offers_version(client: FlaskClient) -> int:
    response = client.get("/v1/offers?segment=loyal-checkout", headers=STOREFRONT)
    assert response.status_code == 200, response.get_data(as_text=True)
    version: int = response.get_json()["plan_version"]
    return version


def test_the_first_answer_after_a_publish_carries_its_version(
        tmp_path: Path, two_plans: list[dict[str, Any]]) -> None:
    """With the default settings, a request that follows a publish (or rollback) is
    answered from the new version, in this worker, without waiting for any poll."""
    app = _app(tmp_path)
    client = app.test_client()
    plans = _store_plans(app.extensions["offeropt.store"], two_plans)
    for k in range(4):
        published = client.post(f"/v1/plans/{plans[k % 2]}/publish", headers=MERCHANDISER)
        assert published.status_code == 200
        assert _offers_version(client) == published.get_json()["version"] == k + 1
    back = client.post("/v1/plans/rollback", headers=MERCHANDISER).get_json()
    assert _offers_version(client) == back["version"] == 5


def test_a_worker_never_answers_an_older_version_than_it_has_answered(
        tmp_path: Path, two_plans: list[dict[str, Any]]) -> None:
    """Requests on several threads while plans are published and the traffic salt rotates
    (which swaps the index too): an answer that starts after another has ended never
    carries an older plan_version."""
    app = _app(tmp_path)
    client = app.test_client()
    plans = _store_plans(app.extensions["offeropt.store"], two_plans)
    client.post(f"/v1/plans/{plans[0]}/publish", headers=MERCHANDISER)
    answers: list[tuple[float, float, int]] = []  # (started, ended, version)
    stop = threading.Event()
    lock = threading.Lock()

    def shop() -> None:
        own = app.test_client()
        while not stop.is_set():
            started = time.monotonic()
            version = _offers_version(own)
            with lock:
                answers.append((started, time.monotonic(), version))

    threads = [threading.Thread(target=shop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for k in range(1, 9):
            time.sleep(0.05)
            client.post(f"/v1/plans/{plans[k % 2]}/publish", headers=MERCHANDISER)
            client.post("/v1/traffic-salt/rotate", headers=MERCHANDISER)
        deadline = time.monotonic() + 60  # the last version is built off the request path
        while time.monotonic() < deadline and not any(v == 9 for *_, v in list(answers)):
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert len(answers) > 20
    by_end = sorted(answers, key=lambda a: a[1])
    for started, _, version in answers:
        seen = [v for _, ended, v in by_end if ended < started]
        assert not seen or version >= max(seen), (version, max(seen))
    assert max(v for *_, v in answers) == 9


def test_the_storefront_keeps_serving_when_the_store_blinks(
        tmp_path: Path, two_plans: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path)
    client = app.test_client()
    store = app.extensions["offeropt.store"]
    plan_id = _store_plans(store, two_plans[:1])[0]
    client.post(f"/v1/plans/{plan_id}/publish", headers=MERCHANDISER)
    assert _offers_version(client) == 1

    def down() -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "serving", down)
    assert _offers_version(client) == 1  # from memory, not a 500


# -- A real server: progress every second, a prompt cancel -----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("catalog", "solver"), [("realistic-2000", "highs"),
                                                 ("medium.json", "cbc")])
def test_progress_moves_every_second_and_cancel_stops_the_solve_promptly(
        tmp_path: Path, processes: Processes, catalog: str, solver: str) -> None:
    """A gap of 0 is out of reach on these catalogs, so the solve runs until cancelled; it
    spends long stretches where the solver calls nothing back (HiGHS's LP, CBC)."""
    path = ROOT / "instances" / catalog
    doc = json.loads(path.read_text()) if path.is_file() else \
        instance_to_document(load_instance(path))
    server: Server = processes.server(tmp_path, workers=1)
    response = server.post(f"/v1/catalog-plans?time_limit=600&gap=0&solver={solver}",
                           json=doc, headers=MERCHANDISER)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]

    def run() -> dict[str, Any]:
        body: dict[str, Any] = server.get(f"/v1/runs/{run_id}", headers=MERCHANDISER).json()
        return body

    deadline = time.monotonic() + 120
    while (body := run())["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert body["status"] == "running", body
    # the first report comes once the catalog is loaded and the solve process started: how
    # soon depends on the machine, so it is only waited for
    while (body := run())["progress"] is None and time.monotonic() < deadline:
        assert body["status"] == "running", body
        time.sleep(0.1)
    assert body["progress"] is not None, "no progress while running"
    watching = time.monotonic()
    changes: list[float] = [watching]  # when the recorded progress changed
    last = body["progress"]
    while time.monotonic() - watching < 6:
        body = run()
        assert body["status"] == "running", body
        if body["progress"] != last:
            last = body["progress"]
            changes.append(time.monotonic())
        time.sleep(0.2)
    # from then on, a change about every second
    gaps = [b - a for a, b in zip(changes, [*changes[1:], time.monotonic()], strict=True)]
    assert max(gaps) < 4, f"progress stood still for {max(gaps):.1f} s: {gaps}"
    assert {"objective", "bound", "gap", "elapsed"} <= set(last or {})

    asked = time.monotonic()
    assert requests.delete(f"{server.base}/v1/runs/{run_id}", headers=MERCHANDISER,
                           timeout=30).status_code == 202
    while (body := run())["status"] == "running" and time.monotonic() - asked < 60:
        time.sleep(0.1)
    latency = time.monotonic() - asked
    assert body["status"] == "cancelled", body
    assert latency < 10, f"the cancel took {latency:.1f} s"
