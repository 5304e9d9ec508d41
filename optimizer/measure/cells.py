"""What the logs say beyond single cells: the views each served set (and each holdout) had,
and the baseline rate each (segment, bundle) pair's holdout measured.

- A served set's **views** are the largest `views` of its rows: every offer of a set is shown
  to each of its views, unless the storefront dropped it for that view (`exclude_items`), so
  a row may have fewer views than its set, never more. A holdout's views, likewise, are the
  largest of its rows (a holdout view records one row per bundle its segment's sets offer).
- **Views served an empty set** show nothing, so no row records them. Where the logs carry
  propensities, a segment's sets and holdout in one plan version cover the share `q` of its
  views (their propensities' sum); the views left are estimated as `logged views x (1 - q) / q`.
- A pair's **baseline rate** is its holdout purchases over its holdout views, pooled over plan
  versions (the holdout is the same customers across plans). A pair shown without any
  holdout view takes the instance's `baseline_rate` instead, with no uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.measure.economics import Economics
from optimizer.measure.logs import SERVED, SUM_SLACK, ServedLogs


def served_views(logs: ServedLogs) -> pd.DataFrame:
    """One row per served set and holdout of a segment and plan version: `segment`,
    `version`, `shown` (False: the holdout), `set`, `views`, `propensity`, and `imputed`
    (True for the estimated views served an empty set, `set` "")."""
    groups = logs.cells.groupby(list(SERVED), as_index=False, sort=True).agg(
        views=("views", "max"), propensity=("propensity", "first"))
    groups["imputed"] = False
    if not logs.has_propensity or not len(groups):
        return groups
    per = groups.groupby(["segment", "version"], as_index=False, sort=True).agg(
        logged=("views", "sum"), covered=("propensity", "sum"))
    left = (1 - per["covered"]).clip(lower=0).to_numpy()
    gap = per[left > SUM_SLACK]
    share = 1 - gap["covered"].to_numpy()
    empty = pd.DataFrame({"segment": gap["segment"], "version": gap["version"], "shown": True,
                          "set": "", "views": gap["logged"].to_numpy() * share / (1 - share),
                          "propensity": share, "imputed": True})
    return pd.concat([groups, empty], ignore_index=True)


@dataclass(frozen=True)
class Baselines:
    """Per (segment, bundle) pair asked for: the baseline rate, its variance, and whether the
    holdout measured it."""

    rate: np.ndarray
    variance: np.ndarray
    measured: np.ndarray


def baselines(logs: ServedLogs, segment: np.ndarray, bundle: np.ndarray,
              econ: Economics) -> Baselines:
    """`econ` holds the instance's baseline rates of the same pairs (the fallback)."""
    held = logs.cells[~logs.cells["shown"]]
    pooled = held.groupby(["segment", "bundle"], sort=True)[["views", "purchases"]].sum()
    at = pooled.index.get_indexer(pd.MultiIndex.from_arrays([segment, bundle]))
    views = np.append(pooled["views"].to_numpy(np.float64), 0.0)[at]
    bought = np.append(pooled["purchases"].to_numpy(np.float64), 0.0)[at]
    measured = views > 0
    fallback = np.nan_to_num(econ.baseline, nan=0.0)
    rate = np.where(measured, bought / np.where(measured, views, 1.0), fallback)
    smooth = (bought + 0.5) / (views + 1.0)  # a cell with no purchases keeps a variance
    variance = np.where(measured, smooth * (1 - smooth) / np.where(measured, views, 1.0), 0.0)
    return Baselines(rate, variance, measured)


def binomial_variance(views: np.ndarray, purchases: np.ndarray) -> np.ndarray:
    """Var(purchases) of a cell, `n t (1 - t)` at the smoothed rate `t = (y + 0.5) / (n + 1)`,
    so that a cell with no purchases (or all) still counts its uncertainty."""
    t = (purchases + 0.5) / (views + 1.0)
    out: np.ndarray = views * t * (1 - t)
    return out
