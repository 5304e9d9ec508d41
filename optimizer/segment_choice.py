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


def best_choice(cands: Candidates, value: np.ndarray) -> np.ndarray:
    """A boolean selection over candidates maximizing `value` under the structure rows."""
    n = len(cands)
    if n == 0:
        return np.zeros(0, dtype=bool)
    n_slots = int(cands.slot_key.max()) + 1
    key = cands.segment.astype(np.int64) * n_slots + cands.slot_key
    order = np.lexsort((-value, key))
    head = np.ones(n, dtype=bool)
    head[1:] = key[order][1:] != key[order][:-1]
    best = order[head]  # the best variant of every (segment, slot)
    seg = cands.segment[best]
    ranked = np.lexsort((-value[best], seg))
    best, seg = best[ranked], seg[ranked]
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    counts = np.diff(np.r_[starts, len(seg)])
    rank = np.arange(len(seg)) - np.repeat(starts, counts)
    take = (rank < cands.hi[seg]) & ((value[best] > 0) | (rank < cands.lo[seg]))
    selected = np.zeros(n, dtype=bool)
    selected[best[take]] = True
    return selected
