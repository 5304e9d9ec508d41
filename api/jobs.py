"""Solve runs: each in its own process, never on a request thread.

A dispatcher thread in every app process claims queued runs from the store (an atomic
update, so several app processes can share one queue), starts a process per run up to
its share of the pool, enforces cancellation and hard time limits, and marks runs whose
process died (a crash, a restart) as failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from api.store import RunStatus, Store, make_engine, this_worker

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 2.0
PROGRESS_SECONDS = 1.0
KILL_GRACE_SECONDS = 30.0  # past its time limit, before a run's process is killed
# After a cancel, before the dispatcher kills a process that has not stopped by itself
# (the solve itself sees a cancel within about PROGRESS_SECONDS; loading a large catalog
# or checking its plan does not look).
CANCEL_GRACE_SECONDS = 10.0


def execute_run(database_url: str, run_id: str) -> None:
    """Body of a solve process: load, solve with progress, check, record the outcome."""
    from api.workbench_job import execute_frontier, is_frontier
    from optimizer.backends import Progress
    from optimizer.plan.document import build_plan
    from optimizer.solve.dispatch import SolveOptions, solve
    from optimizer.solve.reports import CheckOutcome
    from optimizer.solve.verify import solve_budget, verified

    started = time.monotonic()
    store = Store(make_engine(database_url))
    if is_frontier(json.loads(store.run(run_id)["options"])):  # a frontier's run (issue 17)
        execute_frontier(store, run_id)
        return
    store.update_run(run_id, worker=this_worker(), heartbeat_at=time.time())
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, stop), daemon=True)
    beat.start()
    try:
        store.update_run(run_id, progress=json.dumps(asdict(Progress(None, None, None, 0.0))))
        options = json.loads(store.run(run_id)["options"])
        instance = store.catalog_instance(run_id)
        if store.cancel_requested(run_id):  # cancelled while the catalog loaded
            store.finish_run(run_id, RunStatus.CANCELLED, None, checked=False,
                             error="cancelled before the solve started")
            return
        last = [0.0]
        cancelled = [False]

        def progress(p: Progress) -> bool:
            """Called by the solve at least every second (`optimizer.solve.supervise`): records
            the snapshot, on the run's own clock, and looks for a cancel."""
            now = time.monotonic()
            if now - last[0] >= PROGRESS_SECONDS - 0.05:  # ticks a second apart all count
                last[0] = now
                snapshot = dataclasses.replace(p, elapsed=round(now - started, 3))
                store.update_run(run_id, progress=json.dumps(asdict(snapshot)))
                cancelled[0] = store.cancel_requested(run_id)
            return cancelled[0]

        # the run's limit covers loading, the solve and the check (storing is a few ms)
        budget = solve_budget(instance, options["time_limit"] - (time.monotonic() - started),
                              options.get("explore", 0.0))
        solve_options = SolveOptions.chosen(options, time_limit=budget, progress=progress)
        solution = verified(solve(instance, solve_options), solve_options)
        plan = build_plan(solution)
        checked = solution.check is not None and solution.check.passed
        status = RunStatus.CANCELLED if store.cancel_requested(run_id) else RunStatus.SUCCEEDED
        final = {"objective": solution.objective, "bound": solution.bound, "gap": solution.gap,
                 "elapsed": solution.seconds}
        error = solution.message if solution.check == CheckOutcome.FAILED else None
        store.finish_run(run_id, status, plan, checked=checked,
                         plan_status=solution.status.value, objective=solution.objective,
                         bound=solution.bound, progress=json.dumps(final), error=error,
                         log_tail="\n".join(solution.log_tail))
    except Exception as exc:  # the run records why it failed; the process must not die silently
        log.exception("run %s failed", run_id)
        store.finish_run(run_id, RunStatus.FAILED, None, checked=False,
                         error=f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()


def _heartbeat(store: Store, run_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            store.update_run(run_id, heartbeat_at=time.time())
        except Exception:  # a missed beat is retried; the reaper tolerates several
            log.warning("heartbeat for run %s failed", run_id, exc_info=True)


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    started: float
    time_limit: float
    cancel_seen: float | None = None


@dataclass
class JobRunner:
    store: Store
    database_url: str
    workers: int = 1
    poll_seconds: float = 0.5
    stale_after: float = 6 * HEARTBEAT_SECONDS + 5
    on_finished: Any = None  # callable(run_id, seconds, status) for metrics
    children: dict[str, _Child] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self.store.fail_lost_runs(self.stale_after, alive=set())
            self._thread = threading.Thread(target=self._loop, name="offeropt-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for child in self.children.values():
            child.process.terminate()  # the run is then failed by the reaper or a restart

    def _loop(self) -> None:
        last_reap = 0.0
        while not self._stop.wait(self.poll_seconds):
            try:
                self._tend_children()
                while len(self.children) < self.workers and self._start_next():
                    pass
                if time.monotonic() - last_reap > self.stale_after / 2:
                    last_reap = time.monotonic()
                    host = this_worker().rsplit(":", 1)[0]
                    alive = {f"{host}:{c.process.pid}" for c in self.children.values()}
                    self.store.fail_lost_runs(self.stale_after, alive)
            except Exception:  # the store may be briefly unreachable; try again next tick
                log.exception("job dispatcher tick failed")

    def _start_next(self) -> bool:
        run_id = self.store.claim_next(this_worker())
        if run_id is None:
            return False
        options = json.loads(self.store.run(run_id)["options"])
        # A fresh interpreter per run: nothing of a threaded server process is forked.
        process = subprocess.Popen([sys.executable, "-m", "api.solve_process",
                                    self.database_url, run_id])
        self.children[run_id] = _Child(process, time.monotonic(), float(options["time_limit"]))
        return True

    def _tend_children(self) -> None:
        now = time.monotonic()
        for run_id, child in list(self.children.items()):
            if child.process.poll() is not None:
                del self.children[run_id]
                run = self.store.run(run_id)
                if run["status"] == RunStatus.RUNNING:  # died before recording an outcome
                    self.store.finish_run(run_id, RunStatus.FAILED, None, checked=False,
                                          error=f"solve process exited with code "
                                                f"{child.process.returncode}")
                    run = self.store.run(run_id)
                if self.on_finished is not None:
                    self.on_finished(run_id, now - child.started, run["status"])
                continue
            overdue = now - child.started > child.time_limit + KILL_GRACE_SECONDS
            if child.cancel_seen is None and self.store.cancel_requested(run_id):
                child.cancel_seen = now
            ignored_cancel = child.cancel_seen is not None and \
                now - child.cancel_seen > CANCEL_GRACE_SECONDS
            if overdue or ignored_cancel:
                child.process.kill()
                child.process.wait()
                del self.children[run_id]
                status = RunStatus.CANCELLED if ignored_cancel else RunStatus.FAILED
                self.store.finish_run(run_id, status, None, checked=False,
                                      error="stopped: " + ("cancelled" if ignored_cancel
                                                           else "ran past its time limit"))

