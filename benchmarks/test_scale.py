"""Scale: the decomposition from 10k to 1M segments, and `auto` on the medium instance.

Each size runs as its own `offeropt` process (generate straight to Parquet, then solve),
so wall time and peak RSS are the process's own. At OFFEROPT_BENCH_SIZE=full sizes come
from OFFEROPT_BENCH_SEGMENTS (default 10000,100000; the L target is 1000000) and the limit
from OFFEROPT_BENCH_TIME_LIMIT (default 600 s); at smoke size (the test run) one size, 100
segments, with a 4 s limit, and `auto` runs on the generated smoke instance instead of
medium. Ratios are per segment, against the smallest size of the same run: flat ratios mean
linear cost.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.conftest import SMOKE_INSTANCE, knob, sized
from optimizer.model.instance import Instance
from optimizer.solve.dispatch import SolveOptions, solve

ROOT = Path(__file__).resolve().parent.parent
SIZES = [int(s) for s in knob("OFFEROPT_BENCH_SEGMENTS", "100", "10000,100000").split(",")]
TIME_LIMIT = float(knob("OFFEROPT_BENCH_TIME_LIMIT", "4", "600"))
AUTO = sized(SMOKE_INSTANCE, "medium")
AUTO_LIMIT, LONG_LIMIT = sized(20.0, 60.0), sized(20.0, 300.0)


def _run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one offeropt process."""
    script = ("import resource, sys, runpy; sys.argv = ['offeropt', *sys.argv[1:]]\n"
              "try:\n    runpy.run_module('cli', run_name='__main__')\n"
              "finally:\n    print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
              " file=sys.stderr)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          cwd=ROOT)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rss = [line for line in done.stderr.splitlines() if line.startswith("RSS ")]
    return seconds, int(rss[-1].split()[1]) / 1e6


def _percent(share: float | None) -> str:
    return "None" if share is None else f"{share:.4%}"


def test_scaling_curve(tmp_path: Path) -> None:
    lines = [f"{'segments':>10} {'generate s':>10} {'gen GB':>7} {'solve s':>8} {'solve GB':>8} "
             f"{'gap':>8} {'s/1k seg':>9} {'ratio':>6} {'MB/1k seg':>9} {'ratio':>6}"]
    base: tuple[float, float] | None = None
    for n in SIZES:
        folder, plan = tmp_path / f"g{n}", tmp_path / f"plan{n}.json"
        gen_s, gen_gb = _run(["generate", "--segments", str(n), "--seed", "11",
                              "--responses-per-segment", "20", "--items", "1000", "--to", "parquet",
                              "-o", str(folder)])
        solve_s, solve_gb = _run(["solve", str(folder), "--method", "decompose", "--gap", "1e-3",
                                  "--time-limit", str(TIME_LIMIT), "--no-check", "--no-progress",
                                  "-o", str(plan)])
        doc = json.loads(plan.read_text())
        per_time, per_mem = solve_s / n * 1000, solve_gb * 1e6 / n
        base = base or (per_time, per_mem)
        lines.append(f"{n:>10,} {gen_s:>10.1f} {gen_gb:>7.2f} {solve_s:>8.1f} {solve_gb:>8.2f} "
                     f"{_percent(doc['gap']):>8} {per_time:>9.3f} {per_time / base[0]:>6.2f} "
                     f"{per_mem:>9.2f} {per_mem / base[1]:>6.2f}")
        curve = doc["solver"].get("history") or []  # none when stopped at the limit
        lines.append("    gap over time: " + ", ".join(
            f"{t:.0f}s {(b - o) / max(abs(b), 1):.3%}" for t, o, b in curve[:: max(1, len(curve) // 8)]
            if o is not None))
    print("\n" + "\n".join(lines))
    print(f"(peak RSS of this process's children: "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6:.2f} GB)")


def test_medium_auto_after_60s_against_a_long_exact_run(instances: dict[str, Instance]) -> None:
    inst = instances[AUTO]
    started = time.perf_counter()
    auto = solve(inst, SolveOptions(method="auto", time_limit=AUTO_LIMIT, gap=1e-4))
    auto_s = time.perf_counter() - started
    started = time.perf_counter()
    long = solve(inst, SolveOptions(method="exact", time_limit=LONG_LIMIT, gap=0.0))
    long_s = time.perf_counter() - started
    assert auto.objective is not None and long.objective is not None
    share = auto.objective / long.objective
    bound = "None" if long.bound is None else f"{long.bound:,.0f}"  # None: stopped at the limit
    print(f"\n{AUTO}: auto ({auto.method}) {auto.objective:,.0f} in {auto_s:.1f}s; exact, gap 0, "
          f"{long.objective:,.0f} (bound {bound}) in {long_s:.1f}s; auto/long "
          f"{share:.6f} ({1 - share:.4%} below)")
    assert share <= 1 + 1e-9
