"""The command line of issue 17: `offeropt explain`, `offeropt frontier`, and the solve summary in
plain words (names beside ids, reference price → price with the savings, a glossary, and a
warning for a budget or a stock used above 95%)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.exit_codes import ExitCode
from cli.main import main
from optimizer.io import instance_from_document
from optimizer.plan.report import near_limit_warnings
from tests.constants import DATA

DEMO = str(DATA / "demo.json")


@pytest.fixture(scope="module")
def solved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo solved once by `offeropt solve -o`: the plan file and the summary printed."""
    import contextlib
    import io

    plan = tmp_path_factory.mktemp("cli") / "plan.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["solve", DEMO, "-o", str(plan)]) == ExitCode.OK
    return plan, out.getvalue()


def test_the_summary_speaks_plain_words(solved: tuple[Path, str]) -> None:
    _, out = solved
    assert "laptop-care (Laptop care set)" in out  # the name beside the id
    assert "hair-duo (Shampoo and conditioner duo)" in out
    assert "3,600 → 3,400 JPY (saves 200)" in out  # reference price → price, with the savings
    assert "sleeve-14 (Laptop sleeve 14\")" in out
    assert out.count("Glossary: bound = ") == 1 and "takes = expected accepted offers" in out
    # the demo's plan spends 881,539 of its 900,000 JPY budget and 5,870 of 6,000 sleeves
    assert "promotion budget 97.95% used (881,539 of 900,000 JPY)" in out
    assert "stock of sleeve-14 (Laptop sleeve 14\") 97.83% used" in out
    assert "stock of lens-35" not in out  # 73% used: no warning


def test_no_warning_at_or_below_95_percent() -> None:
    inst = instance_from_document(json.loads(Path(DEMO).read_text()))
    budget = inst.policy.promotion_budget
    assert budget is not None
    kpis: dict[str, Any] = {"promotion_spend": 0.95 * budget, "inventory": {
        "sleeve-14": {"used": 95.0, "stock": 100.0}, "lens-35": {"used": 99.0, "stock": 100.0}}}
    assert near_limit_warnings(kpis, inst, " JPY") == [
        "stock of lens-35 (35mm f/1.8 lens) 99.00% used (99.0 of 100)"]


def test_explain_command(solved: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    plan, _ = solved
    code = main(["explain", str(plan), "--instance", DEMO, "--segment", "champions-product"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert "camera-a7-upgrade (Upgrade to the A7 body): beaten" in out
    assert "lens-and-card (35mm lens with 128 GB card): beaten" in out
    assert "Re-solved with it required" in out  # the command proves losses by re-solving
    assert main(["explain", str(plan), "--instance", DEMO, "--segment", "champions-product",
                 "--bundle", "lens-and-card", "--no-resolve", "--json"]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert [e["bundle"] for e in doc["entries"]] == ["lens-and-card"]
    assert doc["entries"][0]["forced"] is None and doc["entries"][0]["proof"] == "multipliers"
    assert main(["explain", str(plan), "--instance", DEMO, "--segment", "nope"]) == \
        ExitCode.INPUT_ERROR
    assert "segment: must be a segment id of the instance, got 'nope'" in capsys.readouterr().err


def test_frontier_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, plot = tmp_path / "frontier.json", tmp_path / "frontier.svg"
    code = main(["frontier", DEMO, "--vary", "stock:camera-a6", "--values", "100,2000",
                 "--time-limit", "10", "-o", str(out), "--plot", str(plot)])
    text = capsys.readouterr()
    assert code == ExitCode.OK, text.err
    assert "expected incremental margin against stock:camera-a6 (2 points" in text.out
    assert "The limit stops costing money at 100" not in text.out  # 100 bodies are too few
    assert "Glossary: bound = " in text.out and "stock:camera-a6 = 2,000" in text.err
    doc = json.loads(out.read_text())
    assert [p["value"] for p in doc["points"]] == [100.0, 2000.0]
    assert all(p["checked"] for p in doc["points"])
    assert plot.read_text().startswith("<svg")
    assert main(["frontier", DEMO, "--vary", "promotion_budget", "--values", "1,x,-2"]) == \
        ExitCode.INPUT_ERROR
    assert "values[1]: must be a number, got 'x'" in capsys.readouterr().err
    assert main(["frontier", DEMO, "--vary", "budget", "--values", "1"]) == ExitCode.INPUT_ERROR
    assert "vary: must be one of" in capsys.readouterr().err
