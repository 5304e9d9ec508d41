"""The store: migrations under concurrency, atomic claims, publication history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.store import Conflict, RunStatus, Store


def test_concurrent_first_start_migrates_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code = f"from api.store import Store; print(Store.open({url!r}).schema_version())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outcomes = [(p.wait(timeout=120), p.communicate()) for p in procs]
    assert all(code == 0 and out.strip() == "1" for code, (out, _) in outcomes), outcomes
    assert Store.open(url).schema_version() == 1


def test_a_queued_run_is_claimed_once(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    run_id, _ = store.submit("x", "{}", "h", {"time_limit": 1}, "me", None)
    assert store.claim_next("a:1") == run_id
    assert store.claim_next("b:2") is None
    assert store.run(run_id)["status"] == RunStatus.RUNNING


def test_rollback_walks_back_through_distinct_plans(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    plans = []
    for i in range(3):
        run_id, _ = store.submit(f"c{i}", "{}", f"h{i}", {"time_limit": 1}, "me", None)
        store.finish_run(run_id, RunStatus.SUCCEEDED, {"status": "optimal"}, checked=True)
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


def test_unchecked_plans_are_not_published(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    run_id, _ = store.submit("c", "{}", "h", {"time_limit": 1}, "me", None)
    store.finish_run(run_id, RunStatus.SUCCEEDED, {"status": "feasible"}, checked=False)
    with pytest.raises(Conflict, match="must be a checked plan"):
        store.publish(store.run(run_id)["plan_id"], "me")
