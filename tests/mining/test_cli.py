"""`offeropt mine` and `offeropt baskets` on good input: the files, the summary, the options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main
from optimizer.mining.mine import ITEMSET_COLUMNS, RULE_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
LINES = ("order_id,item_id,customer_id,date,qty\n"
         "1,bread,c1,2026-01-05,1\n1,butter,c1,2026-01-05,2\n1,bread,c1,2026-01-05,1\n"
         "2,bread,c2,2026-01-06,1\n2,butter,c2,2026-01-06,1\n2,jam,c2,2026-01-06,1\n"
         "3,bread,c1,2026-02-01,1\n3,jam,c1,2026-02-01,1\n4,milk,c3,2026-02-02,1\n")


@pytest.fixture
def lines(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(LINES)
    return path


def test_rules_itemsets_and_summary(lines: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    rules, itemsets = tmp_path / "rules.csv", tmp_path / "itemsets.parquet"
    assert main(["mine", str(lines), "--min-support", "0.5", "--min-confidence", "0.5",
                 "-o", str(rules), "--itemsets", str(itemsets)]) == 0
    out = capsys.readouterr().out
    assert "orders.csv: 4 orders, 4 items, 9 order lines (1 repeated items collapsed)" in out
    assert "orders with butter also hold bread in 100.0% of cases (2 of 2 orders; lift 1.33" in out
    table = pd.read_csv(rules)
    assert tuple(table.columns) == RULE_COLUMNS
    assert set(zip(table["antecedents"], table["consequents"], strict=True)) == {
        ("bread", "butter"), ("butter", "bread"), ("bread", "jam"), ("jam", "bread")}
    assert table["confidence"].tolist()[:2] == [1.0, 1.0]  # lifts tie: the surer rules first
    butter = table[table["antecedents"] == "butter"].iloc[0]
    assert (butter["confidence"], butter["support"], butter["orders"]) == (1.0, 0.5, 2)
    assert butter["lift"] == pytest.approx(1 / 0.75) and butter["conviction"] == float("inf")
    sets = pd.read_parquet(itemsets)
    assert tuple(sets.columns) == ITEMSET_COLUMNS
    assert sets["itemset"].tolist() == ["bread", "butter", "jam", "bread;butter", "bread;jam"]


def test_json_summary_columns_and_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    renamed = tmp_path / "log.parquet"
    frame = pd.read_csv(pd.io.common.StringIO(LINES), dtype=str).rename(
        columns={"order_id": "ticket", "item_id": "sku"})
    frame["date"] = pd.to_datetime(frame["date"])
    frame.to_parquet(renamed)
    assert main(["mine", str(renamed), "--order-column", "ticket", "--item-column", "sku",
                 "--min-support", "0.5", "--until", "2026-01-31", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["orders"], summary["items"], summary["lines"]) == (2, 3, 6)
    assert summary["itemsets_by_size"] == {"1": 3, "2": 3, "3": 1}
    assert summary["top_rules"][0]["lift"] == 1.0


def test_baskets_command_and_no_service_imports(tmp_path: Path) -> None:
    """The generator's log mined in a fresh process, which loads neither Flask nor SQLAlchemy."""
    lines = tmp_path / "lines.parquet"
    assert main(["baskets", "--orders", "2000", "--items", "50", "--seed", "3",
                 "-o", str(lines)]) == 0
    assert set(pd.read_parquet(lines).columns) == {"order_id", "customer_id", "date", "item_id",
                                                   "qty", "amount"}
    probe = ("import sys; from cli.main import main; code = main(sys.argv[1:]); "
             "print(sorted(m for m in ('flask', 'werkzeug', 'sqlalchemy', 'gunicorn') "
             "if m in sys.modules)); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, "mine", str(lines), "--min-lift", "3"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "strongest rules (by lift):" in done.stdout
