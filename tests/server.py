"""Processes the tests start: a real `offeropt serve` on loopback, the demo, nightly jobs, CLIs.

Every process runs in a session (process group) of its own, with its standard output and
error in files, so that a test can read them after the fact and include them in a failure
message, and so that stopping it stops everything it started too (gunicorn workers, the
solve dispatcher, solve processes, Dask workers). Tests get them through the `processes`
fixture (tests/conftest.py), whose teardown stops whatever is still running, also when the
test failed half-way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

MERCHANDISER = {"Authorization": "Bearer m-token"}
STOREFRONT = {"Authorization": "Bearer s-token"}
READY_TIMEOUT = 60.0  # a loaded 2-core machine may take many seconds to start gunicorn
STOP_GRACE = 30.0  # SIGTERM, then this long before SIGKILL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output file)"
    return text if len(text) <= chars else "..." + text[-chars:]


class Child:
    """One started process group, its output in `<name>.out` and `<name>.err` files."""

    def __init__(self, argv: list[str], log_dir: Path, name: str, **popen: Any) -> None:
        self.name = name
        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                **popen)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def describe(self) -> str:
        """The process's state and the end of its output, for failure messages."""
        code = self.proc.poll()
        state = "still running" if code is None else f"exited with code {code}"
        out = _tail(self.out_path)
        return (f"{self.name} (pid {self.pid}) {state}\n--- its stderr ---\n{_tail(self.err_path)}"
                + (f"\n--- its stdout ---\n{out}" if out.strip() else ""))

    def wait(self, timeout: float) -> int:
        """The exit code; a process still running after `timeout` fails the test."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not finish within {timeout:.0f} s: {self.describe()}") \
                from None

    def wait_for_output(self, marker: str, timeout: float, stream: str = "stdout") -> str:
        """The text of `stream` once it holds `marker` (the process must still be running
        or have printed it before it ended)."""
        path = self.out_path if stream == "stdout" else self.err_path
        deadline = time.monotonic() + timeout
        while True:
            ended = self.proc.poll() is not None
            text = path.read_text(errors="replace")
            if marker in text:
                return text
            if ended:
                raise AssertionError(f"{marker!r} never appeared on its {stream}: {self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} did not appear on its {stream} within "
                                     f"{timeout:.0f} s: {self.describe()}")
            time.sleep(0.1)

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT) -> None:
        """Until `url` answers 200; fails with the process's output if it never does."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{url} never answered: {self.describe()}")
            try:
                response = requests.get(url, timeout=5)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except requests.RequestException as exc:  # refused, or too slow under load
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer 200 within {timeout:.0f} s (last: "
                                     f"{last}): {self.describe()}")
            time.sleep(0.2)

    def kill9(self) -> None:
        """SIGKILL the whole process group at once, and reap the leader."""
        with contextlib.suppress(ProcessLookupError):  # the whole group has ended already
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM the group, SIGKILL it after `grace`; whatever of the group outlived its
        leader (an orphaned solve, a Dask worker) is killed too."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        self.kill9()


class Processes:
    """Every process group one test starts; `stop_all` (the fixture's teardown) ends each."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.servers: list[Server] = []

    def start(self, argv: list[str], name: str | None = None, **popen: Any) -> Child:
        name = name or f"process-{len(self.children) + 1}"
        child = Child(argv, self.log_dir, f"{name}-{len(self.children) + 1}", **popen)
        self.children.append(child)
        return child

    def run(self, argv: list[str], timeout: float = 300.0, name: str | None = None,
            **popen: Any) -> Child:
        """Start and wait for the exit; a process still running after `timeout` fails."""
        child = self.start(argv, name, **popen)
        child.wait(timeout)
        return child

    def server(self, data_dir: Path, **kw: Any) -> Server:
        """A started `offeropt serve` (see `Server`)."""
        server = Server(data_dir, **kw)
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
        for child in self.children:
            child.stop()


class Server:
    def __init__(self, data_dir: Path, workers: int = 2, threads: int = 2, **env: str) -> None:
        self.data_dir, self.env = data_dir, env
        self.workers, self.threads = workers, threads
        self.child: Child | None = None

    def start(self, timeout: float = READY_TIMEOUT) -> Server:
        self.port, self.ops_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ops = f"http://127.0.0.1:{self.ops_port}"
        env = {**os.environ, "OFFEROPT_DATA_DIR": str(self.data_dir),
               "OFFEROPT_MERCHANDISER_TOKENS": "m-token", "OFFEROPT_STOREFRONT_TOKENS": "s-token",
               "OFFEROPT_INDEX_POLL_SECONDS": "0.2", **self.env}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.child = Child(
            [sys.executable, "-m", "cli", "serve", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", str(self.threads),
             "--ops-bind", f"127.0.0.1:{self.ops_port}"],
            self.data_dir, f"server-{self.port}", env=env)
        try:
            self.child.wait_ready(f"{self.ops}/readyz", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill9(self) -> None:
        """SIGKILL the whole process group: master, web workers, dispatcher, solves."""
        assert self.child is not None
        self.child.kill9()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

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


def kill_strays(marker: str) -> list[int]:
    """SIGKILL every process whose command line names `marker` (a test's own tmp_path, which
    no other test shares): solve processes an in-process app started, and what they forked,
    when they outlived the app (a solve process killed by its dispatcher leaves its solver
    child behind). Returns their pids."""
    import psutil

    strays = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid != os.getpid() and any(marker in part for part in p.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                p.kill()
                strays.append(p)
    psutil.wait_procs(strays, timeout=30)
    return [p.pid for p in strays]


def wait_for_open_write_transaction(db: Path, child: Child, held: float = 1.0,
                                    timeout: float = 120.0) -> None:
    """Until some process holds SQLite's write lock on `db` for `held` seconds on end: a
    publish paused by OFFEROPT_PUBLISH_PAUSE_SECONDS, not a claim's or a heartbeat's
    millisecond transaction. `child` is the process expected to open it (for the message)."""
    deadline = time.monotonic() + timeout
    locked_since: float | None = None
    probe = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        while True:
            now = time.monotonic()
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                locked_since = None
            except sqlite3.OperationalError:  # "database is locked": a writer is inside
                locked_since = now if locked_since is None else locked_since
                if now - locked_since >= held:
                    return
            if child.proc.poll() is not None or now > deadline:
                raise AssertionError(f"no write transaction stayed open {held} s on {db}: "
                                     f"{child.describe()}")
            time.sleep(0.05)
    finally:
        probe.close()
