"""Seeded transaction logs with planted co-purchase structure, for tests, benchmarks and demos.

Each order draws 1 + Poisson(mean_size - 1) lines from a long-tailed item popularity (with
replacement, so an item may appear twice in an order, as when it is scanned twice). Then
every planted rule `anchor -> partners` adds all its partners to an order that holds the
anchor, with probability `strength` times the customer's affinity (from 0.5 for the least
active customers to 1.5 for the most active, at most 0.98): the planted itemsets are the only
co-purchase structure, and it is stronger among frequent customers. Customers are drawn with
heavy-tailed activity; dates are uniform over `days`; order ids follow the dates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue

# What one generated log may ask for: about 60 bytes a line in memory, and dates that any
# reader keeps (2026 plus a century).
MAX_ORDERS = 10_000_000
MAX_LINES = 30_000_000  # orders x mean size
MAX_ITEMS = 1_000_000
MAX_PLANTED = 1_000
MAX_DAYS = 36_500


@dataclass(frozen=True)
class PlantedRule:
    anchor: str
    partners: tuple[str, ...]
    strength: float  # the chance a partner set is added to an order holding the anchor


@dataclass(frozen=True, eq=False)
class BasketLog:
    lines: pd.DataFrame  # order_id, customer_id, date, item_id, qty, amount
    planted: tuple[PlantedRule, ...]

    def orders(self) -> pd.DataFrame:
        """One row per order (order_id, customer_id, date, amount): the purchase log that
        `offeropt segment` scores."""
        per = self.lines.groupby("order_id", sort=True).agg(
            customer_id=("customer_id", "first"), date=("date", "first"),
            amount=("amount", "sum"))
        return per.reset_index()


def check_options(orders: int, items: int, planted: int = 8, strength: float = 0.6,
                  mean_size: float = 3.0, customers: int | None = None, days: int = 365) -> None:
    """Every option in its range, named as `offeropt baskets` names it; all issues at once."""
    issues = []
    for flag, value, most in (("--orders", orders, MAX_ORDERS), ("--items", items, MAX_ITEMS),
                              ("--days", days, MAX_DAYS)):
        if not (isinstance(value, int) and 1 <= value <= most):
            issues.append(Issue(flag, f"must be an integer in [1, {most:,}]", value))
    if not (isinstance(planted, int) and 0 <= planted <= MAX_PLANTED):
        issues.append(Issue("--planted", f"must be an integer in [0, {MAX_PLANTED:,}]", planted))
    if customers is not None and not (isinstance(customers, int) and 1 <= customers <= MAX_ORDERS):
        issues.append(Issue("--customers", f"must be an integer in [1, {MAX_ORDERS:,}]", customers))
    if not (isinstance(strength, int | float) and 0 <= strength <= 1):
        issues.append(Issue("--strength", "must be a number in [0, 1]", strength))
    if not (isinstance(mean_size, int | float) and 1 <= mean_size <= 1000):
        issues.append(Issue("--mean-size", "must be a number in [1, 1000]", mean_size))
    elif isinstance(orders, int) and 1 <= orders <= MAX_ORDERS and orders * mean_size > MAX_LINES:
        issues.append(Issue("--mean-size", f"must leave at most {MAX_LINES:,} order lines "
                            "(--orders x --mean-size)",
                            value_text=f"{mean_size:g} x {orders:,} = {math.ceil(orders * mean_size):,}"))
    if issues:
        raise InputError(issues)


def generate_baskets(orders: int, seed: int = 0, items: int | Sequence[str] = 200,
                     prices: Sequence[float] | None = None, planted: int = 8,
                     strength: float = 0.6, mean_size: float = 3.0, customers: int | None = None,
                     days: int = 365, start: str = "2026-01-01") -> BasketLog:
    """A log of `orders` orders over `items` (a count, or the ids to use, e.g. a catalog's)."""
    if not (isinstance(items, int) or len(items) >= 1):
        raise InputError([Issue("--catalog", "must have at least one item", value_text="none")])
    check_options(orders, items if isinstance(items, int) else 1, planted, strength, mean_size,
                  customers, days)
    if not (isinstance(seed, int) and seed >= 0):
        raise InputError([Issue("--seed", "must be an integer >= 0", seed)])
    rng = np.random.default_rng(seed)
    ids = (np.array([f"item-{i:04d}" for i in range(items)], dtype=object)
           if isinstance(items, int) else np.asarray(list(items), dtype=object))
    n_items = len(ids)
    if prices is None:
        price = np.round(np.exp(rng.normal(7.0, 0.8, n_items)), -1).clip(10)
    else:
        price = np.asarray(prices, dtype=np.float64)
    popularity = 1.0 / (np.arange(n_items) + 3.0) ** 0.9
    popularity = rng.permutation(popularity)
    popularity /= popularity.sum()

    n_customers = customers or max(1, orders // 5)
    activity = rng.gamma(0.6, 1.0, n_customers)
    rank = np.empty(n_customers)
    rank[np.argsort(activity)] = np.arange(n_customers) / max(n_customers - 1, 1)
    affinity = 0.5 + rank  # 0.5 (least active) to 1.5 (most active)
    customer = rng.choice(n_customers, orders, p=activity / activity.sum())
    day = np.sort(rng.integers(0, max(days, 1), orders))

    sizes = 1 + rng.poisson(max(mean_size - 1.0, 0.0), orders)
    order_of_line = np.repeat(np.arange(orders), sizes)
    item_of_line = rng.choice(n_items, len(order_of_line), p=popularity)

    rules = _plant(rng, n_items, popularity, planted, strength)
    extra_orders, extra_items = [], []
    for anchor, partners, s in rules:
        with_anchor = np.unique(order_of_line[item_of_line == anchor])
        chance = np.minimum(0.98, s * affinity[customer[with_anchor]])
        taken = with_anchor[rng.random(len(with_anchor)) < chance]
        for p in partners:
            extra_orders.append(taken)
            extra_items.append(np.full(len(taken), p))
    if extra_orders:
        order_of_line = np.concatenate([order_of_line, *extra_orders])
        item_of_line = np.concatenate([item_of_line, *extra_items])
        by = np.argsort(order_of_line, kind="stable")
        order_of_line, item_of_line = order_of_line[by], item_of_line[by]

    qty = 1 + (rng.random(len(order_of_line)) < 0.15).astype(np.int64)
    lines = pd.DataFrame({
        "order_id": order_of_line + 1,
        "customer_id": customer[order_of_line] + 1,
        "date": pd.Timestamp(start) + pd.to_timedelta(day[order_of_line], unit="D"),
        "item_id": ids[item_of_line],
        "qty": qty,
        "amount": price[item_of_line] * qty,
    })
    planted_rules = tuple(PlantedRule(str(ids[a]), tuple(str(ids[p]) for p in ps), float(s))
                          for a, ps, s in rules)
    return BasketLog(lines, planted_rules)


def _plant(rng: np.random.Generator, n_items: int, popularity: np.ndarray, planted: int,
           strength: float) -> list[tuple[int, tuple[int, ...], float]]:
    """Anchors among the more popular items; one or two partners each (every third rule has
    two, planting a triple), no item used twice."""
    by_popularity = np.argsort(-popularity, kind="stable")
    pool = list(rng.permutation(by_popularity[: max(n_items // 2, 1)]))
    rest = list(rng.permutation(by_popularity[max(n_items // 2, 1):]))
    rules = []
    for r in range(planted):
        want = 2 if r % 3 == 2 else 1
        if not pool or len(rest) + len(pool) - 1 < want:
            break
        anchor = int(pool.pop())
        partners = []
        for _ in range(want):
            partners.append(int(rest.pop() if rest else pool.pop()))
        rules.append((anchor, tuple(partners), strength))
    return rules
