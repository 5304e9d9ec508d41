"""The HTTP API through Flask's test client: every endpoint, error path and role."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.store import RunStatus
from api.store.schema import MIGRATIONS
from tests.api_helpers import offers_at_version, solved_plan, wait_for_run
from tests.constants import MERCHANDISER, ROOT, STOREFRONT

PROBLEM = "application/problem+json"


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["schema_version"] == len(MIGRATIONS)


def test_readyz_when_store_is_down(app: Flask, client: FlaskClient,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> int:
        raise OSError("database is gone")
    monkeypatch.setattr(app.extensions["offeropt.store"], "schema_version", down)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["status"] == "not ready"


def test_metrics_count_requests(client: FlaskClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'offeropt_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "offeropt_http_request_seconds_bucket" in text


def test_openapi_documents_every_route(app: Flask, client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented
    schemas = spec["components"]["schemas"]
    for name in ("Instance", "Run", "RunCreated", "PlanDocument", "Offers", "ProblemDetails",
                 "ActivePlan", "Publication"):
        assert name in schemas
    offers = spec["paths"]["/v1/offers"]["get"]
    assert offers["security"] == [{"bearer": []}] and "401" in offers["responses"]


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/v1/catalog-plans"), ("get", "/v1/runs/x"), ("delete", "/v1/runs/x"),
    ("get", "/v1/runs/x/plan"), ("post", "/v1/plans/x/publish"), ("post", "/v1/plans/rollback"),
    ("get", "/v1/plans/active"), ("get", "/v1/offers?segment=a"),
    ("post", "/v1/traffic-salt/rotate"),
])
def test_every_protected_call_refuses_missing_and_unknown_tokens(client: FlaskClient, method: str,
                                                                 path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401
        assert response.mimetype == PROBLEM


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/v1/catalog-plans"), ("get", "/v1/runs/x"), ("delete", "/v1/runs/x"),
    ("post", "/v1/plans/x/publish"), ("post", "/v1/plans/rollback"),
    ("post", "/v1/traffic-salt/rotate"),
])
def test_storefront_may_not_write(client: FlaskClient, method: str, path: str) -> None:
    response = getattr(client, method)(path, headers=STOREFRONT)
    assert response.status_code == 403
    assert "role 'storefront'" in response.get_json()["detail"]


def test_submit_solve_publish_and_serve(client: FlaskClient, demo_doc: dict[str, Any]) -> None:
    response = client.post("/v1/catalog-plans", json=demo_doc, headers=MERCHANDISER)
    assert response.status_code == 202
    assert response.headers["Location"] == f"/v1/runs/{response.get_json()['run_id']}"
    run = wait_for_run(client, response.get_json()["run_id"])
    assert run["status"] == "succeeded" and run["plan_status"] == "optimal"
    assert 0 <= run["progress"]["gap"] <= 1e-4 and run["started_at"] <= run["finished_at"]
    plan = client.get(f"/v1/runs/{run['id']}/plan", headers=MERCHANDISER)
    assert plan.get_json()["format"] == "offeropt/plan@1"
    csv = client.get(f"/v1/runs/{run['id']}/plan", headers={**MERCHANDISER, "Accept": "text/csv"})
    assert csv.mimetype == "text/csv" and csv.get_data(as_text=True).startswith("segment,bundle")

    assert client.get("/v1/plans/active", headers=STOREFRONT).status_code == 404
    published = client.post(f"/v1/plans/{run['plan_id']}/publish", headers=MERCHANDISER)
    assert published.status_code == 200 and published.get_json()["version"] == 1
    active = client.get("/v1/plans/active", headers=STOREFRONT).get_json()
    assert active["plan_id"] == run["plan_id"]
    assert active["plan"]["objective"] == pytest.approx(run["objective"], rel=1e-12)

    offers = client.get("/v1/offers?segment=loyal-checkout", headers=STOREFRONT)
    body = offers.get_json()
    assert body["plan_version"] == 1 and body["holdout"] is False and body["offers"]
    first = body["offers"][0]
    for key in ("bundle", "name", "items", "reference_price", "price", "discount_percent",
                "savings", "perk"):
        assert key in first
    assert first["savings"] == pytest.approx(first["reference_price"] - first["price"])
    # anonymous, while a holdout is drawn: not part of the experiment, so not recorded
    assert offers.headers["Cache-Control"] == "public, max-age=30"
    again = client.get("/v1/offers?segment=loyal-checkout", headers={
        **STOREFRONT, "If-None-Match": offers.headers["ETag"]})
    assert again.status_code == 304


def test_zip_of_csv_folder_is_accepted(client: FlaskClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for f in (ROOT / "instances" / "demo").iterdir():
            z.write(f, f"demo/{f.name}")
    response = client.post("/v1/catalog-plans", data=buffer.getvalue(),
                           content_type="application/zip", headers=MERCHANDISER)
    assert response.status_code == 202
    assert wait_for_run(client, response.get_json()["run_id"])["catalog_plan"] == "demo-shop"


def test_invalid_instance_gets_422_with_field_paths(client: FlaskClient,
                                                    demo_doc: dict[str, Any]) -> None:
    demo_doc["responses"][12]["take_rate"] = 1.4
    demo_doc["items"][0]["price"] = "abc"
    response = client.post("/v1/catalog-plans", json=demo_doc, headers=MERCHANDISER)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    errors = {e["path"]: e for e in response.get_json()["errors"]}
    assert errors["responses[12].take_rate"]["message"] == \
        "responses[12].take_rate: must be in (0, 1), got 1.4"
    assert errors["items[0].price"]["value"] == "abc"


@pytest.mark.parametrize(("data", "ctype", "status", "fragment"), [
    (b"{not json", "application/json", 400, "body: must be valid JSON"),
    (b"a,b\n1,2", "text/csv", 415, "Content-Type: must be application/json or application/zip"),
    (b"PK-not-a-zip", "application/zip", 422, "must be a zip archive"),
    (b"", "application/json", 422, "must be a JSON object"),
])
def test_bad_bodies(client: FlaskClient, data: bytes, ctype: str, status: int,
                    fragment: str) -> None:
    response = client.post("/v1/catalog-plans", data=data, content_type=ctype,
                           headers=MERCHANDISER)
    assert response.status_code == status and response.mimetype == PROBLEM
    assert fragment in json.dumps(response.get_json())


def test_bad_solve_options(client: FlaskClient, demo_doc: dict[str, Any]) -> None:
    response = client.post("/v1/catalog-plans?time_limit=abc&gap=2&solver=gurobi", json=demo_doc,
                           headers=MERCHANDISER)
    assert response.status_code == 422
    paths = {e["path"] for e in response.get_json()["errors"]}
    assert paths == {"time_limit", "gap", "solver"}


def test_oversized_body_gets_413(tmp_path: Path, demo_doc: dict[str, Any]) -> None:
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
                      "MAX_CONTENT_LENGTH": 1000, "RUN_JOBS": False})
    response = app.test_client().post("/v1/catalog-plans", json=demo_doc, headers=MERCHANDISER)
    assert response.status_code == 413
    assert "must be at most 1000 bytes" in response.get_json()["detail"]


def test_idempotency_key(client: FlaskClient, demo_doc: dict[str, Any]) -> None:
    headers = {**MERCHANDISER, "Idempotency-Key": "order-7"}
    first = client.post("/v1/catalog-plans", json=demo_doc, headers=headers).get_json()
    second = client.post("/v1/catalog-plans", json=demo_doc, headers=headers).get_json()
    assert first["run_id"] == second["run_id"] and first["created"] and not second["created"]
    demo_doc["segments"][0]["views"] = 1
    conflict = client.post("/v1/catalog-plans", json=demo_doc, headers=headers)
    assert conflict.status_code == 409
    assert "Idempotency-Key" in conflict.get_json()["detail"]


def test_unknown_ids_get_404(client: FlaskClient) -> None:
    for method, path in (("get", "/v1/runs/nope"), ("delete", "/v1/runs/nope"),
                         ("get", "/v1/runs/nope/plan"), ("post", "/v1/plans/nope/publish")):
        response = getattr(client, method)(path, headers=MERCHANDISER)
        assert response.status_code == 404 and response.mimetype == PROBLEM
    assert client.get("/no/such/route").status_code == 404


def test_method_not_allowed_is_a_problem(client: FlaskClient) -> None:
    response = client.put("/v1/offers", headers=STOREFRONT)
    assert response.status_code == 405 and response.mimetype == PROBLEM
    assert "GET" in response.headers["Allow"]


def test_unexpected_errors_are_problems_without_traceback(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(run_id: str) -> None:
        raise RuntimeError("secret internals")
    monkeypatch.setattr(app.extensions["offeropt.store"], "run", boom)
    response = client.get("/v1/runs/x", headers=MERCHANDISER)
    assert response.status_code == 500 and response.mimetype == PROBLEM
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_cancel_a_queued_run(tmp_path: Path, demo_doc: dict[str, Any]) -> None:
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
                      "RUN_JOBS": False})
    client = app.test_client()
    run_id = client.post("/v1/catalog-plans", json=demo_doc, headers=MERCHANDISER).get_json()["run_id"]
    cancelled = client.delete(f"/v1/runs/{run_id}", headers=MERCHANDISER)
    assert cancelled.status_code == 202 and cancelled.get_json()["status"] == "cancelled"
    plan = client.get(f"/v1/runs/{run_id}/plan", headers=MERCHANDISER)
    assert plan.status_code == 404 and "has no plan yet" in plan.get_json()["detail"]


def test_cancel_a_running_solve(client: FlaskClient) -> None:
    doc = json.loads((ROOT / "instances" / "medium.json").read_text())
    run_id = client.post("/v1/catalog-plans?time_limit=600&gap=0", json=doc,
                         headers=MERCHANDISER).get_json()["run_id"]
    running = wait_for_run(client, run_id, until=("running",))
    assert running["status"] == "running"
    time.sleep(2)
    assert client.delete(f"/v1/runs/{run_id}", headers=MERCHANDISER).status_code == 202
    done = wait_for_run(client, run_id, timeout=180)
    assert done["status"] == "cancelled"
    assert done["finished_at"] - done["started_at"] < 300  # far from its 600 s limit


def test_progress_is_reported_while_running(client: FlaskClient) -> None:
    """A gap of 0 on this instance is out of reach in any time a test allows, so the solve is
    still running when progress shows, on a fast machine as on a loaded one; the test then
    cancels it instead of waiting for a time limit (whose outcome depends on the machine)."""
    doc = json.loads((ROOT / "instances" / "small.json").read_text())
    run_id = client.post("/v1/catalog-plans?time_limit=600&gap=0", json=doc,
                         headers=MERCHANDISER).get_json()["run_id"]
    deadline = time.monotonic() + 120
    while True:
        body = client.get(f"/v1/runs/{run_id}", headers=MERCHANDISER).get_json()
        if (body["status"] != "queued" and body["progress"]) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert body["status"] == "running", body
    assert {"objective", "bound", "gap", "elapsed"} <= set(body["progress"])
    assert client.delete(f"/v1/runs/{run_id}", headers=MERCHANDISER).status_code == 202
    done = wait_for_run(client, run_id, timeout=180)
    assert done["status"] == "cancelled", done


def test_publish_rules_and_rollback(client: FlaskClient, demo_doc: dict[str, Any]) -> None:
    assert client.post("/v1/plans/rollback", headers=MERCHANDISER).status_code == 409
    first = solved_plan(client, demo_doc)
    demo_doc["policy"]["max_offers_per_view"] = 1
    second = solved_plan(client, demo_doc)
    v1 = client.post(f"/v1/plans/{first['plan_id']}/publish", headers=MERCHANDISER).get_json()
    v2 = client.post(f"/v1/plans/{second['plan_id']}/publish", headers=MERCHANDISER).get_json()
    assert (v1["version"], v2["version"]) == (1, 2)
    assert offers_at_version(client, "loyal-checkout", 2)["plan_version"] == 2
    back = client.post("/v1/plans/rollback", headers=MERCHANDISER).get_json()
    assert back["plan_id"] == first["plan_id"] and back["action"] == "rollback"
    served = offers_at_version(client, "loyal-checkout", 3)
    assert served["plan_version"] == 3 and len(served["offers"]) > 1
    forward = client.post("/v1/plans/rollback", json={"to_version": 2}, headers=MERCHANDISER)
    assert forward.get_json()["plan_id"] == second["plan_id"]
    assert client.post("/v1/plans/rollback", json={"to_version": 99},
                       headers=MERCHANDISER).status_code == 404
    for bad in ("x", 0, 2**70, True):  # 2**70 once overflowed SQLite into a 500 (fuzzer find)
        assert client.post("/v1/plans/rollback", json={"to_version": bad},
                           headers=MERCHANDISER).status_code == 400


def test_infeasible_plan_cannot_be_published(client: FlaskClient) -> None:
    doc = json.loads((ROOT / "tests" / "data" / "demo_infeasible.json").read_text())
    run = solved_plan(client, doc)
    assert run["plan_status"] == "infeasible"
    response = client.post(f"/v1/plans/{run['plan_id']}/publish", headers=MERCHANDISER)
    assert response.status_code == 409 and "must be a checked plan" in response.get_json()["detail"]


def test_storefront_reasons_holdout_and_cart(client: FlaskClient, demo_doc: dict[str, Any]) -> None:
    assert client.get("/v1/offers?segment=x", headers=STOREFRONT).get_json()["reason"] == \
        "no plan is published yet"
    run = solved_plan(client, demo_doc)
    client.post(f"/v1/plans/{run['plan_id']}/publish", headers=MERCHANDISER)
    assert client.get("/v1/offers", headers=STOREFRONT).status_code == 400
    unknown = client.get("/v1/offers?segment=nobody", headers=STOREFRONT)
    assert unknown.status_code == 200
    assert unknown.get_json() == {"segment": "nobody", "plan_version": 1, "holdout": False,
                                  "offers": [], "reason": "unknown segment"}
    answers = [client.get(f"/v1/offers?segment=loyal-checkout&customer_id=c{i}",
                          headers=STOREFRONT).get_json() for i in range(400)]
    held = [a for a in answers if a["holdout"]]
    assert 5 <= len(held) <= 40  # holdout_fraction 0.05
    assert all(a["offers"] == [] and a["reason"] == "holdout" for a in held)
    same = client.get("/v1/offers?segment=loyal-checkout&customer_id=c0", headers=STOREFRONT)
    assert same.get_json()["holdout"] == answers[0]["holdout"]
    assert same.headers["Cache-Control"].startswith("private")
    full = client.get("/v1/offers?segment=loyal-checkout", headers=STOREFRONT).get_json()["offers"]
    in_cart = full[0]["items"][0]["item"]
    cart = client.get(f"/v1/offers?segment=loyal-checkout&exclude_items=other,{in_cart}",
                      headers=STOREFRONT).get_json()["offers"]
    assert [o["bundle"] for o in cart] == [o["bundle"] for o in full
                                           if in_cart not in {i["item"] for i in o["items"]}]
    assert len(full) > 1 and len(cart) < len(full)


def test_restart_marks_in_flight_runs_failed(tmp_path: Path, demo_doc: dict[str, Any]) -> None:
    config = {"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
              "RUN_JOBS": False}
    app = create_app(config)
    store = app.extensions["offeropt.store"]
    run_id = app.test_client().post("/v1/catalog-plans", json=demo_doc,
                                    headers=MERCHANDISER).get_json()["run_id"]
    store.claim_next("somehost:1")
    store.update_run(run_id, worker=f"{__import__('socket').gethostname()}:999999")
    assert store.run(run_id)["status"] == RunStatus.RUNNING
    restarted = create_app({**config, "RUN_JOBS": True})
    try:
        run = restarted.test_client().get(f"/v1/runs/{run_id}", headers=MERCHANDISER).get_json()
        assert run["status"] == "failed" and "stopped" in run["error"]
    finally:
        restarted.extensions["offeropt.jobs"].stop()


def test_a_new_plan_is_built_off_the_request_path(app: Flask, client: FlaskClient,
                                                  demo_doc: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = solved_plan(client, demo_doc)
    client.post(f"/v1/plans/{first['plan_id']}/publish", headers=MERCHANDISER)
    assert offers_at_version(client, "loyal-checkout", 1)["offers"]
    second = solved_plan(client, demo_doc)
    from api import index_file

    real_build = index_file.build_version
    building, release = __import__("threading").Event(), __import__("threading").Event()

    def slow_build(*args: Any) -> Any:
        building.set()
        release.wait(60)  # a large plan takes seconds to index
        return real_build(*args)

    monkeypatch.setattr(index_file, "build_version", slow_build)
    client.post(f"/v1/plans/{second['plan_id']}/publish", headers=MERCHANDISER)
    client.get("/v1/offers?segment=loyal-checkout", headers=STOREFRONT)  # notices version 2
    assert building.wait(60), "the new version's index was never built"
    # Answered while the new index is still being built, so from the old one: had the request
    # waited for the build, it would have taken the 60 s and answered version 2.
    during = client.get("/v1/offers?segment=loyal-checkout", headers=STOREFRONT).get_json()
    assert not release.is_set() and during["plan_version"] == 1 and during["offers"]
    release.set()
    assert offers_at_version(client, "loyal-checkout", 2)["plan_version"] == 2
