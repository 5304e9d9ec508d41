"""A seeded generator of instances shaped like real catalogs.

Log-normal prices, costs at 45-80% of price, cross-sell/upsell/downsell bundles with
exclusion groups and perks, Zipf-distributed segment views, take rates of about
0.1-40%, some negative-uplift offers (baseline above take rate), and tight stock on
some items. Every table is built as whole arrays.

Two profiles: "default" (the above, with a fixed policy) and "realistic", a hard catalog
like the real ones measured: heavy-tailed views, tight stock on about half the items, and
every policy row calibrated to bind at the LP optimum (see `_calibrated`).

Either profile can also tie segments together as spec section 8 does (`contexts`,
`channels`): audiences of customers met in several contexts, on the site, by email and in a
support talk, with frequency and repeat caps and channel capacities calibrated to bind (see
`_contact_segments` and `_with_caps`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.formulation.candidates import Candidates, Variants, expand, variant_table
from optimizer.formulation.segment_choice import SegmentChooser
from optimizer.model.instance import Instance, Policy, empty_table

CONTEXTS = ("product", "cart", "checkout", "account", "email")
KINDS = ("cross_sell", "upsell", "downsell", "bundle")
KIND_WEIGHTS = (0.45, 0.25, 0.15, 0.15)
LADDERS = ((0.0, 0.05, 0.1), (0.0, 0.1, 0.2, 0.3), (0.0, 0.03, 0.05, 0.08))
PROFILES = ("default", "realistic")
# Spec section 8: the contexts an audience is met in, in this order. Per context: timing
# label, channel, views per base view of the audience (its cart views), take-rate factor
# for other bundles and for upsells and bundles with a perk (warranties and upgrades sell in
# a renewal talk), and min and max offers (None: the policy's).
CONTACT_CONTEXTS: tuple[tuple[str, str, float, float, float, int | None, int | None], ...] = (
    ("cart", "site", 1.0, 1.0, 1.0, None, None),
    ("product-page", "site", 2.5, 0.6, 0.6, None, None),
    ("post-purchase", "email", 0.6, 0.4, 0.4, 0, 2),  # a mail may carry no offer at all
    ("renewal", "cs-talk", 0.04, 2.0, 6.0, 0, 1),  # at most one pitch per talk
)
# id, share of the uncapped plan's impressions its capacity allows (None: no capacity),
# contact cost per impression (JPY)
CHANNELS: tuple[tuple[str, tuple[float, float] | None, float], ...] = (
    ("site", None, 0.0), ("email", (0.5, 0.7), 2.0), ("cs-talk", (0.4, 0.55), 350.0),
)
PERKS = (("extended-warranty", 0.04, (0.1, 0.5)), ("free-setup", 0.02, (0.05, 0.35)),
         ("gift-wrap", 0.005, (0.05, 0.15)))


def generate(segments: int, seed: int, responses_per_segment: int = 15,
             items: int | None = None, bundles: int | None = None,
             name: str | None = None, profile: str = "default", contexts: int = 0,
             channels: bool = False) -> Instance:
    """A seeded instance; the same arguments give the same instance.

    `profile` "default" is the original generator (its output for a seed never changes:
    tests and shipped instances depend on it). "realistic" is the hard catalog real
    data shows (see `_realistic_views` and `_calibrated`): heavy-tailed views, tight
    stock on about half the items, and every policy row set so that the segments'
    unconstrained best choice breaks it, while a plan showing lo_eff undiscounted
    offers keeps to all of them (so the instance is feasible). Both size the catalog the
    same way; the real catalogs measured at 2,000 segments have items=120, bundles=60.

    `contexts` K (1 to 4; 0, the default, leaves every output above unchanged) groups the
    segments into `segments / K` audiences of K contexts each (cart and product page on the
    site, post-purchase email, renewal talk; see CONTACT_CONTEXTS), whose responses share
    bundles, with a frequency and a repeat cap on every audience. `channels` adds the
    channels `site`, `email` and `cs-talk` (contact costs, capacities) and names each
    segment's. Caps and capacities are calibrated to bind (`_with_caps`).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
    if not 0 <= contexts <= len(CONTACT_CONTEXTS):
        raise ValueError(f"contexts must be in 0..{len(CONTACT_CONTEXTS)}, got {contexts}")
    if channels and not contexts:
        raise ValueError("channels need contexts >= 1 (a channel is met in a context)")
    if contexts and segments % contexts:
        raise ValueError(f"segments ({segments}) must be a multiple of contexts ({contexts}): "
                         "every audience has exactly that many segments")
    rng = np.random.default_rng(seed)
    n_items = items or max(12, segments // 10 + 20)
    n_bundles = bundles or max(responses_per_segment + 2, n_items // 2)
    item_table = _items(rng, n_items)
    bundle_table, lines, perk_table = _bundles(rng, item_table, n_bundles)
    realistic = profile == "realistic"
    audience_table, channel_table = empty_table("audiences"), empty_table("channels")
    contacts = contexts > 0
    if contacts:
        # Drawn after the catalog only, so contexts=0 draws exactly what it always drew.
        segment_table, audience_table = _contact_segments(rng, segments // contexts, contexts,
                                                          realistic, channels)
        if channels:
            channel_table = _channel_table()
        responses, seg, chosen = _contact_responses(rng, segment_table, responses_per_segment,
                                                    bundle_table, perk_table)
    else:
        segment_table = _segments(rng, segments, realistic)
        responses, seg, chosen = _responses(rng, segment_table, n_bundles, responses_per_segment,
                                            bundle_table)
    if realistic:
        # Free what is not needed before the calibration's expansions (the caps need `chosen`).
        del seg
        if not contacts:
            del chosen
        draft = Instance(
            name=name or f"realistic-{segments}-{seed}", currency="JPY", items=item_table,
            bundles=bundle_table, bundle_items=lines, perks=perk_table, segments=segment_table,
            responses=responses, policy=Policy(min_margin_rate=0.05, max_discount=0.25,
                                               holdout_fraction=0.05),
            audiences=audience_table, channels=channel_table,
        )
        inst = _calibrated(rng, draft)  # the policy rows, against the uncapped plans
        return _with_caps(rng, inst, chosen) if contacts else inst
    item_table, policy = _scarcity_and_policy(rng, item_table, bundle_table, lines, segment_table,
                                             responses, seg, chosen, responses_per_segment)
    inst = Instance(
        name=name or f"generated-{segments}-{seed}", currency="JPY", items=item_table,
        bundles=bundle_table, bundle_items=lines, perks=perk_table, segments=segment_table,
        responses=responses, policy=policy, audiences=audience_table, channels=channel_table,
    )
    return _with_caps(rng, inst, chosen) if contacts else inst


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


def _segments(rng: np.random.Generator, n: int, realistic: bool = False) -> pd.DataFrame:
    rfm = rng.integers(1, 6, size=(n, 3))
    context = rng.choice(CONTEXTS, size=n)
    rank = rng.permutation(n) + 1
    views = _realistic_views(rng, rank) if realistic else \
        np.maximum(20.0, np.round(60000.0 * rank ** -0.95))
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


# The "realistic" profile (see `_realistic_views` and `_calibrated`).
HEAD_FRACTION = 0.0187  # the top 1.87% of segments (37 of 2,000) form the flat head
TAIL_EXPONENT = 5.0 / 3.0  # beyond it, views fall as (rank fraction / HEAD_FRACTION) ** -5/3
VIEW_JITTER = 0.02  # log-normal sigma on each segment's views
MEAN_VIEWS = 300.0
MIN_VIEWS = 5.0
STOCKED_SHARE = 0.5
TARGET = (0.5, 0.85)  # the target plan's use of each row, as a share of the greedy plan's
MARGIN_TARGET = (0.1, 0.3)  # its margin rate, this share of the way from U's to F's
PRICE_FLOOR = (0.05, 0.05, 0.1, 0.05)  # least multipliers, in yen of value per yen of a policy
# row: discounted share, average discount, promotion budget (higher: it is nearly collinear
# with the average discount, and would stop binding first), margin floor
ITEM_PRICE_FLOOR = 0.05  # and per unit of a stocked item, as a share of its price
PRICE_STEPS = 40  # rounds of price adjustment
FIXED_POINT_STEPS = 24  # rounds that set the ratio rows' limits to the target plan's own
TIGHTEN = (1e-6, 1e-5)  # each limit sits this share inside the target plan's use
MAX_SHARE_OF_GREEDY = 0.85  # no limit looser than this share of the way from F's use to U's
CALIBRATION_SEGMENTS = 50_000  # above: multipliers are found on a systematic sample
CALIBRATION_CHUNK = 20_000  # segments per expansion while calibrating: bounds the memory


def _realistic_views(rng: np.random.Generator, rank: np.ndarray) -> np.ndarray:
    """Heavy-tailed views as a function of the rank fraction q = (rank - 0.5) / n only.

    A flat head, then a power tail: views ∝ min(1, (q / 0.0187) ** -5/3) with a 2%
    log-normal jitter, scaled to a mean of 300 views per segment (at least 5). As the shape
    depends on q alone, the share of views held by a fraction of the segments is the same at
    every size: the top 0.5% hold ≈ 11%, the top 2.5% ≈ 53% and the top 10% ≈ 84% (at 2,000
    segments: the top 10, 50 and 200, as measured on real catalogs). At 10k or 1M
    segments the head is 187 or 18,700 segments holding ≈ 42% of the views, each with the
    same ≈ 6,700 views a head segment has at 2,000; the distribution of views per segment does
    not change with the size.
    """
    n = len(rank)
    if n == 0:
        return np.zeros(0)
    q = (rank - 0.5) / n
    shape = np.minimum(1.0, (q / HEAD_FRACTION) ** -TAIL_EXPONENT) * rng.lognormal(0.0, VIEW_JITTER, n)
    return np.maximum(MIN_VIEWS, np.round(MEAN_VIEWS * n * shape / shape.sum()))


def _calibrated(rng: np.random.Generator, draft: Instance) -> Instance:
    """Stock and every policy limit, set so that every row binds at the LP optimum.

    Three plans of `draft` (which has no limits yet), each the exact per-segment optimum
    under the structure rows (`SegmentChooser`) of some candidate values:

    - U, the segments' unconstrained best choice (`best_choice` on the candidate values);
    - F, exactly lo_eff offers per segment, undiscounted and without perk wherever a slot has
      such a variant, then avoiding stocked items, then of the highest margin rate: a modest,
      integral plan;
    - T, the best choice under Lagrange multipliers on every coupling row: the four policy
      rows and the stock of about half the items. The multipliers come from price adjustment
      towards seeded goals (50-85% of U's discounted share, average discount, promotion spend
      and units of each stocked item; a margin rate 10-30% of the way from U's rate to F's),
      each kept above a floor (PRICE_FLOOR), so that every row is priced. The ratio rows'
      limits enter their own multiplier terms: the last rounds make them T's own ratios (a
      fixed point, usually exact: T stops changing).

    With every limit at T's use, T is an optimum of the LP and the multipliers are its duals,
    all positive: every row binds. Each limit is then tightened by a seeded 0.0001-0.001% of
    T's use, so that T is just infeasible and the LP optimum splits a few dozen segments
    between offers, which no integral plan can. (Larger tightenings move the LP optimum
    across many segments' choices, and the policy rows, nearly collinear, stop binding one
    by one: the promotion budget first.) Two guards: no limit is looser than 85% of the way
    from F's use to U's (so U breaks every row) and none is tighter than F's use (so F keeps
    to every row: the instance is feasible). On the stock rows the price adjustment keeps T
    inside the guards (which would otherwise move a limit away from T's use); on the policy
    rows the goals keep it well inside.

    Up to CALIBRATION_SEGMENTS (50,000) segments every step is exact. Above, the multipliers
    are found on a systematic sample of that many segments by views rank, and T's use is then
    computed over all segments under them: its ratios come close to, not exactly to, the ones
    its multiplier terms used (about 1% apart at 100,000 segments), so the rows bind only
    about as well. U, F and T over all segments are computed in chunks of CALIBRATION_CHUNK
    segments: the memory stays bounded (1,000,000 segments x 20 responses: about the peak
    memory of the "default" profile, twice its time).
    """
    v = variant_table(draft)
    n_items = len(draft.items)
    qty = _item_quantities(draft)  # items x bundles
    stocked = rng.random(n_items) < STOCKED_SHARE
    holds_stocked = np.asarray(qty.T @ stocked.astype(np.float64)) > 0  # per bundle
    use, demand = _usage(v, qty, _plan_takes(draft, v, [_greedy, _modest(holds_stocked)]))
    greedy, modest = use  # U, F
    goal = greedy * rng.uniform(*TARGET, 4)
    goal[3] = greedy[3] + rng.uniform(*MARGIN_TARGET) * (modest[3] - greedy[3])
    item_goal = np.where(stocked, demand[0] * rng.uniform(*TARGET, n_items), np.inf)
    tighten = rng.uniform(*TIGHTEN, 4 + n_items)
    item_lenient = np.where(stocked, demand[1] + MAX_SHARE_OF_GREEDY * (demand[0] - demand[1]),
                            np.inf)

    part, scale = _calibration_sample(draft)
    item_price = draft.items["price"].to_numpy(dtype=np.float64)
    floor = np.r_[np.broadcast_to(PRICE_FLOOR, 4), np.where(stocked, ITEM_PRICE_FLOOR * item_price, 0.0)]
    price, ratios = floor * 2.0, goal[[0, 1, 3]]
    cands = expand(part)
    t_use, t_demand = use[1:], demand[1:]  # (no candidates: F's use, which is nothing)
    if len(cands):
        chooser = SegmentChooser(cands)
        best, previous, kept = np.inf, None, ratios
        for step in range(PRICE_STEPS + FIXED_POINT_STEPS):
            chosen = chooser.choose(_priced(price, ratios, qty, v)(cands))
            use_now, demand_now = _usage(v, qty, scale * np.bincount(
                cands.variant[chosen], cands.takes[chosen], minlength=len(v))[None, :])
            if step < PRICE_STEPS:  # raise the price of a row used beyond its goal, lower it else
                pace = 1.0 / np.sqrt(1.0 + step / 4.0)
                excess = np.r_[use_now[0, :3] / np.maximum(goal[:3], 1e-12),
                               np.exp(8.0 * (goal[3] - use_now[0, 3])),
                               np.minimum(demand_now[0] / np.maximum(item_goal, 1e-9), 1e6)]
                price = np.maximum(floor, price * np.clip(excess, 0.5, 2.0) ** pace)
                continue
            # The guards must not move a stock away from T's use: an item T uses beyond the
            # lenient stock is priced up, one it uses below F's use is not priced; then again.
            over = demand_now[0] > item_lenient
            under = (demand_now[0] < demand[1]) & (price[4:] > 0)
            if (over.any() or under.any()) and step < PRICE_STEPS + FIXED_POINT_STEPS // 2:
                price[4:][over] = np.maximum(2.0 * price[4:][over], floor[4:][over])
                price[4:][under] = 0.0
                best, previous = np.inf, None
                continue
            # Prices fixed: the ratio rows' limits move to T's own ratios, damped; the round
            # whose T was chosen under limits closest to its own ratios is kept.
            own = use_now[0, [0, 1, 3]]
            miss = float(np.max(np.abs(own - ratios) / np.maximum(np.abs(ratios), 1e-12)))
            if miss < best:
                best, t_use, t_demand, kept = miss, use_now, demand_now, ratios
            if miss == 0.0:
                break
            # Once T stops changing, jump to its ratios (an exact fixed point if T then holds).
            settled = previous is not None and np.array_equal(own, previous)
            ratios, previous = (own if settled else ratios + 0.5 * (own - ratios)), own
        ratios = kept
    if part is not draft:
        t_use, t_demand = _usage(v, qty, _plan_takes(draft, v, [_priced(price, ratios, qty, v)]))

    def guarded(limit: np.ndarray, loose: np.ndarray, modest: np.ndarray) -> np.ndarray:
        """Within [F's use, the lenient limit] (for <= rows, where F's use is the lower)."""
        return np.maximum(modest, np.minimum(limit, loose))

    # Rounded to 1e-9 (whole yen for the budget), always in the direction that keeps F feasible
    # and, for T, far below the tightening.
    per = np.array([1e9, 1e9, 1.0])
    lenient = modest + MAX_SHARE_OF_GREEDY * (greedy - modest)
    limit = guarded(np.floor(t_use[0, :3] * (1.0 - tighten[:3]) * per) / per,
                    np.floor(lenient[:3] * per) / per, np.ceil(modest[:3] * per) / per)
    # The margin floor is a >= row: tightened upwards, and guarded the other way round.
    rate = min(np.floor(modest[3] * 1e9) / 1e9,
               max(np.ceil(t_use[0, 3] * (1.0 + tighten[3]) * 1e9) / 1e9,
                   np.ceil(lenient[3] * 1e9) / 1e9))
    # Stock need not be whole units (it bounds expected takes): whole units would move it up
    # to one unit off T's use, far more than the tightening on a slow item.
    stock = guarded(np.floor(t_demand[0] * (1.0 - tighten[4:]) * 1e3) / 1e3,
                    np.floor(item_lenient * 1e3) / 1e3, np.ceil(demand[1] * 1e3) / 1e3)
    # An item in no bundle has no inventory row: any stock will do, so a plausible one.
    unbundled = np.asarray(qty.sum(axis=1)).ravel() == 0
    stock = np.where(unbundled, np.round(rng.lognormal(np.log(2000.0), 1.0, n_items)), stock)
    policy = Policy(
        min_margin_rate=0.05, max_discount=0.25, max_discounted_share=float(limit[0]),
        max_avg_discount=float(limit[1]), promotion_budget=float(limit[2]),
        min_aggregate_margin_rate=float(rate), holdout_fraction=0.05,
    )
    return dataclasses.replace(draft, policy=policy,
                               items=draft.items.assign(stock=np.where(stocked, stock, np.nan)))


_Values = Callable[[Candidates], np.ndarray]


def _greedy(cands: Candidates) -> np.ndarray:
    return cands.value


def _modest(holds_stocked: np.ndarray) -> _Values:
    """All negative, so exactly lo_eff slots: a plain variant (no discount, no perk) before any
    other, then one of a bundle without stocked items, then the highest margin rate."""

    def values(cands: Candidates) -> np.ndarray:
        plain = (cands.discount == 0) & (cands.perk < 0)
        rate = cands.margin / cands.revenue  # in [0, 1]: offerable variants keep the margin floor
        out: np.ndarray = rate - 2.0 - 4.0 * ~plain - 1.5 * holds_stocked[cands.bundle]
        return out

    return values


def _priced(price: np.ndarray, ratios: np.ndarray, qty: sp.csr_matrix, v: Variants) -> _Values:
    """The candidate values less the multipliers times the coupling rows' coefficients (the
    discounted share, average discount and margin rows as `coupling` writes them, with `ratios`
    as their limits)."""
    share, avg, rate = ratios
    items = qty.T @ price[4:]  # per bundle
    per_take = (price[0] * v.revenue * ((v.discount > 0) - share)
                + price[1] * v.list_price * (v.discount - avg)
                + price[2] * (v.list_price * v.discount + v.perk_cost)
                - price[3] * (v.margin - rate * v.revenue)
                + items[v.bundle])

    def values(cands: Candidates) -> np.ndarray:
        out: np.ndarray = cands.value - cands.takes * per_take[cands.variant]
        return out

    return values


def _calibration_sample(draft: Instance) -> tuple[Instance, float]:
    """All segments, or every k-th by views rank; and total views / the sample's views."""
    segs, resp = draft.segments, draft.responses
    n = len(segs)
    if n <= CALIBRATION_SEGMENTS:
        return draft, 1.0
    views = segs["views"].to_numpy(dtype=np.float64)
    step = -(-n // CALIBRATION_SEGMENTS)
    pick = np.sort(np.argsort(-views, kind="stable")[::step])
    per_segment = len(resp) // n  # responses come grouped by segment, the same number each
    rows = (pick[:, None] * per_segment + np.arange(per_segment)).ravel()
    part = dataclasses.replace(draft, segments=segs.iloc[pick], responses=resp.iloc[rows])
    return part, float(views.sum() / max(views[pick].sum(), 1.0))


def _plan_takes(draft: Instance, variants: Variants, plans: list[_Values]) -> np.ndarray:
    """Expected takes per variant (plans x variants) of each plan: the segments' best choice
    under its candidate values, over every segment, in chunks."""
    out = np.zeros((len(plans), len(variants)))
    segs, resp = draft.segments, draft.responses
    per_segment = len(resp) // max(len(segs), 1)
    for start in range(0, len(segs), CALIBRATION_CHUNK):
        stop = min(start + CALIBRATION_CHUNK, len(segs))
        part = dataclasses.replace(draft, segments=segs.iloc[start:stop],
                                   responses=resp.iloc[start * per_segment:stop * per_segment])
        cands = expand(part)
        if len(cands) == 0:
            continue
        chooser = SegmentChooser(cands)
        for row, plan in enumerate(plans):
            chosen = chooser.choose(plan(cands))
            out[row] += np.bincount(cands.variant[chosen], cands.takes[chosen],
                                    minlength=len(variants))
    return out


def _item_quantities(draft: Instance) -> sp.csr_matrix:
    """Units of each item in each bundle (items x bundles)."""
    lines = draft.bundle_items
    line_bundle = pd.Index(draft.bundles["id"]).get_indexer(lines["bundle"])
    line_item = pd.Index(draft.items["id"]).get_indexer(lines["item"])
    return sp.csr_matrix((lines["qty"].to_numpy(dtype=np.float64), (line_item, line_bundle)),
                         shape=(len(draft.items), len(draft.bundles)))


def _usage(v: Variants, qty: sp.csr_matrix, takes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per plan (a row of `takes`, expected takes per variant): its discounted revenue share,
    average discount, promotion spend and margin rate (plans x 4), and its units of each item
    (plans x items)."""
    revenue = takes @ v.revenue
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.stack([takes @ (v.revenue * (v.discount > 0)) / revenue,
                         takes @ (v.list_price * v.discount) / (takes @ v.list_price),
                         takes @ (v.list_price * v.discount + v.perk_cost),
                         takes @ v.margin / revenue], axis=1)
    per_bundle = np.stack([np.bincount(v.bundle, t, minlength=qty.shape[1]) for t in takes])
    return np.nan_to_num(rows), np.asarray((qty @ per_bundle.T).T)


# Spec section 8: audiences, channels and timing (see `_contact_segments` and `_with_caps`).
CONTEXT_JITTER = 0.25  # log-normal sigma of a context's views around its share
VIEWS_PER_CUSTOMER = (1.5, 4.0)  # an audience's busiest context has this many views per customer
SITE_OVERRIDE = 0.05  # share of site segments with their own offer limits, as `_segments`
SILENT_SHARE = 0.01
POOL_EXTRA = 0.5  # an audience's bundles: this much more than one context's responses
TAKE_JITTER = 0.2  # log-normal sigma of a context's take rate around the audience's
FREQUENCY_TARGET = (0.3, 1.15)  # a cap this share of the way from the lo plan's use to the
# uncapped plan's: it binds below 1, for about 80% of the audiences
REPEAT_CAPS, REPEAT_WEIGHTS = (1.0, 2.0, 3.0), (0.35, 0.45, 0.2)
PICK_CHUNK = 1 << 22  # random keys per chunk when picking bundles: bounds the memory


def _contact_segments(rng: np.random.Generator, n_audiences: int, k: int, realistic: bool,
                      channels: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segments `a000123-cart`, ... (audience by audience, K contexts each, in the order of
    CONTACT_CONTEXTS) and their audiences, caps not yet set.

    An audience's base views (its cart views) are heavy-tailed like a profile's segment views;
    each context sees a fixed share of them, jittered (a renewal talk reaches a few percent
    of the customers). Its customers are its busiest context's views over 1.5-4 views per
    customer, so never more than that context's views.
    """
    n_ctx = len(CONTACT_CONTEXTS)
    if k == n_ctx:
        picks = np.broadcast_to(np.arange(n_ctx), (n_audiences, k))
    else:  # a seeded subset of the contexts per audience, in their order
        picks = np.sort(np.argsort(rng.random((n_audiences, n_ctx)), axis=1)[:, :k], axis=1)
    code = picks.ravel()
    audience = np.repeat(np.arange(n_audiences), k)
    n = len(code)
    rank = rng.permutation(n_audiences) + 1
    base = _realistic_views(rng, rank) if realistic else \
        np.maximum(20.0, np.round(60000.0 * rank ** -0.95))
    share = np.array([c[2] for c in CONTACT_CONTEXTS])
    views = np.maximum(1.0, np.round(base[audience] * share[code] *
                                     rng.lognormal(0.0, CONTEXT_JITTER, n)))
    busiest = views.reshape(n_audiences, k).max(axis=1)
    customers = np.maximum(1.0, np.round(busiest / rng.uniform(*VIEWS_PER_CUSTOMER, n_audiences)))
    lo_ctx = np.array([-1 if c[5] is None else c[5] for c in CONTACT_CONTEXTS])
    hi_ctx = np.array([-1 if c[6] is None else c[6] for c in CONTACT_CONTEXTS])
    override = (lo_ctx[code] < 0) & (rng.random(n) < SITE_OVERRIDE)
    lo = np.where(override, 0, lo_ctx[code])
    hi = np.where(override, rng.integers(1, 3, n), hi_ctx[code])
    width = max(6, len(str(n_audiences - 1)))
    audience_ids = np.strings.add("a", np.strings.zfill(np.arange(n_audiences).astype(np.str_),
                                                         width))
    timing = np.array([c[0] for c in CONTACT_CONTEXTS], dtype=object)
    channel = np.array([c[1] if channels else None for c in CONTACT_CONTEXTS], dtype=object)
    ids = np.strings.add(np.strings.add(audience_ids[audience], "-"),
                         timing.astype(np.str_)[code])
    audience_obj = audience_ids.astype(object)  # one str per audience, shared by its segments
    segments = pd.DataFrame({
        "id": ids.astype(object), "views": views,
        "min_offers": pd.arrays.IntegerArray(lo.astype(np.int64), lo < 0),
        "max_offers": pd.arrays.IntegerArray(hi.astype(np.int64), hi < 0),
        "silent": rng.random(n) < SILENT_SHARE,
        "audience": pd.Series(audience_obj[audience], dtype=object),
        "channel": pd.Series(channel[code], dtype=object),
        "timing": pd.Series(timing[code], dtype=object),
    })
    audiences = pd.DataFrame({
        "id": pd.Series(audience_obj, dtype=object), "customers": customers,
        "max_offers_per_customer": np.full(n_audiences, np.nan),
        "max_repeats": np.full(n_audiences, np.nan),
    })
    return segments, audiences


def _channel_table() -> pd.DataFrame:
    """The channels, capacities not yet set (`_with_caps` sets them)."""
    return pd.DataFrame({
        "id": pd.Series([c[0] for c in CHANNELS], dtype=object),
        "capacity": np.full(len(CHANNELS), np.nan),
        "cost_per_impression": np.array([c[2] for c in CHANNELS]),
    })


def _pick(rng: np.random.Generator, rows: int, width: int, count: int,
          weight: np.ndarray | None = None) -> np.ndarray:
    """Per row, `count` distinct columns of `width` (a weighted sample without replacement:
    Gumbel keys plus log weights), in chunks so that the keys stay bounded in memory."""
    chunk = max(1, PICK_CHUNK // max(width, 1))
    parts = []
    for start in range(0, rows, chunk):
        keys = rng.gumbel(size=(min(chunk, rows - start), width))
        if weight is not None:
            keys += weight
        parts.append(np.argpartition(-keys, count - 1, axis=1)[:, :count])
    return np.concatenate(parts) if parts else np.zeros((0, count), dtype=np.int64)


def _contact_responses(rng: np.random.Generator, segs: pd.DataFrame, per_segment: int,
                       bundles: pd.DataFrame, perks: pd.DataFrame
                       ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Responses grouped by segment, `per_segment` each, that the contexts of an audience share.

    Each audience has a pool of bundles (half again as many as one context's responses, drawn
    as `_responses` draws a segment's) with its own take rate, baseline ratio and price
    sensitivity: the same customers want the same things wherever they are met, which is
    what a repeat cap limits. Each context offers a random `per_segment` of the pool, at the
    audience's take rate times the context's factor, jittered.
    """
    n_bundles = len(bundles)
    per_segment = min(per_segment, n_bundles)
    pool = min(n_bundles, per_segment + int(np.ceil(per_segment * POOL_EXTRA)))
    audience = pd.factorize(segs["audience"])[0]
    n_audiences = int(audience.max(initial=-1)) + 1
    affinity = np.log(1.0 / np.arange(1, n_bundles + 1) ** 0.5)
    pool_bundle = _pick(rng, n_audiences, n_bundles, pool, affinity).ravel()
    m = len(pool_bundle)
    take = np.exp(rng.uniform(np.log(0.001), np.log(0.4), m))
    ratio = np.where(rng.random(m) < 0.08, rng.uniform(1.05, 2.0, m), rng.uniform(0.05, 0.6, m))
    sensitivity = rng.gamma(2.0, 3.0, m)

    n_segs = len(segs)
    seg = np.repeat(np.arange(n_segs), per_segment)
    at = (audience[seg] * pool + _pick(rng, n_segs, pool, per_segment).ravel())
    chosen = pool_bundle[at]
    code = pd.Index([c[0] for c in CONTACT_CONTEXTS]).get_indexer(segs["timing"])[seg]
    strong = (bundles["kind"].to_numpy() == "upsell") | bundles["id"].isin(perks["bundle"]).to_numpy()
    factor = np.where(strong[chosen], np.array([c[4] for c in CONTACT_CONTEXTS])[code],
                      np.array([c[3] for c in CONTACT_CONTEXTS])[code])
    n = len(seg)
    rate = np.clip(take[at] * factor * rng.lognormal(0.0, TAKE_JITTER, n), 1e-5, 0.9)
    baseline = np.minimum(0.95, rate * ratio[at])
    ids = pd.array(segs["id"], dtype=pd.StringDtype("pyarrow"))
    bundle_ids = pd.array(bundles["id"], dtype=pd.StringDtype("pyarrow"))
    return pd.DataFrame({
        "segment": ids.take(seg), "bundle": bundle_ids.take(chosen),
        "take_rate": np.round(rate, 5).clip(1e-5, 0.9), "baseline_rate": np.round(baseline, 5),
        "price_sensitivity": np.round(sensitivity[at] * rng.lognormal(0.0, 0.1, n), 2),
    }), seg, chosen


def _with_caps(rng: np.random.Generator, inst: Instance, chosen: np.ndarray) -> Instance:
    """Frequency and repeat caps on every audience and channel capacities, set to bind.

    The uncapped plan is estimated per segment, as whole arrays: its best `hi` slots among
    the responses whose plain variant (no discount, no perk) is a candidate, by that
    variant's value less the contact cost (one bundle per exclusion group). From its use:

    - frequency cap F: 30-115% of the way from the use of a plan showing `min(lo, hi)` offers
      per segment (the least any feasible plan shows, so F never makes the instance
      infeasible) to the uncapped use: it binds for about 80% of the audiences;
    - repeat cap k: 1, 2 or 3 contexts, but at least the audience's contexts with lo > 0 (so
      that, again, every plan showing min(lo, hi) offers keeps to it); it binds where the
      uncapped plan offers a bundle in more (with 4 contexts: in 3 or 4 of them);
    - channel capacity: 50-70% (email) or 40-55% (cs-talk, tight) of the uncapped plan's
      impressions in the channel; the site has none. Email and talk segments may show no
      offer, so any capacity is feasible.
    """
    segs, resp, aud = inst.segments, inst.responses, inst.audiences
    n_segs, n_aud = len(segs), len(aud)
    views = segs["views"].to_numpy(dtype=np.float64)
    silent = segs["silent"].to_numpy(dtype=bool)
    audience = pd.Index(aud["id"]).get_indexer(segs["audience"])
    channel = pd.Index(inst.channels["id"]).get_indexer(segs["channel"])
    cost = np.append(inst.channels["cost_per_impression"].to_numpy(dtype=np.float64), 0.0)[channel]
    policy = inst.policy
    lo = segs["min_offers"].fillna(policy.min_offers_per_view).to_numpy(dtype=np.int64)
    hi = segs["max_offers"].fillna(policy.max_offers_per_view).to_numpy(dtype=np.int64)
    lo, hi = np.where(silent, 0, lo), np.where(silent, 0, hi)

    v = variant_table(inst)  # the plain variant of each bundle: economics and candidacy
    plain = np.flatnonzero((v.discount == 0) & (v.perk < 0))
    n_bundles = len(inst.bundles)
    list_margin, offerable = np.zeros(n_bundles), np.zeros(n_bundles, dtype=bool)
    slot = np.arange(n_bundles, dtype=np.int64)
    list_margin[v.bundle[plain]] = v.list_margin[plain]
    offerable[v.bundle[plain]] = v.offerable[plain]
    slot[v.bundle[plain]] = v.slot_key[plain]
    # Responses come grouped by segment, the same number each: rows of a (segments x
    # responses) matrix, sorted row by row (small sorts, no sort of the whole table).
    per_segment = len(resp) // max(n_segs, 1)
    take = resp["take_rate"].to_numpy(dtype=np.float64).reshape(n_segs, per_segment)
    base = resp["baseline_rate"].to_numpy(dtype=np.float64).reshape(n_segs, per_segment)
    bundle = chosen.reshape(n_segs, per_segment)
    value = views[:, None] * ((take - base) * list_margin[bundle] - cost[:, None])
    live = offerable[bundle] & ~silent[:, None] & (value >= 0)
    best = np.argsort(np.where(live, -value, np.inf), axis=1, kind="stable")  # best first
    live = np.take_along_axis(live, best, axis=1)
    slots = np.take_along_axis(slot[bundle], best, axis=1)
    # One bundle per slot (exclusion group): the first, i.e. best, of each slot in its row.
    by_slot = np.argsort(slots, axis=1, kind="stable")
    sorted_slots = np.take_along_axis(slots, by_slot, axis=1)
    repeat = np.zeros_like(live)
    np.put_along_axis(repeat, by_slot, np.c_[np.zeros((n_segs, 1), dtype=bool),
                                             sorted_slots[:, 1:] == sorted_slots[:, :-1]], axis=1)
    live &= ~repeat
    offers = (live & (np.cumsum(live, axis=1) <= hi[:, None])).sum(axis=1)  # the best hi

    customers = aud["customers"].to_numpy(dtype=np.float64)
    use = np.bincount(audience, offers * views, minlength=n_aud) / customers
    least = np.bincount(audience, np.minimum(lo, hi) * views, minlength=n_aud) / customers
    floor = np.ceil(least * 10.0) / 10.0  # one decimal, never below the least use
    target = least + rng.uniform(*FREQUENCY_TARGET, n_aud) * np.maximum(use - least, 0.0)
    frequency = np.maximum(floor, np.round(target, 1))
    # Never below the contexts that must show an offer: a plan showing min(lo, hi) offers
    # keeps to k whichever bundles it shows (the realistic profile's modest plan shows the
    # same one in each, as the contexts share bundles).
    must = np.bincount(audience, np.minimum(lo, hi) > 0, minlength=n_aud)
    repeats = np.maximum(rng.choice(REPEAT_CAPS, size=n_aud, p=REPEAT_WEIGHTS), must)
    audiences = aud.assign(max_offers_per_customer=frequency, max_repeats=repeats)

    out = dataclasses.replace(inst, audiences=audiences)
    if len(inst.channels):
        impressions = np.bincount(channel[channel >= 0], (offers * views)[channel >= 0],
                                  minlength=len(inst.channels))
        share = np.array([rng.uniform(*c[1]) if c[1] else np.nan for c in CHANNELS])
        by_id = pd.Series(np.floor(impressions * share), index=[c[0] for c in CHANNELS])
        out = dataclasses.replace(out, channels=inst.channels.assign(
            capacity=by_id.reindex(inst.channels["id"]).to_numpy()))
    return out
