"""Running the service: gunicorn web workers, plus one dispatcher process for solves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

from gunicorn.app.base import BaseApplication


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
    os.environ["OFFEROPT_RUN_JOBS"] = "false"
    try:
        _Gunicorn({"bind": binds, "workers": workers, "worker_class": "gthread",
                   "threads": threads, "child_exit": _worker_exit, "accesslog": None,
                   "graceful_timeout": 10, "timeout": 60,
                   "control_socket_disable": True}).run()  # several servers may share a host
    finally:
        dispatcher.terminate()
        dispatcher.wait(timeout=15)


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


if __name__ == "__main__" and sys.argv[1:] == ["dispatch"]:
    dispatch()
