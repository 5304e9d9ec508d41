"""The local problem of an audience (spec section 8), solved for all audiences at once.

A Lagrangian decomposition prices the global rows into per-candidate values, then needs the
best choice under the local rows: rows 1-3 of each segment, and the frequency cap (row 8)
and repeat cap (row 9) tying together the segments of an audience.

Row 8, exactly. Rows 1-3 leave a segment's slots independent, so its best n offers are its n
best slots: a concave table `prefix[n]`, n in lo..top (`top`, SegmentChooser's count, takes
every slot that adds value; more offers weigh more and are worth less). Row 8 is then a
knapsack over the audience's segments, sum w_s n_s <= F, solved by a dynamic program over
them that keeps each audience's Pareto frontier of (weight, value) partial choices. It is
exact: a partial choice beaten by one of no more weight and no less value can replace it in
any completion. Weights count whole units of F / 2**40, rounded up: sums and comparisons are
exact integers, (audience, weight) is one int64 sort key, a choice within F fits the units
(up to 1099 offers) and one within the units is within F (1 + 1e-9). Only audiences whose
unconstrained choice breaks row 8 need the program, which also drops the states that cannot
beat another state's completion at lo even when completed at top.

Row 9, greedily (relaxed in the bound). While a bundle is shown in more than k_a segments of
its audience, each round drops it from a segment that can spare an offer (above lo), the
least valuable first; where every holder is at lo, the k_a best stay. Dropping never breaks
row 8. Segments left below lo refill in rounds (never above their count): each takes its
best candidate in a free slot whose bundle is under its cap, best first per bundle. (Keeping
just the k_a best offers left 0.2% of a generated instance's audiences unrepaired.)
"""

from __future__ import annotations

import numpy as np

from optimizer.formulation.candidates import Candidates
from optimizer.formulation.segment_choice import SegmentChooser

TOLERANCE = 1e-9  # relative slack on the frequency cap
UNITS = 2.0**40  # a frequency cap in integer weight units
_SHIFT = 41  # F (1 + tol) < 2**41 units: a state's key is audience << 41 | weight
_BATCH = 1 << 21  # audiences per program run, so that keys stay below 2**62


class AudienceChooser:
    """A drop-in for `SegmentChooser` with rows 8 and 9 of every audience.

    After `choose(value)` (a value of -inf marks a candidate unavailable, as there):
    - `bound` is the max of sum(value[x]) over x meeting rows 1-3 and 8 (caps with a relative
      slack of 1e-9), so an upper bound with row 9 too. An audience whose lo's alone break
      its cap counts at its rows 1-3 optimum (the relaxation), never -inf.
    - `infeasible_audiences` (sorted audience rows) lists the audiences that got the least
      weight choice (all at lo, still over F), and those where refilling a segment to lo
      broke a repeat cap (the fewest offers needed were put back over their cap).
    - the mask meets rows 1-3 in every segment (lo counting only slots of finite value, as
      in SegmentChooser), and rows 8 and 9 in every audience not listed (`meets_caps`: none
      is). An audience with no repeat cap gets exactly its share of `bound`; with no
      audiences the mask is SegmentChooser's.
    """

    def __init__(self, cands: Candidates) -> None:
        self.seg = SegmentChooser(cands)
        self.n = len(cands)
        self.bound, self.infeasible_audiences, self.meets_caps = 0.0, np.zeros(0, np.int64), True
        c = cands.contacts
        self.repeat_cap, self.n_bundles = c.repeat_cap, max(c.n_bundles, 1)
        if self.n == 0:
            return
        self.cand_segment = cands.segment.astype(np.int64)
        self.cand_slot, self.n_slots = cands.slot_key, cands.n_slots
        self.seg_bounds = np.searchsorted(self.cand_segment, np.arange(len(cands.lo) + 1))
        self.segment_audience, self.lo_segment = c.audience, cands.lo
        rows = self.seg.segments  # grid row -> segment
        self.lo, self.hi = cands.lo[rows], cands.hi[rows]
        cand_aud = c.audience[self.cand_segment]
        repeat = (cand_aud >= 0) & np.isfinite(np.append(c.repeat_cap, np.inf)[cand_aud])
        self.has_repeat = bool(repeat.any())
        # row 9 key of a candidate: audience x bundles + bundle, -1 without a repeat cap
        self.rkey = np.where(repeat, cand_aud * self.n_bundles + cands.bundle, -1)

        # The program's layout: rows of capped audiences, audience by audience, longest first.
        row_aud = c.audience[rows]
        capped = np.flatnonzero(np.isfinite(np.append(c.frequency_cap, np.inf)[row_aud]))
        size = np.bincount(row_aud[capped], minlength=len(c.frequency_cap))
        self.dp_rows = capped[np.lexsort((capped, row_aud[capped], -size[row_aud[capped]]))]
        self.dp_start = np.flatnonzero(np.diff(row_aud[self.dp_rows], prepend=-1))
        self.dp_audience = row_aud[self.dp_rows][self.dp_start]
        self.dp_length = size[self.dp_audience]
        self.dp_owner = np.repeat(np.arange(len(self.dp_start)), self.dp_length)
        cap = c.frequency_cap[self.dp_audience]
        unit = np.where(cap > 0, cap, 1.0) / UNITS
        self.dp_cap = np.floor(cap * (1 + TOLERANCE) / unit).astype(np.int64)
        w = c.frequency_weight[rows[self.dp_rows]] / unit[self.dp_owner]
        # over the cap, one offer is as infeasible as any more: clip, so sums cannot overflow
        self.dp_weight = np.ceil(np.minimum(w, self.dp_cap[self.dp_owner] + 1.0)).astype(np.int64)

    def choose(self, value: np.ndarray) -> np.ndarray:
        selected = np.zeros(self.n, dtype=bool)
        self.bound, self.infeasible_audiences, self.meets_caps = 0.0, np.zeros(0, np.int64), True
        if self.n == 0:
            return selected
        s = self.seg
        best, first_hit = s.best_in_groups(value)
        grid = np.full((len(s.segments), s.width), -np.inf)
        grid[s.row, s.column] = best
        ranked = np.argsort(-grid, axis=1, kind="stable")
        slot_value = np.take_along_axis(grid, ranked, axis=1)
        finite = np.isfinite(slot_value)
        prefix = np.zeros((len(grid), s.width + 1))
        prefix[:, 1:] = np.cumsum(np.where(finite, slot_value, 0.0), axis=1)
        available = finite.sum(axis=1)
        lo = np.minimum(self.lo, available)
        # SegmentChooser's count: positive values come first, a slot past lo only while > 0
        top = np.minimum(np.minimum(available, self.hi), np.maximum(lo, (slot_value > 0).sum(1)))
        count, count_bound = top.copy(), top.copy()
        bad: list[np.ndarray] = []
        if len(self.dp_rows):
            at_lo = self.dp_weight * lo[self.dp_rows]
            least = np.add.reduceat(at_lo, self.dp_start)
            use = np.add.reduceat(self.dp_weight * top[self.dp_rows], self.dp_start)
            infeasible = least > self.dp_cap
            count[self.dp_rows[infeasible[self.dp_owner]]] = lo[self.dp_rows[infeasible[self.dp_owner]]]
            bad.append(self.dp_audience[infeasible])
            cum = np.cumsum(at_lo)  # least weight of the audience's rows after each row
            after = cum[self.dp_start + self.dp_length - 1][self.dp_owner] - cum
            over = np.flatnonzero((use > self.dp_cap) & ~infeasible)
            for part in range(0, len(over), _BATCH):
                flat, n = self._knapsack(over[part:part + _BATCH], prefix, lo, top, after)
                count[self.dp_rows[flat]] = count_bound[self.dp_rows[flat]] = n
        self.bound = float(prefix[np.arange(len(grid)), count_bound].sum())
        row, rank = np.nonzero(np.arange(s.width)[None, :] < count[:, None])
        chosen = first_hit[s.segment_first[row] + ranked[row, rank]]
        if self.has_repeat:
            chosen = self._repair(chosen, value, bad)
        selected[chosen] = True
        self.infeasible_audiences = np.unique(np.concatenate(bad)) if bad else np.zeros(0, np.int64)
        self.meets_caps = not len(self.infeasible_audiences)
        return selected

    def _knapsack(self, auds: np.ndarray, prefix: np.ndarray, lo: np.ndarray, top: np.ndarray,
                  after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per audience of `auds` (indices of the layout, longest first): the offer count of
        each of its rows (returned as layout positions and counts) maximizing value in the cap."""
        start, length, cap = self.dp_start[auds], self.dp_length[auds], self.dp_cap[auds]
        # Per audience, the value of the rows still to come at lo (a completion that every
        # state can afford) and at top (more than any completion gets): bounds that prune.
        first = np.cumsum(length) - length
        rows_all = self.dp_rows[np.repeat(start - first, length) + np.arange(int(length.sum()))]
        rest_lo = np.add.reduceat(prefix[rows_all, lo[rows_all]], first)
        rest_top = np.add.reduceat(prefix[rows_all, top[rows_all]], first)
        slack = 1e-9 * np.add.reduceat(np.abs(prefix[rows_all]).max(axis=1), first)  # rounding
        # states: audience (local index), weight, value; audiences stay in order
        s_aud, s_w, s_v = np.arange(len(auds)), np.zeros(len(auds), np.int64), np.zeros(len(auds))
        stages = []
        for k in range(int(length[0])):
            active = int(np.count_nonzero(length > k))
            m = int(np.searchsorted(s_aud, active))  # longest first: a prefix of the states
            flat = start[:active] + k
            rows, weight, rest = self.dp_rows[flat], self.dp_weight[flat], after[flat]
            per = (top[rows] - lo[rows] + 1)[s_aud[:m]]
            parent = np.repeat(np.arange(m), per)
            a = s_aud[parent]
            n = lo[rows][a] + np.arange(len(parent)) - np.repeat(np.cumsum(per) - per, per)
            w = s_w[parent] + n * weight[a]
            ok = w + rest[a] <= cap[a]  # the rest of the audience must still fit at its lo's
            parent, a, n, w = parent[ok], a[ok], n[ok], w[ok]
            v = s_v[parent] + prefix[rows[a], n]
            rest_lo[:active] -= prefix[rows, lo[rows]]
            rest_top[:active] -= prefix[rows, top[rows]]
            # out: a state whose best completion is below another state's completion at lo
            new_aud = np.r_[True, a[1:] != a[:-1]]  # states still in audience order
            reach = np.maximum.reduceat(v + rest_lo[a], np.flatnonzero(new_aud))
            good = v + rest_top[a] >= reach[np.cumsum(new_aud) - 1] - slack[a]
            a, v, w, n, parent = a[good], v[good], w[good], n[good], parent[good]
            order = np.argsort((a << _SHIFT) | w, kind="stable")
            a, w, v, parent, n = a[order], w[order], v[order], parent[order], n[order]
            # keep a state only if it beats every lighter one and ties of its own weight
            tie = np.flatnonzero(np.r_[True, (w[1:] != w[:-1]) | (a[1:] != a[:-1])])
            tie_best = np.repeat(np.maximum.reduceat(v, tie), np.diff(np.r_[tie, len(v)]))
            lighter = np.r_[-np.inf, _segmented_cummax(v, a)[:-1]]
            lighter[np.r_[True, a[1:] != a[:-1]]] = -np.inf
            keep = (v > lighter) & (v >= tie_best)
            s_aud, s_w, s_v = a[keep], w[keep], v[keep]
            stages.append((s_aud, parent[keep], n[keep]))
        # Back from the last stage: each audience ends at its heaviest (so best) state.
        flats, counts, cur = [], [], np.zeros(0, np.int64)
        for k in range(len(stages) - 1, -1, -1):
            s_aud, parent, n = stages[k]
            ending = np.arange(np.count_nonzero(length > k + 1), np.count_nonzero(length > k))
            cur = np.r_[cur, np.searchsorted(s_aud, ending, side="right") - 1]
            flats.append(start[:len(cur)] + k)
            counts.append(n[cur])
            cur = parent[cur]
        return np.concatenate(flats), np.concatenate(counts)

    def _repair(self, chosen: np.ndarray, value: np.ndarray, bad: list[np.ndarray]) -> np.ndarray:
        """Row 9 on a choice meeting rows 1-3 and 8: drop repeats, refill segments below lo."""
        seg, rkey, n_seg = self.cand_segment, self.rkey, len(self.lo_segment)
        count = np.bincount(seg[chosen], minlength=n_seg)
        target = np.minimum(self.lo_segment, count)  # never above what row 8 allowed
        held, drops = chosen[rkey[chosen] >= 0], []
        while len(held):  # each round drops at least one offer of a bundle over its cap
            keys, times = np.unique(rkey[held], return_counts=True)
            held = held[_lookup(keys, times - self._cap_of(keys), rkey[held]) > 0]
            if not len(held):
                break
            room = (count > target)[seg[held]]
            # a bundle held where a segment can spare it: its least valuable such offer goes,
            # one per segment a round (so that no segment is taken below lo)
            spare = held[room][np.lexsort((value[held[room]], rkey[held[room]]))]
            spare = spare[_rank_in_runs(rkey[spare]) == 0]
            spare = spare[np.lexsort((value[spare], seg[spare]))]
            spare = spare[_rank_in_runs(seg[spare]) == 0]
            # a bundle held only at lo: its best k_a stay, the rest go (refilled below)
            tight = held[~np.isin(rkey[held], rkey[held[room]])]
            tight = tight[np.lexsort((-value[tight], rkey[tight]))]
            tight = tight[_rank_in_runs(rkey[tight]) >= self._cap_of(rkey[tight])]
            out = np.r_[spare, tight]
            drops.append(out)
            count -= np.bincount(seg[out], minlength=n_seg)
            held = held[~np.isin(held, out)]
        if not drops:
            return chosen
        dropped = np.concatenate(drops)
        kept = chosen[~np.isin(chosen, dropped)]
        deficit = target - count
        need = np.flatnonzero(deficit > 0)
        first, size = self.seg_bounds[need], np.diff(self.seg_bounds)[need]
        pool = np.repeat(first - np.cumsum(size) + size, size) + np.arange(int(size.sum()))
        pool = pool[np.isfinite(value[pool])]
        # the offers that matter to the refill: those of the audiences being refilled
        local = kept[np.isin(self.segment_audience[seg[kept]], self.segment_audience[need])]
        while len(pool):  # each round fills at least one slot
            used_keys, used = np.unique(rkey[local], return_counts=True)
            pool = pool[(deficit[seg[pool]] > 0) & ~self._taken(pool, local)]
            offer = pool[self._cap_of(rkey[pool]) > _lookup(used_keys, used, rkey[pool])]
            if not len(offer):
                break
            offer = offer[np.lexsort((-value[offer], seg[offer]))]
            offer = offer[_rank_in_runs(seg[offer]) == 0]  # each segment's best
            offer = offer[np.lexsort((-value[offer], rkey[offer]))]
            left = self._cap_of(rkey[offer]) - _lookup(used_keys, used, rkey[offer])
            taken = offer[_rank_in_runs(rkey[offer]) < left]
            kept, local = np.r_[kept, taken], np.r_[local, taken]
            deficit[seg[taken]] -= 1
        short = deficit > 0
        if short.any():  # put back the fewest, best dropped offers in still free slots
            back = dropped[short[seg[dropped]]]
            back = back[~self._taken(back, local)]
            back = back[np.lexsort((-value[back], seg[back]))]
            kept = np.r_[kept, back[_rank_in_runs(seg[back]) < deficit[seg[back]]]]
            bad.append(np.unique(self.segment_audience[np.flatnonzero(short)]))
        return kept

    def _cap_of(self, rkey: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.repeat_cap[rkey // self.n_bundles]
        return out

    def _taken(self, cands: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """Whether each candidate's (segment, slot) is already held by a kept offer."""
        seg, slot = self.cand_segment, self.cand_slot
        return np.isin(seg[cands] * self.n_slots + slot[cands], seg[kept] * self.n_slots + slot[kept])


def _rank_in_runs(sorted_key: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal keys."""
    index = np.arange(len(sorted_key))
    start = np.diff(sorted_key, prepend=sorted_key[:1] - 1) != 0
    out: np.ndarray = index - np.maximum.accumulate(np.where(start, index, 0))
    return out


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    """counts[keys == query], 0 where the query is absent (keys sorted)."""
    keys, counts = np.r_[keys, np.iinfo(np.int64).max], np.r_[counts, 0]  # a sentinel
    at = np.searchsorted(keys, query)
    out: np.ndarray = np.where(keys[at] == query, counts[at], 0)
    return out


def _segmented_cummax(v: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running max of v within runs of equal `group`, by doubling (log of the longest run)."""
    out = v.copy()
    d = 1
    while d < len(out):
        same = group[d:] == group[:-d]
        if not same.any():  # every run is at most d long: done
            break
        np.maximum(out[d:], np.where(same, out[:-d], -np.inf), out=out[d:])
        d *= 2
    return out
