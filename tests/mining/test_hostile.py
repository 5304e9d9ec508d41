"""Bad order lines, thresholds and options: each is exit code 1 (2 for usage) with an issue
naming the field, the line and the rule, never a traceback."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main
from optimizer.errors import InputError
from optimizer.mining.generate import generate_baskets
from optimizer.mining.lines import baskets_from_frame
from optimizer.mining.mine import Thresholds, mine

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "instances" / "demo"
HEADER = "order_id,item_id,customer_id,date\n"
GOOD = "o1,mouse-m2,c1,2026-01-05\no1,sleeve-14,c1,2026-01-05\n"


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str | bytes,
         *options: str, name: str = "orders.csv") -> tuple[int, str]:
    path = tmp_path / name
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    code = main(["mine", str(path), *options])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(("row", "message"), [
    ("o2,,c2,2026-01-06", "orders.csv[line 4].item_id: must be given, got nothing"),
    (",mouse-m2,c2,2026-01-06", "orders.csv[line 4].order_id: must be given, got nothing"),
    ("o1,lens-35,c9,2026-01-05", "orders.csv[line 4].customer_id: must be the same on every line "
                                 "of order 'o1' ('c1' on line 2), got 'c9'"),
    ("o1,lens-35,c1,2026-01-07", "orders.csv[line 4].date: must be the same on every line of "
                                 "order 'o1' ('2026-01-05' on line 2), got '2026-01-07'"),
    ("o2,lens-35,c2,yesterday", "orders.csv[line 4].date: must be a date (ISO 8601, e.g. "
                                "2026-01-05), got 'yesterday'"),
    ("o2,lens-35,c2,", "orders.csv[line 4].date: must be a date (ISO 8601, e.g. 2026-01-05), "
                       "got nothing"),
    ("o2,a;b,c2,2026-01-06", "orders.csv[line 4].item_id: must not contain ';' (it separates the "
                             "items of an itemset in the output), got 'a;b'"),
    ("o2,lens-35,c2", "orders.csv: must be a readable CSV file, got CSV parse error"),
])
def test_bad_lines_name_the_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            row: str, message: str) -> None:
    code, err = _run(tmp_path, capsys, HEADER + GOOD + row + "\n")
    assert code == 1
    assert message in err


@pytest.mark.parametrize(("options", "message"), [
    (["--min-support", "0"], "--min-support: must be a number in (0, 1], got 0"),
    (["--min-support", "1.5"], "--min-support: must be a number in (0, 1], got 1.5"),
    (["--min-support", "nan"], "--min-support: must be a number in (0, 1], got nan"),
    (["--min-confidence", "0"], "--min-confidence: must be a number in (0, 1], got 0"),
    (["--min-lift", "-1"], "--min-lift: must be a finite number >= 0, got -1"),
    (["--min-lift", "inf"], "--min-lift: must be a finite number >= 0, got inf"),
    (["--max-size", "0"], "--max-size: must be an integer in [1, 10] (items per itemset), got 0"),
    (["--max-size", "11"], "--max-size: must be an integer in [1, 10]"),
    (["--item-column", "sku"], "orders.csv: must have a column 'sku' (--item-column), got the "
                               "columns 'order_id', 'item_id', 'customer_id', 'date'"),
    (["--customer-column", "client"], "orders.csv: must have a column 'client' (--customer-column)"),
    (["--since", "soon"], "--since: must be a date (YYYY-MM-DD), got 'soon'"),
    (["--since", "2027-01-01"], "--since/--until: must leave at least one order line, got none of "
                                "2 lines from 2027-01-01 to the last day"),
    (["--since", "2026-02-01", "--until", "2026-01-01"],
     "--until: must not be before --since (2026-02-01), got '2026-01-01'"),
    (["--write-bundles", str(DEMO), "--output-catalog", str(DEMO)],
     "--output-catalog: must differ from the catalog read (--write-bundles), which is never "
     "overwritten"),
    (["--write-bundles", "nowhere", "--output-catalog", "x.json"],
     "nowhere: must be an existing file or folder"),
    (["--write-bundles", str(DEMO), "--output-catalog", "x.json", "--bundles", "0"],
     "--bundles: must be an integer in [1, 1,000], got 0"),
    (["--write-bundles", str(DEMO), "--output-catalog", "x.json", "--baseline-share", "1"],
     "--baseline-share: must be a number in [0, 1), got 1"),
    (["--write-bundles", str(DEMO), "--output-catalog", "x.json", "--baseline-share", "2"],
     "--baseline-share: must be a number in [0, 1), got 2"),
    (["--write-bundles", str(DEMO), "--output-catalog", "x.json", "--baseline-share", "nan"],
     "--baseline-share: must be a number in [0, 1), got nan"),
    (["--write-bundles", str(DEMO), "--output-catalog", "x.json", "--prior-orders", "-1"],
     "--prior-orders: must be a finite number >= 0, got -1"),
    (["--write-bundles", str(DEMO), "--output-catalog", "x.json", "--prior-orders", "nan"],
     "--prior-orders: must be a finite number >= 0, got nan"),
    (["--write-bundles", str(DEMO), "--output-catalog", "x.json", "--bundle-items", "1"],
     "--bundle-items: must be an integer in [2, 10], got 1"),
    (["--min-lift", "nan"], "--min-lift: must be a finite number >= 0, got nan"),
    (["--min-confidence", "nan"], "--min-confidence: must be a number in (0, 1], got nan"),
])
def test_bad_options_name_the_option_and_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              options: list[str], message: str) -> None:
    code, err = _run(tmp_path, capsys, HEADER + GOOD, *options)
    assert code == 1
    assert message in err


@pytest.mark.parametrize(("body", "message"), [
    ("", "orders.csv: must have a header row, got an empty file"),
    (HEADER, "orders.csv: must hold at least one order line, got none"),
    (b"order_id,item_id\no1,caf\xe9\n", "orders.csv: must be a readable CSV file"),
    ("order_id,order_id,item_id\no1,o1,a\n", "orders.csv: must have one column named 'order_id', "
                                            "got 2 of them"),
])
def test_unreadable_files_are_one_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        body: str | bytes, message: str) -> None:
    code, err = _run(tmp_path, capsys, body)
    assert code == 1
    assert message in err


def test_missing_file_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mine", str(tmp_path / "none.csv")]) == 1
    assert "none.csv: must be an existing CSV or Parquet file" in capsys.readouterr().err
    path = tmp_path / "orders.csv"
    path.write_text(HEADER + GOOD)
    for options in (["--write-bundles", str(DEMO)], ["--output-catalog", "x.json"],
                    ["--segments", "c.csv"]):
        assert main(["mine", str(path), *options]) == 2
        assert "offeropt mine: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["mine", str(path), "--min-support", "lots"])
    assert stop.value.code == 2


def test_many_bad_lines_are_capped_per_rule(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    body = HEADER + "".join(f"o{i},,c1,2026-01-05\n" for i in range(120))
    code, err = _run(tmp_path, capsys, body)
    assert code == 1
    assert "input error (51 issues)" in err
    assert "orders.csv[line 51].item_id: must be given, got nothing" in err
    assert "orders.csv[*].item_id: 70 more rows break this rule: must be given" in err


def test_parquet_rows_are_counted_from_zero(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "orders.parquet"
    pd.DataFrame({"order_id": [1, 1, 2], "item_id": ["a", None, "b"]}).to_parquet(path)
    assert main(["mine", str(path)]) == 1
    assert "orders.parquet[row 1].item_id: must be given, got nothing" in capsys.readouterr().err
    pd.DataFrame({"order_id": [1, 2], "item_id": [b"\xff", b"\xfe"]}).to_parquet(path)
    assert main(["mine", str(path)]) == 1
    assert "orders.parquet: must have a column 'item_id' of text" in capsys.readouterr().err


def test_caps_on_itemsets_and_rules_name_the_threshold() -> None:
    log = generate_baskets(500, seed=1, items=30, planted=3)
    baskets = baskets_from_frame(log.lines.astype(str))
    with pytest.raises(InputError) as itemsets:
        mine(baskets, Thresholds(0.01, 0.1, 0.0, 3, max_itemsets=40))
    assert str(itemsets.value).startswith("--min-support: must leave at most 40 frequent itemsets "
                                          "(the most offeropt mines; raise --min-support or "
                                          "lower --max-size), got more than 40 by size 2")
    with pytest.raises(InputError) as rules:
        mine(baskets, Thresholds(0.01, 0.01, 0.0, 3, max_rules=5))
    assert str(rules.value).startswith("--min-confidence: must leave at most 5 rules")


def test_bundle_inputs_that_cannot_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "new.json")
    unknown = HEADER + "".join(f"o{i},x{i % 2},c1,2026-01-05\no{i},y{i % 2},c1,2026-01-05\n"
                               for i in range(10))
    code, err = _run(tmp_path, capsys, unknown, "--write-bundles", str(DEMO),
                     "--output-catalog", out)
    assert code == 1
    assert "--write-bundles: must be a catalog holding the mined items, got none of the 2 mined " \
           "itemsets' items all in it (e.g. 'x0', 'x1'" in err
    code, err = _run(tmp_path, capsys, "order_id,item_id\no1,a\n", "--write-bundles", str(DEMO),
                     "--output-catalog", out)
    assert code == 1
    assert "--write-bundles: needs at least one rule with a single-item antecedent" in err
    (tmp_path / "customers.csv").write_text("customer,seg\nc1,rfm555\n")
    code, err = _run(tmp_path, capsys, HEADER + GOOD, "--write-bundles", str(DEMO),
                     "--output-catalog", out, "--segments", str(tmp_path / "customers.csv"))
    assert code == 1
    assert "customers.csv: must have a column 'segment' (as `offeropt segment --assignments` " \
           "writes)" in err
    (tmp_path / "customers.csv").write_text("customer,segment\nc1,rfm555\n")
    code, err = _run(tmp_path, capsys, "order_id,item_id\no1,mouse-m2\no1,sleeve-14\n",
                     "--write-bundles", str(DEMO), "--output-catalog", out,
                     "--segments", str(tmp_path / "customers.csv"))
    assert code == 1
    assert "--segments: must go with a log that names each order's customer" in err
    assert not Path(out).exists()


def _mined_orders(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                  *options: str) -> int:
    path = tmp_path / "orders.csv"
    path.write_text(body)
    code = main(["mine", str(path), "--json", *options])
    out, err = capsys.readouterr()
    assert code == 0, err
    return int(json.loads(out)["orders"])


def test_mixed_offsets_are_compared_in_utc(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """+09:00 and +01:00 in one log (the review's traceback): read, in UTC, and --since/--until
    are UTC days. 2026-01-05T08:00+09:00 is 2026-01-04T23:00Z; a date without an offset is
    taken as UTC; one instant written in two offsets is the same date."""
    body = HEADER + ("o1,mouse-m2,c1,2026-01-05T08:00:00+09:00\n"
                     "o1,sleeve-14,c1,2026-01-04T23:00:00Z\n"
                     "o2,mouse-m2,c2,2026-01-05T10:00:00+01:00\n"
                     "o2,sleeve-14,c2,2026-01-05T10:00:00+01:00\n"
                     "o3,mouse-m2,c3,2026-01-05\n")
    assert _mined_orders(tmp_path, capsys, body) == 3
    assert _mined_orders(tmp_path, capsys, body, "--since", "2026-01-05") == 2
    assert _mined_orders(tmp_path, capsys, body, "--until", "2026-01-04") == 1
    code, err = _run(tmp_path, capsys, body + "o2,lens-35,c2,2026-01-05T10:00:00+09:00\n")
    assert code == 1
    assert ("orders.csv[line 7].date: must be the same on every line of order 'o2' "
            "('2026-01-05T10:00:00+01:00' on line 4), got '2026-01-05T10:00:00+09:00'") in err


def test_until_keeps_the_whole_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = HEADER + "o1,a,c1,2026-01-31T23:59:59\no1,b,c1,2026-01-31T23:59:59\n" \
                    "o2,a,c1,2026-02-01T00:00:00\n"
    assert _mined_orders(tmp_path, capsys, body, "--until", "2026-01-31") == 1
    assert _mined_orders(tmp_path, capsys, body, "--since", "1000-01-01", "--until",
                         "9999-12-31") == 2  # bounds past the dates' range are not wrapped


ISO = "must be a date (ISO 8601, e.g. 2026-01-05)"
RANGE = "must be a date in the years 1678 to 2261"


@pytest.mark.parametrize(("date", "message"), [
    ("9999-12-31", f"{RANGE}, got '9999-12-31'"),  # once wrapped silently to 1816
    ("0001-01-01", f"{RANGE}, got '0001-01-01'"),
    ("1677-01-01", f"{RANGE}, got '1677-01-01'"),
    ("1700000000", f"{ISO}, got '1700000000'"),  # a number is not a date (nor epoch seconds)
    ("45000", f"{ISO}, got '45000'"),  # nor a spreadsheet's day number
    ("now", f"{ISO}, got 'now'"),  # pandas would read the clock
    ("today", f"{ISO}, got 'today'"),
    ("NaT", f"{ISO}, got 'NaT'"),
    ("2026-02-30", f"{ISO}, got '2026-02-30'"),
    ("06/01/2026", f"{ISO}, got '06/01/2026'"),  # not ISO: --date-format reads it
    ("2026-01-06T10:00:00+25:00", f"{ISO}, got '2026-01-06T10:00:00+25:00'"),
    ("2026-01-06T24:00:00", f"{ISO}, got '2026-01-06T24:00:00'"),
    ("   ", f"{ISO}, got nothing"),
])
def test_hostile_dates_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     date: str, message: str) -> None:
    code, err = _run(tmp_path, capsys, HEADER + GOOD + f"o2,lens-35,c2,{date}\n")
    assert code == 1
    assert f"orders.csv[line 4].date: {message}" in err


def test_date_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = HEADER + "o1,a,c1,05/01/2026\no1,b,c1,05/01/2026\no2,a,c2,06/01/2026\n"
    assert _mined_orders(tmp_path, capsys, body, "--date-format", "%d/%m/%Y",
                         "--since", "2026-01-06") == 1
    code, err = _run(tmp_path, capsys, body, "--date-format", "%Y%m%d")
    assert code == 1
    assert "orders.csv[line 2].date: must be a date (%Y%m%d), got '05/01/2026'" in err
    for bad, why in (("%Q", "'Q' is a bad directive"), ("%", "stray %")):
        code, err = _run(tmp_path, capsys, body, "--date-format", bad)
        assert code == 1
        assert f"--date-format: must be a strftime format (e.g. %Y%m%d), got '{bad}' ({why}" in err
    code, err = _run(tmp_path, capsys, "order_id,item_id\no1,a\n", "--date-format", "%Y%m%d")
    assert code == 1
    assert "--date-format: must go with a date column (--date-column)" in err


@pytest.mark.parametrize("bound", ["now", "2026-02-30", "2026-01-01T00:00+05:00", "20260101", ""])
def test_since_and_until_are_plain_days(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        bound: str) -> None:
    for flag in ("--since", "--until"):
        code, err = _run(tmp_path, capsys, HEADER + GOOD, flag, bound)
        assert code == 1
        assert f"{flag}: must be a date (YYYY-MM-DD), got '{bound}'" in err


def test_hostile_parquet_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "orders.parquet"

    def run(table: pa.Table | None, *options: str) -> tuple[int, str, str]:
        if table is None:
            path.write_bytes(b"")
        else:
            pq.write_table(table, path)
        code = main(["mine", str(path), *options])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, err, out

    ids = {"order_id": ["1", "1", "2"], "item_id": ["a", "b", "a"]}
    far = pa.array([datetime(2026, 1, 5), datetime(2026, 1, 5), datetime(9999, 1, 5)],
                   pa.timestamp("us"))
    code, err, _ = run(pa.table({**ids, "date": far}))
    assert code == 1  # once wrapped to 1815 by a cast to nanoseconds
    assert f"orders.parquet[row 2].date: {RANGE}, got '9999-01-05 00:00:00'" in err
    jst = timezone(timedelta(hours=9))  # 2026-01-05 08:00 in Tokyo is 2026-01-04 23:00 UTC
    tokyo = pa.array([datetime(2026, 1, 5, 8, tzinfo=jst)] * 2 + [datetime(2026, 1, 5, 10, tzinfo=jst)],
                     pa.timestamp("us", tz="Asia/Tokyo"))
    code, _, out = run(pa.table({**ids, "date": tokyo}), "--since", "2026-01-05", "--json")
    assert code == 0
    assert json.loads(out)["orders"] == 1
    code, err, _ = run(pa.table({**ids, "date": pa.array([None] * 3, pa.timestamp("ms"))}))
    assert "orders.parquet[row 0].date: must be a date, got nothing" in err
    code, err, _ = run(pa.table({**ids, "date": pa.array([[1], [2], [3]])}))
    assert "orders.parquet: must have a column 'date' of text, got a column of list<item: int64>" \
        in err
    code, err, _ = run(pa.table({"order_id": [1, 1, 2], "item_id": pa.array([{"x": 1}] * 3)}))
    assert "orders.parquet: must have a column 'item_id' of text, got a column of struct<x: int64>" \
        in err
    code, err, _ = run(pa.table({"order_id": pa.array([], pa.string()),
                              "item_id": pa.array([], pa.string())}))
    assert code == 1 and "orders.parquet: must hold at least one order line, got none" in err
    code, err, _ = run(None)
    assert code == 1 and "orders.parquet: must be a readable Parquet file" in err
    code, _, out = run(pa.table({"order_id": [1, 1, 2], "item_id": [7, 8, 7]}))  # numbers as text
    assert code == 0
    assert "orders with 8 also hold 7" in out


def test_more_unusable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "folder.csv").mkdir()
    assert main(["mine", str(tmp_path / "folder.csv")]) == 1
    assert "folder.csv: must be an existing CSV or Parquet file" in capsys.readouterr().err
    code, err = _run(tmp_path, capsys, "order_id,item_id,date,date\no1,a,2026-01-05,2026-01-05\n")
    assert code == 1 and "orders.csv: must have one column named 'date', got 2 of them" in err
    code, err = _run(tmp_path, capsys, "order_id,item_id\n\n\n")
    assert code == 1 and "orders.csv: must hold at least one order line, got none" in err


def test_outputs_are_refused_before_any_work(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An output that cannot be written is refused before the log is read: nothing written
    (a file where a folder should be refuses even root, unlike a read-only folder)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    rules = tmp_path / "rules.csv"
    for options in (["--output-catalog", str(blocker / "new.json")],
                     ["--output-catalog", str(blocker / "folder")],
                     ["--output-catalog", str(blocker)],  # a CSV folder, but an existing file
                     ["--output-catalog", str(tmp_path / "new"), "--itemsets", str(blocker / "i.csv")]):
        code, err = _run(tmp_path, capsys, HEADER + GOOD, "-o", str(rules),
                         "--write-bundles", str(DEMO), *options)
        assert code == 1
        assert str(blocker) in err
        assert not rules.exists()
    code, err = _run(tmp_path, capsys, HEADER + GOOD, "-o", str(blocker / "r.csv"))
    assert code == 1 and f"{blocker / 'r.csv'}: must be in a folder that can be written" in err
    code, err = _run(tmp_path, capsys, HEADER + GOOD, "-o", str(tmp_path))
    assert code == 1 and f"{tmp_path}: must be a file path (or a new one), got an existing folder" \
        in err
    code, err = _run(tmp_path, capsys, HEADER + GOOD, "-o", str(rules), "--itemsets", str(rules))
    assert code == 1 and f"--itemsets: must differ from -o ({rules})" in err
    code, err = _run(tmp_path, capsys, HEADER + GOOD, "-o", str(tmp_path / "orders.csv"))
    assert code == 1 and "-o: must differ from TRANSACTIONS" in err
    assert (tmp_path / "orders.csv").read_text() == HEADER + GOOD
    # nothing was read: a broken log is not even reported
    code, err = _run(tmp_path, capsys, "garbage", "-o", str(blocker / "r.csv"))
    assert "must have a column" not in err


@pytest.mark.parametrize(("options", "message"), [
    (["--orders", "100000000000"], "--orders: must be an integer in [1, 10,000,000], got 100000000000"),
    (["--orders", "1000000", "--mean-size", "100"],
     "--mean-size: must leave at most 30,000,000 order lines (--orders x --mean-size), got 100 x "
     "1,000,000 = 100,000,000"),
    (["--orders", "10", "--items", "1000000000"], "--items: must be an integer in [1, 1,000,000]"),
    (["--orders", "10", "--customers", "100000000000"], "--customers: must be an integer in [1, "),
    (["--orders", "10", "--days", "100000000"], "--days: must be an integer in [1, 36,500]"),
    (["--orders", "10", "--planted", "1000000"], "--planted: must be an integer in [0, 1,000]"),
    (["--orders", "10", "--strength", "nan"], "--strength: must be a number in [0, 1], got nan"),
    (["--orders", "10", "--mean-size", "inf"], "--mean-size: must be a number in [1, 1000], got inf"),
])
def test_baskets_refuses_what_it_cannot_make(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             options: list[str], message: str) -> None:
    out = tmp_path / "lines.csv"
    assert main(["baskets", *options, "-o", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_baskets_outputs_are_refused_first(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "lines.csv"
    assert main(["baskets", "--orders", "10", "-o", str(blocker / "x.csv")]) == 1
    assert "must be in a folder that can be written" in capsys.readouterr().err
    assert main(["baskets", "--orders", "10", "-o", str(out), "--per-order",
                 str(blocker / "y.csv")]) == 1
    assert "must be in a folder that can be written" in capsys.readouterr().err
    assert not out.exists()
    assert main(["baskets", "--orders", "10", "-o", str(out), "--per-order", str(out)]) == 1
    assert f"--per-order: must differ from -o ({out})" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["baskets", "--orders", "10", "--seed", "-1", "-o", str(out)])
    assert stop.value.code == 2
