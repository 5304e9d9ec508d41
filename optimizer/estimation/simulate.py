"""Experiment logs drawn from an instance whose responses are taken as the truth.

Every (segment, bundle) response gets `views_per_cell` views. A `holdout` fraction (in
expectation) sees nothing and buys at the baseline rate; the rest are spread uniformly
at random over the bundle's arms: each discount of its ladder, with no perk or with one
of its perks. Purchases are binomial at the spec's take probability of the arm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.estimation.glm import logit, sigmoid
from optimizer.model.instance import Instance

CHUNK_RESPONSES = 500_000  # responses whose arms are drawn at once


def arms(instance: Instance, responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every (response, discount, perk) arm of `responses` (default: all the instance's),
    with its true take probability; `response` numbers the rows of `responses`."""
    ladders = instance.bundle_ladders()
    ladder = pd.DataFrame({
        "bundle": np.repeat(instance.bundles["id"].to_numpy(dtype=object), [len(x) for x in ladders]),
        "discount": np.array([d for x in ladders for d in x], dtype=np.float64),
    })
    options = pd.concat([
        pd.DataFrame({"bundle": instance.bundles["id"], "perk": "", "lift": 0.0}),
        instance.perks.rename(columns={"id": "perk"})[["bundle", "perk", "lift"]],
    ], ignore_index=True)
    given = instance.responses if responses is None else responses
    r = given.reset_index(drop=True).reset_index(names="response")
    out = r.merge(ladder, on="bundle").merge(options, on="bundle").sort_values(
        ["response", "discount", "perk"], kind="stable").reset_index(drop=True)
    z = logit(out["take_rate"].to_numpy()) + out["price_sensitivity"].fillna(0.0).to_numpy() * \
        out["discount"].to_numpy() + out["lift"].to_numpy()
    return out.assign(prob=sigmoid(z))


def simulate(instance: Instance, views_per_cell: int, holdout: float = 0.1, seed: int = 0,
             row_level: bool = False) -> pd.DataFrame:
    """An `offeropt/exposures@1` table (aggregated, or one row per view). Arms are drawn
    for `CHUNK_RESPONSES` responses at a time, so memory follows the rows written, not every
    arm of every response (at a million segments, over a hundred million)."""
    rng = np.random.default_rng(seed)
    responses = instance.responses
    held = rng.binomial(views_per_cell, holdout, len(responses))
    parts = []
    for start in range(0, len(responses), CHUNK_RESPONSES):
        chunk = responses.iloc[start:start + CHUNK_RESPONSES]
        table = arms(instance, chunk)
        arm_views = _spread(rng, views_per_cell - held[start:start + len(chunk)],
                            table["response"].to_numpy())
        kept = arm_views > 0
        parts.append(pd.DataFrame({
            "segment": table["segment"][kept], "bundle": table["bundle"][kept], "shown": 1,
            "discount": table["discount"][kept], "perk": table["perk"][kept],
            "views": arm_views[kept],
            "purchases": rng.binomial(arm_views, table["prob"].to_numpy())[kept],
        }))
    baseline = responses["baseline_rate"].fillna(0.0).to_numpy()
    holdouts = pd.DataFrame({
        "segment": responses["segment"], "bundle": responses["bundle"], "shown": 0,
        "discount": 0.0, "perk": "", "views": held, "purchases": rng.binomial(held, baseline),
    })
    logs = pd.concat([holdouts[held > 0], *parts], ignore_index=True)
    return _one_row_per_view(rng, logs) if row_level else logs


def _spread(rng: np.random.Generator, total: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Split each response's views uniformly over its arms (`response` is sorted)."""
    start = np.searchsorted(response, np.arange(len(total)))
    count = np.bincount(response, minlength=len(total))
    position = np.arange(len(response)) - start[response]
    left = total.astype(np.int64).copy()
    out = np.zeros(len(response), dtype=np.int64)
    for j in range(int(count.max(initial=0))):  # one pass per arm position, vectorized over cells
        at = np.flatnonzero(position == j)
        cells = response[at]
        remaining_arms = count[cells] - j
        draw = rng.binomial(left[cells], 1.0 / remaining_arms)
        out[at] = draw
        left[cells] -= draw
    return out


def _one_row_per_view(rng: np.random.Generator, logs: pd.DataFrame) -> pd.DataFrame:
    views = logs["views"].to_numpy()
    rows = logs.drop(columns=["views", "purchases"]).loc[np.repeat(logs.index, views)]
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(views) - views, views)
    rows = rows.assign(purchased=(rank < np.repeat(logs["purchases"].to_numpy(), views)).astype(int))
    return rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)
