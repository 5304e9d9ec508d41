"""Running the service: gunicorn web workers, one dispatcher process for solves, and one
replayer process that stores what the web workers record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

REPLAY_NICENESS = 19  # the journal replayer yields the CPU to the web workers
REPLAY_SECONDS = 5.0  # how often it stores the journals the workers closed


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from api.app import create_app

        return create_app()


def _worker_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(bind: str, workers: int, ops_bind: str | None = None, threads: int = 2) -> None:
    """Serve until SIGINT/SIGTERM. Web workers never solve; the dispatcher process does.

    PROMETHEUS_MULTIPROC_DIR must be set before this process imported prometheus_client.
    """
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR: must be set before api is imported")
    from api.settings import from_environment
    from api.store import Store

    config = from_environment()
    Store.open(config["DATABASE_URL"])  # migrate once, before workers and dispatcher start
    binds = [bind]
    if ops_bind:
        binds.append(ops_bind)
        os.environ["OFFEROPT_OPS_PORT"] = ops_bind.rsplit(":", 1)[1]
    dispatcher = subprocess.Popen([sys.executable, "-m", "api.server", "dispatch"])
    # what the web workers record is stored by a process of its own, at a lower priority:
    # under full load requests come first, and journals wait on disk
    replayer = subprocess.Popen([sys.executable, "-m", "api.server", "replay"],
                                preexec_fn=lambda: os.nice(REPLAY_NICENESS))
    os.environ["OFFEROPT_RUN_JOBS"] = "false"
    os.environ["OFFEROPT_REPLAY_JOURNALS"] = "false"
    try:
        # one thread: gunicorn's sync worker, one request at a time and no keep-alive, so the
        # kernel spreads connections over the workers as they accept (a kept-alive connection
        # stays with one gthread worker however busy); meant to sit behind a proxy
        _Gunicorn({"bind": binds, "workers": workers,
                   "worker_class": "sync" if threads == 1 else "gthread",
                   "threads": threads, "child_exit": _worker_exit, "accesslog": None,
                   # a sync worker's first request may wait FIRST_LOAD_SECONDS (60) for
                   # its index: it must not count as a hung worker
                   "graceful_timeout": 10, "timeout": 120,
                   "control_socket_disable": True}).run()  # several servers may share a host
    finally:
        for child in (dispatcher, replayer):
            child.terminate()
        for child in (dispatcher, replayer):
            child.wait(timeout=15)


def dispatch() -> None:
    """The solve dispatcher on its own: claims queued runs and solves them until stopped."""
    from api.jobs import JobRunner
    from api.settings import from_environment
    from api.store import Store

    config = from_environment()
    store = Store.open(config["DATABASE_URL"])
    runner = JobRunner(store, config["DATABASE_URL"], config["SOLVE_WORKERS"])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner.start()
    stop.wait()
    runner.stop()


def replay() -> None:
    """Stores the journals the web workers close (every second) until stopped, then once more
    for what they closed at shutdown."""
    from api.recording import replay_forever, replay_journals
    from api.settings import from_environment
    from api.store import Store

    config = from_environment()
    if not config["RECORDING"]:
        return
    store = Store.open(config["DATABASE_URL"])
    folder = Path(config["JOURNAL_DIR"])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    replay_forever(store, folder, REPLAY_SECONDS, stop)
    replay_journals(store, folder)


if __name__ == "__main__" and sys.argv[1:] == ["dispatch"]:
    dispatch()
elif __name__ == "__main__" and sys.argv[1:] == ["replay"]:
    replay()
