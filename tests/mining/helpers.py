"""Shared by the mining tests: baskets from lists of sets, mlxtend's answer on the same."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.mining.lines import Baskets
from optimizer.mining.mine import Mined

METRICS = ("support", "confidence", "lift", "leverage", "conviction", "antecedent_support",
           "consequent_support")


def baskets_of(orders: Sequence[set[str]], items: Sequence[str] | None = None) -> Baskets:
    ids = sorted(set().union(*orders) | set(items or ())) if orders else sorted(items or ())
    code = {item: i for i, item in enumerate(ids)}
    rows = np.repeat(np.arange(len(orders)), [len(o) for o in orders])
    cols = np.array([code[i] for o in orders for i in sorted(o)], dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(len(cols), np.int32), (rows, cols)),
                           shape=(len(orders), len(ids)))
    return Baskets(matrix, np.array(ids, dtype=object), np.arange(len(orders)).astype(object),
                   lines=len(cols))


def onehot(baskets: Baskets) -> pd.DataFrame:
    return pd.DataFrame(baskets.matrix.toarray().astype(bool), columns=list(baskets.items))


def itemset_table(mined: Mined) -> dict[frozenset[str], tuple[float, int]]:
    frame = mined.itemsets_frame()
    return {frozenset(s.split(";")): (sup, n)
            for s, sup, n in zip(frame["itemset"], frame["support"], frame["orders"], strict=True)}


def rule_table(mined: Mined) -> dict[tuple[frozenset[str], frozenset[str]], dict[str, float]]:
    frame = mined.rules_frame()
    return {(frozenset(r["antecedents"].split(";")), frozenset(r["consequents"].split(";"))): r
            for r in frame.to_dict(orient="records")}
