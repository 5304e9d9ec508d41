"""Split traffic (spec section 7): a fractional plan as weighted offer sets per segment.

A segment's choice polytope (at most one variant per slot, lo_eff..hi slots) is integral,
so every fractional point of it is a mix of valid sets. The mix is built on a line: lay
the segment's candidates end to end, each as an interval as long as its share, grouped by
slot; a threshold t in [0, 1) picks, for every integer k, the candidate whose interval
holds t + k. A slot's intervals are contiguous and sum to at most 1, so it is hit at most
once (one variant per slot); the number hit is floor or ceil of the total share, which lies
in lo_eff..hi because both are integers; and each candidate is hit for a share of the
thresholds equal to its length. The thresholds between consecutive interval ends give the
sets and their weights: at most one set more than the segment has fractional candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.formulation.candidates import Candidates

SHARE_TOL = 1e-9  # shares this close to 0 or 1 are taken as 0 or 1


@dataclass(frozen=True)
class OfferSets:
    """Weighted sets of candidates per segment; a segment's weights sum to 1.

    Set i holds the candidates `member[start[i]:start[i + 1]]` (positions in the plan's
    candidate table) and is shown to the share `weight[i]` of segment `segment[i]`'s views.
    Sets come ordered by segment. `explore` marks exploration sets (spec section 9,
    `optimizer.exploration`); None means none is.
    """

    segment: np.ndarray  # int64 per set: row of instance.segments
    weight: np.ndarray  # float64 per set
    start: np.ndarray  # int64, one more than there are sets
    member: np.ndarray  # int64: candidate positions
    explore: np.ndarray | None = None  # bool per set

    def __len__(self) -> int:
        return len(self.segment)

    @property
    def set_of_member(self) -> np.ndarray:
        out: np.ndarray = np.repeat(np.arange(len(self)), np.diff(self.start))
        return out

    @property
    def is_explore(self) -> np.ndarray:
        """Per set: whether it is an exploration set."""
        out: np.ndarray = np.zeros(len(self), dtype=bool) if self.explore is None else self.explore
        return out

    def shares(self, n_candidates: int) -> np.ndarray:
        """Per candidate: the total weight of the sets holding it (its marginal share)."""
        out: np.ndarray = np.bincount(self.member, self.weight[self.set_of_member],
                                      minlength=n_candidates)
        # weights that sum to 1 can add up to 1 + 1 ulp: a share is never above 1
        return np.minimum(out, 1.0)

    def split_segments(self) -> np.ndarray:
        """Segments served more than one set, exploration sets left out."""
        seg, count = np.unique(self.segment[~self.is_explore], return_counts=True)
        out: np.ndarray = seg[count > 1]
        return out


def offer_sets(cands: Candidates, share: np.ndarray) -> OfferSets:
    """The sets of a point `share` (per candidate, in [0, 1]) of every segment's choice polytope.

    Segments whose shares are all 0 or 1 get one set of weight 1. Candidates must be in
    (segment, slot) order, as `expand` and `Candidates.subset` give them.
    """
    share = _within_limits(cands, np.where(share < SHARE_TOL, 0.0,
                                           np.where(share > 1 - SHARE_TOL, 1.0, share)))
    share = np.where(share < SHARE_TOL, 0.0, share)
    n_segments = len(cands.lo)
    used = np.flatnonzero(share > 0)
    seg = cands.segment[used].astype(np.int64)
    length = share[used]
    fractional = np.zeros(n_segments, dtype=bool)
    fractional[seg[length < 1]] = True
    frac = fractional[seg]

    # integral segments: one set holding every candidate at share 1
    whole_seg = np.unique(seg[~frac])
    members_whole = used[~frac]

    # fractional segments: positions on the line, per segment from 0
    f_pos, f_seg, f_len = used[frac], seg[frac], length[frac]
    ends = np.cumsum(f_len)
    seg_first = np.r_[True, f_seg[1:] != f_seg[:-1]] if len(f_seg) else np.zeros(0, dtype=bool)
    offset = np.maximum.accumulate(np.where(seg_first, ends - f_len, 0.0)) if len(f_seg) else ends
    lo_end, hi_end = ends - f_len - offset, ends - offset  # interval [lo_end, hi_end)
    # thresholds: the fractional parts of every interval end, per segment, plus 0
    cut_seg = np.r_[np.unique(f_seg), f_seg]
    cut_t = np.r_[np.zeros(len(np.unique(f_seg))), np.mod(hi_end, 1.0)]
    cut_t = np.where(cut_t > 1 - SHARE_TOL, 0.0, cut_t)
    order = np.lexsort((cut_t, cut_seg))
    cut_seg, cut_t = cut_seg[order], cut_t[order]
    distinct = np.r_[True, (cut_seg[1:] != cut_seg[:-1]) | (cut_t[1:] - cut_t[:-1] > SHARE_TOL)] \
        if len(cut_seg) else np.zeros(0, dtype=bool)
    cut_seg, cut_t = cut_seg[distinct], cut_t[distinct]
    last = np.r_[cut_seg[1:] != cut_seg[:-1], True] if len(cut_seg) else np.zeros(0, dtype=bool)
    next_t = np.where(last, 1.0, np.r_[cut_t[1:], 1.0])
    weight = next_t - cut_t
    keep = weight > SHARE_TOL
    set_seg, set_t, set_w = cut_seg[keep], cut_t[keep], weight[keep]
    set_w = set_w / np.bincount(set_seg, set_w, minlength=n_segments)[set_seg]  # exact sum 1

    # membership: candidate j of segment s is in the set with threshold t when some integer k
    # puts t + k in [lo_end_j, hi_end_j): pair each set with its segment's candidates
    seg_sets = np.searchsorted(set_seg, f_seg, side="left"), np.searchsorted(set_seg, f_seg, "right")
    count = seg_sets[1] - seg_sets[0]
    cand_rep = np.repeat(np.arange(len(f_seg)), count)
    set_rep = np.repeat(seg_sets[0], count) + (np.arange(count.sum()) -
                                                 np.repeat(np.cumsum(count) - count, count))
    t = set_rep.astype(np.float64)
    t = set_t[set_rep] if len(set_rep) else t
    k = np.ceil(lo_end[cand_rep] - t - SHARE_TOL)
    hit = t + k < hi_end[cand_rep] - SHARE_TOL
    pair_set, pair_pos = set_rep[hit], f_pos[cand_rep[hit]]

    # every set, integral segments' first, then ordered by segment
    all_seg = np.r_[whole_seg, set_seg]
    all_w = np.r_[np.ones(len(whole_seg)), set_w]
    whole_index = np.searchsorted(whole_seg, seg[~frac])
    member_set = np.r_[whole_index, len(whole_seg) + pair_set]
    member_pos = np.r_[members_whole, pair_pos]
    order_sets = np.argsort(all_seg, kind="stable")
    rank = np.empty(len(order_sets), dtype=np.int64)
    rank[order_sets] = np.arange(len(order_sets))
    member_set = rank[member_set]
    by_set = np.lexsort((member_pos, member_set))
    member_set, member_pos = member_set[by_set], member_pos[by_set]
    start = np.r_[0, np.cumsum(np.bincount(member_set, minlength=len(all_seg)))]
    return OfferSets(all_seg[order_sets].astype(np.int64), all_w[order_sets], start.astype(np.int64),
                     member_pos.astype(np.int64))


def _within_limits(cands: Candidates, share: np.ndarray) -> np.ndarray:
    """Shares an LP solver returned may exceed a segment's limits by its tolerance (a slot's
    shares summing to 1 + 1e-8): on the line below, such a sum puts two of the slot's
    variants, or one offer too many, in a set. Each such segment's shares are divided by its
    largest excess, which moves no share by more than that tolerance."""
    seg, key = cands.segment.astype(np.int64), cands.slot_key
    n_segments = len(cands.lo)
    slot = np.cumsum(np.r_[True, (seg[1:] != seg[:-1]) | (key[1:] != key[:-1])]) - 1 \
        if len(seg) else np.zeros(0, dtype=np.int64)  # candidates come in (segment, slot) order
    worst = np.maximum(1.0, np.bincount(seg, share, minlength=n_segments) /
                       np.maximum(cands.hi, 1))
    np.maximum.at(worst, seg, np.bincount(slot, share)[slot])
    return share / worst[seg]
