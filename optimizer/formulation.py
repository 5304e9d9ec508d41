"""The MIP as arrays (spec section 3, constraints 1-7), built from the candidate table.

Rows are split into per-segment *structure* rows (families 1-3) and global
*coupling* rows (families 4-7), so a decomposition backend can relax the latter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from optimizer.backends import MilpProblem
from optimizer.candidates import Candidates
from optimizer.coupling import VariantRows, coupling_rows, live_rows
from optimizer.families import Family
from optimizer.model import Instance


@dataclass(frozen=True)
class Rows:
    """Linear rows `lower <= matrix @ x <= upper`, each tagged with its family and subject."""

    matrix: sp.csr_matrix
    lower: np.ndarray
    upper: np.ndarray
    family: np.ndarray  # int8 Family
    subject: np.ndarray  # int64: segment row (families 1-3), item row (4), -1 otherwise

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def normalized(self) -> Rows:
        """The same rows divided by their largest |coefficient|: same feasible set, sane scaling.

        Coupling rows mix coefficients near 1e7 (takes x yen) with unit ones, which
        HiGHS's presolve has been seen to mishandle; solvers get normalized rows.
        """
        empty = self.matrix.shape[0] == 0 or self.matrix.shape[1] == 0
        peak = np.zeros(len(self)) if empty else \
            np.asarray(abs(self.matrix).max(axis=1).todense()).ravel()
        scale = np.where(peak > 0, peak, 1.0)
        matrix = self.matrix.tocsr(copy=True)
        # Divide rather than multiply by 1/scale: a row of denormal coefficients stays finite.
        matrix.data = matrix.data / np.repeat(scale, np.diff(matrix.indptr))
        with np.errstate(over="ignore"):  # a finite limit far beyond the row's reach becomes inf
            return Rows(matrix, self.lower / scale, self.upper / scale, self.family, self.subject)

    @staticmethod
    def stack(parts: list[Rows], n_cols: int) -> Rows:
        parts = [p for p in parts if len(p)]
        if not parts:
            empty = np.zeros(0)
            return Rows(sp.csr_matrix((0, n_cols)), empty, empty, empty.astype(np.int8),
                        empty.astype(np.int64))
        return Rows(
            sp.vstack([p.matrix for p in parts], format="csr"),
            np.concatenate([p.lower for p in parts]),
            np.concatenate([p.upper for p in parts]),
            np.concatenate([p.family for p in parts]),
            np.concatenate([p.subject for p in parts]),
        )


@dataclass(frozen=True)
class Formulation:
    candidates: Candidates
    objective: np.ndarray
    structure: Rows
    coupling: Rows
    per_take: VariantRows  # the same coupling rows, per unit of takes of each variant

    @cached_property
    def rows(self) -> Rows:
        """Every row, coupling rows normalized: what the MIP backends are given (built once)."""
        return Rows.stack([self.structure, self.coupling.normalized()], len(self.objective))


def formulate(instance: Instance, cands: Candidates) -> Formulation:
    return formulate_rows(cands, live_coupling(instance, cands))


def formulate_rows(cands: Candidates, per_take: VariantRows,
                   fixed_usage: np.ndarray | None = None) -> Formulation:
    """The MIP over `cands` (all candidates, or the free ones of a recovery); coupling rows
    lose `fixed_usage`, what the candidates held fixed outside `cands` already use."""
    n = len(cands)
    structure = Rows.stack([_slot_rows(cands), _offer_rows(cands)], n)
    G = sp.csr_matrix(per_take.K[:, cands.variant] @ sp.diags(cands.takes))
    used = np.zeros(len(per_take)) if fixed_usage is None else fixed_usage
    coupling = Rows(G, per_take.lower - used, per_take.upper - used, per_take.family,
                    per_take.subject)
    return Formulation(cands, cands.value, structure, coupling, per_take)


def live_coupling(instance: Instance, cands: Candidates) -> VariantRows:
    """The coupling rows some candidate enters (every policy row; items of candidate bundles)."""
    used = np.bincount(cands.variant, minlength=len(cands.variants)) > 0
    return live_rows(coupling_rows(instance, cands.variants), used)


def _rows_from_keys(keys: np.ndarray, cols: np.ndarray, n: int, lower: np.ndarray,
                    upper: np.ndarray, family: np.ndarray, subject: np.ndarray) -> Rows:
    """One row per distinct key in `keys[cols]`, with coefficient 1 on those columns."""
    uniq, row = np.unique(keys, return_inverse=True)
    matrix = sp.csr_matrix((np.ones(len(cols)), (row, cols)), shape=(len(uniq), n))
    return Rows(matrix, lower, upper, family, subject)


def _slot_rows(c: Candidates) -> Rows:
    """Families 1-2: at most one candidate per (segment, bundle) and per (segment, group)."""
    n = len(c)
    n_slots = max(c.n_slots, 1)
    key = c.segment.astype(np.int64) * n_slots + c.slot_key
    uniq, count = np.unique(key, return_counts=True)
    crowded = uniq[count > 1]  # a single candidate is already bounded by x <= 1
    cols = np.flatnonzero(np.isin(key, crowded))
    k = len(crowded)
    slot = crowded % n_slots
    n_bundles = c.variants.n_bundles
    family = np.where(slot < n_bundles, Family.BUNDLE_ONCE, Family.EXCLUSION_GROUP).astype(np.int8)
    return _rows_from_keys(key[cols], cols, n, np.full(k, -np.inf), np.ones(k), family,
                           crowded // n_slots)


def _offer_rows(c: Candidates) -> Rows:
    """Family 3: lo_eff <= offers shown <= hi, where either side can bind."""
    present = np.bincount(c.segment, minlength=len(c.lo)) > 0  # a subset may hold some segments
    segs = np.flatnonzero(((c.lo > 0) | (c.showable > c.hi)) & present)
    cols = np.flatnonzero(np.isin(c.segment, segs))
    k = len(segs)
    return _rows_from_keys(c.segment[cols], cols, len(c), c.lo[segs].astype(np.float64),
                           c.hi[segs].astype(np.float64), np.full(k, Family.OFFERS_PER_VIEW,
                                                                  np.int8), segs.astype(np.int64))


def milp_problem(form: Formulation) -> MilpProblem:
    """The arrays a backend solves. Rows without coefficients (a coupling row whose
    candidates all have zero takes) are dropped when 0 meets them: some solvers crash on
    empty rows (CBC's clique strengthening does)."""
    rows = form.rows
    n = len(form.objective)
    empty = np.diff(rows.matrix.indptr) == 0
    keep = ~(empty & (rows.lower <= 0) & (rows.upper >= 0))
    return MilpProblem(form.objective, rows.matrix[keep], rows.lower[keep], rows.upper[keep],
                       np.ones(n), np.ones(n, dtype=bool))
