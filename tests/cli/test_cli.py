"""The `offeropt` command: every subcommand, exit codes, and no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.exit_codes import ExitCode
from cli.main import main
from optimizer.backends import Limits, MilpProblem, MilpSolution, Termination
from tests.constants import DATA, ROOT

DEMO = str(ROOT / "instances" / "demo")


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", DEMO]) == ExitCode.OK
    assert "demo-shop: valid (12 items, 9 bundles, 14 segments, 41 responses)" in capsys.readouterr().out


def test_solve_writes_a_plan_that_check_accepts(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    assert main(["solve", DEMO, "-o", str(plan)]) == ExitCode.OK
    out = capsys.readouterr().out
    for part in ("demo-shop: optimal", "KPIs", "Top offers", "Binding constraints",
                 "check: plan independently verified"):
        assert part in out
    doc = json.loads(plan.read_text())
    assert doc["format"] == "offeropt/plan@1" and doc["status"] == "optimal"
    assert main(["check", DEMO, str(plan)]) == ExitCode.OK
    assert "plan is sound" in capsys.readouterr().out


def test_solve_csv_output(tmp_path: Path) -> None:
    out = tmp_path / "plan.csv"
    assert main(["solve", DEMO, "-o", str(out), "--solver", "cbc"]) == ExitCode.OK
    lines = out.read_text().splitlines()
    assert lines[0] == ("segment,bundle,discount,perk,share,reference_price,price,expected_takes,"
                        "expected_incremental_margin")
    assert len(lines) > 5


def test_check_rejects_tampered_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    main(["solve", DEMO, "-o", str(plan)])
    doc = json.loads(plan.read_text())
    doc["objective"] *= 2
    plan.write_text(json.dumps(doc))
    assert main(["check", DEMO, str(plan)]) == ExitCode.CHECK_FAILED
    assert "objective: must be" in capsys.readouterr().out


def test_check_with_unreadable_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("{not json")
    assert main(["check", DEMO, str(plan)]) == ExitCode.INPUT_ERROR
    assert "plan.json: must be a readable plan JSON file" in capsys.readouterr().err


def test_infeasible_exit_code_and_diagnosis(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["solve", str(DATA / "demo_infeasible.json")])
    out = capsys.readouterr().out
    assert code == ExitCode.INFEASIBLE
    assert "inventory of item 'lens-35'" in out
    assert "'champions-product'" in out


def test_infeasible_plan_json_carries_diagnosis(capsys: pytest.CaptureFixture[str]) -> None:
    main(["solve", str(DATA / "demo_infeasible.json"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "infeasible" and doc["offers"] == []
    conflict = doc["diagnosis"]["conflicts"][0]
    assert conflict["constraint"] == "inventory" and conflict["item"] == "lens-35"


def test_time_limit_without_plan_exit_code(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The solver stopped by its clock before any plan: exit 4, whatever the machine's speed
    (a real time limit too short to find a plan depends on how fast the machine is)."""
    import optimizer.solve.dispatch as solve_module

    def out_of_time(problem: MilpProblem, limits: Limits) -> MilpSolution:
        assert limits.time_limit is not None and 0 < limits.time_limit <= 5.0
        return MilpSolution(Termination.TIME_LIMIT, None, None, ("stopped by the clock",))

    monkeypatch.setattr(solve_module, "get_backend", lambda name: out_of_time)
    assert main(["solve", DEMO, "--time-limit", "5", "--method", "exact"]) == ExitCode.NO_PLAN_IN_TIME
    capsys.readouterr()
    assert main(["solve", DEMO, "--time-limit", "5", "--method", "exact", "--json"]) == \
        ExitCode.NO_PLAN_IN_TIME
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "time_limit" and doc["offers"] == []


def test_convert_and_generate(tmp_path: Path) -> None:
    assert main(["convert", DEMO, str(tmp_path / "demo.json")]) == ExitCode.OK
    assert main(["convert", str(tmp_path / "demo.json"), str(tmp_path / "pq"), "--to",
                 "parquet"]) == ExitCode.OK
    assert (tmp_path / "pq" / "responses.parquet").exists()
    assert main(["validate", str(tmp_path / "pq")]) == ExitCode.OK
    assert main(["generate", "--segments", "30", "--seed", "4", "-o", str(tmp_path / "g"),
                 "--to", "csv"]) == ExitCode.OK
    assert main(["solve", str(tmp_path / "g")]) == ExitCode.OK


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["solve", DEMO, "--gap", "2"])
    assert exit_info.value.code == ExitCode.USAGE


def test_demo_solves_publishes_through_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OFFEROPT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OFFEROPT_MERCHANDISER_TOKENS", "m")
    monkeypatch.setenv("OFFEROPT_STOREFRONT_TOKENS", "s")
    from cli.main import main as service_main

    assert service_main(["demo", "--no-serve"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "demo-shop: optimal" in out and "published as version 1" in out
    from api.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'offeropt.db'}")
    active = store.active()
    assert active is not None and active["version"] == 1
    assert service_main(["demo", "--no-serve"]) == ExitCode.OK  # re-running reuses the solved run
    assert "published as version 2" in capsys.readouterr().out


def test_real_process_input_error_has_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "offeropt/instance@1", "items": "nope"}')
    proc = subprocess.run([sys.executable, "-m", "cli", "solve", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.INPUT_ERROR
    assert "items: must be a list, got 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_progress_bar_reports_objective_bound_and_gap(capsys: pytest.CaptureFixture[str]) -> None:
    # The demo decomposes to the default gap in well under a second: the limit is never the
    # reason the solve ends, so the exit code does not depend on the machine's speed.
    code = main(["solve", DEMO, "--time-limit", "120", "--progress", "--method", "decompose"])
    assert code == ExitCode.OK
    err = capsys.readouterr().err
    assert "objective" in err and "bound" in err and "gap" in err and "/120.0 s" in err


@pytest.mark.parametrize("command", ["validate", "check"])
def test_core_commands_load_neither_flask_nor_sqlalchemy(command: str, tmp_path: Path) -> None:
    """The console script (`cli.main`) runs the library's commands without the service's
    stack: a fresh interpreter, then a look at what it imported."""
    plan = tmp_path / "plan.json"
    assert main(["solve", DEMO, "-o", str(plan), "--no-progress"]) == ExitCode.OK
    argv = [command, DEMO] + ([str(plan)] if command == "check" else [])
    probe = ("import sys; from cli.main import main; code = main(sys.argv[1:]); "
             "print(sorted(m for m in ('flask', 'werkzeug', 'sqlalchemy', 'gunicorn') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
