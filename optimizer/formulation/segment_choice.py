"""The per-segment problem, solved exactly for all segments at once.

Under the structure rows alone (one variant per bundle, one bundle per exclusion group,
lo_eff..hi offers), segments are independent and the optimum is greedy: the best variant
of each slot, then the best slots, at least lo_eff of them and at most hi, taking a slot
beyond lo_eff only while it adds value. With multipliers on the coupling rows folded
into `value`, this is the Lagrangian subproblem of a decomposition.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from optimizer.formulation.candidates import Candidates


class SegmentChooser:
    """Candidates come ordered by (segment, slot) from `expand`; each `choose` is then O(n)
    plus a sort of at most a few dozen slots per segment, done as one padded 2-D sort."""

    def __init__(self, cands: Candidates) -> None:
        self.n = len(cands)
        self.lo, self.hi = cands.lo, cands.hi
        if self.n == 0:
            return
        seg, slot = cands.segment, cands.slot_key
        new_group = np.r_[True, (seg[1:] != seg[:-1]) | (slot[1:] != slot[:-1])]
        self.starts = np.flatnonzero(new_group)
        self.lengths = np.diff(np.r_[self.starts, self.n])
        self.group_segment = seg[self.starts].astype(np.int64)
        first = np.flatnonzero(np.r_[True, self.group_segment[1:] != self.group_segment[:-1]])
        per_segment = np.diff(np.r_[first, len(self.group_segment)])
        self.column = np.arange(len(self.group_segment)) - np.repeat(first, per_segment)
        self.width = int(per_segment.max())
        self.segments = self.group_segment[first]
        self.segment_first = first  # first group of each segment row of the grid
        self.row = np.repeat(np.arange(len(first)), per_segment)

    def best_in_groups(self, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per group: its best value and the first candidate reaching it."""
        best = np.maximum.reduceat(value, self.starts)
        hits = np.flatnonzero(value == np.repeat(best, self.lengths))
        group = np.searchsorted(self.starts, hits, side="right") - 1
        first = hits[np.r_[True, group[1:] != group[:-1]]]
        return best, first

    def choose(self, value: np.ndarray) -> np.ndarray:
        selected = np.zeros(self.n, dtype=bool)
        if self.n == 0:
            return selected
        best, first_hit = self.best_in_groups(value)
        grid = np.full((len(self.segments), self.width), -np.inf)
        grid[self.row, self.column] = best
        ranked = np.argsort(-grid, axis=1, kind="stable")
        slot_value = np.take_along_axis(grid, ranked, axis=1)
        rank = np.arange(self.width)[None, :]
        hi = self.hi[self.segments][:, None]
        lo = self.lo[self.segments][:, None]
        take = np.isfinite(slot_value) & (rank < hi) & ((slot_value > 0) | (rank < lo))
        rows, ranks = np.nonzero(take)
        group_index = self.segment_first[rows] + ranked[rows, ranks]
        selected[first_hit[group_index]] = True
        return selected


def best_choice(cands: Candidates, value: np.ndarray) -> np.ndarray:
    """A boolean selection over candidates maximizing `value` under the structure rows."""
    return SegmentChooser(cands).choose(value)


class Chooser(Protocol):
    bound: float  # after `choose`: an upper bound on the best choice's value
    meets_caps: bool  # after `choose`: whether its choice meets every audience's caps
    # after `choose`: `bound` split over the segments (an audience's share may sit on one of
    # its segments)
    segment_bound: np.ndarray

    def choose(self, value: np.ndarray) -> np.ndarray: ...


class SegmentBest:
    """`SegmentChooser`, which is exact: its choice's value is the bound."""

    def __init__(self, cands: Candidates) -> None:
        self.chooser = SegmentChooser(cands)
        self.segment, self.n_segments = cands.segment, len(cands.lo)
        self.bound = 0.0
        self.segment_bound: np.ndarray = np.zeros(self.n_segments)
        self.meets_caps = not cands.contacts.audience_capped  # it ignores them

    def choose(self, value: np.ndarray) -> np.ndarray:
        chosen = self.chooser.choose(value)
        self.segment_bound = np.bincount(self.segment[chosen], value[chosen],
                                         minlength=self.n_segments)
        self.bound = float(value[chosen].sum())
        return chosen
