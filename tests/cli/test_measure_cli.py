"""`offeropt measure` end to end: served logs in, the measurement in words, JSON and HTML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from optimizer.measure.simulate import simulate_served
from tests.measure.helpers import DEMO, INTEGRAL, SPLIT, demo, make_plan

OFFEROPT = str(Path(sys.executable).parent / "offeropt")  # the console script of this venv


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    inst = demo()
    folder = tmp_path_factory.mktemp("measure")
    served, other = make_plan(inst, SPLIT), make_plan(inst, INTEGRAL)
    out = {"logs": folder / "logs.csv", "plan": folder / "plan.json", "other": folder / "other.json"}
    simulate_served(inst, served, seed=4, version=2).to_csv(out["logs"], index=False)
    out["plan"].write_text(json.dumps(served.to_dict()))
    out["other"].write_text(json.dumps(other.to_dict()))
    return out


def test_measure_tells_the_plan_in_words_through_the_console_script(files: dict[str, Path]) -> None:
    done = subprocess.run([OFFEROPT, "measure", str(files["logs"]), "--instance", str(DEMO),
                           "--plan", str(files["plan"]), "--against", str(files["other"])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Plan for 'demo-shop' version 2:" in out
    assert "of incremental margin against the holdout" in out and "JPY per served view" in out
    assert "take rate" in out and "attach rate" in out and "AOV increment" in out
    assert "Promotion ROI" in out and "Per audience" in out and "95% interval" in out
    assert "Off-policy estimates of plan other.json" in out and "doubly robust (DR)" in out


def test_measure_writes_json_and_a_report_page(files: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    code = main(["measure", str(files["logs"]), "--instance", str(DEMO), "--plan", str(files["plan"]),
                 "--version", "2", "--against", str(files["other"]), "--json", "--html", str(page)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "offeropt/measurement@1" and doc["version"] == 2
    assert doc["group_by"] == "audience" and doc["off_policy"]["format"] == "offeropt/off-policy@1"
    assert doc["incremental_margin"]["lo"] < doc["incremental_margin"]["value"]
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.count("<svg") == 3
    assert "id='off-policy'" in text


def test_measure_refuses_bad_logs_and_arguments(files: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "logs.csv"
    lines = files["logs"].read_text().splitlines()
    head, first = lines[0], lines[1].rsplit(",", 1)[0]
    bad.write_text(f"{head}\n{first},0\n")
    args = ["measure", str(bad), "--instance", str(DEMO), "--plan", str(files["plan"])]
    assert main(args) == 1
    assert "logs.csv[line 2].propensity: must be in (0, 1], got 0" in capsys.readouterr().err
    assert main([*args[:-2], "--plan", str(tmp_path / "none.json")]) == 1
    assert "none.json: must be a readable plan JSON file" in capsys.readouterr().err
    assert main([*args, "--version", "9"]) == 1
    with pytest.raises(SystemExit) as usage:
        main([*args, "--version", "0"])
    assert usage.value.code == 2
