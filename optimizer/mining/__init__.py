"""Basket mining: frequent itemsets and association rules over order lines, and the
cross-sell bundles they suggest.

- `lines`: order lines read and validated into an order x item sparse matrix (`Baskets`);
- `itemsets`: the miner (Eclat over sparse tid-lists, vectorized with scipy and numpy);
- `rules`: rules with support, confidence, lift, leverage, conviction and counts;
- `mine`: one run (`Thresholds` checked, `Mined` results as tables);
- `generate`: seeded transaction logs with planted co-purchase structure;
- `bundles`: mined rules as cross-sell bundles (and per-segment response priors) of an
  instance.

The library never imports the service, the jobs or the command line.
"""

from optimizer.mining.itemsets import Itemsets, min_count, mine_itemsets
from optimizer.mining.lines import Baskets, LineColumns, baskets_from_frame, read_order_lines
from optimizer.mining.mine import Mined, Thresholds, mine
from optimizer.mining.rules import Rules, derive_rules

__all__ = [
    "Baskets",
    "Itemsets",
    "LineColumns",
    "Mined",
    "Rules",
    "Thresholds",
    "baskets_from_frame",
    "derive_rules",
    "min_count",
    "mine",
    "mine_itemsets",
    "read_order_lines",
]
