"""Served-policy logs drawn from a plan served to an instance taken as the truth (spec
section 9), recorded as the storefront records them (docs/closed-loop.md).

Each segment the plan serves gets its views (the instance's `views`, times `scale`). A
`holdout` fraction of them (binomially) is held out; the others are split between the
segment's offer sets by their weights (multinomially). A set's views record one row per
offer, with binomial purchases at the truth's take probability; a holdout's views one row
per bundle its segment's sets offer, with purchases at the truth's baseline rate. Views
served an empty set record nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.measure.economics import economics
from optimizer.measure.plan_sets import plan_sets
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan


def simulate_served(truth: Instance, plan: Plan, *, scale: float = 1.0, holdout: float | None = None,
                    seed: int = 0, version: int = 1) -> pd.DataFrame:
    """Aggregated exposures@1 rows with `plan_version`, `set` and `propensity`."""
    rng = np.random.default_rng(seed)
    h = truth.policy.holdout_fraction if holdout is None else holdout
    rows = plan_sets(plan, truth)
    sets = rows.drop_duplicates("set_key").sort_values(["segment", "set_key"], kind="stable")
    segments = np.unique(sets["segment"].to_numpy())
    views = np.round(truth.segments["views"].to_numpy(np.float64)[segments] * scale).astype(np.int64)
    held = rng.binomial(views, h)
    at = np.searchsorted(segments, sets["segment"].to_numpy())
    set_views = _split(rng, views - held, at, sets["weight"].to_numpy(np.float64))
    n = pd.Series(set_views, index=sets["set_key"].to_numpy()).reindex(rows["set_key"]).to_numpy()
    offers = rows.assign(views=n)[(rows["bundle"] >= 0).to_numpy() & (n > 0)]
    s, b = offers["segment"].to_numpy(), offers["bundle"].to_numpy()
    prob = economics(truth, s, b, offers["discount"].to_numpy(), offers["perk"].to_numpy()).prob
    shown = pd.DataFrame({"segment": s, "bundle": b, "shown": 1, "discount": offers["discount"],
                          "perk": offers["perk"], "views": offers["views"],
                          "purchases": rng.binomial(offers["views"].to_numpy(), prob),
                          "set": offers["set"], "propensity": offers["weight"] * (1 - h)})
    pairs = rows[rows["bundle"] >= 0].drop_duplicates(["segment", "bundle"])
    hs, hb = pairs["segment"].to_numpy(), pairs["bundle"].to_numpy()
    hn = held[np.searchsorted(segments, hs)]
    base = np.nan_to_num(economics(truth, hs, hb, np.zeros(len(hs)), np.full(len(hs), -1)).baseline)
    holdouts = pd.DataFrame({"segment": hs, "bundle": hb, "shown": 0, "discount": 0.0, "perk": -1,
                             "views": hn, "purchases": rng.binomial(hn, base), "set": "",
                             "propensity": h})
    logs = pd.concat([shown, holdouts[hn > 0]], ignore_index=True).assign(plan_version=version)
    return _with_ids(logs, truth)


def _split(rng: np.random.Generator, total: np.ndarray, owner: np.ndarray,
           weight: np.ndarray) -> np.ndarray:
    """A multinomial split of each owner's `total` between its entries (sorted by owner) by
    weight: one conditional binomial per position, vectorized over owners."""
    start = np.searchsorted(owner, np.arange(len(total)))
    position = np.arange(len(owner)) - start[owner]
    left = total.astype(np.int64).copy()
    mass = np.bincount(owner, weights=weight, minlength=len(total))
    out = np.zeros(len(owner), dtype=np.int64)
    for j in range(int(position.max(initial=-1)) + 1):
        at = np.flatnonzero(position == j)
        cells = owner[at]
        p = np.clip(weight[at] / np.where(mass[cells] > 0, mass[cells], 1.0), 0.0, 1.0)
        out[at] = rng.binomial(left[cells], p)
        left[cells] -= out[at]
        mass[cells] -= weight[at]
    return out


def _with_ids(logs: pd.DataFrame, truth: Instance) -> pd.DataFrame:
    perk = logs["perk"].to_numpy(np.int64)
    perk_ids = np.append(truth.perks["id"].to_numpy(dtype=object), "")
    return logs.assign(
        segment=truth.segments["id"].to_numpy(dtype=object)[logs["segment"].to_numpy(np.int64)],
        bundle=truth.bundles["id"].to_numpy(dtype=object)[logs["bundle"].to_numpy(np.int64)],
        perk=perk_ids[perk]).loc[:, ["segment", "bundle", "shown", "discount", "perk", "views",
                                     "purchases", "plan_version", "set", "propensity"]]
