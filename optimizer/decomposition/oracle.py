"""The per-segment step of the decomposition, behind one interface wherever candidates live.

An oracle holds candidates (here, all in this process; `optimizer.decomposition.distributed` spreads
them over a Dask cluster). Given one price per usage column (objective units per expected
take of a variant, or per impression in a channel) every segment (with audience caps,
every audience) picks its best offers; the oracle returns only aggregates: a bound on the
adjusted value of the best choice, the plain value of the choice made, and its usage
per column. It also
remembers which segments changed their choice while tracking is on: those are the
contested segments a recovery MIP re-decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from optimizer.decomposition.alone import RowLimited
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.choice import chooser_for
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.segment_choice import Chooser


@dataclass(frozen=True)
class Evaluation:
    adjusted: float  # sum over the chosen candidates of value less their usage at the prices
    objective: float  # sum over the chosen candidates of value
    takes: np.ndarray  # per usage column: the chosen candidates' takes (or impressions)
    meets_caps: bool = True  # the choice meets every audience's caps (rows 8-9)


CHOICES_KEPT = 2  # the plan steps after the search ask for the same two prices' choices


@dataclass(frozen=True)
class Choice:
    """Every unit's choice at one price: the chosen candidates (read-only), a bound on their
    priced value, and the audiences whose caps the choice breaks (None: no audience step,
    so any unit may break them)."""

    positions: np.ndarray
    bound: float
    meets_caps: bool
    broken_audiences: np.ndarray | None


class Oracle(Protocol):
    n_columns: int  # prices and usage are per usage column (`Candidates.usage_entries`)
    lo: np.ndarray  # per segment: lo_eff

    def evaluate(self, price: np.ndarray, track: bool = False) -> Evaluation: ...

    def max_takes(self) -> np.ndarray: ...

    def reset_tracking(self) -> None: ...

    def contested(self) -> np.ndarray:
        """Segments (rows of instance.segments) whose choice changed while tracking."""
        ...

    def load(self, price: np.ndarray, row_weight: np.ndarray) -> np.ndarray:
        """Per segment: `row_weight`-weighted takes of its choice at `price` (for ranking)."""
        ...

    def chosen(self, price: np.ndarray, exclude: np.ndarray | None = None) -> Candidates:
        """The candidates chosen at `price`, leaving out the segments in `exclude`."""
        ...

    def of_segments(self, segments: np.ndarray) -> Candidates:
        """Every candidate of the given segments."""
        ...

    def compare(self, price_a: np.ndarray, price_b: np.ndarray, K: sp.csr_matrix
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Segments whose choice differs at the two prices; for each, the value it loses and
        the usage of each row of K (per take) it sheds, moving from a's choice to b's; and
        the usage of every row by a's whole choice."""
        ...

    def mixed(self, price_a: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]) -> Candidates:
        """The choice at price_a, except for the segments of each (price, segments) move."""
        ...


class LocalOracle:
    """All candidates in this process.

    "Segments" in this interface are units moved whole: a segment, or (with audience caps)
    every segment of its audience, named by the audience's first segment
    (`Contacts.leader`): a mix of two choices that meet rows 8-9 meets them per audience.
    With `rows`, a unit whose choice alone overdraws one of them chooses again within it
    (`optimizer.decomposition.alone`)."""

    def __init__(self, cands: Candidates, chooser: Chooser | None = None,
                 rows: VariantRows | None = None) -> None:
        self.cands = cands
        self.lo = cands.lo
        self.n_columns = cands.n_columns
        self.takes = cands.takes
        self.segment_columns = cands.segment_columns()
        # groups found once, reused per price (and by a caller that already has them)
        self.chooser = chooser or chooser_for(cands)
        if rows is not None:
            self.chooser = RowLimited(self.chooser, cands, rows)
        self.unit = cands.contacts.leader()[cands.segment]  # per candidate
        n_segments = len(cands.lo)
        self.signature: np.ndarray = np.zeros(n_segments)
        self.changed = np.zeros(n_segments, dtype=bool)
        self.tracking = False
        self.keep = 0  # how many of the latest evaluations' choices `recent` keeps
        self.recent: list[tuple[np.ndarray, np.ndarray]] = []  # (positions, broken_units())
        self.last = Choice(np.zeros(0, dtype=np.int64), 0.0, True, None)
        # the latest choices by price: at a million segments a choice takes 10 s, and the
        # repair and the master ask for the safe and the best prices' choices several times
        self._kept: list[tuple[bytes, Choice]] = []

    def choose(self, price: np.ndarray) -> np.ndarray:
        """Positions of the chosen candidates; `self.last` is this choice, its bound and
        the caps it breaks."""
        key = hashlib.blake2b(np.ascontiguousarray(price, dtype=np.float64).tobytes(),
                              digest_size=16).digest()
        for seen, choice in self._kept:
            if seen == key:
                self.last = choice
                return choice.positions
        adjusted = self.cands.value - self.cands.priced(price, self.takes)
        positions = np.flatnonzero(self.chooser.choose(adjusted))
        positions.flags.writeable = False  # shared by every caller of this price
        meets = self.chooser.meets_caps
        audiences = getattr(self.chooser, "infeasible_audiences", None)
        self.last = Choice(positions, self.chooser.bound, meets,
                           None if meets or audiences is None else np.array(audiences))
        self._kept = [*self._kept, (key, self.last)][-CHOICES_KEPT:]
        return positions

    def evaluate(self, price: np.ndarray, track: bool = False) -> Evaluation:
        chosen = self.choose(price)
        usage = self.cands.usage_of(chosen, takes=self.takes)
        value = float(self.cands.value[chosen].sum())
        if track:
            self._track(chosen)
        if self.keep:
            self.recent = [*self.recent, (chosen, self.broken_units())][-self.keep:]
        return Evaluation(self.last.bound, value, usage, self.last.meets_caps)

    def broken_units(self) -> np.ndarray:
        """Of the latest choice: the units (leader segments) whose choice breaks their caps."""
        if self.last.meets_caps:
            return np.zeros(0, dtype=np.int64)
        if self.last.broken_audiences is None:  # a chooser blind to the caps: any unit may
            return np.unique(self.unit)
        contacts = self.cands.contacts
        return np.unique(contacts.leader()[np.isin(contacts.audience,
                                                   self.last.broken_audiences)])

    def _track(self, chosen: np.ndarray) -> None:
        signature = np.bincount(self.unit[chosen], fingerprint(chosen),
                                minlength=len(self.signature))
        if self.tracking:
            self.changed |= signature != self.signature
        self.signature, self.tracking = signature, True

    def reset_tracking(self) -> None:
        self.changed[:] = False
        self.tracking = False

    def contested(self) -> np.ndarray:
        return np.flatnonzero(self.changed)

    def max_takes(self) -> np.ndarray:
        out = np.zeros(self.n_columns)
        np.maximum.at(out, self.cands.variant, self.takes)
        on = self.segment_columns >= 0  # a channel's column: one offer to a whole segment
        np.maximum.at(out, self.segment_columns[on], self.cands.segment_views[on])
        return out

    def load(self, price: np.ndarray, row_weight: np.ndarray) -> np.ndarray:
        chosen = self.choose(price)
        weight = self.cands.subset(chosen).priced(row_weight)
        out: np.ndarray = np.bincount(self.unit[chosen], weight, minlength=len(self.signature))
        return out

    def chosen(self, price: np.ndarray, exclude: np.ndarray | None = None) -> Candidates:
        chosen = self.choose(price)
        if exclude is not None and len(exclude):
            chosen = chosen[~np.isin(self.unit[chosen], exclude)]
        return self.cands.subset(chosen)

    def of_segments(self, segments: np.ndarray) -> Candidates:
        return self.cands.subset(np.flatnonzero(np.isin(self.unit, segments)))

    def compare(self, price_a: np.ndarray, price_b: np.ndarray, K: sp.csr_matrix
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        sig_a, value_a, use_a, _ = self.per_segment(price_a, K)
        sig_b, value_b, use_b, _ = self.per_segment(price_b, K)
        differ = np.flatnonzero(sig_a != sig_b)
        shed = np.asarray((use_a[:, differ] - use_b[:, differ]).todense()).T
        return differ, value_a[differ] - value_b[differ], shed, np.asarray(use_a.sum(axis=1)).ravel()

    def per_segment(self, price: np.ndarray, K: sp.csr_matrix, priced_at: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
        """Per unit, of its choice at `price`: a signature (equal for equal choices), the
        value, the usage of each row of K (rows x units), and its usage priced at
        `priced_at` (zeros without it)."""
        n = len(self.signature)
        chosen = self.choose(price)
        unit = self.unit[chosen]
        signature = np.bincount(unit, fingerprint(chosen), minlength=n)
        value = np.bincount(unit, self.cands.value[chosen], minlength=n)
        cost = np.zeros(n) if priced_at is None else \
            np.bincount(unit, self.cands.subset(chosen).priced(priced_at), minlength=n)
        return signature, value, sp.csr_matrix(self.usage_by(chosen, unit, n, K)), cost

    def usage_by(self, chosen: np.ndarray, owner: np.ndarray, n_owners: int,
                 K: sp.csr_matrix) -> sp.csc_matrix:
        """The usage of each row of K by the candidates `chosen`, summed per `owner`
        (rows x owners)."""
        return sp.csc_matrix(K @ self.cands.usage_by_owner(chosen, owner, n_owners, self.takes))

    def mixed(self, price_a: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]) -> Candidates:
        return self.cands.subset(self.mixed_positions(price_a, moves))

    def mixed_positions(self, price_a: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]
                        ) -> np.ndarray:
        """`mixed` as sorted positions in the candidate table."""
        level = np.full(len(self.signature), -1)
        for k, (_, segments) in enumerate(moves):
            level[segments] = k
        a = self.choose(price_a)
        parts = [a[level[self.unit[a]] < 0]]
        for k, (price, _) in enumerate(moves):
            chosen = self.choose(price)
            parts.append(chosen[level[self.unit[chosen]] == k])
        return np.sort(np.concatenate(parts))


def fingerprint(positions: np.ndarray) -> np.ndarray:
    """Per chosen candidate, a number whose sum over a unit tells its choices apart: the
    position alone ties where two offers of an audience swap for two whose positions have
    the same sum (seen on 1 audience in 100), and so does any linear function of it; a
    sine of it breaks the tie."""
    out: np.ndarray = positions + 1.0 + 0.25 * np.sin(positions)
    return out
