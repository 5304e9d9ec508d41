"""The per-segment problem, solved exactly for all segments at once.

Under the structure rows alone (one variant per bundle, one bundle per exclusion group,
lo_eff..hi offers), segments are independent and the optimum is greedy: the best variant
of each slot, then the best slots, at least lo_eff of them and at most hi, taking a slot
beyond lo_eff only while it adds value. With multipliers on the coupling rows folded
into `value`, this is the Lagrangian subproblem of a decomposition.
"""

from __future__ import annotations

import numpy as np

from optimizer.candidates import Candidates


class SegmentChooser:
    """Sorts the candidates once by (segment, slot); each `choose` is then O(n) plus a
    sort of at most a few dozen slots per segment, done as one padded 2-D sort."""

    def __init__(self, cands: Candidates) -> None:
        self.n = len(cands)
        self.lo, self.hi = cands.lo, cands.hi
        if self.n == 0:
            return
        n_slots = int(cands.slot_key.max()) + 1
        key = cands.segment.astype(np.int64) * n_slots + cands.slot_key
        self.order = np.argsort(key, kind="stable")
        sorted_key = key[self.order]
        self.starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        self.lengths = np.diff(np.r_[self.starts, self.n])
        self.group_segment = (sorted_key[self.starts] // n_slots).astype(np.int64)
        first = np.flatnonzero(np.r_[True, self.group_segment[1:] != self.group_segment[:-1]])
        per_segment = np.diff(np.r_[first, len(self.group_segment)])
        self.column = np.arange(len(self.group_segment)) - np.repeat(first, per_segment)
        self.width = int(per_segment.max())
        self.segments = self.group_segment[first]
        self.segment_first = first  # first group of each segment row of the grid
        self.row = np.repeat(np.arange(len(first)), per_segment)
        self.positions = np.arange(self.n)
        self.group_of = np.empty(self.n, dtype=np.int64)  # candidate -> its (segment, slot)
        self.group_of[self.order] = np.repeat(np.arange(len(self.starts)), self.lengths)

    def choose(self, value: np.ndarray) -> np.ndarray:
        selected = np.zeros(self.n, dtype=bool)
        if self.n == 0:
            return selected
        ordered = value[self.order]
        best = np.maximum.reduceat(ordered, self.starts)
        hit = ordered == np.repeat(best, self.lengths)
        first_hit = np.minimum.reduceat(np.where(hit, self.positions, self.n), self.starts)
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
        selected[self.order[first_hit[group_index]]] = True
        return selected


def best_choice(cands: Candidates, value: np.ndarray) -> np.ndarray:
    """A boolean selection over candidates maximizing `value` under the structure rows."""
    return SegmentChooser(cands).choose(value)
