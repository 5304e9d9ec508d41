"""A seeded generator of instances shaped like real catalogs.

Log-normal prices, costs at 45-80% of price, cross-sell/upsell/downsell bundles with
exclusion groups and perks, Zipf-distributed segment views, take rates of about
0.1-40%, some negative-uplift offers (baseline above take rate), and tight stock on
some items. Every table is built as whole arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.model import Instance, Policy

CONTEXTS = ("product", "cart", "checkout", "account", "email")
KINDS = ("cross_sell", "upsell", "downsell", "bundle")
KIND_WEIGHTS = (0.45, 0.25, 0.15, 0.15)
LADDERS = ((0.0, 0.05, 0.1), (0.0, 0.1, 0.2, 0.3), (0.0, 0.03, 0.05, 0.08))
PERKS = (("extended-warranty", 0.04, (0.1, 0.5)), ("free-setup", 0.02, (0.05, 0.35)),
         ("gift-wrap", 0.005, (0.05, 0.15)))


def generate(segments: int, seed: int, responses_per_segment: int = 15,
             items: int | None = None, bundles: int | None = None,
             name: str | None = None) -> Instance:
    rng = np.random.default_rng(seed)
    n_items = items or max(12, segments // 10 + 20)
    n_bundles = bundles or max(responses_per_segment + 2, n_items // 2)
    item_table = _items(rng, n_items)
    bundle_table, lines, perk_table = _bundles(rng, item_table, n_bundles)
    segment_table = _segments(rng, segments)
    responses, seg, chosen = _responses(rng, segment_table, n_bundles, responses_per_segment,
                                        bundle_table)
    item_table, policy = _scarcity_and_policy(rng, item_table, bundle_table, lines, segment_table,
                                             responses, seg, chosen, responses_per_segment)
    return Instance(
        name=name or f"generated-{segments}-{seed}", currency="JPY", items=item_table,
        bundles=bundle_table, bundle_items=lines, perks=perk_table, segments=segment_table,
        responses=responses, policy=policy,
    )


def _items(rng: np.random.Generator, n: int) -> pd.DataFrame:
    price = np.maximum(100.0, np.round(rng.lognormal(np.log(5000), 1.1, n), -1))
    cost = np.round(price * rng.uniform(0.45, 0.80, n))
    return pd.DataFrame({
        "id": [f"sku-{i:05d}" for i in range(n)], "name": [f"Item {i}" for i in range(n)],
        "price": price, "cost": cost, "stock": np.full(n, np.nan),
    })


def _bundles(rng: np.random.Generator, items: pd.DataFrame, n: int) -> tuple[
    pd.DataFrame, pd.DataFrame, pd.DataFrame
]:
    kind = rng.choice(KINDS, size=n, p=KIND_WEIGHTS)
    size = np.where(np.isin(kind, ("upsell", "downsell")), 1,
                    np.where(kind == "bundle", rng.integers(2, 5, n), rng.integers(2, 4, n)))
    n_items = len(items)
    # Popular items are drawn more often, as in real baskets.
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.7
    popularity /= popularity.sum()
    line_bundle = np.repeat(np.arange(n), size)
    keys = rng.gumbel(size=(n, n_items)) + np.log(popularity)
    ranked = np.argsort(-keys, axis=1)
    line_item = ranked[line_bundle, np.arange(len(line_bundle)) - np.repeat(np.cumsum(size) - size, size)]
    qty = np.where(rng.random(len(line_bundle)) < 0.1, 2, 1)
    price = items["price"].to_numpy()
    reference = np.bincount(line_bundle, weights=price[line_item] * qty, minlength=n)
    discount_price = np.where(kind == "bundle", np.round(reference * rng.uniform(0.85, 0.95, n), -1),
                              np.nan)
    n_groups = max(1, n // 6)
    tiered = np.isin(kind, ("upsell", "downsell")) | (rng.random(n) < 0.1)
    group = [f"tier-{g}" if t else None for g, t in zip(rng.integers(0, n_groups, n), tiered,
                                                          strict=True)]
    own_ladder = rng.random(n) < 0.3
    ladder_pick = rng.integers(0, len(LADDERS), n)
    bundles = pd.DataFrame({
        "id": [f"bnd-{b:05d}" for b in range(n)], "name": [f"{k.replace('_', ' ')} {b}"
                                                            for b, k in enumerate(kind)],
        "kind": kind, "price": discount_price,
        "discounts": pd.Series([LADDERS[p] if o else None for o, p in
                                zip(own_ladder, ladder_pick, strict=True)], dtype=object),
        "exclusion_group": pd.Series(group, dtype=object),
        "min_margin_rate": np.where(rng.random(n) < 0.15, np.round(rng.uniform(0.1, 0.2, n), 2),
                                    np.nan),
    })
    lines = pd.DataFrame({"bundle": bundles["id"].to_numpy()[line_bundle],
                          "item": items["id"].to_numpy()[line_item], "qty": qty.astype(np.int64)})
    return bundles, lines, _perks(rng, bundles["id"].to_numpy(), reference)


def _perks(rng: np.random.Generator, bundle_ids: np.ndarray, reference: np.ndarray) -> pd.DataFrame:
    n = len(bundle_ids)
    count = np.where(rng.random(n) < 0.4, rng.integers(1, 3, n), 0)
    owner = np.repeat(np.arange(n), count)
    kind = np.concatenate([rng.permutation(len(PERKS))[:c] for c in count]) if count.sum() else \
        np.zeros(0, dtype=np.int64)
    share = np.array([p[1] for p in PERKS])[kind]
    low = np.array([p[2][0] for p in PERKS])[kind]
    high = np.array([p[2][1] for p in PERKS])[kind]
    return pd.DataFrame({
        "bundle": bundle_ids[owner], "id": np.array([p[0] for p in PERKS], dtype=object)[kind],
        "cost": np.maximum(100.0, np.round(reference[owner] * share, -1)),
        "lift": np.round(rng.uniform(low, high), 3),
    })


def _segments(rng: np.random.Generator, n: int) -> pd.DataFrame:
    rfm = rng.integers(1, 6, size=(n, 3))
    context = rng.choice(CONTEXTS, size=n)
    rank = rng.permutation(n) + 1
    views = np.maximum(20.0, np.round(60000.0 * rank ** -0.95))
    override = rng.random(n) < 0.05
    return pd.DataFrame({
        "id": [f"rfm{r}{f}{m}-{c}-{i:06d}" for i, ((r, f, m), c) in enumerate(zip(rfm, context,
                                                                                strict=True))],
        "views": views,
        "min_offers": pd.array(np.where(override, 0, pd.NA), dtype="Int64"),
        "max_offers": pd.array(np.where(override, rng.integers(1, 3, n), pd.NA), dtype="Int64"),
        "silent": rng.random(n) < 0.01,
    })


def _responses(rng: np.random.Generator, segs: pd.DataFrame, n_bundles: int, per_segment: int,
               bundles: pd.DataFrame, chunk: int = 20000
               ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The responses, and each one's segment and bundle position."""
    per_segment = min(per_segment, n_bundles)
    affinity = np.log(1.0 / np.arange(1, n_bundles + 1) ** 0.5)
    picks = []
    for start in range(0, len(segs), chunk):  # chunks bound memory at segments x bundles
        size = min(chunk, len(segs) - start)
        keys = rng.gumbel(size=(size, n_bundles)) + affinity
        picks.append(np.argpartition(-keys, per_segment - 1, axis=1)[:, :per_segment])
    chosen = np.concatenate(picks).ravel() if picks else np.zeros(0, dtype=np.int64)
    seg = np.repeat(np.arange(len(segs)), per_segment)
    n = len(seg)
    take = np.exp(rng.uniform(np.log(0.001), np.log(0.4), n))
    baseline = take * rng.uniform(0.05, 0.6, n)
    negative = rng.random(n) < 0.08
    baseline = np.where(negative, np.minimum(0.95, take * rng.uniform(1.05, 2.0, n)), baseline)
    ids = pd.array(segs["id"], dtype=pd.StringDtype("pyarrow"))  # columnar: no object per row
    bundle_ids = pd.array(bundles["id"], dtype=pd.StringDtype("pyarrow"))
    return pd.DataFrame({
        "segment": ids.take(seg), "bundle": bundle_ids.take(chosen),
        "take_rate": np.round(take, 5).clip(1e-5, 0.99), "baseline_rate": np.round(baseline, 5),
        "price_sensitivity": np.round(rng.gamma(2.0, 3.0, n), 2),
    }), seg, chosen


def _scarcity_and_policy(rng: np.random.Generator, items: pd.DataFrame, bundles: pd.DataFrame,
                         lines: pd.DataFrame, segs: pd.DataFrame, resp: pd.DataFrame,
                         seg: np.ndarray, chosen: np.ndarray,
                         per_segment: int) -> tuple[pd.DataFrame, Policy]:
    """Stock and budget are set against the demand a 3-offer plan would roughly create."""
    shown = 3.0 / max(per_segment, 1)
    views = segs["views"].to_numpy()[seg]
    takes = views * resp["take_rate"].to_numpy() * shown
    per_bundle = pd.Series(np.bincount(chosen, takes, minlength=len(bundles)),
                           index=bundles["id"].to_numpy())
    demand = (lines["qty"] * per_bundle.reindex(lines["bundle"]).fillna(0).to_numpy()) \
        .groupby(lines["item"].to_numpy()).sum().reindex(items["id"]).fillna(0.0).to_numpy()
    limited = rng.random(len(items)) < 0.4
    tight = rng.random(len(items)) < 0.5
    factor = np.where(tight, rng.uniform(0.1, 0.8, len(items)), rng.uniform(1.5, 4.0, len(items)))
    stock = np.where(limited, np.ceil(demand * factor), np.nan)
    bundle_value = bundles.set_index("id")["price"].fillna(0).to_numpy()
    spend = float((per_bundle.reindex(bundles["id"]).fillna(0).to_numpy() *
                   np.where(bundle_value > 0, bundle_value, 5000.0)).sum()) * 0.1
    policy = Policy(min_margin_rate=0.05, max_discount=0.25, max_discounted_share=0.4,
                    max_avg_discount=0.06, promotion_budget=float(np.round(spend * 0.3, -2)),
                    min_aggregate_margin_rate=0.2, holdout_fraction=0.05)
    return items.assign(stock=stock), policy
