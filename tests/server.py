"""A real `offeropt serve` process on loopback, for tests that drive it over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

MERCHANDISER = {"Authorization": "Bearer m-token"}
STOREFRONT = {"Authorization": "Bearer s-token"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, workers: int = 2, threads: int = 2, **env: str) -> None:
        self.data_dir, self.env = data_dir, env
        self.workers, self.threads = workers, threads
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        self.port, self.ops_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ops = f"http://127.0.0.1:{self.ops_port}"
        env = {**os.environ, "OFFEROPT_DATA_DIR": str(self.data_dir),
               "OFFEROPT_MERCHANDISER_TOKENS": "m-token", "OFFEROPT_STOREFRONT_TOKENS": "s-token",
               "OFFEROPT_INDEX_POLL_SECONDS": "0.2", **self.env}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = open(self.data_dir / f"server-{self.port}.log", "wb")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", str(self.threads),
             "--ops-bind", f"127.0.0.1:{self.ops_port}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.ops}/readyz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become ready; see {log.name}")

    def kill9(self) -> None:
        """SIGKILL the whole process group: master, web workers, dispatcher, solves."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(self.base + path, timeout=60, **kw)

    def wait_run(self, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.get(f"/v1/runs/{run_id}", headers=MERCHANDISER).json()
            if body["status"] in ("succeeded", "failed", "cancelled") or \
                    time.monotonic() > deadline:
                return body
            time.sleep(0.3)

    def solve(self, doc: dict[str, Any]) -> dict[str, Any]:
        run_id = self.post("/v1/catalog-plans", json=doc, headers=MERCHANDISER).json()["run_id"]
        run = self.wait_run(run_id)
        assert run["status"] == "succeeded", run
        return run
