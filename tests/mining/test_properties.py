"""Support, confidence and lift equal a brute-force count over every subset of items, on
small random baskets (hypothesis)."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.mining.itemsets import min_count
from optimizer.mining.mine import Thresholds, mine
from tests.mining.helpers import baskets_of, itemset_table, rule_table

ITEMS = "abcdef"
baskets = st.lists(st.sets(st.sampled_from(ITEMS), min_size=1, max_size=5), min_size=1,
                   max_size=25)


@settings(max_examples=60, deadline=None)
@given(orders=baskets, support=st.sampled_from([0.04, 0.1, 0.2, 0.35, 1.0]),
       confidence=st.sampled_from([0.01, 0.3, 0.6, 1.0]), size=st.integers(1, 4))
def test_every_itemset_and_rule_is_the_brute_force_count(orders: list[set[str]], support: float,
                                                         confidence: float, size: int) -> None:
    n = len(orders)
    mined = mine(baskets_of(orders), Thresholds(support, confidence, 0.0, size))
    count = {frozenset(s): sum(set(s) <= o for o in orders)
             for k in range(1, size + 1) for s in combinations(ITEMS, k)}
    frequent = {s: c for s, c in count.items() if c > 0 and c / n >= support}
    assert min_count(support, n) == min([c for c in range(1, n + 1) if c / n >= support])

    ours = itemset_table(mined)
    assert ours.keys() == frequent.keys()
    for s, (value, c) in ours.items():
        assert c == frequent[s]
        assert value == c / n

    expected = {}
    for s, c in frequent.items():
        for k in range(1, len(s)):
            for a in map(frozenset, combinations(sorted(s), k)):
                conf = c / count[a]
                if conf >= confidence:
                    expected[(a, s - a)] = (c / n, conf, conf / (count[s - a] / n))
    rules = rule_table(mined)
    assert rules.keys() == expected.keys()
    for key, (sup, conf, lift) in expected.items():
        r = rules[key]
        assert (r["support"], r["confidence"]) == (sup, conf)
        assert abs(r["lift"] - lift) <= 1e-12 * lift
        c_support = count[key[1]] / n
        assert r["leverage"] == sup - (count[key[0]] / n) * c_support
        assert r["conviction"] == ((1 - c_support) / (1 - conf) if conf < 1 else float("inf"))
