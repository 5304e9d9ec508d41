"""The solver on realistic catalogs: `auto` (LP-guided) against plain HiGHS, split traffic
against the LP optimum, and the time limit as a whole-process promise.

Realistic catalogs (`offeropt generate --profile realistic`): heavy-tailed views (at 2,000
segments the 50 largest hold about half of all views), tight stock on half the items, and
every policy row binding. Each solve runs as its own `offeropt solve` process, so its wall
time is the whole command's (loading, solving, checking, writing). The baseline, measured
in the same run, is the plain MIP handed to HiGHS whole (`--method exact`). At smoke size
(the test run) the catalog has 100 segments and the limits are a few seconds.

Figures are printed (and recorded in benchmarks/README.md), never asserted, except what
must hold on any machine: every plan passes the independent check, and the split plan's
value is the LP bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.conftest import knob, sized

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = [int(s) for s in knob("OFFEROPT_BENCH_SOLVER_SEGMENTS", "100", "2000").split(",")]
LIMIT = float(knob("OFFEROPT_BENCH_TIME_LIMIT", "6", "60"))
BASELINE_LIMIT = sized(4.0, 90.0)


def _catalog(tmp_path: Path, segments: int) -> Path:
    folder = tmp_path / f"realistic-{segments}"
    items, bundles = max(30, segments * 6 // 100), max(20, segments * 3 // 100)
    subprocess.run([sys.executable, "-m", "cli", "generate", "--segments", str(segments),
                    "--seed", "1", "--items", str(min(items, 1000)), "--bundles",
                    str(min(bundles, 300)), "--profile", "realistic", "--to", "parquet", "-o",
                    str(folder)], check=True, cwd=ROOT, capture_output=True)
    return folder


def _solve(catalog: Path, *args: str) -> tuple[dict[str, Any], float]:
    """The plan `offeropt solve ... --json` prints, and the command's wall seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli", "solve", str(catalog), "--json",
                           "--no-progress", "--threads", "1", *args], capture_output=True,
                          text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    assert done.returncode in (0, 4), done.stderr[-2000:]  # 4: no plan in time (the baseline)
    return json.loads(done.stdout), seconds


def _below(plan: dict[str, Any], reference: float) -> str:
    if plan.get("objective") is None:
        return "no plan"
    return f"{(reference - plan['objective']) / abs(reference):.4%}"


@pytest.mark.parametrize("segments", SEGMENTS)
def test_auto_against_plain_highs(tmp_path: Path, segments: int) -> None:
    catalog = _catalog(tmp_path, segments)
    ours, ours_s = _solve(catalog, "--time-limit", str(LIMIT))
    plain, plain_s = _solve(catalog, "--method", "exact", "--time-limit", str(BASELINE_LIMIT))
    split, split_s = _solve(catalog, "--split-traffic", "--time-limit", str(LIMIT))
    assert split["status"] == "optimal"
    lp_bound = split["objective"]
    if ours["status"] in ("optimal", "feasible"):  # a smoke limit on a loaded machine may end
        assert ours["solver"]["check"].startswith("passed")  # before any plan: exit code 4
        assert ours["objective"] <= lp_bound * (1 + 1e-9)
    if ours["bound"] is not None:  # none when stopped before the LP
        assert ours["bound"] <= lp_bound * (1 + 1e-9)
    print(f"\nrealistic {segments} segments, LP bound {lp_bound:,.0f} (limits: ours {LIMIT:g} s, "
          f"plain HiGHS {BASELINE_LIMIT:g} s)")
    for name, plan, seconds, limit in (("auto (LP-guided)", ours, ours_s, LIMIT),
                                       ("plain HiGHS", plain, plain_s, BASELINE_LIMIT),
                                       ("split traffic", split, split_s, LIMIT)):
        objective = "-" if plan.get("objective") is None else f"{plan['objective']:,.0f}"
        print(f"  {name:<18} {plan['status']:<10} objective {objective:>16}  below LP bound "
              f"{_below(plan, lp_bound):>8}  wall {seconds:7.1f} s (limit {limit:g}, "
              f"1.1 x limit + 3 = {1.1 * limit + 3:.1f})")
    integral = split["solver"].get("integral_objective")
    if integral:
        print(f"  split traffic earns {lp_bound - integral:,.0f} "
              f"({(lp_bound - integral) / abs(integral):.3%}) over its integral plan")


@pytest.mark.parametrize("segments", SEGMENTS)
def test_split_by_columns_against_the_whole_lp(tmp_path: Path, segments: int) -> None:
    """Split traffic by column generation from the multipliers (what catalogs above 5M
    candidates get) against the whole LP solved at once (the baseline): the same value,
    and the wall time of each."""
    catalog = _catalog(tmp_path, segments)
    whole, whole_s = _solve(catalog, "--split-traffic", "--method", "lp", "--time-limit",
                            str(LIMIT))
    columns, columns_s = _solve(catalog, "--split-traffic", "--method", "decompose",
                                "--time-limit", str(LIMIT))
    assert whole["status"] == "optimal"
    if columns["status"] in ("optimal", "feasible"):
        assert columns["solver"]["check"].startswith("passed")
        assert columns["objective"] <= whole["objective"] * (1 + 1e-6)
    print(f"\nrealistic {segments} segments, split traffic (limit {LIMIT:g} s)")
    for name, plan, seconds in (("whole LP", whole, whole_s), ("column generation", columns,
                                                                columns_s)):
        objective = "-" if plan.get("objective") is None else f"{plan['objective']:,.0f}"
        print(f"  {name:<18} {plan['status']:<10} objective {objective:>16}  below the whole "
              f"LP {_below(plan, whole['objective']):>8}  wall {seconds:7.1f} s")
    print(f"  wall ratio (columns / whole LP) {columns_s / whole_s:.2f}; "
          f"{columns['solver'].get('recovery', '')}")
