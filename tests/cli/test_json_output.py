"""Every `--json` output of the real `offeropt` command is JSON alone on standard output.

Each command runs as a separate process, as a script would run it, so that anything a
native library writes to file descriptor 1 (HiGHS's banner, CBC's log) is caught too;
solver banners and logs belong on standard error or nowhere. The commands with `--json`
are `solve` and `evaluate` (cli/core.py, cli/estimation.py; cli/main.py adds
none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.constants import DATA, ROOT
from tests.server import Child, Processes

DEMO = str(ROOT / "instances" / "demo")
SCRIPT = Path(sys.prefix) / "bin" / "offeropt"  # the console script of this environment
OFFEROPT = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "cli"]


def offeropt(processes: Processes, *args: str, expect: int = 0) -> tuple[Any, Child]:
    """Runs `offeropt ARGS` to the end; the whole of its stdout must parse as one JSON value."""
    done = processes.run([*OFFEROPT, *args], timeout=600, name=args[0], cwd=ROOT)
    out = done.out_path.read_bytes()
    assert done.proc.returncode == expect, done.describe()
    try:
        return json.loads(out), done
    except ValueError as exc:
        raise AssertionError(f"stdout of `offeropt {' '.join(args)}` is not JSON alone ({exc}):"
                             f"\n{out[:2000]!r}") from None


@pytest.mark.parametrize(("solver", "method"), [
    ("highs", "exact"), ("highs", "decompose"), ("highs", "auto"),
    ("cbc", "exact"), ("cbc", "decompose"),
])
def test_solve_json_is_json_alone(processes: Processes, solver: str, method: str) -> None:
    plan, _ = offeropt(processes, "solve", DEMO, "--json", "--solver", solver, "--method", method)
    assert plan["format"] == "offeropt/plan@1" and plan["instance"] == "demo-shop"
    assert plan["status"] == "optimal" and plan["offers"]
    assert plan["solver"]["backend"] == solver
    # every method and solver reaches the same optimum within the default gap (1e-4)
    assert plan["bound"] >= plan["objective"] * (1 - 1e-9)
    assert (plan["bound"] - plan["objective"]) <= 1e-4 * abs(plan["bound"]) + 1e-6


def test_same_optimum_from_every_solver_and_method(processes: Processes) -> None:
    objectives = {}
    for solver, method in (("highs", "exact"), ("cbc", "exact"), ("highs", "decompose")):
        plan, _ = offeropt(processes, "solve", DEMO, "--json", "--solver", solver,
                           "--method", method)
        objectives[solver, method] = plan["objective"]
    best = max(objectives.values())
    for key, value in objectives.items():  # each within the requested gap of the best
        assert value == pytest.approx(best, rel=2e-4), (key, objectives)


def test_solve_json_with_a_progress_bar_keeps_the_bar_on_stderr(processes: Processes) -> None:
    plan, done = offeropt(processes, "solve", DEMO, "--json", "--progress", "--time-limit", "120",
                          "--method", "decompose")
    assert plan["status"] == "optimal"
    assert "objective" in done.stderr() and "/120.0 s" in done.stderr()


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_solve_json_of_an_infeasible_instance(processes: Processes, solver: str) -> None:
    """The diagnosis solves more models; none of them may print either."""
    plan, _ = offeropt(processes, "solve", str(DATA / "demo_infeasible.json"), "--json",
                       "--solver", solver, expect=3)
    assert plan["status"] == "infeasible" and plan["diagnosis"]["conflicts"]


def test_evaluate_json_is_json_alone(processes: Processes, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    written, _ = offeropt(processes, "solve", DEMO, "--json", "-o", str(plan_file))
    report, _ = offeropt(processes, "evaluate", str(plan_file), "--truth", DEMO, "--json")
    assert report["truth"] == "demo-shop" and report["violations"] == []
    assert report["expected_incremental_margin"] == pytest.approx(written["objective"], rel=1e-9)


@pytest.mark.slow
def test_solve_json_on_a_local_dask_cluster(processes: Processes) -> None:
    """The cluster's scheduler and workers log on stderr; the process group is stopped by the
    fixture if the command hangs."""
    plan, _ = offeropt(processes, "solve", DEMO, "--json", "--backend", "dask",
                       "--method", "decompose")
    assert plan["status"] == "optimal" and plan["solver"]["method"] == "decompose"
