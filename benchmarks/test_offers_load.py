"""Storefront load: /v1/offers from a served plan of 100,000 segments, over real HTTP.

wrk measures throughput of one web worker (closed loop, random segments); hey offers a
fixed 1,000 requests/s to two workers and reports p50/p99 latency. The same-run baseline
is /healthz on the same server: the cheapest request the stack can answer.
Needs the `wrk` and `hey` programs (`make bench` installs them from Debian).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.store import RunStatus, Store
from optimizer.candidates import expand
from optimizer.check import check_plan
from optimizer.formulation import formulate
from optimizer.generate import generate
from optimizer.io.json_form import instance_to_document
from optimizer.plan import plan_document
from optimizer.segment_choice import best_choice
from optimizer.solve import Solution, Status
from tests.server import Server

SEGMENTS = int(os.environ.get("OFFEROPT_BENCH_SEGMENTS", "100000"))
AUTH = "Authorization: Bearer s-token"
RESULTS: dict[str, float] = {}

pytestmark = pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("hey")),
                                reason="needs wrk and hey (apt-get install wrk hey)")


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
    solution = Solution(inst, cands, formulate(inst, cands), Status.OPTIMAL, chosen, objective,
                        objective, "optimal", "segment-choice", method="exact-separable",
                        solve_seconds=time.perf_counter() - started)
    plan = plan_document(solution)
    assert check_plan(inst, plan).ok
    store = Store.open(f"sqlite:///{data / 'offeropt.db'}")
    document = json.dumps(instance_to_document(inst))
    run_id, _ = store.submit(inst.name, document, "load", {"time_limit": 1}, "bench", None)
    store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True, plan_status="optimal")
    store.publish(store.run(run_id)["plan_id"], "bench")
    segments = sorted({o["segment"] for o in plan["offers"]})
    assert len(inst.segments) >= 100_000 or SEGMENTS < 100_000
    return data, segments


def _warm(server: Server, segment: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # every worker builds its index on first use
        body = server.get(f"/v1/offers?segment={segment}",
                          headers={"Authorization": "Bearer s-token"}).json()
        if body["plan_version"] == 1:
            for _ in range(50):
                server.get(f"/v1/offers?segment={segment}",
                           headers={"Authorization": "Bearer s-token"})
            return
        time.sleep(0.5)
    raise RuntimeError("the index never loaded")


def _wrk(url: str, script: Path | None, seconds: int = 15) -> float:
    cmd = ["wrk", "-t1", "-c16", f"-d{seconds}s", "-H", AUTH, url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def _hey(url: str, rate: int, seconds: int = 20) -> dict[str, float]:
    workers = 10
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(workers), "-q",
                          str(rate // workers), "-H", AUTH, url],
                         capture_output=True, text=True, check=True).stdout
    pct = {int(p): float(s) for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    assert set(codes) == {"200"}, out
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": 1000 * pct[50], "p99_ms": 1000 * pct[99]}


def test_throughput_per_worker(served: tuple[Path, list[str]], tmp_path: Path) -> None:
    data, segments = served
    script = tmp_path / "random_segments.lua"
    sample = ",".join(f'"{s}"' for s in segments[:: max(1, len(segments) // 5000)])
    script.write_text(f"""
segs = {{{sample}}}
request = function()
  return wrk.format("GET", "/v1/offers?segment=" .. segs[math.random(#segs)])
end
""")
    server = Server(data, workers=1, threads=2, OFFEROPT_RUN_JOBS="false").start(timeout=180)
    try:
        _warm(server, segments[0])
        RESULTS["offers_rps_per_worker"] = _wrk(f"{server.base}/v1/offers", script)
        RESULTS["healthz_rps_per_worker"] = _wrk(f"{server.ops}/healthz", None)
    finally:
        server.stop()


@pytest.mark.parametrize(("profile", "workers", "threads"), [("default", 2, 2),
                                                             ("storefront", 3, 1)])
def test_latency_at_1000_rps(served: tuple[Path, list[str]], profile: str, workers: int,
                             threads: int) -> None:
    data, segments = served
    server = Server(data, workers=workers, threads=threads,
                    OFFEROPT_RUN_JOBS="false").start(timeout=180)
    try:
        _warm(server, segments[len(segments) // 2])
        url = f"{server.base}/v1/offers?segment={segments[len(segments) // 2]}"
        RESULTS.update({f"{profile}_offers_{k}": v for k, v in _hey(url, 1000).items()})
        RESULTS.update({f"{profile}_healthz_{k}": v
                        for k, v in _hey(f"{server.ops}/healthz", 1000).items()})
    finally:
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def _print_results() -> Any:
    yield
    if RESULTS:
        print("\nstorefront load (same run):", json.dumps(RESULTS, indent=2))
