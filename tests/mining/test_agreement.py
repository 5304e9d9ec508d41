"""The same itemsets and rule metrics as mlxtend (fpgrowth + association_rules) on the same
baskets, to 1e-12: generated logs with planted structure, a few thousand orders."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from optimizer.mining.generate import generate_baskets
from optimizer.mining.lines import baskets_from_frame
from optimizer.mining.mine import Thresholds, mine
from tests.mining.helpers import METRICS, itemset_table, onehot, rule_table

mlxtend = pytest.importorskip("mlxtend.frequent_patterns")

MLXTEND_NAMES = {"antecedent_support": "antecedent support",
                 "consequent_support": "consequent support"}


@pytest.mark.parametrize(("orders", "seed", "support", "confidence", "lift", "size"), [
    (3000, 1, 0.01, 0.1, 0.0, 4),
    (4000, 2, 0.005, 0.3, 1.5, 3),
    (2000, 3, 0.02, 0.05, 1.0, 5),
])
def test_itemsets_and_rules_match_mlxtend(orders: int, seed: int, support: float,
                                          confidence: float, lift: float, size: int) -> None:
    log = generate_baskets(orders, seed=seed, items=60, planted=6, mean_size=3.5)
    baskets = baskets_from_frame(log.lines.astype(str), "orders.csv")
    mined = mine(baskets, Thresholds(support, confidence, lift, size))

    frame = onehot(baskets)
    sets = mlxtend.fpgrowth(frame, min_support=support, use_colnames=True, max_len=size)
    theirs = {frozenset(s): v for s, v in zip(sets["itemsets"], sets["support"], strict=True)}
    ours = itemset_table(mined)
    assert ours.keys() == theirs.keys()
    assert len(ours) > 50
    for key, (value, count) in ours.items():
        assert value == pytest.approx(theirs[key], rel=1e-12, abs=0)
        assert count == round(theirs[key] * orders)

    rules = mlxtend.association_rules(sets, num_itemsets=len(frame), metric="confidence",
                                      min_threshold=confidence)
    rules = rules[rules["lift"] >= lift]
    theirs_rules = {(a, c): r for a, c, r in zip(rules["antecedents"], rules["consequents"],
                                                 rules.to_dict(orient="records"), strict=True)}
    ours_rules = rule_table(mined)
    assert ours_rules.keys() == theirs_rules.keys()
    assert len(ours_rules) > 20
    for rule_key, ours_rule in ours_rules.items():
        their_rule = theirs_rules[rule_key]
        for metric in METRICS:
            mine_value, their_value = ours_rule[metric], their_rule[MLXTEND_NAMES.get(metric, metric)]
            if math.isinf(their_value):
                assert math.isinf(mine_value), (rule_key, metric)
            else:
                assert mine_value == pytest.approx(their_value, rel=1e-12, abs=1e-15), (rule_key, metric)
        assert ours_rule["orders"] == round(their_rule["support"] * orders)


def test_strongest_first_and_counts_consistent() -> None:
    log = generate_baskets(2000, seed=4, items=40, planted=4)
    mined = mine(baskets_from_frame(log.lines.astype(str), "orders.csv"),
                 Thresholds(0.01, 0.1, 0.0, 3))
    rules = mined.rules_frame()
    assert rules["lift"].is_monotonic_decreasing
    n = mined.baskets.n_orders
    assert (rules["support"] * n).round().astype(int).tolist() == rules["orders"].tolist()
    assert (rules["orders"] / rules["antecedent_orders"]).tolist() == rules["confidence"].tolist()
    assert (rules["antecedent_size"] + rules["consequent_size"] >= 2).all()
    assert isinstance(rules, pd.DataFrame)
