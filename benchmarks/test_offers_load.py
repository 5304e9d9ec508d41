"""Storefront load: /v1/offers from a served plan of 100,000 segments, over real HTTP.

wrk measures throughput of one web worker (closed loop, random segments and customers),
with recording of the served views off and on, and p50/p99 latency at a fixed 1,000
requests/s (recording on): each of its connections waits between requests so that together
they send that rate. The same-run baseline is /healthz on the same server: the cheapest
request the stack can answer. Needs the `wrk` program at OFFEROPT_BENCH_SIZE=full (`make
bench` installs it from Debian). At smoke size (the test run) the plan has 2,000 segments and
each load lasts one second, at 300 requests/s for the latency figures; without wrk, a bounded
Python request loop sends it instead. Every server is started by the `serve` fixture, which stops
its whole process group when the test ends, passed or failed. Traffic only ever goes to
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from api.store import RunStatus, Store
from benchmarks.conftest import FULL, knob, sized
from optimizer.formulation.candidates import expand
from optimizer.formulation.milp import live_coupling
from optimizer.formulation.segment_choice import best_choice
from optimizer.io.json_form import instance_to_document
from optimizer.model.generate import generate
from optimizer.plan.check import check_plan
from optimizer.plan.document import build_plan
from optimizer.solve.dispatch import Solution, Status

SEGMENTS = int(knob("OFFEROPT_BENCH_SEGMENTS", "2000", "100000"))
LOOPBACK = "127.0.0.1"
TOKEN = "s-token"
AUTH = f"Authorization: Bearer {TOKEN}"
WRK_SECONDS, LATENCY_SECONDS, WARM_SECONDS = sized(1, 15), sized(1, 20), sized(1, 3)
WRK_CONNECTIONS = sized(4, 16)
PACED_CONNECTIONS = 10  # each waits between its requests: together they send the rate
_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}  # wrk's latency units
RATE = sized(300, 1000)  # requests/s offered for the latency figures (a p99 needs 100 answers)
READY_TIMEOUT, STOP_GRACE = sized(60.0, 180.0), 30.0
HAVE_TOOLS = bool(shutil.which("wrk"))
RESULTS: dict[str, float] = {}

pytestmark = pytest.mark.skipif(FULL and not HAVE_TOOLS,
                                reason="full size needs wrk (apt-get install wrk)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A store whose active plan covers SEGMENTS segments, solved exactly and checked."""
    data = tmp_path_factory.mktemp("load")
    inst = generate(SEGMENTS, seed=3, responses_per_segment=4, items=400, bundles=120)
    uncoupled = dataclasses.replace(inst.policy, max_discounted_share=None, max_avg_discount=None,
                                    promotion_budget=None, min_aggregate_margin_rate=None)
    inst = dataclasses.replace(inst, policy=uncoupled, items=inst.items.assign(stock=np.nan))
    started = time.perf_counter()
    cands = expand(inst)
    chosen = best_choice(cands, cands.value)  # exact: without coupling rows segments separate
    objective = float(cands.value[chosen].sum())
    solution = Solution(instance=inst, candidates=cands, coupling=live_coupling(inst, cands),
                        status=Status.OPTIMAL, selected=chosen, objective=objective,
                        bound=objective, termination="optimal", solver="segment-choice",
                        method="exact-separable", solve_seconds=time.perf_counter() - started)
    plan = build_plan(solution)
    assert check_plan(inst, plan.to_dict()).ok
    store = Store.open(_database(data))
    document = json.dumps(instance_to_document(inst))
    digest = hashlib.sha256(document.encode()).hexdigest()
    run_id, _ = store.submit(inst.name, document, digest, {"time_limit": 1}, "bench", None)
    store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True, plan_status="optimal")
    store.publish(store.run(run_id)["plan_id"], "bench")
    assert len(inst.segments) == SEGMENTS
    segments = sorted(set(plan.offers.strings("segment")))
    return data, segments


def _database(data: Path) -> str:
    return f"sqlite:///{data / 'offeropt.db'}"


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: straight to loopback
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    return session


@dataclasses.dataclass(frozen=True)
class Running:
    base: str  # the storefront API
    ops: str  # /healthz, /readyz, /metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it after a grace period; whatever of the
    group outlived its leader (a web worker, the dispatcher) is killed too."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def serve(served: tuple[Path, list[str]],
          request: pytest.FixtureRequest) -> Callable[..., Running]:
    """Starts `offeropt serve` on loopback (its own process group) with the published plan;
    each server is stopped by a finalizer, whatever the test does."""
    data, _ = served

    def start(workers: int, threads: int, recording: bool = True) -> Running:
        port, ops_port = _free_port(), _free_port()
        env = {**os.environ, "OFFEROPT_DATA_DIR": str(data), "OFFEROPT_DATABASE_URL": _database(data),
               "OFFEROPT_MERCHANDISER_TOKENS": "m-token", "OFFEROPT_STOREFRONT_TOKENS": TOKEN,
               "OFFEROPT_RUN_JOBS": "false",
               "OFFEROPT_RECORDING": "true" if recording else "false"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = data / f"server-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--bind", f"{LOOPBACK}:{port}",
                 "--workers", str(workers), "--threads", str(threads),
                 "--ops-bind", f"{LOOPBACK}:{ops_port}"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        request.addfinalizer(lambda: _stop(proc))
        running = Running(f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{ops_port}")
        deadline = time.monotonic() + READY_TIMEOUT
        with _session() as session:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"the server exited with code {proc.returncode}: "
                                         f"{log.read_text(errors='replace')[-3000:]}")
                try:
                    if session.get(f"{running.ops}/readyz", timeout=5).status_code == 200:
                        return running
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the server was not ready within {READY_TIMEOUT:.0f} s: "
                                         f"{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.2)

    return start


def _warm(server: Running, segment: str) -> None:
    deadline = time.monotonic() + 120
    with _session() as session:
        while time.monotonic() < deadline:  # every worker builds its index on first use
            body = session.get(f"{server.base}/v1/offers?segment={segment}", timeout=30).json()
            if body["plan_version"] == 1:
                for _ in range(50):
                    session.get(f"{server.base}/v1/offers?segment={segment}", timeout=30)
                return
            time.sleep(0.5)
    raise RuntimeError("the index never loaded")


def _wrk(url: str, script: Path | None) -> float:
    cmd = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", "-H", AUTH, url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def _paced(url: str, rate: int, seconds: float = LATENCY_SECONDS) -> dict[str, float]:
    """wrk's p50/p99 (and the rate it reached) with each connection waiting between requests
    so that together they send about `rate` a second. wrk is one C event loop: on 2 cores it
    leaves the server far more of the CPU than hey's Go runtime did (at 1M segments, p99
    2.9 ms against hey's 6.9 ms, same server, same minute)."""
    wait_ms = max(0.0, 1000.0 * PACED_CONNECTIONS / rate - 1.0)  # less about 1 ms per answer
    script = Path(tempfile.gettempdir()) / f"paced-{os.getpid()}-{rate}.lua"
    script.write_text(f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
                      f"function delay() return {wait_ms:.3f} end\n")
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{PACED_CONNECTIONS}", f"-d{seconds}s",
                              "--latency", "-s", str(script), url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        script.unlink(missing_ok=True)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    pct = {int(p): float(v) * _TO_MS[unit]
           for p, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": pct[50], "p99_ms": pct[99]}



def _python_load(urls: Callable[[], str], seconds: float, rate: float | None) -> dict[str, float]:
    """Smoke size without wrk: one connection for `seconds` (at most `rate` requests
    a second when given), every answer a 200."""
    latencies: list[float] = []
    started = time.perf_counter()
    with _session() as session:
        while (now := time.perf_counter()) - started < seconds:
            if rate is not None:
                due = started + len(latencies) / rate
                if due > now:
                    time.sleep(due - now)
            sent = time.perf_counter()
            response = session.get(urls(), timeout=10)
            latencies.append(time.perf_counter() - sent)
            assert response.status_code == 200, response.text[:500]
    elapsed = time.perf_counter() - started
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"rps": len(latencies) / elapsed, "p50_ms": 1000 * p50, "p99_ms": 1000 * p99}


def _throughput(url: str, segments: list[str] | None, script: Path) -> float:
    """Requests/s of a closed loop, on random segments when given (wrk runs `script`)."""
    if HAVE_TOOLS:
        return _wrk(url, script if segments is not None else None)
    rng = np.random.default_rng(0)

    def pick() -> str:
        if segments is None:
            return url
        return f"{url}?segment={segments[rng.integers(len(segments))]}" \
            f"&customer_id=c{rng.integers(1_000_000)}"

    return _python_load(pick, WRK_SECONDS, None)["rps"]


def steady_latency(url: str, rate: int) -> dict[str, float]:
    """p50/p99 at `rate` after a short load at the same rate (not counted): every worker has
    then answered, created its journal and metric files and run its first-use code."""
    _paced(url, rate, WARM_SECONDS)
    return _paced(url, rate)


def _latency(url: str) -> dict[str, float]:
    return steady_latency(url, RATE) if HAVE_TOOLS else _python_load(lambda: url, LATENCY_SECONDS, RATE)


def test_throughput_per_worker(served: tuple[Path, list[str]], serve: Callable[..., Running],
                               tmp_path: Path) -> None:
    """Offers with recording off and on, and /healthz, from servers of the same run."""
    _, segments = served
    sample = segments[:: max(1, len(segments) // 5000)]
    script = tmp_path / "random_segments.lua"
    script.write_text(f"""
segs = {{{",".join(f'"{s}"' for s in sample)}}}
request = function()
  return wrk.format("GET", "/v1/offers?segment=" .. segs[math.random(#segs)] ..
                    "&customer_id=c" .. math.random(1000000))
end
""")
    for recording, key in ((False, "offers_rps_per_worker"),
                           (True, "recorded_offers_rps_per_worker")):
        server = serve(1, 2, recording)
        _warm(server, segments[0])
        RESULTS[key] = _throughput(f"{server.base}/v1/offers", sample, script)
    RESULTS["healthz_rps_per_worker"] = _throughput(f"{server.ops}/healthz", None, script)
    views = _recorded_views(served[0])
    assert views > 0, "the recording server stored no view"
    RESULTS["recorded_views_stored"] = views


def _recorded_views(data: Path) -> int:
    """Views in the store once the replayer stored the recording server's journals (a view
    counts once per offer it showed: offer impressions)."""
    from api.store.logs import recorded_logs

    store = Store.open(_database(data))
    deadline = time.monotonic() + 30  # the replayer stores closed journals every 5 s
    while (views := int(recorded_logs(store)["views"].sum())) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return views


@pytest.mark.parametrize(("profile", "workers", "threads"), [("default", 2, 2),
                                                             ("storefront", 3, 1)])
def test_latency_at_fixed_rate(served: tuple[Path, list[str]], serve: Callable[..., Running],
                               profile: str, workers: int, threads: int) -> None:
    """With recording on, as the storefront runs."""
    _, segments = served
    server = serve(workers, threads)
    segment = segments[len(segments) // 2]
    _warm(server, segment)
    url = f"{server.base}/v1/offers?segment={segment}&customer_id=c42"  # recorded views
    RESULTS.update({f"{profile}_offers_{k}": v for k, v in _latency(url).items()})
    RESULTS.update({f"{profile}_healthz_{k}": v
                    for k, v in _latency(f"{server.ops}/healthz").items()})


@pytest.fixture(scope="module", autouse=True)
def _print_results() -> Any:
    yield
    if not RESULTS:
        return
    load = "wrk" if HAVE_TOOLS else "a Python request loop (smoke size, no wrk)"
    ratios = {"offers/healthz throughput": RESULTS["offers_rps_per_worker"]
              / RESULTS["healthz_rps_per_worker"],
              "recorded offers/healthz throughput": RESULTS["recorded_offers_rps_per_worker"]
              / RESULTS["healthz_rps_per_worker"]} if "healthz_rps_per_worker" in RESULTS else {}
    print(f"\nstorefront load, {SEGMENTS:,} segments, {RATE} req/s offered, load from {load} "
          f"(same run):", json.dumps({**RESULTS, **ratios}, indent=2))
