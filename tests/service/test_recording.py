"""Recording (spec section 9): served views and purchases become exposures@1 counters.

The storefront's answers carry an exposure token; each answered view is journaled and
counted per cell; purchases reported with POST /v1/events are attributed to the cell that
showed the bundle and counted once per event id; the holdout stays with the customer across
plans until its salt is rotated; a worker killed with SIGKILL loses no view.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.recording import Recorder, replay_journals
from api.store import RunStatus, Store
from api.store.logs import Purchase, commit_batch, record_purchases, recorded_logs
from optimizer.estimation.exposures import load_exposures
from optimizer.io import instance_from_document
from optimizer.io.json_form import instance_to_document
from optimizer.model.instance import Instance
from optimizer.plan.document import build_plan
from optimizer.solve.verify import solve_verified
from tests.constants import DATA, MERCHANDISER, STOREFRONT
from tests.server import Processes

HOLDOUT = 0.2


def _demo() -> Instance:
    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    return dataclasses.replace(inst, policy=dataclasses.replace(inst.policy,
                                                                holdout_fraction=HOLDOUT))


def publish(store: Store, inst: Instance) -> int:
    """Solve `inst` in process and publish its plan straight through the store."""
    plan = build_plan(solve_verified(inst))
    document = json.dumps(instance_to_document(inst))
    run_id, _ = store.submit(inst.name, document, hashlib.sha256(document.encode()).hexdigest(),
                             {}, "test", None)
    store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True, plan_status=plan.status)
    return store.publish(str(store.run(run_id)["plan_id"]), "test")


@pytest.fixture(scope="module")
def demo() -> Instance:
    return _demo()


@pytest.fixture
def published(app: Flask, demo: Instance) -> Store:
    store: Store = app.extensions["offeropt.store"]
    publish(store, demo)
    return store


def demo_bundles() -> list[str]:
    return list(_demo().bundles["id"])


def _recorder(app: Flask) -> Recorder:
    recorder: Recorder = app.extensions["offeropt.recorder"]
    return recorder


def _offers(client: FlaskClient, segment: str, customer: str) -> dict[str, Any]:
    response = client.get(f"/v1/offers?segment={segment}&customer_id={customer}",
                          headers=STOREFRONT)
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_served_views_become_counters_per_cell(app: Flask, client: FlaskClient,
                                               published: Store, tmp_path: Path) -> None:
    answers = [_offers(client, "champions-product", f"c{i}") for i in range(200)]
    _recorder(app).flush()
    logs = recorded_logs(published)
    shown, held = logs[logs["shown"] == 1], logs[logs["shown"] == 0]
    treated = [a for a in answers if not a["holdout"]]
    assert 0 < len(treated) < 200
    offers = {o["bundle"]: o for o in treated[0]["offers"]}
    assert set(shown["bundle"]) == set(offers)
    assert (shown["views"] == len(treated)).all() and (shown["purchases"] == 0).all()
    assert shown["propensity"].tolist() == pytest.approx([1 - HOLDOUT] * len(shown))
    assert (shown["discount"].to_numpy() ==
            [offers[b]["discount"] for b in shown["bundle"]]).all()
    assert (held["views"] == 200 - len(treated)).all() and set(held["set"]) == {""}
    assert held["propensity"].tolist() == pytest.approx([HOLDOUT] * len(held))
    # the logs read as exposures@1 against the catalog they were served from
    logs.to_csv(tmp_path / "logs.csv", index=False)
    read = load_exposures(tmp_path / "logs.csv", _demo())
    assert int(read.views.sum()) == int(logs["views"].sum())


def test_the_answer_carries_a_token_and_caches_revalidate(client: FlaskClient,
                                                          published: Store) -> None:
    response = client.get("/v1/offers?segment=champions-product&customer_id=c1",
                          headers=STOREFRONT)
    body = response.get_json()
    assert body["exposure"].startswith("1.") and body["exposure"].count(".") >= 4
    assert response.headers["Cache-Control"] == "private, no-cache"
    # an anonymous view could not have been held out: served, not recorded, cacheable
    anonymous = client.get("/v1/offers?segment=champions-product", headers=STOREFRONT)
    assert anonymous.get_json()["exposure"].split(".")[3] == "2"
    assert anonymous.headers["Cache-Control"] == "public, max-age=30"


def test_purchases_count_once_in_the_cell_that_showed_the_bundle(
        app: Flask, client: FlaskClient, published: Store) -> None:
    answers = [_offers(client, "champions-product", f"c{i}") for i in range(60)]
    treated = next(a for a in answers if not a["holdout"])
    held = next(a for a in answers if a["holdout"])
    bundle = treated["offers"][0]["bundle"]
    not_shown = next(b for b in demo_bundles() if b not in {o["bundle"] for o in treated["offers"]})
    events = [{"id": "e1", "bundle": bundle, "token": treated["exposure"]},
              {"id": "e2", "bundle": bundle, "token": held["exposure"]},
              {"id": "e3", "bundle": not_shown, "token": treated["exposure"]},
              {"id": "e1", "bundle": bundle, "token": treated["exposure"]}]  # resent in the batch
    receipt = client.post("/v1/events", json={"events": events}, headers=STOREFRONT).get_json()
    assert receipt == {"accepted": 3, "duplicates": 1, "unattributed": 1}
    again = client.post("/v1/events", json={"events": events[:1]}, headers=STOREFRONT).get_json()
    assert again == {"accepted": 0, "duplicates": 1, "unattributed": 0}
    # by customer and segment: the view the active plan gives that customer now
    customer = next(f"c{i}" for i, a in enumerate(answers) if not a["holdout"])
    by_customer = client.post("/v1/events", headers=STOREFRONT, json={"events": [
        {"id": "e4", "bundle": bundle, "customer_id": customer,
         "segment": "champions-product"}]}).get_json()
    assert by_customer["accepted"] == 1 and by_customer["unattributed"] == 0
    _recorder(app).flush()
    logs = recorded_logs(published).set_index(["bundle", "shown"])
    assert logs.loc[(bundle, 1), "purchases"] == 2  # e1 once, e4
    assert logs.loc[(bundle, 0), "purchases"] == 1  # e2, in the holdout's cell
    assert logs["purchases"].sum() == 3


def test_bad_events_name_the_field_and_the_rule(client: FlaskClient, published: Store) -> None:
    bundle = demo_bundles()[0]
    bad = client.post("/v1/events", headers=STOREFRONT, json={"events": [
        {"id": "", "bundle": bundle, "token": "1.0.0.0.0.8"},
        {"id": "x", "bundle": bundle, "token": "nonsense"},
        {"id": "y", "bundle": bundle, "token": "99.0.0.0.0.8"},
        {"id": "z", "bundle": bundle, "segment": "nobody"},
        {"id": "w", "bundle": "no-such-bundle", "token": "1.0.0.0.0.8"},
        {"id": "v", "bundle": bundle, "token": "1.0.0.0.0.5"},  # not the view's propensity
        {"id": "u\x00", "bundle": bundle, "token": "1.0.0.0.0.8"}]})
    assert bad.status_code == 422
    paths = [e["path"] for e in bad.get_json()["errors"]]
    assert paths == ["events[0].id", "events[1].token", "events[2].token",
                     "events[3].customer_id", "events[3].segment", "events[4].bundle",
                     "events[5].token", "events[6].id"]
    assert client.post("/v1/events", headers=STOREFRONT, json={"events": []}).status_code == 400
    assert client.post("/v1/events", headers=STOREFRONT, data=b"{").status_code == 400
    assert client.post("/v1/events", json={"events": [{"id": "a", "bundle": "b"}]}
                       ).status_code == 401


def test_the_holdout_outlives_plans_until_its_salt_rotates(app: Flask, client: FlaskClient,
                                                           published: Store,
                                                           demo: Instance) -> None:
    def held_out() -> set[str]:
        return {f"c{i}" for i in range(300)
                if _offers(client, "champions-product", f"c{i}")["holdout"]}

    first = held_out()
    assert 30 <= len(first) <= 90  # holdout_fraction 0.2 of 300
    publish(published, demo)  # a new plan: version 2, another plan id
    assert _offers(client, "champions-product", "c0")["plan_version"] == 2
    assert held_out() == first
    rotated = client.post("/v1/holdout-salt/rotate", headers=MERCHANDISER)
    assert rotated.status_code == 200 and rotated.get_json()["salt_version"] == 2
    assert held_out() != first


def test_a_purchase_of_an_earlier_version_is_attributed_to_its_view(
        app: Flask, client: FlaskClient, published: Store, demo: Instance) -> None:
    answer = next(a for i in range(50)
                  if not (a := _offers(client, "champions-product", f"c{i}"))["holdout"])
    publish(published, demo)
    assert _offers(client, "champions-product", "c0")["plan_version"] == 2
    bundle = answer["offers"][0]["bundle"]
    receipt = client.post("/v1/events", headers=STOREFRONT, json={"events": [
        {"id": "late", "bundle": bundle, "token": answer["exposure"]}]}).get_json()
    assert receipt["unattributed"] == 0
    _recorder(app).flush()
    logs = recorded_logs(published)
    row = logs[(logs["plan_version"] == 1) & (logs["bundle"] == bundle) & (logs["shown"] == 1)]
    assert row["purchases"].tolist() == [1]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_dead_workers_journal_is_replayed_once(app: Flask, client: FlaskClient,
                                                 published: Store, tmp_path: Path) -> None:
    for i in range(40):
        _offers(client, "champions-product", f"c{i}")
    recorder = _recorder(app)
    # what a SIGKILL leaves: this worker's journal under a dead pid, with a cut last line
    journal = next(recorder.folder.glob(f"*~{os.getpid()}~*.journal"))
    orphan = journal.with_name(journal.name.replace(f"~{os.getpid()}~", f"~{_dead_pid()}~"))
    orphan.write_bytes(journal.read_bytes() + b'[1,"champions-prod')
    with recorder._lock:  # the counter the killed worker held in memory dies with it
        recorder._pending.clear()
    assert replay_journals(published, recorder.folder) == 40
    assert not orphan.exists()
    logs = recorded_logs(published)
    assert logs.groupby("set")["views"].max().sum() == 40  # a view counts in each of its cells
    # a file whose batch was stored but not yet deleted (killed in between) adds nothing
    orphan.write_bytes(journal.read_bytes())
    assert replay_journals(published, recorder.folder) == 0
    assert recorded_logs(published)["views"].sum() == logs["views"].sum()


def test_a_worker_killed_between_flushes_loses_no_view(processes: Processes, tmp_path: Path,
                                                       demo: Instance) -> None:
    """A real `offeropt serve` with one worker that never flushes on its own: SIGKILL it
    after 120 views and 2 purchases; the worker gunicorn starts in its place stores them."""
    store = Store.open(f"sqlite:///{tmp_path / 'offeropt.db'}")
    publish(store, demo)
    server = processes.server(tmp_path, workers=1, OFFEROPT_FLUSH_SECONDS="3600")
    answers = [server.get(f"/v1/offers?segment=champions-product&customer_id=c{i}",
                          headers=STOREFRONT).json() for i in range(120)]
    treated = next(a for a in answers if not a["holdout"])
    purchase = {"id": "p1", "bundle": treated["offers"][0]["bundle"], "token": treated["exposure"]}
    for _ in range(2):  # the same event twice: counted once
        assert server.post("/v1/events", json={"events": [purchase]},
                           headers=STOREFRONT).status_code == 200
    assert recorded_logs(store)["views"].sum() == 0  # nothing flushed yet
    assert server.child is not None
    worker = next(p for p in psutil.Process(server.child.pid).children()
                  if "api.server" not in " ".join(p.cmdline()))  # not the dispatcher, replayer
    os.kill(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = recorded_logs(store)
        if logs["views"].sum() > 0:
            break
        time.sleep(0.2)
    per_set = logs.groupby(["set", "bundle"])["views"].sum().groupby("set").max()
    assert per_set.sum() == 120  # every view, in its treated set or the holdout
    assert logs["purchases"].sum() == 1


def test_counts_add_up_and_events_count_once_in_any_store(database_url: str) -> None:
    store = Store.open(database_url)
    cell = {"day": "2026-11-28", "plan_version": 1, "segment": "s", "set": "a", "bundle": "b",
            "shown": 1, "discount": 0.1, "perk": "", "propensity": 0.9}
    rows = [{**cell, "views": 3, "purchases": 0}]
    assert commit_batch(store, "host~1~1.journal", rows)
    assert not commit_batch(store, "host~1~1.journal", rows)  # a replayed batch adds nothing
    assert commit_batch(store, "host~1~2.journal", rows)
    bought = Purchase("e1", "b", 1, "s", cell)
    assert record_purchases(store, [bought, bought, Purchase("e2", "x", 1, "s", None)]) == (2, 1)
    assert record_purchases(store, [bought]) == (0, 1)
    logs = recorded_logs(store)
    assert logs[["views", "purchases"]].values.tolist() == [[6, 1]]
    assert recorded_logs(store, since_version=2).empty
    assert len(recorded_logs(store, since_day="2026-11-28")) == 1


def test_a_published_plan_is_measured_from_the_recorded_logs(
        app: Flask, client: FlaskClient, published: Store) -> None:
    plan_id = str(published.active_bundle()["id"])  # type: ignore[index]
    url = f"/v1/plans/{plan_id}/measurement"
    assert client.get(url, headers=MERCHANDISER).status_code == 409  # nothing served yet
    answers = [_offers(client, "champions-product", f"c{i}") for i in range(300)]
    events = [{"id": f"e{i}", "bundle": (a["offers"] or [{"bundle": demo_bundles()[0]}])[0]["bundle"],
               "token": a["exposure"]} for i, a in enumerate(answers) if i % 7 == 0]
    assert client.post("/v1/events", json={"events": events}, headers=STOREFRONT).status_code == 200
    _recorder(app).flush()
    body = client.get(url, headers=MERCHANDISER).get_json()
    assert body["plan_id"] == plan_id and body["version"] == 1
    assert 0 < body["take_rate"]["value"] < 1 and body["views"] > 0
    both = client.get(f"{url}?against={plan_id}", headers=MERCHANDISER).get_json()
    assert both["off_policy"]["ips"]["value"] is not None
    page = client.get(url, headers={**MERCHANDISER, "Accept": "text/html"})
    assert page.mimetype == "text/html" and b"<svg" in page.data
    assert client.get(f"{url}?version=9", headers=MERCHANDISER).status_code == 400
    assert client.get(url, headers=STOREFRONT).status_code == 403


def test_without_recording_answers_are_cached_and_nothing_is_recorded(tmp_path: Path,
                                                                      demo: Instance) -> None:
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "STOREFRONT_TOKENS": "s-token",
                      "RECORDING": False})
    store: Store = app.extensions["offeropt.store"]
    publish(store, demo)
    response = app.test_client().get("/v1/offers?segment=champions-product", headers=STOREFRONT)
    assert response.headers["Cache-Control"] == "public, max-age=30"
    assert "exposure" in response.get_json()  # purchases can still be reported
    assert "offeropt.recorder" not in app.extensions
    assert recorded_logs(store).empty
