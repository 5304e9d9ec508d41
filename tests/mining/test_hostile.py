"""Bad order lines, thresholds and options: each is exit code 1 (2 for usage) with an issue
naming the field, the line and the rule, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
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
    ("o2,lens-35,c2,yesterday", "orders.csv[line 4].date: must be a date, got 'yesterday'"),
    ("o2,lens-35,c2,", "orders.csv[line 4].date: must be a date, got nothing"),
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
                                "2 lines between 2027-01-01 and 2262-04-11"),
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
