"""Audiences and channels (spec section 8): who meets whom where, and rows 8-9.

Rows 8-9 (an audience's frequency and repeat caps) count offers shown, so a candidate's
coefficient depends on its segment (views, audience) and, for the repeat cap, on its
bundle, not on its take probability; they are local to an audience's few segments and are
written on the candidates. Row 10 (a channel's capacity) spans every segment met in the
channel: it is a coupling row on the channel's impressions column
(`optimizer.formulation.coupling`, `Candidates.usage_entries`). The contact cost enters
each candidate's value (`optimizer.formulation.candidates.expand`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.formulation.rows import Rows
from optimizer.model.families import Family
from optimizer.model.instance import Instance

# row keys: subject * KINDS + kind, so that rows of a subset and of the rest meet by key
_FREQUENCY, _REPEAT = 0, 1
KINDS = 2
_FAMILY = np.array([Family.FREQUENCY_CAP, Family.REPEAT_CAP], np.int8)


@dataclass(frozen=True)
class Contacts:
    """Per segment its audience and channel; per audience and channel their limits."""

    audience: np.ndarray  # int64 per segment: row of instance.audiences, -1 for none
    channel: np.ndarray  # int64 per segment: row of instance.channels, -1 for none
    frequency_weight: np.ndarray  # per segment: V_s / N_a, the impressions per customer of one offer
    impression_cost: np.ndarray  # per segment: cost per impression of its channel (0 for none)
    frequency_cap: np.ndarray  # per audience: max_offers_per_customer, inf for none
    repeat_cap: np.ndarray  # per audience: max_repeats, inf for none
    capacity: np.ndarray  # per channel: capacity, inf for none
    n_bundles: int

    @classmethod
    def of(cls, instance: Instance) -> Contacts:
        segs, aud, chan = instance.segments, instance.audiences, instance.channels
        audience = pd.Index(aud["id"]).get_indexer(segs["audience"]).astype(np.int64)
        channel = pd.Index(chan["id"]).get_indexer(segs["channel"]).astype(np.int64)
        customers = np.append(aud["customers"].to_numpy(np.float64), np.inf)  # -1: none
        cost = np.append(chan["cost_per_impression"].to_numpy(np.float64), 0.0)
        return cls(
            audience=audience, channel=channel,
            frequency_weight=segs["views"].to_numpy(np.float64) / customers[audience],
            impression_cost=cost[channel],
            frequency_cap=_limit(aud["max_offers_per_customer"]),
            repeat_cap=_limit(aud["max_repeats"]), capacity=_limit(chan["capacity"]),
            n_bundles=len(instance.bundles))

    @property
    def audience_capped(self) -> bool:
        """Whether some audience has a frequency or repeat cap (rows 8-9)."""
        return bool(np.isfinite(self.frequency_cap).any() or np.isfinite(self.repeat_cap).any())

    def leader(self) -> np.ndarray:
        """Per segment, the first segment of its capped audience (itself without one): the
        unit a decomposition moves whole, since rows 8-9 tie an audience's segments."""
        n = len(self.audience)
        a = self.audience
        if not self.audience_capped:
            return np.arange(n)
        capped = (a >= 0) & (np.isfinite(self.frequency_cap[a]) | np.isfinite(self.repeat_cap[a]))
        first = np.full(len(self.frequency_cap) + 1, n, dtype=np.int64)
        np.minimum.at(first, np.where(capped, a, -1), np.arange(n))
        out: np.ndarray = np.where(capped, first[a], np.arange(n))
        return out

    def over_at_minimum(self, lo: np.ndarray) -> np.ndarray:
        """The audiences whose frequency cap even the least offers of their segments (`lo`,
        per segment) exceed: no plan exists (audience rows, sorted)."""
        least = np.bincount(self.audience[self.audience >= 0],
                            (lo * self.frequency_weight)[self.audience >= 0],
                            minlength=len(self.frequency_cap))
        cap = self.frequency_cap
        out: np.ndarray = np.flatnonzero(least > cap + 1e-9 * np.maximum(1.0, cap))
        return out

    def entries(self, segment: np.ndarray, bundle: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (row key, coefficient, candidate position) of rows 8-9 with a finite limit,
        for candidates given by segment and bundle."""
        if not self.audience_capped or len(segment) == 0:
            empty = np.zeros(0, np.int64)
            return empty, np.zeros(0), empty
        a = self.audience[segment]
        pos = np.arange(len(segment), dtype=np.int64)
        # a trailing inf: row -1 (no audience) has no limit
        freq = np.isfinite(np.append(self.frequency_cap, np.inf)[a])
        rep = np.isfinite(np.append(self.repeat_cap, np.inf)[a])
        keys = np.r_[a[freq] * KINDS + _FREQUENCY,
                     (a[rep] * self.n_bundles + bundle[rep]) * KINDS + _REPEAT]
        coef = np.r_[self.frequency_weight[segment[freq]], np.ones(int(rep.sum()))]
        return keys.astype(np.int64), coef, np.r_[pos[freq], pos[rep]]

    def limit(self, keys: np.ndarray) -> np.ndarray:
        kind, subject = keys % KINDS, keys // KINDS
        freq = kind == _FREQUENCY
        out = np.empty(len(keys))
        out[freq] = self.frequency_cap[subject[freq]]
        out[~freq] = self.repeat_cap[subject[~freq] // max(self.n_bundles, 1)]
        return out

    def usage(self, segment: np.ndarray, bundle: np.ndarray, share: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Keys of rows 8-9 and their left-hand sides for candidates shown to `share` of
        their views."""
        keys, coef, pos = self.entries(segment, bundle)
        uniq, row = np.unique(keys, return_inverse=True)
        return uniq, np.bincount(row, coef * share[pos], minlength=len(uniq))


def family_of(keys: np.ndarray) -> np.ndarray:
    out: np.ndarray = _FAMILY[keys % KINDS]
    return out


def keys_of(family: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """The row keys of rows given by family and subject (the inverse of the two below)."""
    kind = np.searchsorted(_FAMILY, family)  # _FAMILY is sorted
    out: np.ndarray = subject.astype(np.int64) * KINDS + kind
    return out


def subject_of(keys: np.ndarray) -> np.ndarray:
    """The audience (frequency cap), or audience x bundles + bundle (repeat cap)."""
    out: np.ndarray = keys // KINDS
    return out


def contact_rows(contacts: Contacts, segment: np.ndarray, bundle: np.ndarray,
                 fixed_keys: np.ndarray | None = None, fixed_usage: np.ndarray | None = None
                 ) -> Rows:
    """Rows 8-9 over the given candidates, less what candidates fixed elsewhere already use
    (`fixed_keys`, `fixed_usage` from `Contacts.usage`). A row the candidates cannot fill
    past its limit is left out: it cannot bind."""
    n = len(segment)
    keys, coef, pos = contacts.entries(segment, bundle)
    uniq, row = np.unique(keys, return_inverse=True)
    limit = contacts.limit(uniq)
    if fixed_keys is not None and fixed_usage is not None and len(fixed_keys):
        at = np.minimum(np.searchsorted(fixed_keys, uniq), len(fixed_keys) - 1)
        limit = limit - np.where(fixed_keys[at] == uniq, fixed_usage[at], 0.0)
    reach = np.bincount(row, coef, minlength=len(uniq))
    live = reach > limit * (1 + 1e-12)
    keep = live[row]
    renumber = np.cumsum(live) - 1
    matrix = sp.csr_matrix((coef[keep], (renumber[row[keep]], pos[keep])),
                           shape=(int(live.sum()), n))
    kept = uniq[live]
    return Rows(matrix, np.full(len(kept), -np.inf), limit[live], family_of(kept),
                subject_of(kept))


def _limit(column: pd.Series) -> np.ndarray:
    values = column.to_numpy(np.float64)
    out: np.ndarray = np.where(np.isnan(values), np.inf, values)
    return out
