"""A frontier as a background run (issue 17): the body of its own process.

A frontier is queued as a run of the store (`runs`, its `options` of kind `frontier`) on
the catalog its plan was solved from, so the dispatcher (`api.jobs.JobRunner`) claims it,
starts it in a fresh process (`python -m api.solve_process`, which hands it here), holds
its time limit and cancels it like any solve. The run's `progress` holds the points solved
so far (and the solve in course), then the whole frontier.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict
from typing import Any

from api.store import RunStatus, Store, this_worker
from optimizer.backends import Progress
from optimizer.errors import InputError

log = logging.getLogger(__name__)
KIND = "frontier"
HEARTBEAT_SECONDS = 2.0  # as a solve run's (api.jobs)
PROGRESS_SECONDS = 1.0


def is_frontier(options: dict[str, Any]) -> bool:
    return options.get("kind") == KIND


def execute_frontier(store: Store, run_id: str) -> None:
    """Load the run's catalog, solve the frontier point by point, record each point as it
    comes and the frontier at the end; a cancel stops the solve in course within a second."""
    from optimizer.frontier import MIN_SECONDS_PER_POINT, frontier
    from optimizer.io import instance_from_document

    started = time.monotonic()
    store.update_run(run_id, worker=this_worker(), heartbeat_at=time.time())
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, stop), daemon=True)
    beat.start()
    state: dict[str, Any] = {"points": [], "current": None, "complete": False}
    try:
        options = json.loads(store.run(run_id)["options"])
        store.update_run(run_id, progress=json.dumps(state))
        instance = instance_from_document(json.loads(store.catalog_document(run_id)),
                                          origin="catalog")
        if store.cancel_requested(run_id):
            store.finish_run(run_id, RunStatus.CANCELLED, None, checked=False,
                             error="cancelled before the first solve started")
            return
        last = [0.0]
        cancelled = [False]

        def on_point(point: Any) -> None:
            state["points"].append(point.to_dict())
            state["current"] = None
            store.update_run(run_id, progress=json.dumps(state))

        def on_solve(p: Progress) -> bool:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_SECONDS - 0.05:
                last[0] = now
                state["current"] = asdict(p)
                store.update_run(run_id, progress=json.dumps(state))
                cancelled[0] = store.cancel_requested(run_id)
            return cancelled[0]

        values = options["values"]
        budget = max(options["time_limit"] - (time.monotonic() - started),
                     MIN_SECONDS_PER_POINT * len(values))
        curve = frontier(instance, options["vary"], values, time_limit=budget,
                         method=options.get("method"), progress=on_point, solve_progress=on_solve)
        state.update(current=None, complete=curve.complete)
        failed = [p.value for p in curve.points if p.objective is not None and not p.checked]
        status = RunStatus.CANCELLED if store.cancel_requested(run_id) else RunStatus.SUCCEEDED
        error = None if not failed else f"the plans at {failed} failed the independent check"
        store.finish_run(run_id, status, None, checked=not failed, progress=json.dumps(state),
                         error=error)
    except InputError as exc:
        store.finish_run(run_id, RunStatus.FAILED, None, checked=False, error=exc.describe())
    except Exception as exc:  # the run records why it failed; the process must not die silently
        log.exception("frontier %s failed", run_id)
        store.finish_run(run_id, RunStatus.FAILED, None, checked=False,
                         error=f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()


def _heartbeat(store: Store, run_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            store.update_run(run_id, heartbeat_at=time.time())
        except Exception:  # a missed beat is retried; the reaper tolerates several
            log.warning("heartbeat for frontier %s failed", run_id, exc_info=True)
