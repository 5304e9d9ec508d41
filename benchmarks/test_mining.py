"""Basket mining against mlxtend (fpgrowth + association_rules) on the same baskets.

Two cases per size, each ours against mlxtend in the same run:

- `mine N orders`: from the order x item matrix to the rules table, in process (mlxtend gets
  the matrix as the sparse one-hot DataFrame it takes; building it is counted);
- `whole process N orders`: a fresh process from the order-lines CSV to a rules CSV:
  `offeropt mine` against a script that reads the CSV with pandas and runs mlxtend.

Both must find the same itemsets and rules (metrics to 1e-12). Smoke size: 2,000 orders over
100 items, both cases; full size (`OFFEROPT_BENCH_SIZE=full`): 100,000 and 1,000,000 orders over 500
items (about 4.2 lines per order), support 0.001, confidence 0.1, at most 4 items.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from benchmarks.conftest import MEDIANS, ROOT, measure, sized
from optimizer.mining.generate import generate_baskets
from optimizer.mining.lines import Baskets
from optimizer.mining.mine import Mined, Thresholds, mine

ORDERS = sized([2_000], [100_000, 1_000_000])
ITEMS = sized(100, 500)
THRESHOLDS = Thresholds(min_support=sized(0.01, 0.001), min_confidence=0.1, min_lift=0.0,
                        max_size=4)
MLXTEND_SCRIPT = """
import sys
import numpy as np, pandas as pd, scipy.sparse as sp
from mlxtend.frequent_patterns import association_rules, fpgrowth
path, out, support, confidence, size = sys.argv[1:6]
lines = pd.read_csv(path, dtype=str)
order, _ = pd.factorize(lines["order_id"])
item, ids = pd.factorize(lines["item_id"], sort=True)
onehot = sp.csr_matrix((np.ones(len(order), bool), (order, item)))
frame = pd.DataFrame.sparse.from_spmatrix(onehot, columns=list(ids))
sets = fpgrowth(frame, min_support=float(support), use_colnames=True, max_len=int(size))
rules = association_rules(sets, num_itemsets=len(frame), metric="confidence",
                          min_threshold=float(confidence))
rules.to_csv(out, index=False)
print(len(sets), len(rules))
"""

mlxtend = pytest.importorskip("mlxtend.frequent_patterns")


class Log:
    """One generated log per size: its lines (for the CSV) and its order x item matrix."""

    def __init__(self, orders: int) -> None:
        log = generate_baskets(orders, seed=1, items=ITEMS, planted=12, mean_size=4.0)
        code, ids = pd.factorize(log.lines["item_id"], sort=True)
        row = log.lines["order_id"].to_numpy() - 1
        matrix = sp.csr_matrix((np.ones(len(row), np.int32), (row, code)),
                               shape=(orders, len(ids)))
        matrix.sum_duplicates()
        matrix.data[:] = 1
        self.lines = log.lines
        self.baskets = Baskets(matrix, np.asarray(ids, dtype=object),
                               np.arange(orders).astype(object), lines=len(row))
        self.ours: Mined | None = None
        self.csv: Path | None = None


LOGS: dict[int, Log] = {}


def _log(orders: int) -> Log:
    if orders not in LOGS:
        LOGS[orders] = Log(orders)
    return LOGS[orders]


def _mlxtend(matrix: sp.csr_matrix, ids: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.DataFrame.sparse.from_spmatrix(matrix.astype(bool), columns=list(ids))
    sets = mlxtend.fpgrowth(frame, min_support=THRESHOLDS.min_support, use_colnames=True,
                            max_len=THRESHOLDS.max_size)
    rules = mlxtend.association_rules(sets, num_itemsets=len(frame), metric="confidence",
                                      min_threshold=THRESHOLDS.min_confidence)
    return sets, rules


@pytest.mark.parametrize("orders", ORDERS)
def test_mine_ours(benchmark: Any, orders: int) -> None:
    log = _log(orders)
    log.ours = measure(benchmark, f"mine {orders:,} orders", "ours",
                       lambda: _rules_table(mine(log.baskets, THRESHOLDS)), rounds=_rounds(orders))[1]
    print(f"\n{orders:,} orders: {len(log.ours.itemsets):,} itemsets, "
          f"{len(log.ours.rules):,} rules")


@pytest.mark.parametrize("orders", ORDERS)
def test_mine_mlxtend_same_answer(benchmark: Any, orders: int) -> None:
    log = _log(orders)
    sets, rules = measure(benchmark, f"mine {orders:,} orders", "baseline", _mlxtend,
                          log.baskets.matrix, log.baskets.items, rounds=_rounds(orders))
    ours = log.ours or mine(log.baskets, THRESHOLDS)
    ours_sets = ours.itemsets_frame()
    assert {frozenset(s.split(";")) for s in ours_sets["itemset"]} == set(sets["itemsets"])
    table = ours.rules_frame()
    mine_rules = {(frozenset(a.split(";")), frozenset(c.split(";"))): (s, cf, lf)
                  for a, c, s, cf, lf in zip(table["antecedents"], table["consequents"],
                                             table["support"], table["confidence"],
                                             table["lift"], strict=True)}
    theirs = {(a, c): (s, cf, lf) for a, c, s, cf, lf in zip(
        rules["antecedents"], rules["consequents"], rules["support"], rules["confidence"],
        rules["lift"], strict=True)}
    assert mine_rules.keys() == theirs.keys()
    worst = max((abs(m - t) / t for k in theirs for m, t in zip(mine_rules[k], theirs[k],
                                                                 strict=True)), default=0.0)
    assert worst <= 1e-12
    _report(f"mine {orders:,} orders")


@pytest.mark.parametrize("orders", ORDERS)
def test_whole_process_from_csv(tmp_path_factory: pytest.TempPathFactory, orders: int) -> None:
    """`offeropt mine` against pandas + mlxtend, each a fresh process from the CSV."""
    log = _log(orders)
    folder = tmp_path_factory.mktemp("mining")
    path = folder / "lines.csv"
    log.lines.to_csv(path, index=False)
    case = f"whole process {orders:,} orders"
    t = THRESHOLDS
    ours_cmd = [sys.executable, "-m", "cli", "mine", str(path), "--min-support", str(t.min_support),
                "--min-confidence", str(t.min_confidence), "--min-lift", str(t.min_lift),
                "--max-size", str(t.max_size), "-o", str(folder / "ours.csv")]
    theirs_cmd = [sys.executable, "-c", MLXTEND_SCRIPT, str(path), str(folder / "theirs.csv"),
                  str(t.min_support), str(t.min_confidence), str(t.max_size)]
    for variant, command in (("ours", ours_cmd), ("baseline", theirs_cmd)):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        MEDIANS[(case, variant)] = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(folder / "ours.csv")) == len(pd.read_csv(folder / "theirs.csv"))
    _report(case)


def _rounds(orders: int) -> int:
    """Medians of 3 runs up to 100,000 orders; one run of the 1,000,000 (mlxtend: 30 s)."""
    return 3 if orders <= 100_000 else 1


def _rules_table(mined: Mined) -> tuple[pd.DataFrame, Mined]:
    """What `offeropt mine` writes (the rules table), and the result."""
    return mined.rules_frame(), mined


def _report(case: str) -> None:
    ours, base = MEDIANS.get((case, "ours")), MEDIANS.get((case, "baseline"))
    if ours and base:
        print(f"\n{case}: ours {ours:.3f} s, mlxtend {base:.3f} s, ratio {base / ours:.1f}x")
