"""`offeropt nightly` and `offeropt rollback` in process, against a real store (SQLite, and
PostgreSQL when configured): exit codes, idempotent run keys, guardrails, reports, logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from api.store import Conflict, Store
from api.store.schema import plans
from cli.exit_codes import ExitCode
from cli.main import main
from jobs.nightly.ledger import Ledger, NightlyStatus, Outcome
from optimizer.io import instance_from_document
from optimizer.plan.check import check_plan
from tests.nightly_helpers import (
    base_catalog,
    corrupted_estimates,
    json_lines,
    stock_collapse,
    write,
)


@pytest.fixture
def night(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """Runs `offeropt nightly` on a catalog document; returns (exit code, report, log lines)."""
    reports = tmp_path / "reports"

    def run(doc: dict[str, Any], key: str, *extra: str, publish: bool = True) -> tuple[
            int, dict[str, Any], list[dict[str, Any]]]:
        capsys.readouterr()
        catalog = write(doc, tmp_path / f"{key}.json")
        argv = ["nightly", "--catalog", catalog, "--store", database_url, "--run-key", key,
                "--report-dir", str(reports), "--time-limit", "300", *extra]  # far beyond the need
        code = main([*argv, "--publish"] if publish else argv)
        logs = json_lines(capsys.readouterr().err)
        report_file = reports / f"{key}.json"
        return code, json.loads(report_file.read_text()) if report_file.exists() else {}, logs

    run.store = Store.open(database_url)
    run.reports = reports
    return run


def _plan_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(plans)).scalar() or 0)


def test_three_nights_publish_publish_keep(night: Any) -> None:
    doc = base_catalog()
    code, report, logs = night(doc, "n1")
    assert code == 0 and report["outcome"] == "published" and report["version"] == 1
    assert {"catalog_loaded", "solved", "guardrail", "finished", "report_written"} <= \
        {line["event"] for line in logs}
    assert all(line["run_key"] == "n1" and line["job"] == "nightly" for line in logs)

    collapsed = stock_collapse(doc)
    code, report, _ = night(collapsed, "n2")
    assert code == 0 and report["version"] == 2
    active = night.store.active_bundle()
    assert active["version"] == 2
    assert check_plan(instance_from_document(collapsed), json.loads(active["plan"])).ok
    stored = night.store.active_publication()  # kept in columns: no JSON at a million segments
    assert stored.catalog.tables is not None and stored.plan.columnar
    assert stored.catalog.instance().responses.equals(
        instance_from_document(collapsed).responses)
    rails = {g["name"]: g for g in report["guardrails"]}
    assert set(rails) == {"plan_check", "solver_status", "objective_vs_active", "no_offer_share",
                          "objective_jump", "estimate_drift"}
    assert rails["objective_vs_active"]["passed"] and rails["objective_vs_active"]["limit"] > 0
    assert report["diff"]["segments_changed"] > 0
    kpis = {row["kpi"]: row for row in report["kpis"]}
    assert kpis["expected_incremental_margin"]["today"] < kpis["expected_incremental_margin"][
        "yesterday"]  # less stock, less margin

    code, report, logs = night(corrupted_estimates(collapsed), "n3")
    assert code == ExitCode.KEPT_PREVIOUS and report["outcome"] == "kept_previous"
    failed = {g["name"] for g in report["guardrails"] if not g["passed"]}
    assert "estimate_drift" in failed
    assert "estimate_drift" in report["summary"]
    assert night.store.active()["version"] == 2  # yesterday's plan stays
    finished = next(line for line in logs if line["event"] == "finished")
    assert finished["exit_code"] == ExitCode.KEPT_PREVIOUS
    assert "estimate_drift" in finished["failed_guardrails"]


def test_a_rerun_with_the_same_key_does_nothing_new(night: Any) -> None:
    doc = base_catalog()
    assert night(doc, "same")[0] == 0
    plans_before = _plan_count(night.store)
    (night.reports / "same.json").unlink()  # even a lost report file is rewritten from the store
    code, report, logs = night(doc, "same")
    assert code == 0 and report["version"] == 1
    assert [line["event"] for line in logs][:1] == ["already_done"]
    assert len(night.store.history()) == 1 and _plan_count(night.store) == plans_before


def test_kept_previous_is_remembered_for_the_run_key(night: Any) -> None:
    doc = base_catalog()
    night(doc, "a")
    # the guardrail, not the solve, is the point: a coarse gap keeps the solves short
    assert night(corrupted_estimates(doc), "b", "--gap", "0.01")[0] == ExitCode.KEPT_PREVIOUS
    assert night(corrupted_estimates(doc), "b", "--gap", "0.01")[0] == ExitCode.KEPT_PREVIOUS
    assert len(night.store.history()) == 1


def test_bad_input_fails_and_a_rerun_tries_again(night: Any) -> None:
    doc = base_catalog()
    broken = json.loads(json.dumps(doc))
    broken["items"][0]["price"] = -5
    code, report, logs = night(broken, "bad")
    assert code == 1 and report["outcome"] == "failed"
    failure = next(line for line in logs if line["event"] == "failed")
    assert "items[0].price: must be > 0, got -5" in failure["error"]
    assert night.store.active() is None
    row = Ledger(night.store).row("bad")
    assert row["status"] == NightlyStatus.FAILED and row["attempts"] == 1
    code, _, _ = night(doc, "bad")  # fixed input, same key: a failed run is retried
    assert code == 0 and Ledger(night.store).row("bad")["attempts"] == 2


def test_dry_run_reports_without_writing(night: Any) -> None:
    code, report, _ = night(base_catalog(), "dry", publish=False)
    assert code == 0 and report["outcome"] == "dry_run"
    assert night.store.active() is None and _plan_count(night.store) == 0
    assert Ledger(night.store).row("dry") is None
    assert (night.reports / "dry.html").read_text().startswith("<!doctype html>")


def test_stability_cost_is_reported(night: Any) -> None:
    doc = base_catalog()
    night(doc, "d1")
    moved = json.loads(json.dumps(doc))
    for k, response in enumerate(moved["responses"]):  # new estimates: half the rates move
        response["take_rate"] *= 1.5 if k % 2 else 0.7
    code, report, _ = night(moved, "d2", "--max-churn", "0.05", "--change-penalty", "100")
    assert code == 0
    cost = report["solver"]["stability_cost"]
    assert cost["max_churn"] == 0.05 and cost["change_penalty"] == 100
    assert cost["absolute"] == pytest.approx(report["solver"]["free"]["objective"]
                                             - report["solver"]["stable"]["objective"])
    assert cost["absolute"] > 0  # the churn budget binds on these estimates
    assert report["diff"]["segments_changed"] <= 2 + report["solver"]["stable"][
        "previous_forced_segments"]  # 5% of 40 segments


def test_exposures_are_estimated_before_solving(night: Any, tmp_path: Path) -> None:
    from optimizer.estimation.simulate import simulate

    doc = base_catalog()
    logs = simulate(instance_from_document(doc), 400, 0.1, 3, False)
    path = tmp_path / "logs.csv"
    logs.to_csv(path, index=False)
    code, report, lines = night(doc, "est", "--exposures", str(path))
    assert code == 0
    assert report["estimation"]["responses"] == len(doc["responses"])
    assert any(line["event"] == "estimated" for line in lines)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["nightly"], ["nightly", "--catalog", "x.json", "--max-churn", "2"],
                 ["rollback", "--to", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "--max-churn: must be in [0, 1], got 2" in capsys.readouterr().err


def test_rollback_command(night: Any, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollback", "--store", database_url]) == 1
    assert "no plan has been published yet" in capsys.readouterr().err
    doc = base_catalog()
    night(doc, "r1")
    night(stock_collapse(doc), "r2")
    first = night.store.history()[-1]["plan_id"]
    assert main(["rollback", "--store", database_url]) == 0
    assert night.store.active() == {"plan_id": first, "version": 3}
    assert main(["rollback", "--store", database_url, "--to", "2"]) == 0
    assert night.store.active()["version"] == 4
    assert main(["rollback", "--store", database_url, "--to", "99"]) == 1


def test_publish_refuses_when_the_active_plan_moved_meanwhile(night: Any) -> None:
    doc = base_catalog()
    night(doc, "base")
    ledger = Ledger(night.store)
    assert ledger.begin("late") is None
    active = night.store.active_publication()
    plan, catalog = active.plan.plan(), active.catalog.instance()
    before = _plan_count(night.store)
    outcome = Outcome(NightlyStatus.PUBLISHED, 0, catalog, plan, True, {}, True,
                      expected_version=None)  # it saw no active plan; version 1 is active now
    with pytest.raises(Conflict, match="active plan: must still be version None"):
        ledger.record("late", outcome, {}, "test")
    assert _plan_count(night.store) == before  # the whole transaction rolled back
    assert ledger.row("late")["status"] == NightlyStatus.RUNNING


def test_a_live_job_holds_its_run_key(night: Any) -> None:
    ledger = Ledger(night.store)
    assert ledger.begin("held") is None
    with pytest.raises(Conflict, match="must not be running already"):
        ledger.begin("held")  # this very process holds it, and it is alive
