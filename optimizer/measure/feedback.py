"""Served logs expanded into one round per view, in the Open Bandit Pipeline's arrays
(`reward`, `action`, `pscore`, `action_dist`, `estimated_rewards_by_reg_model`, `position`),
so that its estimators can be run on exactly what `off_policy` estimates from.

Within a group (the views of one served set), the takes of each offer go to its first views
and its charge (displaced baseline margin and contact cost) to the views it was shown to: the
rewards sum to the group's, which is all the linear estimators see. Views served an empty set
are not logged; the expansion needs them to be whole, so the logs' propensities must leave
whole numbers of them (every segment's sets and holdout summing to 1 leaves none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.measure.actions import Bandit, bandit
from optimizer.measure.logs import read_served
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan


def bandit_feedback(logs: pd.DataFrame, instance: Instance, target: Plan, *,
                    holdout: float | None = None, name: str = "logs") -> dict[str, np.ndarray]:
    h = instance.policy.holdout_fraction if holdout is None else holdout
    b = bandit(read_served(logs, instance, None, name, require=("set", "propensity")),
               instance, target, h)
    views = b.groups["views"].to_numpy(np.float64)
    whole = np.round(views)
    if not np.allclose(views, whole, rtol=0, atol=1e-6):
        raise InputError([Issue(name, "must leave a whole number of views served an empty set "
                                "in every segment to be expanded into rounds",
                                value_text=f"{views.sum() - np.floor(views).sum():.3f} views "
                                "in fractions")])
    count = whole.astype(np.int64)
    start = np.cumsum(count) - count
    group = np.repeat(np.arange(len(count)), count)
    segment_row, segments = _segment_rows(b, group)
    return {"reward": _rewards(b, start, int(count.sum())),
            "action": b.groups["action"].to_numpy(np.int64)[group],
            "pscore": b.groups["pscore"].to_numpy(np.float64)[group],
            "action_dist": _per_segment(b.target, segments, "prob", b.n_actions)[segment_row],
            "estimated_rewards_by_reg_model": _model(b, segments)[segment_row],
            "position": np.zeros(len(group), dtype=np.int64)}


def _first(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The rounds `start[j], ..., start[j] + count[j] - 1` of every j, one after the other."""
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    out: np.ndarray = np.repeat(start, count) + within
    return out


def _rewards(b: Bandit, start: np.ndarray, n: int) -> np.ndarray:
    cells = b.cells
    at = start[cells["group"].to_numpy()]
    takes = cells["purchases"].to_numpy(np.int64)
    shown = cells["views"].to_numpy(np.int64)
    reward = np.zeros(n)
    np.add.at(reward, _first(at, takes), np.repeat(cells["margin"].to_numpy(), takes))
    np.add.at(reward, _first(at, shown), -np.repeat(cells["charge"].to_numpy(), shown))
    return reward


def _segment_rows(b: Bandit, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    segments = np.unique(b.groups["segment"].to_numpy())
    row = np.searchsorted(segments, b.groups["segment"].to_numpy())
    return row[group], segments


def _per_segment(table: pd.DataFrame, segments: np.ndarray, column: str, n_actions: int) -> np.ndarray:
    """(segments, actions, 1): `column` of each (segment, action) row, 0 elsewhere."""
    out = np.zeros((len(segments), n_actions, 1))
    row = np.searchsorted(segments, table["segment"].to_numpy())
    keep = (row < len(segments)) & (segments[np.minimum(row, len(segments) - 1)] ==
                                     table["segment"].to_numpy())
    out[row[keep], table["action"].to_numpy()[keep], 0] = table[column].to_numpy()[keep]
    return out


def _model(b: Bandit, segments: np.ndarray) -> np.ndarray:
    """q(s, a) for the target's actions and the logged ones of each segment."""
    logged = b.groups[["segment", "action", "q"]].drop_duplicates(["segment", "action"])
    both = pd.concat([logged, b.target[["segment", "action", "q"]]], ignore_index=True)
    return _per_segment(both.drop_duplicates(["segment", "action"]), segments, "q", b.n_actions)
