"""Association rules `A -> C` from frequent itemsets, with their metrics and counts.

Every split of a frequent itemset S (two or more items) into a non-empty antecedent A and
consequent C = S - A is a candidate; A and C are frequent too (subsets of a frequent
itemset), so their counts are looked up among the itemsets. With n orders:

- support = n(S) / n; confidence = n(S) / n(A); lift = confidence / (n(C) / n);
- leverage = support - (n(A) / n) * (n(C) / n);
- conviction = (1 - n(C) / n) / (1 - confidence), infinite when confidence is 1.

Splits are enumerated per itemset size as bit masks, for all itemsets of that size at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.mining.itemsets import Itemsets

MAX_RULES = 1_000_000  # rules kept at most; more is refused, naming --min-confidence
_CHUNK_ROWS = 2_000_000  # candidate rules looked up at once


@dataclass(frozen=True, eq=False)
class Rules:
    """Rules as positions into an `Itemsets` (`itemset` = antecedent + consequent)."""

    itemset: np.ndarray  # int64
    antecedent: np.ndarray  # int64
    consequent: np.ndarray  # int64
    support: np.ndarray  # float64, and the metrics below
    confidence: np.ndarray
    lift: np.ndarray
    leverage: np.ndarray
    conviction: np.ndarray
    orders: np.ndarray  # int64: orders holding the whole itemset
    antecedent_orders: np.ndarray
    consequent_orders: np.ndarray

    def __len__(self) -> int:
        return len(self.itemset)

    def take(self, order: np.ndarray) -> Rules:
        return Rules(**{name: getattr(self, name)[order] for name in self.__dataclass_fields__})


def derive_rules(sets: Itemsets, min_confidence: float, min_lift: float = 0.0,
                 max_rules: int = MAX_RULES) -> Rules:
    """Every rule of `sets` with confidence >= `min_confidence` and lift >= `min_lift`,
    strongest first (lift, then confidence, then support, descending)."""
    n = float(sets.n_orders)
    width = sets.items.shape[1]
    index = pd.MultiIndex.from_arrays([sets.items[:, c] for c in range(width)])
    picked: dict[str, list[np.ndarray]] = {"itemset": [], "antecedent": [], "consequent": []}
    kept = 0
    for size in range(2, width + 1):
        members = np.flatnonzero(sets.size == size)
        if len(members) == 0:
            continue
        masks = np.arange(1, 2**size - 1)
        bits = ((masks[:, None] >> np.arange(size)) & 1).astype(bool)  # (masks, size)
        step = max(1, _CHUNK_ROWS // len(masks))
        for start in range(0, len(members), step):
            rows = members[start:start + step]
            whole = np.repeat(rows, len(masks))
            items = np.repeat(sets.items[rows, :size], len(masks), axis=0)
            chosen = np.tile(bits, (len(rows), 1))
            ante = _lookup(index, _side(items, chosen, width))
            cons = _lookup(index, _side(items, ~chosen, width))
            s_orders = sets.orders[whole]
            confidence = s_orders / sets.orders[ante]
            lift = confidence / (sets.orders[cons] / n)
            ok = (confidence >= min_confidence) & (lift >= min_lift)
            kept += int(ok.sum())
            if kept > max_rules:
                raise InputError([Issue(
                    "--min-confidence", f"must leave at most {max_rules:,} rules (the most "
                    "offeropt writes; raise --min-confidence or --min-lift, or lower --max-size)",
                    value_text=f"more than {max_rules:,}")])
            picked["itemset"].append(whole[ok])
            picked["antecedent"].append(ante[ok])
            picked["consequent"].append(cons[ok])
    itemset, antecedent, consequent = (
        np.concatenate(picked[k]) if picked[k] else np.zeros(0, dtype=np.int64)
        for k in ("itemset", "antecedent", "consequent"))
    rules = _measure(sets, itemset, antecedent, consequent)
    order = np.lexsort((np.arange(len(rules)), -rules.support, -rules.confidence, -rules.lift))
    return rules.take(order)


def _side(items: np.ndarray, chosen: np.ndarray, width: int) -> np.ndarray:
    """The chosen items of each row, ascending, padded with -1 to `width`."""
    big = np.iinfo(np.int32).max
    side = np.sort(np.where(chosen, items, big), axis=1)
    side = np.where(side == big, -1, side)
    out = np.full((len(items), width), -1, dtype=np.int32)
    out[:, :side.shape[1]] = side
    return out


def _lookup(index: pd.MultiIndex, rows: np.ndarray) -> np.ndarray:
    pos = index.get_indexer(pd.MultiIndex.from_arrays([rows[:, c] for c in range(rows.shape[1])]))
    assert (pos >= 0).all(), "a subset of a frequent itemset is frequent"
    return pos.astype(np.int64)


def _measure(sets: Itemsets, itemset: np.ndarray, antecedent: np.ndarray,
             consequent: np.ndarray) -> Rules:
    n = float(sets.n_orders)
    s_orders, a_orders, c_orders = (sets.orders[itemset], sets.orders[antecedent],
                                    sets.orders[consequent])
    support, a_support, c_support = s_orders / n, a_orders / n, c_orders / n
    confidence = s_orders / a_orders
    with np.errstate(divide="ignore", invalid="ignore"):  # confidence 1: infinite
        conviction = np.where(confidence < 1.0, (1.0 - c_support) / (1.0 - confidence), np.inf)
    return Rules(itemset=itemset, antecedent=antecedent, consequent=consequent, support=support,
                 confidence=confidence, lift=confidence / c_support,
                 leverage=support - a_support * c_support, conviction=conviction,
                 orders=s_orders, antecedent_orders=a_orders, consequent_orders=c_orders)
