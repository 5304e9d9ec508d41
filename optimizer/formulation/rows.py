"""Linear rows on the candidates, tagged with their constraint family and subject."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


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
