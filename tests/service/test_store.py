"""The store: migrations under concurrency, atomic claims, publication history."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from api.store import Conflict, RunStatus, Store
from api.store.schema import MIGRATIONS
from tests.plans import bare_plan
from tests.server import Processes


def test_concurrent_first_start_migrates_once(database_url: str, processes: Processes) -> None:
    url = database_url
    code = f"from api.store import Store; print(Store.open({url!r}).schema_version())"
    starts = [processes.start([sys.executable, "-c", code], name="migrate") for _ in range(6)]
    outcomes = [(p.wait(timeout=300), p.stdout(), p.stderr()) for p in starts]
    assert all(code == 0 and out.strip() == str(len(MIGRATIONS))
               for code, out, _ in outcomes), outcomes
    assert Store.open(url).schema_version() == len(MIGRATIONS)


def test_a_queued_run_is_claimed_once(database_url: str) -> None:
    store = Store.open(database_url)
    run_id, _ = store.submit("x", "{}", "h", {"time_limit": 1}, "me", None)
    assert store.claim_next("a:1") == run_id
    assert store.claim_next("b:2") is None
    assert store.run(run_id)["status"] == RunStatus.RUNNING


def test_rollback_walks_back_through_distinct_plans(database_url: str) -> None:
    store = Store.open(database_url)
    plans = []
    for i in range(3):
        run_id, _ = store.submit(f"c{i}", "{}", f"h{i}", {"time_limit": 1}, "me", None)
        store.finish_run(run_id, RunStatus.SUCCEEDED, bare_plan("optimal"), checked=True)
        plans.append(store.run(run_id)["plan_id"])
    for p in plans:
        store.publish(p, "me")
    store.publish(plans[2], "me")  # republishing the same plan adds a version, not a new plan
    store.rollback("me")
    active = store.active()
    assert active is not None and active["plan_id"] == plans[1]
    store.rollback("me", to_version=1)
    assert store.active() == {"plan_id": plans[0], "version": 6}
    assert [h["action"] for h in store.history()][:2] == ["rollback", "rollback"]


def test_unchecked_plans_are_not_published(database_url: str) -> None:
    store = Store.open(database_url)
    run_id, _ = store.submit("c", "{}", "h", {"time_limit": 1}, "me", None)
    store.finish_run(run_id, RunStatus.SUCCEEDED, bare_plan("feasible"), checked=False)
    with pytest.raises(Conflict, match="must be a checked plan"):
        store.publish(store.run(run_id)["plan_id"], "me")


def test_whole_service_flow_on_each_database(database_url: str, demo_doc: dict[str, Any]) -> None:
    from api.app import create_app
    from tests.api_helpers import offers_at_version, solved_plan
    from tests.constants import MERCHANDISER

    app = create_app({"TESTING": True, "DATABASE_URL": database_url,
                      "MERCHANDISER_TOKENS": "m-token", "STOREFRONT_TOKENS": "s-token",
                      "INDEX_POLL_SECONDS": 0.0})
    try:
        client = app.test_client()
        first = solved_plan(client, demo_doc)
        demo_doc["policy"]["max_offers_per_view"] = 1
        second = solved_plan(client, demo_doc)
        for run in (first, second):
            assert client.post(f"/v1/plans/{run['plan_id']}/publish",
                               headers=MERCHANDISER).status_code == 200
        assert client.post("/v1/plans/rollback", headers=MERCHANDISER).get_json()["plan_id"] == \
            first["plan_id"]
        served = offers_at_version(client, "loyal-checkout", 3)
        assert served["plan_version"] == 3 and served["offers"]
    finally:
        app.extensions["offeropt.jobs"].stop()
