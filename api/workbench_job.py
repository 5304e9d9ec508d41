"""A frontier as a background run (issue 17): the body of its own process.

A frontier is queued as a run of the store (`runs`, its `options` of kind `frontier`) on
the catalog its plan was solved from, so the dispatcher (`api.jobs.JobRunner`) claims it,
starts it in a fresh process (`python -m api.solve_process`, which hands it here), holds
its time limit and cancels it like any solve. The run's `progress` holds the points solved
so far (and the solve in course), then the whole frontier.

Its outcome (`outcome`): `failed`, with the reason in `error`, when a point's plan failed the
independent check or no value has a plan; `cancelled` when asked; else `succeeded`, with
`complete` false (and `unsolved`, the values left) when the time limit ran out first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from api.store import RunStatus, Store, this_worker
from optimizer.backends import Progress
from optimizer.errors import InputError

if TYPE_CHECKING:
    from optimizer.frontier import Frontier

log = logging.getLogger(__name__)
KIND = "frontier"
HEARTBEAT_SECONDS = 2.0  # as a solve run's (api.jobs)
PROGRESS_SECONDS = 1.0
FINISH_RESERVE = 0.25  # seconds of the time limit kept for recording the frontier at the end


def is_frontier(options: dict[str, Any]) -> bool:
    return options.get("kind") == KIND


def execute_frontier(store: Store, run_id: str) -> None:
    """Load the run's catalog, solve the frontier point by point, record each point as it
    comes and the frontier at the end; a cancel stops the solve in course within a second."""
    from optimizer.frontier import frontier

    started = time.monotonic()
    store.update_run(run_id, worker=this_worker(), heartbeat_at=time.time())
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, stop), daemon=True)
    beat.start()
    state: dict[str, Any] = {"points": [], "current": None, "complete": False}
    try:
        options = json.loads(store.run(run_id)["options"])
        store.update_run(run_id, progress=json.dumps(state))
        instance = store.catalog_instance(run_id)
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

        # the time limit counts from this process's start of the run (loading included)
        curve = frontier(instance, options["vary"], options["values"],
                         time_limit=options["time_limit"], method=options.get("method"),
                         progress=on_point, solve_progress=on_solve, started=started,
                         reserve=FINISH_RESERVE)
        state.update(current=None, complete=curve.complete, unsolved=list(curve.unsolved))
        status, error = outcome(curve, cancelled=store.cancel_requested(run_id))
        store.finish_run(run_id, status, None,
                         checked=curve.has_plan and not curve.check_failed,
                         progress=json.dumps(state), error=error)
    except InputError as exc:
        store.finish_run(run_id, RunStatus.FAILED, None, checked=False, error=exc.describe())
    except Exception as exc:  # the run records why it failed; the process must not die silently
        log.exception("frontier %s failed", run_id)
        store.finish_run(run_id, RunStatus.FAILED, None, checked=False,
                         error=f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()


def outcome(curve: Frontier, cancelled: bool) -> tuple[RunStatus, str | None]:
    """The run's status and its `error`: `failed` when a point's plan failed the independent
    check or no value has a plan (a frontier without a plan answers nothing), `cancelled`
    when asked, else `succeeded` (an incomplete curve too: `complete` says so)."""
    from optimizer.frontier import number_text

    def listed(values: Any) -> str:
        return ", ".join(number_text(v) for v in values)

    if curve.check_failed:
        return RunStatus.FAILED, (f"the plans at {curve.vary} = {listed(curve.check_failed)} "
                                  f"failed the independent check")
    if cancelled:
        return RunStatus.CANCELLED, None
    if not curve.has_plan:
        why = [f"{number_text(p.value)}: {p.status}" for p in curve.points]
        unsolved = curve.unsolved_words()
        if unsolved is not None:
            why.append(unsolved)
        return RunStatus.FAILED, (f"no plan at any value of {curve.vary}"
                                  + (f" ({'; '.join(why)})" if why else ""))
    return RunStatus.SUCCEEDED, None


def _heartbeat(store: Store, run_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            store.update_run(run_id, heartbeat_at=time.time())
        except Exception:  # a missed beat is retried; the reaper tolerates several
            log.warning("heartbeat for frontier %s failed", run_id, exc_info=True)
