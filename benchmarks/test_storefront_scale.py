"""The storefront at scale (issue 19): a published plan of 1,000,000 segments, stored in
columns, indexed once into a memory-mapped file, and served by 1 and 3 web workers.

Figures (benchmarks/README.md, "The storefront at a million segments"):

- the store: writing the catalog (the zip of its Parquet folder) and the plan (Parquet), and
  their sizes;
- the index file: built by `python -m api.index_file` (the child process a web worker starts
  for a large plan), its wall time, size and peak memory, against reading the plan's columns
  back from the store (the least any index build does) in the same run;
- memory per web worker (RSS, PSS and private memory from /proc/PID/smaps_rollup) with 1 and
  3 workers after a load of random segments, against a worker of the same server code with
  no plan published (the floor);
- p50/p99 at 1,000 requests/s (paced wrk) and a closed-loop throughput on random segments (wrk)
  against /healthz on the same server, and the same while a new version is published and
  indexed under that load (no request may fail, the new version must then be served).

The plan is the exact per-segment optimum of a generated catalog without coupling rows (as
in benchmarks/test_offers_load.py); at smoke size it is checked by `optimizer.plan.check`,
at full size it is not (the checker at a million segments is issue 19's first part).
Smoke size (the test run): 2,000 segments, one server of 2 workers, one-second loads from a
Python request loop when wrk is missing. Heavy: run the full size alone
(`OFFEROPT_BENCH_SIZE=full python -m pytest benchmarks/test_storefront_scale.py -s`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import requests
import sqlalchemy as sa

from api.index_file import IndexSource
from api.store import RunStatus, Store
from api.store.schema import blobs
from benchmarks.conftest import FULL, knob, sized
from benchmarks.test_offers_load import HAVE_TOOLS, _paced, _python_load, _wrk, steady_latency
from optimizer.backends import Termination
from optimizer.formulation.candidates import expand
from optimizer.formulation.milp import live_coupling
from optimizer.formulation.segment_choice import best_choice
from optimizer.model.generate import generate
from optimizer.plan.check import check_plan
from optimizer.plan.document import build_plan
from optimizer.solve.dispatch import Solution, Status

SEGMENTS = int(knob("OFFEROPT_BENCH_SEGMENTS", "2000", "1000000"))
LOOPBACK, TOKEN = "127.0.0.1", "s-token"
LOAD_SECONDS = sized(0.5, 20)
RATE = sized(300, 1000)
WORKER_COUNTS = sized((2,), (1, 3))
READY_TIMEOUT = sized(60.0, 300.0)
TOOLS = FULL and HAVE_TOOLS  # smoke size always loads from a short Python loop
RESULTS: dict[str, Any] = {}

pytestmark = pytest.mark.skipif(FULL and not HAVE_TOOLS,
                                reason="full size needs wrk (apt-get install wrk)")


def _mb(kib: float) -> float:
    return round(kib / 1024, 1)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A store whose active plan covers SEGMENTS segments, stored in columns."""
    data = tmp_path_factory.mktemp("scale")
    inst = generate(SEGMENTS, seed=3, responses_per_segment=4, items=400, bundles=120)
    uncoupled = dataclasses.replace(inst.policy, max_discounted_share=None, max_avg_discount=None,
                                    promotion_budget=None, min_aggregate_margin_rate=None)
    inst = dataclasses.replace(inst, policy=uncoupled, items=inst.items.assign(stock=np.nan))
    cands = expand(inst)
    chosen = best_choice(cands, cands.value)  # exact: without coupling rows segments separate
    objective = float(cands.value[chosen].sum())
    plan = build_plan(Solution(
        instance=inst, candidates=cands, coupling=live_coupling(inst, cands),
        status=Status.OPTIMAL, selected=chosen, objective=objective, bound=objective,
        termination=Termination.OPTIMAL, solver="segment-choice", method="exact-separable"))
    del cands
    if not FULL:
        assert check_plan(inst, plan.to_dict()).ok
    store = Store.open(_database(data))
    started = time.perf_counter()
    run_id, _ = store.submit(inst.name, inst, None, {"time_limit": 1}, "bench", None)
    RESULTS["store_catalog_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True, plan_status="optimal")
    RESULTS["store_plan_s"] = round(time.perf_counter() - started, 2)
    with store.engine.connect() as conn:
        sizes = dict(conn.execute(sa.select(blobs.c.format, blobs.c.size)).all())
    RESULTS["stored_mb"] = {k: round(v / 1e6, 1) for k, v in sizes.items()}
    RESULTS["offers"] = len(plan.offers)
    store.publish(str(store.run(run_id)["plan_id"]), "bench")
    segments = list(inst.segments["id"])
    return data, random.Random(1).sample(segments, min(len(segments), 5000))


def _database(data: Path) -> str:
    return f"sqlite:///{data / 'offeropt.db'}"


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stderr) of a command run to completion."""
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, done.stderr.decode()
    return time.perf_counter() - started, done.stderr.decode()


def test_index_file_build(published: tuple[Path, list[str]]) -> None:
    data, _ = published
    store = Store.open(_database(data))
    active = store.active()
    assert active is not None
    started = time.perf_counter()
    publication = store.publication(int(active["version"]))
    assert publication is not None
    source = IndexSource.of(publication)
    RESULTS["read_plan_columns_s"] = round(time.perf_counter() - started, 2)
    del source, publication
    seconds, said = _run(
        [sys.executable, "-m", "api.index_file", str(data / "index"), str(active["version"]),
         str(active["plan_id"])], {**os.environ, "OFFEROPT_DATABASE_URL": _database(data)})
    path = data / "index" / f"v{active['version']}.idx"
    said = said.strip().splitlines()[-1]  # "built v1.idx in 11.7 s, peak 900 MiB"
    RESULTS.update(index_build_s=round(seconds, 2),
                   index_build_peak_mb=float(said.rsplit("peak ", 1)[1].split()[0]),
                   index_file_mb=round(path.stat().st_size / 1e6, 1), index_build_said=said,
                   build_over_read=round(seconds / max(RESULTS["read_plan_columns_s"], 1e-9), 1))


@dataclasses.dataclass(frozen=True)
class Server:
    base: str
    ops: str
    proc: subprocess.Popen[bytes]

    def workers(self) -> list[psutil.Process]:
        """The gunicorn web workers (not the dispatcher, not the replayer)."""
        return [p for p in psutil.Process(self.proc.pid).children()
                if "api.server" not in " ".join(p.cmdline())]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def serve(request: pytest.FixtureRequest) -> Callable[[Path, int], Server]:
    """Starts `offeropt serve` on loopback (own process group, stopped at the test's end)."""

    def start(data: Path, workers: int) -> Server:
        port, ops_port = _free_port(), _free_port()
        env = {**os.environ, "OFFEROPT_DATA_DIR": str(data),
               "OFFEROPT_DATABASE_URL": _database(data), "OFFEROPT_STOREFRONT_TOKENS": TOKEN,
               "OFFEROPT_MERCHANDISER_TOKENS": "m-token",
               "OFFEROPT_RUN_JOBS": "false"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = data / f"server-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--bind", f"{LOOPBACK}:{port}",
                 "--workers", str(workers), "--threads", "1", "--ops-bind",
                 f"{LOOPBACK}:{ops_port}"], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        request.addfinalizer(lambda: _stop(proc))
        server = Server(f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{ops_port}", proc)
        deadline = time.monotonic() + READY_TIMEOUT
        with _session() as session:
            while True:
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                with contextlib.suppress(requests.RequestException):
                    if session.get(f"{server.ops}/readyz", timeout=5).status_code == 200:
                        return server
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.2)

    return start


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    return session


def _served(server: Server, segment: str, version: int, timeout: float = 600.0) -> None:
    """Until every worker maps the file of `version` and answers it (a worker opens the
    file on its first request after the publication)."""
    deadline, name = time.monotonic() + timeout, f"v{version}.idx"
    with _session() as session:
        while True:  # a new connection each time, so that every worker gets some
            body = session.get(f"{server.base}/v1/offers?segment={segment}", timeout=60,
                               headers={"Connection": "close"}).json()
            if body["plan_version"] == version and all(
                    name in Path(f"/proc/{w.pid}/maps").read_text() for w in server.workers()):
                return
            assert time.monotonic() < deadline, f"version {version} never served: {body}"


def _memory(pid: int) -> dict[str, float]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[name] = float(value.split()[0])
    return {"rss_mb": _mb(fields["Rss"]), "pss_mb": _mb(fields["Pss"]),
            "private_mb": _mb(fields["Private_Clean"] + fields["Private_Dirty"]),
            "pss_file_mb": _mb(fields.get("Pss_File", 0.0))}


def _random_load(server: Server, segments: list[str], seconds: float, script: Path) -> float:
    """Requests/s of a closed loop on random segments and customers (recorded views)."""
    if TOOLS:
        return _wrk(f"{server.base}/v1/offers", script)
    rng = np.random.default_rng(0)
    return _python_load(lambda: f"{server.base}/v1/offers?segment="
                        f"{segments[rng.integers(len(segments))]}&customer_id="
                        f"c{rng.integers(1_000_000)}", seconds, None)["rps"]


def _script(tmp_path: Path, segments: list[str]) -> Path:
    script = tmp_path / "random_segments.lua"
    script.write_text(f"""
segs = {{{",".join(json.dumps(s) for s in segments)}}}
request = function()
  return wrk.format("GET", "/v1/offers?segment=" .. segs[math.random(#segs)] ..
                    "&customer_id=c" .. math.random(1000000))
end
""")
    return script


def _latency(url: str) -> dict[str, float]:
    if TOOLS:
        return steady_latency(url, RATE)
    return _python_load(lambda: url, LOAD_SECONDS, RATE)


@pytest.fixture(scope="module")
def servers(published: tuple[Path, list[str]], serve: Callable[[Path, int], Server]
            ) -> dict[int, Server]:
    """A server per worker count (started when first asked for, kept for the module)."""

    class Started(dict[int, Server]):
        def __missing__(self, count: int) -> Server:
            self[count] = serve(published[0], count)
            return self[count]

    return Started()


def test_memory_per_worker_and_latency(published: tuple[Path, list[str]],
                                       serve: Callable[[Path, int], Server],
                                       servers: dict[int, Server],
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    data, segments = published
    script = _script(data, segments)
    if FULL:  # the floor: a worker of the same code with no plan published
        empty = tmp_path_factory.mktemp("empty")
        Store.open(_database(empty))
        idle = serve(empty, 1)
        _random_load(idle, segments, 2, script)
        RESULTS["idle_worker"] = _memory(idle.workers()[0].pid)
        _stop(idle.proc)
    for count in WORKER_COUNTS:
        server = servers[count]
        _served(server, segments[0], 1)
        rps = _random_load(server, segments, LOAD_SECONDS, script)
        workers = [_memory(p.pid) for p in server.workers()]
        assert len(workers) == count
        RESULTS[f"{count}_workers"] = {
            "random_segments_rps": round(rps), "per_worker": workers,
            "pss_total_mb": round(sum(w["pss_mb"] for w in workers), 1)}
        if count == WORKER_COUNTS[-1]:
            middle = segments[len(segments) // 2]
            RESULTS["offers_latency"] = _latency(
                f"{server.base}/v1/offers?segment={middle}&customer_id=c42")
            RESULTS["healthz_latency"] = _latency(f"{server.ops}/healthz")
            RESULTS["healthz_rps"] = _healthz_rps(server)
        else:
            _stop(server.proc)


def _healthz_rps(server: Server) -> float:
    url = f"{server.ops}/healthz"
    return _wrk(url, None) if TOOLS else _python_load(lambda: url, LOAD_SECONDS, None)["rps"]


def test_a_publish_under_load(published: tuple[Path, list[str]],
                              servers: dict[int, Server]) -> None:
    """Version 2 (the same plan, published again: a new file to build) while 1,000 req/s
    are offered; every answer is a 200, and the new version is then served."""
    data, segments = published
    server = servers[WORKER_COUNTS[-1]]
    _served(server, segments[0], 1)
    store = Store.open(_database(data))
    active = store.active()
    assert active is not None
    new, waited = int(active["version"]) + 1, []

    def publish_and_watch() -> None:
        """Publish, then poll until the new version answers (its file built and opened)."""
        store.publish(str(active["plan_id"]), "bench")
        started = time.perf_counter()
        with _session() as session:
            while session.get(f"{server.base}/v1/offers?segment={segments[2]}",
                              timeout=60).json()["plan_version"] != new:
                time.sleep(0.1)
        waited.append(time.perf_counter() - started)

    publishing = threading.Timer(0.5, publish_and_watch)
    publishing.start()
    url = f"{server.base}/v1/offers?segment={segments[1]}&customer_id=c7"
    during = _paced(url, RATE) if TOOLS else _python_load(lambda: url, sized(1.5, 60), RATE)
    publishing.join()
    _served(server, segments[1], new)
    RESULTS["publish_under_load"] = {**during, "new_version_served_after_s": round(waited[0], 1)}


@pytest.fixture(scope="module", autouse=True)
def _print_results() -> Iterator[None]:
    yield
    if not RESULTS:
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratios = {}
    if "index_build_s" in RESULTS:
        ratios["index build / reading the plan's columns"] = RESULTS["build_over_read"]
    if "offers_latency" in RESULTS:
        ratios["offers / healthz p99"] = round(RESULTS["offers_latency"]["p99_ms"]
                                               / RESULTS["healthz_latency"]["p99_ms"], 2)
    top = f"{WORKER_COUNTS[-1]}_workers"
    if top in RESULTS and "healthz_rps" in RESULTS:
        ratios["random-segment offers / healthz throughput"] = round(
            RESULTS[top]["random_segments_rps"] / RESULTS["healthz_rps"], 2)
    print(f"\nstorefront at {SEGMENTS:,} segments (same run; benchmark process peak "
          f"{peak:,.0f} MiB):", json.dumps({**RESULTS, "ratios": ratios}, indent=2))
