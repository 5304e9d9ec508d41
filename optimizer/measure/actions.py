"""The bandit view of served logs: rounds (views), actions (offer sets) and rewards.

- An **action** is what a view was shown: its offer set's content, the set of (bundle,
  discount, perk) it holds, whatever the set's id in one plan or another. The holdout and
  an empty set show nothing: both are the empty action.
- A **round** is a view. The views of one served set (or one holdout) in one plan version
  are a **group**: same segment, action and propensity. The propensity of a round is the
  logging policy's probability of its action in its segment and version: the sum of the
  propensities of the version's sets with that content (and the holdout's, for the empty
  action), so two sets that show the same offers are one action.
- The **reward** of a view is its incremental margin against the holdout, as in spec
  section 3: for every offer it showed, `m` if taken, minus `baseline x m0` (the purchase at
  list price the offer displaces, at the holdout's baseline rate), minus the contact cost
  `c_s`. A view shown nothing earns 0.
- The **model** (the direct method's) is the instance's: `q(s, a) = sum over a's offers of
  (p x m - baseline x m0 - c_s)`, `p` the instance's take probability. A pair with no
  response in the instance takes the arm's take rate in the logs (0 if never logged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.measure.cells import baselines, served_views
from optimizer.measure.economics import economics
from optimizer.measure.logs import SERVED, ServedLogs
from optimizer.measure.plan_sets import plan_sets
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan

DISCOUNT_KEY = 1e9  # discounts compared as integers of 1e-9, as the logs' reader does
EMPTY: tuple[int, ...] = ()


@dataclass(frozen=True)
class Bandit:
    """Logged groups and the target policy, by positions.

    `groups`: one row per group: `segment`, `version`, `action`, `views`, `propensity` (of
    the group's set), `pscore` (of its action), `reward` (sum over its views), `reward_sq`
    (sum of squares), `q` (the model's value of its action), `target` (the target policy's
    probability of its action) and `dm` (the model's value of the target policy in its
    segment). `target`: one row per (segment, action) of the target policy with `prob` and
    `q`. `cells`: the shown cells with their `group`, per-take margin `margin`, per-view
    charge `charge` (displaced baseline margin and contact cost), list margin `m0` and
    baseline variance `beta_var`. `offers`: the target's offers per segment (`segment`,
    `bundle`, `prob` of a view being shown it, `m0`, `beta_var`).
    """

    groups: pd.DataFrame
    target: pd.DataFrame
    cells: pd.DataFrame
    offers: pd.DataFrame
    n_actions: int


def bandit(served: ServedLogs, instance: Instance, target: Plan, holdout: float) -> Bandit:
    """The logs' groups and the target policy (its sets by weight x (1 - holdout), the empty
    action `holdout`), actions coded over both by content."""
    groups = served_views(served).reset_index(drop=True)
    key = pd.MultiIndex.from_frame(groups[list(SERVED)])
    cells = served.cells[served.cells["shown"].to_numpy(bool)].reset_index(drop=True)
    cells["group"] = key.get_indexer(pd.MultiIndex.from_frame(cells[list(SERVED)]))
    sets = plan_sets(target, instance, path="target")
    sets = sets[sets["segment"].isin(np.unique(groups["segment"]))].reset_index(drop=True)
    variants = pd.MultiIndex.from_arrays([
        np.r_[cells["bundle"], sets["bundle"]],
        np.round(np.r_[cells["discount"], sets["discount"]] * DISCOUNT_KEY).astype(np.int64),
        np.r_[cells["perk"], sets["perk"]]])
    code, _ = pd.factorize(variants)
    logged_content = _contents(cells["group"].to_numpy(), code[:len(cells)], len(groups))
    real = (sets["bundle"] >= 0).to_numpy()
    set_key = sets["set_key"].to_numpy()
    keys, set_at = np.unique(set_key, return_inverse=True)
    target_content = _contents(set_at[real], code[len(cells):][real], len(keys))
    action, _ = pd.factorize(pd.Series([*logged_content, *target_content], dtype=object))
    groups["action"] = action[:len(groups)]
    per_set = sets.drop_duplicates("set_key").sort_values("set_key")
    policy = pd.DataFrame({"segment": per_set["segment"].to_numpy(),
                           "action": action[len(groups):],
                           "prob": per_set["weight"].to_numpy() * (1 - holdout)})
    model = _model(served, instance, cells, sets, real)
    logged, planned = model.iloc[:len(cells)], model.iloc[len(cells):].reset_index(drop=True)
    policy["q"] = np.bincount(set_at, weights=planned["q"].to_numpy(), minlength=len(keys))
    empty = _empty_action(logged_content, target_content, action)
    policy = _with_empty(policy, groups, holdout, empty)
    cells = cells.join(logged[["margin", "charge", "m0", "beta_var"]])
    offers = sets.loc[real, ["segment", "bundle"]].assign(
        prob=sets.loc[real, "weight"] * (1 - holdout), m0=planned.loc[real, "m0"].to_numpy(),
        beta_var=planned.loc[real, "beta_var"].to_numpy())
    return Bandit(_score(groups, cells, logged["q"].to_numpy(), policy), policy, cells,
                  offers.reset_index(drop=True), max(int(action.max(initial=-1)), empty) + 1)


def _contents(owner: np.ndarray, code: np.ndarray, n: int) -> list[tuple[int, ...]]:
    """Each owner's variant codes as a sorted tuple (EMPTY for an owner with none)."""
    order = np.lexsort((code, owner))
    bounds = np.searchsorted(owner[order], np.arange(n + 1))
    codes = code[order].tolist()
    return [tuple(codes[a:b]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(),
                                               strict=True)]


def _empty_action(logged: list[tuple[int, ...]], target: list[tuple[int, ...]],
                  action: np.ndarray) -> int:
    """The code of the empty action, or a new code when no group or set is empty."""
    everything = [*logged, *target]
    return int(action[everything.index(EMPTY)]) if EMPTY in everything else \
        int(action.max(initial=-1)) + 1


def _with_empty(policy: pd.DataFrame, groups: pd.DataFrame, holdout: float,
                empty: int) -> pd.DataFrame:
    """The target's empty action: its holdout share in every logged segment, and the whole
    of a logged segment the target plan serves no set; summed per (segment, action)."""
    segments = np.unique(groups["segment"])
    served = np.isin(segments, policy["segment"])
    extra = pd.DataFrame({"segment": segments, "action": empty,
                          "prob": np.where(served, holdout, 1.0), "q": 0.0})
    both = pd.concat([policy, extra], ignore_index=True)
    return both.groupby(["segment", "action"], as_index=False, sort=True).agg(
        prob=("prob", "sum"), q=("q", "first"))


def _model(served: ServedLogs, instance: Instance, cells: pd.DataFrame, sets: pd.DataFrame,
           real: np.ndarray) -> pd.DataFrame:
    """Per offer, for the logged cells then the target's set rows (zeros for an empty set's
    row): `q` (`p x m - baseline x m0 - c_s`), `margin` (m), `charge` (`baseline x m0 + c_s`,
    what a view shown the offer costs in any case), `m0` and `beta_var` (the variance of the
    pair's baseline rate)."""
    rows = pd.concat([cells[["segment", "bundle", "discount", "perk"]],
                      sets.loc[real, ["segment", "bundle", "discount", "perk"]]], ignore_index=True)
    s, b = rows["segment"].to_numpy(np.int64), rows["bundle"].to_numpy(np.int64)
    d, k = rows["discount"].to_numpy(np.float64), rows["perk"].to_numpy(np.int64)
    econ = economics(instance, s, b, d, k)
    prob = np.where(np.isnan(econ.prob), _logged_rate(served, s, b, d, k), econ.prob)
    base = baselines(served, s, b, econ)
    charge = base.rate * econ.list_margin + econ.contact
    found = pd.DataFrame({"q": prob * econ.margin - charge, "margin": econ.margin,
                          "charge": charge, "m0": econ.list_margin, "beta_var": base.variance})
    out = pd.DataFrame(0.0, index=np.arange(len(cells) + len(sets)), columns=found.columns)
    at = np.r_[np.arange(len(cells)), len(cells) + np.flatnonzero(real)]
    out.iloc[at] = found.to_numpy()
    return out


def _logged_rate(served: ServedLogs, s: np.ndarray, b: np.ndarray, d: np.ndarray,
                 k: np.ndarray) -> np.ndarray:
    shown = served.cells[served.cells["shown"].to_numpy(bool)]
    arm = ["segment", "bundle", "discount", "perk"]
    pooled = shown.groupby(arm, sort=True)[["views", "purchases"]].sum()
    at = pooled.index.get_indexer(pd.MultiIndex.from_arrays([s, b, d, k]))
    views = np.append(pooled["views"].to_numpy(np.float64), 0.0)[at]
    bought = np.append(pooled["purchases"].to_numpy(np.float64), 0.0)[at]
    return np.where(views > 0, bought / np.where(views > 0, views, 1.0), 0.0)


def _score(groups: pd.DataFrame, cells: pd.DataFrame, q_cells: np.ndarray,
           policy: pd.DataFrame) -> pd.DataFrame:
    """Per group: pscore, reward sums, q of its action, the target's probability and DM."""
    n = len(groups)
    g = cells["group"].to_numpy()
    views = groups["views"].to_numpy(np.float64)
    y, n_cell = cells["purchases"].to_numpy(np.float64), cells["views"].to_numpy(np.float64)
    margin, charge = cells["margin"].to_numpy(), cells["charge"].to_numpy()
    reward = np.bincount(g, weights=y * margin - n_cell * charge, minlength=n)
    rate = y / np.where(views[g] > 0, views[g], 1.0)
    within = np.bincount(g, weights=rate * (1 - rate) * margin**2, minlength=n)
    safe = np.where(views > 0, views, 1.0)
    out = groups.assign(
        reward=reward, reward_sq=views * within + reward**2 / safe,
        q=np.bincount(g, weights=q_cells, minlength=n),
        pscore=groups.groupby(["segment", "version", "action"])["propensity"].transform("sum"))
    keyed = policy.set_index(["segment", "action"])
    at = keyed.index.get_indexer(pd.MultiIndex.from_frame(out[["segment", "action"]]))
    out["target"] = np.where(at >= 0, np.append(keyed["prob"].to_numpy(), 0.0)[at], 0.0)
    dm = (policy["prob"] * policy["q"]).groupby(policy["segment"]).sum()
    out["dm"] = dm.reindex(out["segment"]).fillna(0.0).to_numpy()
    return out
