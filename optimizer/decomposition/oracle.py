"""The per-segment step of the decomposition, behind one interface wherever candidates live.

An oracle holds candidates (here, all in this process; `optimizer.decomposition.distributed` spreads
them over a Dask cluster). Given one price per variant (objective units per expected
take) every segment picks its best offers; the oracle returns only aggregates: the
adjusted and the plain value of the choice, and its expected takes per variant. It also
remembers which segments changed their choice while tracking is on: those are the
contested segments a recovery MIP re-decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from optimizer.formulation.candidates import Candidates
from optimizer.formulation.segment_choice import SegmentChooser


@dataclass(frozen=True)
class Evaluation:
    adjusted: float  # sum over the chosen candidates of value - takes * price[variant]
    objective: float  # sum over the chosen candidates of value
    takes: np.ndarray  # per variant: expected takes of the chosen candidates


class Oracle(Protocol):
    n_variants: int

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
    """All candidates in this process."""

    def __init__(self, cands: Candidates, chooser: SegmentChooser | None = None) -> None:
        self.cands = cands
        self.n_variants = len(cands.variants)
        self.takes = cands.takes
        # groups found once, reused per price (and by a caller that already has them)
        self.chooser = chooser or SegmentChooser(cands)
        n_segments = len(cands.lo)
        self.signature: np.ndarray = np.zeros(n_segments)
        self.changed = np.zeros(n_segments, dtype=bool)
        self.tracking = False

    def choose(self, price: np.ndarray) -> np.ndarray:
        """Positions of the chosen candidates."""
        adjusted = self.cands.value - self.takes * price[self.cands.variant]
        return np.flatnonzero(self.chooser.choose(adjusted))

    def evaluate(self, price: np.ndarray, track: bool = False) -> Evaluation:
        chosen = self.choose(price)
        takes = self.takes[chosen]
        var = self.cands.variant[chosen]
        value = float(self.cands.value[chosen].sum())
        if track:
            self._track(chosen)
        return Evaluation(value - float(takes @ price[var]), value,
                          np.bincount(var, takes, minlength=self.n_variants))

    def _track(self, chosen: np.ndarray) -> None:
        # positions are exact in float64; a changed choice changes the sum (up to rare ties)
        signature = np.bincount(self.cands.segment[chosen], chosen + 1.0,
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
        out = np.zeros(self.n_variants)
        np.maximum.at(out, self.cands.variant, self.takes)
        return out

    def load(self, price: np.ndarray, row_weight: np.ndarray) -> np.ndarray:
        chosen = self.choose(price)
        weight = self.takes[chosen] * row_weight[self.cands.variant[chosen]]
        out: np.ndarray = np.bincount(self.cands.segment[chosen], weight,
                                      minlength=len(self.signature))
        return out

    def chosen(self, price: np.ndarray, exclude: np.ndarray | None = None) -> Candidates:
        chosen = self.choose(price)
        if exclude is not None and len(exclude):
            chosen = chosen[~np.isin(self.cands.segment[chosen], exclude)]
        return self.cands.subset(chosen)

    def of_segments(self, segments: np.ndarray) -> Candidates:
        return self.cands.subset(np.flatnonzero(np.isin(self.cands.segment, segments)))

    def compare(self, price_a: np.ndarray, price_b: np.ndarray, K: sp.csr_matrix
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        sig_a, value_a, use_a, _ = self.per_segment(price_a, K)
        sig_b, value_b, use_b, _ = self.per_segment(price_b, K)
        differ = np.flatnonzero(sig_a != sig_b)
        shed = np.asarray((use_a[:, differ] - use_b[:, differ]).todense()).T
        return differ, value_a[differ] - value_b[differ], shed, np.asarray(use_a.sum(axis=1)).ravel()

    def per_segment(self, price: np.ndarray, K: sp.csr_matrix, priced_at: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
        """Per segment, of its choice at `price`: a signature (equal for equal choices), the
        value, the usage of each row of K (rows x segments), and its takes priced at
        `priced_at` (zeros without it)."""
        n = len(self.signature)
        chosen = self.choose(price)
        seg = self.cands.segment[chosen]
        signature = np.bincount(seg, chosen + 1.0, minlength=n)
        value = np.bincount(seg, self.cands.value[chosen], minlength=n)
        cost = np.zeros(n) if priced_at is None else \
            np.bincount(seg, self.takes[chosen] * priced_at[self.cands.variant[chosen]], minlength=n)
        spread = sp.csr_matrix((self.takes[chosen], (np.arange(len(chosen)), seg)),
                               shape=(len(chosen), n))
        return signature, value, sp.csr_matrix(K[:, self.cands.variant[chosen]] @ spread), cost

    def mixed(self, price_a: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]) -> Candidates:
        return self.cands.subset(self.mixed_positions(price_a, moves))

    def mixed_positions(self, price_a: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]
                        ) -> np.ndarray:
        """`mixed` as sorted positions in the candidate table."""
        level = np.full(len(self.signature), -1)
        for k, (_, segments) in enumerate(moves):
            level[segments] = k
        a = self.choose(price_a)
        parts = [a[level[self.cands.segment[a]] < 0]]
        for k, (price, _) in enumerate(moves):
            chosen = self.choose(price)
            parts.append(chosen[level[self.cands.segment[chosen]] == k])
        return np.sort(np.concatenate(parts))
