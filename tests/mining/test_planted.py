"""A generated log's planted co-purchases are what mining finds: every planted rule with its
strength, and no strong rule outside them."""

from __future__ import annotations

from optimizer.mining.generate import generate_baskets
from optimizer.mining.lines import baskets_from_frame
from optimizer.mining.mine import Thresholds, mine


def test_planted_rules_are_recovered_and_nothing_else_is_strong() -> None:
    log = generate_baskets(20_000, seed=7, items=120, planted=6, strength=0.5, mean_size=3.0)
    mined = mine(baskets_from_frame(log.lines.astype(str), "orders.csv"),
                 Thresholds(min_support=0.002, min_confidence=0.05, min_lift=0.0, max_size=3))
    rules = mined.rules_frame()
    planted = [frozenset({p.anchor, *p.partners}) for p in log.planted]
    assert len(planted) == 6 and sum(len(s) == 3 for s in planted) == 2

    by_key = {(a, c): r for a, c, r in zip(rules["antecedents"], rules["consequents"],
                                           rules.to_dict(orient="records"), strict=True)}
    for rule in log.planted:
        found = by_key[(rule.anchor, ";".join(sorted(rule.partners)))]
        # the partners join half the anchor's orders (more among active customers, who place
        # more orders), on top of buying them anyway
        assert 0.5 <= found["confidence"] <= 0.8
        assert found["lift"] > 5

    # A strong rule links a planted set across its sides (a random item may ride along); a
    # strong pair is a planted pair. Everything else is drawn independently: lift near 1.
    strong = rules[rules["lift"] > 2]
    for a, c in zip(strong["antecedents"], strong["consequents"], strict=True):
        ante, cons = frozenset(a.split(";")), frozenset(c.split(";"))
        assert any(ante & s and cons & s for s in planted), (a, c)
        if len(ante | cons) == 2:
            assert any(ante | cons <= s for s in planted), (a, c)
    assert (rules.loc[rules["lift"] <= 2, "lift"] < 1.5).all()
