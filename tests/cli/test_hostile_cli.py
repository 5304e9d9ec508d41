"""Hostile input on the command line: every refusal is clean (exit 1, the message names the
path or field and the rule, no traceback), and nothing is made up or written half-way.

Each case runs the real console script in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from api.store import RunStatus, Store
from optimizer.estimation.simulate import simulate
from optimizer.io import load_instance
from tests.constants import DATA, ROOT
from tests.plans import bare_plan

OFFEROPT = str(Path(sys.executable).parent / "offeropt")
DEMO = ROOT / "instances" / "demo"
HEADER = "segment,bundle,shown,discount,perk,views,purchases\n"


def offeropt(*args: object, cwd: Path | None = None, unprivileged: bool = False,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script; `unprivileged` drops root's power to ignore file permissions."""
    argv = [OFFEROPT, *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        argv = [*UNPRIVILEGED, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **(env or {})})


# As root, permission bits bind only without these capabilities (Linux's setpriv drops them).
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _permissions_bind() -> bool:
    return os.geteuid() != 0 or shutil.which("setpriv") is not None


needs_permissions = pytest.mark.skipif(not _permissions_bind(),
                                       reason="root without setpriv ignores file permissions")


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Asserts a clean refusal: exit 1, no traceback, every expected text in stderr."""
    err = result.stderr
    assert result.returncode == 1, f"exit {result.returncode}\n{err}\n{result.stdout}"
    assert "Traceback" not in err and "Traceback" not in result.stdout, err
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    return err


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write into (restored afterwards, so tmp_path can be removed)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


# -- 4. Empty or degenerate logs -----------------------------------------------------------


def _logs(tmp_path: Path, frame: pd.DataFrame | None = None, name: str = "logs.csv") -> Path:
    path = tmp_path / name
    if frame is None:
        path.write_text(HEADER)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    return simulate(load_instance(DEMO), 300, seed=3)


def test_estimate_refuses_a_log_with_only_a_header(tmp_path: Path) -> None:
    out = tmp_path / "responses.csv"
    result = offeropt("estimate", _logs(tmp_path), "--instance", DEMO, "-o", out)
    refused(result, "logs.csv: must hold at least one shown row (shown = 1) with views > 0",
            "got no rows")
    assert not out.exists()


def test_estimate_refuses_a_log_whose_views_are_all_zero(tmp_path: Path,
                                                         simulated: pd.DataFrame) -> None:
    zero = simulated.assign(views=0, purchases=0)
    out = tmp_path / "responses.csv"
    result = offeropt("estimate", _logs(tmp_path, zero), "--instance", DEMO, "-o", out,
                      "--write-instance", tmp_path / "new.json")
    err = refused(result, "logs.csv: must hold at least one shown row", "with 0 shown views")
    assert "nan" not in err and not out.exists() and not (tmp_path / "new.json").exists()


def test_estimate_refuses_a_log_with_holdouts_only(tmp_path: Path,
                                                   simulated: pd.DataFrame) -> None:
    holdouts = simulated[simulated["shown"] == 0]
    refused(offeropt("estimate", _logs(tmp_path, holdouts), "--instance", DEMO),
            "logs.csv: must hold at least one shown row", "0 shown views")


@pytest.mark.parametrize("method", ["pooled", "naive"])
def test_responses_without_data_are_left_unchanged_with_a_warning(
        tmp_path: Path, simulated: pd.DataFrame, method: str) -> None:
    """A bundle no segment saw: nothing to estimate or pool its responses from. They stay
    as the instance has them (and are never 0.5 / 1e-36 placeholders)."""
    demo = load_instance(DEMO)
    partial = simulated[simulated["bundle"] != "hair-duo"]
    out, new = tmp_path / "responses.csv", tmp_path / "new.json"
    result = offeropt("estimate", _logs(tmp_path, partial), "--instance", DEMO, "-o", out,
                      "--write-instance", new, "--method", method)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and " nan" not in result.stderr
    given = demo.responses[demo.responses["bundle"] == "hair-duo"]
    estimated = pd.read_csv(out)
    written = pd.DataFrame(json.loads(new.read_text())["responses"])
    assert len(written) == len(demo.responses)  # no response lost
    kept = written[written["bundle"] == "hair-duo"].set_index("segment")
    truth = given.set_index("segment")
    for column in ("take_rate", "price_sensitivity", "baseline_rate"):
        assert kept[column].to_dict() == truth[column].to_dict()
    if method == "pooled":
        assert f"warning: {len(given)} responses had no shown views" in result.stderr
        rows = estimated[estimated["bundle"] == "hair-duo"]
        assert (rows["take_source"] == "instance").all() and len(rows) == len(given)
        assert rows["take_rate"].tolist() == given["take_rate"].tolist()
    else:
        assert f"warning: {len(given)} (segment, bundle) pairs had no shown views" in result.stderr
        assert not (estimated["bundle"] == "hair-duo").any()
    assert (estimated["price_sensitivity"] > 1e-30).all() or method == "naive"


# -- 5. Files and stores -----------------------------------------------------------------


@needs_permissions
def test_an_unreadable_instance_file_is_refused(tmp_path: Path) -> None:
    instance = tmp_path / "catalog.json"
    shutil.copy(DATA / "demo.json", instance)
    instance.chmod(0)
    refused(offeropt("validate", instance, unprivileged=True),
            f"{instance}: must be a readable file or folder, got permission denied")


@needs_permissions
def test_an_unreadable_instance_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    shutil.copytree(DEMO, folder)
    folder.chmod(0)
    try:
        err = refused(offeropt("solve", folder, unprivileged=True),
                      f"{folder}: must be a readable file or folder, got permission denied")
    finally:
        folder.chmod(0o755)
    assert "items.csv" not in err


@needs_permissions
@pytest.mark.parametrize("command", [
    ["solve", DEMO, "--time-limit", "60", "-o", "{out}/plan.json"],
    ["solve", DEMO, "--time-limit", "60", "-o", "{out}/deeper/plan.csv"],
    ["convert", DEMO, "{out}/copy"],
    ["convert", DEMO, "{out}/copy.json"],
    ["generate", "--segments", "3", "--seed", "1", "-o", "{out}/gen.json"],
    ["estimate", "{logs}", "--instance", DEMO, "-o", "{out}/responses.csv"],
    ["simulate", DEMO, "--views-per-cell", "10", "-o", "{out}/logs.csv"],
])
def test_writing_into_a_folder_that_cannot_be_written_is_refused(
        tmp_path: Path, locked: Path, simulated: pd.DataFrame, command: list[str]) -> None:
    logs = _logs(tmp_path, simulated)
    argv = [str(a).format(out=locked, logs=logs) for a in command]
    target = next(a for a in argv if a.startswith(str(locked)))
    result = offeropt(*argv, unprivileged=True)
    refused(result, f"{target}: must be ", "got permission denied")
    assert not list(locked.iterdir())  # nothing half-written, no temporary left behind


def test_solve_refuses_an_unwritable_output_before_solving(tmp_path: Path) -> None:
    folder = tmp_path / "plan.json"
    folder.mkdir()
    result = offeropt("solve", DEMO, "-o", folder)
    err = refused(result, f"{folder}: must be a file path (or a new one), got an existing folder")
    assert result.stdout == "" and "KPIs" not in err  # refused before the solve


@pytest.mark.parametrize(("to", "existing", "message"), [
    ("csv", "file", "must be a folder (or a new path) to write CSV tables into, got an "
                    "existing file"),
    ("parquet", "file", "must be a folder (or a new path) to write PARQUET tables into"),
    ("json", "folder", "must be a file path (or a new one), got an existing folder"),
])
def test_convert_onto_an_existing_path_of_the_other_kind_is_refused(
        tmp_path: Path, to: str, existing: str, message: str) -> None:
    target = tmp_path / "target.json"
    if existing == "file":
        target.write_text("keep me")
    else:
        target.mkdir()
    refused(offeropt("convert", DEMO, target, "--to", to), f"{target}: {message}")
    if existing == "file":
        assert target.read_text() == "keep me"


def test_convert_over_an_existing_json_file_replaces_it(tmp_path: Path) -> None:
    target = tmp_path / "copy.json"
    target.write_text("old")
    result = offeropt("convert", DEMO, target)
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text())["format"] == "offeropt/instance@1"


@pytest.mark.parametrize(("url", "message"), [
    ("notadb://x", "--store: must be a SQLAlchemy database URL with an installed driver"),
    ("garbage", "--store: must be a SQLAlchemy database URL with an installed driver"),
])
def test_rollback_refuses_a_store_url_it_cannot_use(url: str, message: str) -> None:
    refused(offeropt("rollback", "--store", url), message, f"got {url!r}")


def test_a_password_in_a_refused_store_url_is_not_shown() -> None:
    result = offeropt("rollback", "--store", "postgresql+psycopg://u:s3cret@127.0.0.1:1/db")
    err = refused(result, "--store: must ")
    assert "s3cret" not in err


@pytest.mark.parametrize("command", ["rollback", "nightly"])
def test_a_store_in_a_missing_folder_is_refused_not_created(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "no" / "such"
    url = f"sqlite:///{folder / 'offeropt.db'}"
    extra = ["--catalog", str(DATA / "demo.json"), "--report-dir", str(tmp_path / "reports")] \
        if command == "nightly" else []
    result = offeropt(command, "--store", url, *extra)
    refused(result, "--store: must name a SQLite file in an existing folder", f"{folder}")
    assert not (tmp_path / "no").exists()


@needs_permissions
def test_a_store_in_a_folder_that_cannot_be_written_is_refused(locked: Path) -> None:
    url = f"sqlite:///{locked / 'offeropt.db'}"
    refused(offeropt("rollback", "--store", url, unprivileged=True),
            "--store: must name a store that can be opened and written")


def _plan(tmp_path: Path, **changes: object) -> Path:
    """The demo's plan (solved once per module), with offer 0's fields changed."""
    plan = _solved_plan()
    plan["offers"][0].update(changes)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


_PLAN: list[dict[str, Any]] = []


def _solved_plan() -> dict[str, Any]:
    if not _PLAN:
        from optimizer.solve.dispatch import SolveOptions, solve
        from tests.plans import plan_document

        _PLAN.append(plan_document(solve(load_instance(DATA / "demo.json"),
                                         SolveOptions(method="exact", gap=1e-2))))
    copy: dict[str, Any] = json.loads(json.dumps(_PLAN[0]))
    return copy


@pytest.mark.parametrize(("field", "value", "message"), [
    ("share", "1", "offers[0].share: must be a number in (0, 1], got '1'"),
    ("share", True, "offers[0].share: must be a number in (0, 1], got True"),
    ("discount", "0.1", "offers[0].discount: must be a number, got '0.1'"),
    ("segment", 7, "offers[0].segment: must be a string (a segment id), got 7"),
    ("perk", ["x"], "offers[0].perk: must be a string (a perk id) or null, got ['x']"),
])
@pytest.mark.parametrize("command", ["check", "evaluate"])
def test_a_plan_field_of_the_wrong_type_is_an_input_error(
        tmp_path: Path, command: str, field: str, value: object, message: str) -> None:
    plan = _plan(tmp_path, **{field: value})
    argv = ["check", DATA / "demo.json", plan] if command == "check" else \
        ["evaluate", plan, "--truth", DATA / "demo.json"]
    refused(offeropt(*argv), message)


def test_a_plan_share_out_of_range_still_fails_the_check(tmp_path: Path) -> None:
    result = offeropt("check", DATA / "demo.json", _plan(tmp_path, share=1.5))
    assert result.returncode == 6 and "offers[0].share: must be in (0, 1]" in result.stdout


# -- 6. Misleading messages ----------------------------------------------------------------


@pytest.mark.parametrize(("table", "old", "new", "message"), [
    ("items", ",price,", ",prise,", "items.csv: must have a column 'price'"),
    ("items", "id,", "ident,", "items.csv: must have a column 'id'"),
    ("bundles", "id,", "ident,", "bundles.csv: must have a column 'id'"),
    ("segments", "id,", "ident,", "segments.csv: must have a column 'id'"),
    ("bundle_items", "bundle,", "bndl,", "bundle_items.csv: must have a column 'bundle'"),
    ("bundle_items", ",qty", ",quantity", "bundle_items.csv: must have a column 'qty'"),
])
def test_a_renamed_header_is_the_only_issue_reported(tmp_path: Path, table: str, old: str,
                                                     new: str, message: str) -> None:
    folder = tmp_path / "catalog"
    shutil.copytree(DEMO, folder)
    path = folder / f"{table}.csv"
    header, rest = path.read_text().split("\n", 1)
    assert old in header
    path.write_text(header.replace(old, new, 1) + "\n" + rest)
    err = refused(offeropt("validate", folder), "input error (1 issue):", message)
    assert "must name a known" not in err and "reference price" not in err


def test_a_missing_table_is_the_only_issue_reported(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    shutil.copytree(DEMO, folder)
    (folder / "segments.csv").unlink()
    refused(offeropt("validate", folder), "input error (1 issue):",
            "segments.csv: is required (a table file)")


def test_nightly_names_a_catalog_path_that_does_not_exist(tmp_path: Path) -> None:
    result = offeropt("nightly", "--catalog", "/nonexistent", "--store",
                      f"sqlite:///{tmp_path / 'store.db'}", "--report-dir", tmp_path / "reports")
    err = refused(result, "/nonexistent: must be an existing file or folder")
    assert "items.csv" not in err


@pytest.mark.parametrize("command", ["validate", "nightly"])
def test_a_folder_without_any_table_is_named_once(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    extra = ["--store", f"sqlite:///{tmp_path / 'store.db'}", "--report-dir",
             str(tmp_path / "reports")] if command == "nightly" else []
    argv = [command, *(["--catalog"] if command == "nightly" else []), folder, *extra]
    err = refused(offeropt(*argv), f"{folder}: must be an instance folder holding the tables",
                  "got a folder with none of them")
    assert "items.csv: is required" not in err


def _published(tmp_path: Path, count: int) -> str:
    """A store with `count` publications (versions 1..count) of two stored plans."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.open(url)
    plan_ids = []
    for k in range(2):
        run_id, _ = store.submit(f"c{k}", "{}", f"{k:064d}", {"time_limit": 1.0}, "test", None)
        store.finish_run(run_id, RunStatus.SUCCEEDED, bare_plan("optimal"), checked=True)
        plan_ids.append(store.run(run_id)["plan_id"])
    for v in range(count):
        store.publish(plan_ids[v % 2], "test")
    store.engine.dispose()
    return url


def test_rollback_to_a_version_that_was_never_published_lists_those_that_were(
        tmp_path: Path) -> None:
    url = _published(tmp_path, 3)
    result = offeropt("rollback", "--to", "99", "--store", url)
    refused(result, "--to: must be a published version (1-3), got 99",
            "no publication 99 exists")
    ok = offeropt("rollback", "--to", "1", "--store", url)
    assert ok.returncode == 0 and "active again as version 4" in ok.stdout, ok.stderr
