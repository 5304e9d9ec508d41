"""A plan as the policy it serves: its offer sets with their weights (spec section 7), and
what it expects per view of each segment (its own `expected_*` figures, section 4).

A plan without `offer_sets` serves one set per segment, with weight 1, holding the segment's
offers; there every offer's `share` must be 1 (a share below 1 says that views are split, and
only the sets say how).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan


def plan_sets(plan: Plan, instance: Instance, path: str = "plan") -> pd.DataFrame:
    """One row per (set, offer): `set_key` (0.. per set), `segment`, `set`, `weight`, `bundle`,
    `discount`, `perk` (positions; -1 for no perk). An empty set is one row with `bundle` -1.
    Ids the instance does not know are refused, each with its path in the plan."""
    if plan.offer_sets is None:
        frame = plan.offers.frame()
        bad = np.flatnonzero(frame["share"].to_numpy() != 1.0)
        if len(bad):
            raise InputError([Issue(f"{path}.offers[{i}].share", "must be 1 in a plan without "
                                    "offer_sets (each segment then serves one set, weight 1)",
                                    float(frame["share"].iloc[i])) for i in bad[:20]])
        codes, _ = pd.factorize(frame["segment"])
        rows = pd.DataFrame({"set_key": codes, "segment_id": frame["segment"], "set": "a",
                             "weight": 1.0, "bundle_id": frame["bundle"],
                             "discount": frame["discount"].to_numpy(np.float64),
                             "perk_id": frame["perk"].fillna("")})

        def where(i: int) -> str:
            return f"{path}.offers[{i}]"

        def owner(i: int) -> str:
            return where(i)
    else:
        sets = plan.offer_sets
        count = np.fromiter((max(len(s.offers), 1) for s in sets), np.int64, len(sets))
        offers = list(chain.from_iterable(s.offers or ((None, 0.0, None),) for s in sets))
        key = np.repeat(np.arange(len(sets)), count)
        within = np.arange(len(offers)) - np.repeat(np.cumsum(count) - count, count)
        rows = pd.DataFrame({
            "set_key": key,
            "segment_id": np.array([s.segment for s in sets], dtype=object)[key],
            "set": np.array([s.set for s in sets], dtype=object)[key],
            "weight": np.array([s.weight for s in sets], dtype=np.float64)[key],
            "bundle_id": [o[0] for o in offers],
            "discount": np.array([o[1] for o in offers], dtype=np.float64),
            "perk_id": [o[2] or "" for o in offers]})

        def where(i: int) -> str:
            return f"{owner(i)}.offers[{within[i]}]"

        def owner(i: int) -> str:
            return f"{path}.offer_sets[{key[i]}]"
    return _positions(rows, instance, where, owner)


def _positions(rows: pd.DataFrame, instance: Instance, where: Callable[[int], str],
               owner: Callable[[int], str]) -> pd.DataFrame:
    """Ids to positions; `where(i)` is the path of row i's offer, `owner(i)` of its set."""
    segment = pd.Index(instance.segments["id"]).get_indexer(rows["segment_id"])
    bundle_id = rows["bundle_id"].to_numpy(dtype=object)
    empty = pd.isna(bundle_id)
    bundle = pd.Index(instance.bundles["id"]).get_indexer(np.where(empty, "", bundle_id))
    perks = pd.MultiIndex.from_arrays([instance.perks["bundle"], instance.perks["id"]])
    named = rows["perk_id"].to_numpy(dtype=object) != ""
    perk = np.where(named, perks.get_indexer(pd.MultiIndex.from_arrays(
        [np.where(empty, "", bundle_id), rows["perk_id"]])), -1)
    first = ~rows["set_key"].duplicated().to_numpy()
    issues = [Issue(f"{owner(i)}.segment", "must be a segment id of the instance",
                    rows["segment_id"].iloc[i]) for i in np.flatnonzero(first & (segment < 0)).tolist()]
    issues += [Issue(f"{where(i)}.bundle", "must be a bundle id of the instance", bundle_id[i])
               for i in np.flatnonzero(~empty & (bundle < 0)).tolist()]
    no_perk = np.flatnonzero(named & (bundle >= 0) & (perk < 0)).tolist()
    issues += [Issue(f"{where(i)}.perk", f"must be a perk of bundle {bundle_id[i]!r}",
                     rows["perk_id"].iloc[i]) for i in no_perk]
    if issues:
        raise InputError(issues)
    return pd.DataFrame({"set_key": rows["set_key"].to_numpy(np.int64), "segment": segment,
                         "set": rows["set"].to_numpy(dtype=object),
                         "weight": rows["weight"].to_numpy(np.float64),
                         "bundle": np.where(empty, -1, bundle).astype(np.int64),
                         "discount": np.where(empty, 0.0, rows["discount"].to_numpy(np.float64)),
                         "perk": perk.astype(np.int64)})


def expected_per_view(plan: Plan, instance: Instance) -> pd.DataFrame:
    """Per segment of the instance (in its order): what the plan expects per view of it,
    `takes`, `margin` (expected incremental margin, net of contact cost) and `impressions`
    (offers shown), from the plan's own offer figures divided by the segment's views."""
    frame = plan.offers.frame(("segment", "share", "expected_takes", "expected_incremental_margin"))
    segment = pd.Index(instance.segments["id"]).get_indexer(frame["segment"])
    known = segment >= 0
    n = len(instance.segments)
    views = instance.segments["views"].to_numpy(np.float64)
    per = np.where(views > 0, 1.0 / np.where(views > 0, views, 1.0), 0.0)

    def total(column: str) -> np.ndarray:
        return np.bincount(segment[known], frame[column].to_numpy()[known], minlength=n)

    return pd.DataFrame({"takes": total("expected_takes") * per,
                         "margin": total("expected_incremental_margin") * per,
                         "impressions": total("share")})
