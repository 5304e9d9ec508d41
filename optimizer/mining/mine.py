"""One mining run: thresholds checked, itemsets and rules mined, both as output tables."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.mining.itemsets import MAX_ITEMSETS, Itemsets, min_count, mine_itemsets
from optimizer.mining.lines import SEPARATOR, Baskets
from optimizer.mining.rules import MAX_RULES, Rules, derive_rules

MAX_SIZE = 10  # items per itemset at most (a rule enumerates 2**size splits)

RULE_COLUMNS = ("antecedents", "consequents", "antecedent_size", "consequent_size", "support",
                "confidence", "lift", "leverage", "conviction", "antecedent_support",
                "consequent_support", "orders", "antecedent_orders", "consequent_orders")
ITEMSET_COLUMNS = ("itemset", "size", "support", "orders")


@dataclass(frozen=True)
class Thresholds:
    """What makes an itemset frequent and a rule kept; checked when made."""

    min_support: float = 0.01
    min_confidence: float = 0.1
    min_lift: float = 1.0
    max_size: int = 4
    max_itemsets: int = MAX_ITEMSETS
    max_rules: int = MAX_RULES

    def __post_init__(self) -> None:
        issues = []
        for flag, value in (("--min-support", self.min_support),
                            ("--min-confidence", self.min_confidence)):
            if not (isinstance(value, int | float) and 0 < value <= 1):
                issues.append(Issue(flag, "must be a number in (0, 1]", value))
        if not (isinstance(self.min_lift, int | float) and math.isfinite(self.min_lift)
                and self.min_lift >= 0):
            issues.append(Issue("--min-lift", "must be a finite number >= 0", self.min_lift))
        if not (isinstance(self.max_size, int) and 1 <= self.max_size <= MAX_SIZE):
            issues.append(Issue("--max-size", f"must be an integer in [1, {MAX_SIZE}] (items "
                                "per itemset)", self.max_size))
        if issues:
            raise InputError(issues)


@dataclass(frozen=True, eq=False)
class Mined:
    """The result of `mine`: itemsets, rules (strongest first) and what it took."""

    baskets: Baskets
    thresholds: Thresholds
    min_orders: int  # orders a frequent itemset needs
    itemsets: Itemsets
    rules: Rules
    seconds: float

    def labels(self) -> np.ndarray:
        """Each itemset's item ids joined by ';' (ids ascending)."""
        return itemset_labels(self.itemsets, self.baskets.items)

    def itemsets_frame(self) -> pd.DataFrame:
        sets = self.itemsets
        frame = pd.DataFrame({"itemset": self.labels(), "size": sets.size, "support": sets.support,
                              "orders": sets.orders})
        return frame.sort_values(["size", "orders", "itemset"], ascending=[True, False, True],
                                 kind="stable").reset_index(drop=True)

    def rules_frame(self) -> pd.DataFrame:
        r, sets, labels = self.rules, self.itemsets, self.labels()
        n = float(sets.n_orders)
        return pd.DataFrame({
            "antecedents": labels[r.antecedent], "consequents": labels[r.consequent],
            "antecedent_size": sets.size[r.antecedent], "consequent_size": sets.size[r.consequent],
            "support": r.support, "confidence": r.confidence, "lift": r.lift,
            "leverage": r.leverage, "conviction": r.conviction,
            "antecedent_support": r.antecedent_orders / n,
            "consequent_support": r.consequent_orders / n, "orders": r.orders,
            "antecedent_orders": r.antecedent_orders, "consequent_orders": r.consequent_orders,
        }, columns=list(RULE_COLUMNS))


def mine(baskets: Baskets, thresholds: Thresholds = Thresholds()) -> Mined:
    """Frequent itemsets and association rules of `baskets` under `thresholds`."""
    started = time.perf_counter()
    if baskets.n_orders == 0:
        raise InputError([Issue(baskets.name, "must hold at least one order", value_text="none")])
    need = min_count(thresholds.min_support, baskets.n_orders)
    sets = mine_itemsets(baskets.matrix, need, thresholds.max_size, thresholds.max_itemsets)
    rules = derive_rules(sets, thresholds.min_confidence, thresholds.min_lift,
                         thresholds.max_rules)
    return Mined(baskets, thresholds, need, sets, rules, time.perf_counter() - started)


def itemset_labels(sets: Itemsets, items: np.ndarray) -> np.ndarray:
    codes = sets.items
    ids = np.asarray(items, dtype=object)
    if len(codes) == 0:
        return np.zeros(0, dtype=object)
    labels = ids[codes[:, 0]]
    for c in range(1, codes.shape[1]):
        more = codes[:, c] >= 0
        labels = np.where(more, labels + SEPARATOR + ids[np.maximum(codes[:, c], 0)], labels)
    return np.asarray(labels, dtype=object)
