"""The nightly job's ledger: one row per run key, and its outcome recorded in one transaction.

A run's catalog, plan, publication and ledger row are written together or not at all, so
a job killed at any point leaves either yesterday's state or the whole new one, and a
second run with the same key finds the first one's outcome.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from api.store import (
    Conflict,
    RunStatus,
    Store,
    encode_catalog,
    encode_plan,
    insert_catalog,
    insert_plan,
    new_id,
    pid_alive,
    this_worker,
)
from api.store.schema import active, nightly_runs, runs
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan


class NightlyStatus(StrEnum):
    RUNNING = "running"
    PUBLISHED = "published"
    KEPT_PREVIOUS = "kept_previous"  # a guardrail failed: the active plan stays
    FAILED = "failed"  # input or solver error; a rerun with the same key tries again


DONE = (NightlyStatus.PUBLISHED, NightlyStatus.KEPT_PREVIOUS)


@dataclass(frozen=True)
class Outcome:
    """What a run leaves in the store (besides its report)."""

    status: NightlyStatus
    exit_code: int
    catalog: Instance  # stored in columns, under the SHA-256 of its zip
    plan: Plan
    checked: bool
    options: dict[str, Any]
    publish: bool
    expected_version: int | None  # the active version the guardrails compared against


@dataclass(frozen=True)
class Ledger:
    store: Store
    stale_after: float = 120.0  # a job on another host that stopped beating this long ago

    def row(self, run_key: str) -> dict[str, Any] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(nightly_runs)
                               .where(nightly_runs.c.run_key == run_key)).mappings().first()
        return None if row is None else dict(row)

    def begin(self, run_key: str) -> dict[str, Any] | None:
        """Claim the key for this process. Returns the earlier run's row when it already
        published or kept the previous plan (nothing more to do); a failed or abandoned run
        is taken over. Raises Conflict while another live job holds the key."""
        now, me = time.time(), this_worker()
        with self.store.write() as conn:
            row = conn.execute(sa.select(nightly_runs)
                               .where(nightly_runs.c.run_key == run_key)).mappings().first()
            if row is None:
                conn.execute(nightly_runs.insert().values(
                    run_key=run_key, status=NightlyStatus.RUNNING, attempts=1, worker=me,
                    heartbeat_at=now, started_at=now))
                return None
            if row["status"] in DONE:
                return dict(row)
            if row["status"] == NightlyStatus.RUNNING and self._alive(row, now):
                raise Conflict(f"run key {run_key!r}: must not be running already, got a live "
                               f"job {row['worker']}")
            conn.execute(nightly_runs.update().where(nightly_runs.c.run_key == run_key).values(
                status=NightlyStatus.RUNNING, attempts=row["attempts"] + 1, worker=me,
                heartbeat_at=now, started_at=now, finished_at=None, exit_code=None,
                error=None, report=None, plan_id=None, version=None))
        return None

    def _alive(self, row: Any, now: float) -> bool:
        host, _, pid = str(row["worker"] or "").rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return pid_alive(int(pid))
        return row["heartbeat_at"] is not None and now - row["heartbeat_at"] < self.stale_after

    def beat(self, run_key: str) -> None:
        with self.store.write() as conn:
            conn.execute(nightly_runs.update().where(
                (nightly_runs.c.run_key == run_key) & (nightly_runs.c.worker == this_worker())
            ).values(heartbeat_at=time.time()))

    def record(self, run_key: str, outcome: Outcome, report: dict[str, Any], actor: str,
               pause: float = 0.0) -> tuple[str, str, int | None]:
        """Store the catalog, the run, the plan, publish it if asked, and close the ledger
        row: one transaction. Returns (run id, plan id, published version or None)."""
        now = time.time()
        catalog_id, run_id, plan_id = new_id(), new_id(), new_id()
        plan = outcome.plan
        # encoded before the transaction: no lock is held while encoding
        catalog, encoded = encode_catalog(outcome.catalog), encode_plan(plan)
        with self.store.write() as conn:
            insert_catalog(conn, catalog_id, outcome.catalog.name, catalog, actor)
            conn.execute(runs.insert().values(
                id=run_id, catalog_plan_id=catalog_id, status=RunStatus.SUCCEEDED,
                options=json.dumps(outcome.options), cancel_requested=False,
                plan_status=plan.status, objective=plan.objective, bound=plan.bound,
                worker=this_worker(), created_at=now, started_at=now, finished_at=now))
            insert_plan(conn, plan_id, run_id, plan, outcome.checked, encoded)  # in columns
            version = None
            if outcome.publish:
                current = conn.execute(sa.select(active.c.version)).scalar()
                if current != outcome.expected_version:
                    raise Conflict(f"active plan: must still be version "
                                   f"{outcome.expected_version} to publish over it, got "
                                   f"{current} (published meanwhile)")
                version = Store.activate(conn, plan_id, "publish", actor, pause)
            report = {**report, "run_id": run_id, "plan_id": plan_id, "version": version}
            closed = conn.execute(nightly_runs.update().where(
                (nightly_runs.c.run_key == run_key) & (nightly_runs.c.worker == this_worker())
                & (nightly_runs.c.status == NightlyStatus.RUNNING)
            ).values(status=outcome.status, exit_code=outcome.exit_code, finished_at=time.time(),
                     plan_id=plan_id, version=version, report=json.dumps(report)))
            if closed.rowcount != 1:
                raise Conflict(f"run key {run_key!r}: must still be held by this job, got it "
                               "taken over by another")
        return run_id, plan_id, version

    def fail(self, run_key: str, exit_code: int, error: str, report: dict[str, Any]) -> None:
        with self.store.write() as conn:
            conn.execute(nightly_runs.update().where(
                (nightly_runs.c.run_key == run_key) & (nightly_runs.c.worker == this_worker())
            ).values(status=NightlyStatus.FAILED, exit_code=exit_code, finished_at=time.time(),
                     error=error, report=json.dumps(report)))
