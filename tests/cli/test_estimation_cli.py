"""The input commands end to end: bad logs, estimate/simulate/evaluate, RFM on CDNOW."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main
from optimizer.estimation.rfm import Thresholds, score
from optimizer.io import load_instance

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "instances" / "demo"
HEADER = "segment,bundle,shown,discount,perk,views,purchases\n"
GOOD = "champions-cart,laptop-care,1,0.05,,100,7\n"


def _logs(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "logs.csv"
    path.write_text(header + body)
    return path


@pytest.mark.parametrize(("row", "message"), [
    ("nobody,laptop-care,1,0,,10,1", "logs.csv[line 3].segment: must be a segment id of the "
                                     "instance, got 'nobody'"),
    ("champions-cart,sku-9,1,0,,10,1", "logs.csv[line 3].bundle: must be a bundle id of the "
                                       "instance, got 'sku-9'"),
    ("champions-cart,laptop-care,1,0,,10,11", "logs.csv[line 3].purchases: must be <= views (10), "
                                              "got 11"),
    ("champions-cart,laptop-care,1,0,,-3,0", "logs.csv[line 3].views: must be an integer >= 0, "
                                             "got '-3'"),
    ("champions-cart,laptop-care,1,0,,10,-1", "logs.csv[line 3].purchases: must be an integer >= 0, "
                                              "got '-1'"),
    ("champions-cart,laptop-care,1,0,,2.5,1", "logs.csv[line 3].views: must be an integer >= 0, "
                                              "got '2.5'"),
    ("champions-cart,laptop-care,1,0.07,,10,1", "logs.csv[line 3].discount: must be in bundle "
                                                "'laptop-care''s ladder"),
    ("champions-cart,laptop-care,0,0.05,,10,1", "logs.csv[line 3].discount: must be 0 for a holdout "
                                                "row (shown = 0), got 0.05"),
    ("champions-cart,laptop-care,1,0,gift,10,1", "logs.csv[line 3].perk: must be a perk of bundle "
                                                 "'laptop-care', got 'gift'"),
    ("champions-cart,laptop-care,2,0,,10,1", "logs.csv[line 3].shown: must be 0 or 1, got '2'"),
    ("champions-cart,laptop-care,1,abc,,10,1", "logs.csv[line 3].discount: must be a number in "
                                               "[0, 1), got 'abc'"),
])
def test_bad_logs_name_the_row_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          row: str, message: str) -> None:
    logs = _logs(tmp_path, GOOD + row + "\n")
    out = tmp_path / "responses.csv"
    code = main(["estimate", str(logs), "--instance", str(DEMO), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_every_bad_row_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = _logs(tmp_path, "x,laptop-care,1,0,,10,1\nchampions-cart,y,1,0,,10,1\n"
                           "champions-cart,laptop-care,1,0,,5,9\n")
    assert main(["estimate", str(logs), "--instance", str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert "3 issues" in err and "line 2" in err and "line 3" in err and "line 4" in err


def test_missing_columns_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = _logs(tmp_path, "champions-cart,laptop-care,1\n", header="segment,bundle,shown\n")
    assert main(["estimate", str(logs), "--instance", str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert "logs.csv: must have a column 'discount'" in err
    assert "logs.csv: must have a column 'views'" in err


def test_row_level_logs_check_purchased(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = _logs(tmp_path, "champions-cart,laptop-care,1,0,,1\nchampions-cart,laptop-care,1,0,,3\n",
                 header="segment,bundle,shown,discount,perk,purchased\n")
    assert main(["estimate", str(logs), "--instance", str(DEMO)]) == 1
    assert "logs.csv[line 3].purchased: must be 0 or 1, got '3'" in capsys.readouterr().err


def test_simulate_estimate_solve_evaluate_through_the_cli(tmp_path: Path) -> None:
    logs, responses = tmp_path / "logs.parquet", tmp_path / "responses.csv"
    new, lifts, plan = tmp_path / "estimated.json", tmp_path / "lifts.csv", tmp_path / "plan.json"
    assert main(["simulate", str(DEMO), "--views-per-cell", "3000", "--seed", "4",
                 "-o", str(logs)]) == 0
    assert main(["estimate", str(logs), "--instance", str(DEMO), "-o", str(responses),
                 "--write-instance", str(new), "--perk-lifts", str(lifts), "--conservative", "0.2"]) == 0
    table = pd.read_csv(responses)
    assert list(table.columns[:5]) == ["segment", "bundle", "take_rate", "baseline_rate",
                                       "price_sensitivity"]
    assert {"take_rate_se", "take_rate_lo", "take_rate_hi", "baseline_rate_se",
            "price_sensitivity_lo", "take_source"} <= set(table.columns)
    estimated = load_instance(new)
    assert len(estimated.responses) == len(load_instance(DEMO).responses)
    assert pd.read_csv(lifts)["source"].eq("data").all()
    assert main(["solve", str(new), "--method", "exact", "-o", str(plan), "--no-progress"]) == 0
    result = subprocess.run([sys.executable, "-m", "cli", "evaluate", str(plan), "--truth",
                             str(DEMO), "--json"], capture_output=True, text=True, check=True,
                            timeout=300)
    report = json.loads(result.stdout)
    assert report["expected_incremental_margin"] > 0
    assert set(report["kpis"]) >= {"expected_takes", "inventory", "discounted_share"}


def test_rfm_scores_at_the_threshold_edges() -> None:
    day = pd.Timestamp("2026-01-31")
    rows = []
    # (customer, days before asof of the last purchase, purchases, average amount)
    for customer, recency, count, amount in [("a", 30, 10, 100_000), ("b", 31, 9, 99_999),
                                             ("c", 180, 3, 30_000), ("d", 181, 2, 29_999),
                                             ("e", 90, 5, 50_000), ("f", 60, 7, 70_000)]:
        for k in range(count):
            rows.append((customer, day - pd.Timedelta(days=recency + k * 400), amount))
    log = pd.DataFrame(rows, columns=["customer", "date", "amount"])
    scores = score(log, day).set_index("customer")
    assert scores.loc["a", "segment"] == "rfm555"
    assert scores.loc["b", "segment"] == "rfm444"
    assert scores.loc["c", "segment"] == "rfm222"
    assert scores.loc["d", "segment"] == "rfm111"
    assert scores.loc["e", "segment"] == "rfm333"
    assert scores.loc["f", "segment"] == "rfm444"


def test_rfm_thresholds_are_checked() -> None:
    from optimizer.errors import InputError

    with pytest.raises(InputError, match="--frequency: must be 4 strictly decreasing numbers"):
        Thresholds(frequency=(3, 5, 7, 10))


def _cdnow() -> Path:
    spec = importlib.util.find_spec("lifetimes")  # located, not imported: only its data is used
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lifetimes package (CDNOW data) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"


def test_rfm_segments_the_real_cdnow_purchase_log(tmp_path: Path) -> None:
    raw = pd.read_csv(_cdnow(), sep=r"\s+", dtype={"customer_id": str, "date": str})
    log = tmp_path / "cdnow.csv"
    raw.to_csv(log, index=False)
    out, per_customer = tmp_path / "segments.csv", tmp_path / "customers.csv"
    assert main(["segment", str(log), "--date-format", "%Y%m%d", "--amount-column", "dollar_value",
                 "--asof", "1998-07-01", "--monetary", "100,70,50,30",
                 "-o", str(out), "--assignments", str(per_customer)]) == 0
    sizes = pd.read_csv(out)
    customers = pd.read_csv(per_customer, dtype={"customer": str})
    assert len(customers) == raw["customer_id"].nunique() == 23570
    assert sizes["customers"].sum() == len(customers)
    assert sizes["segment"].str.fullmatch(r"rfm[1-5]{3}").all()
    # An independent recomputation for every customer.
    dates = pd.to_datetime(raw["date"], format="%Y%m%d")
    per = raw.assign(date=dates).groupby("customer_id").agg(
        last=("date", "max"), n=("date", "size"), total=("dollar_value", "sum"))
    recency = (pd.Timestamp("1998-07-01") - per["last"]).dt.days
    r = pd.cut(recency, [-1, 30, 60, 90, 180, 10**6], labels=[5, 4, 3, 2, 1]).astype(int)
    f = pd.cut(per["n"], [0, 2, 4, 6, 9, 10**6], labels=[1, 2, 3, 4, 5]).astype(int)
    m = pd.cut(per["total"] / per["n"], [-1, 30 - 1e-9, 50 - 1e-9, 70 - 1e-9, 100 - 1e-9, 1e12],
               labels=[1, 2, 3, 4, 5], right=False).astype(int)
    expected = "rfm" + r.astype(str) + f.astype(str) + m.astype(str)
    got = customers.set_index("customer")["segment"]
    assert (got.reindex(expected.index) == expected).all()
    assert sizes["customers"].max() < len(customers)  # more than one segment


def test_rfm_bad_rows_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "tx.csv"
    log.write_text("customer_id,date,amount\nc1,2026-01-02,100\nc2,not-a-date,50\n,2026-01-03,-4\n")
    assert main(["segment", str(log)]) == 1
    err = capsys.readouterr().err
    assert "tx.csv[line 3].date: must be a date, got 'not-a-date'" in err
    assert "tx.csv[line 4].customer_id: is required" in err
    assert "tx.csv[line 4].amount: must be a number >= 0, got '-4'" in err
