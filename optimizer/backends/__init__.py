"""MIP backends: each solves a `MilpProblem` (arrays) and returns a `MilpSolution`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import scipy.sparse as sp


class Termination(StrEnum):
    OPTIMAL = "optimal"  # proven within the requested gap
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"  # stopped by the clock; x holds the incumbent, if any
    INTERRUPTED = "interrupted"  # stopped by the caller (a cancel); x holds the incumbent
    CONVERGED = "converged"  # the decomposition: plan and bound met within the gap
    ERROR = "error"



STOPPED = frozenset({Termination.TIME_LIMIT, Termination.INTERRUPTED})  # x: the incumbent, if any


@dataclass(frozen=True)
class MilpProblem:
    objective: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # bool per column
    maximize: bool = True
    start: np.ndarray | None = None  # a feasible point to start from (a warm start), if known
    row_family: np.ndarray | None = None  # int8 Family per row, where the builder knows it
    # The leading columns that are candidates (None: every column). Columns after them are
    # what a reduction added (takes, change flags, slacks); `chosen` maps a point back.
    choices: int | None = None

    def chosen(self, x: np.ndarray) -> np.ndarray:
        """Per candidate column: whether the point `x` picks it."""
        return np.asarray(x[: self.choices] > 0.5)

    def added(self, x: np.ndarray) -> np.ndarray:
        """The values of the columns after the candidates'."""
        return np.asarray(x[len(self.objective) if self.choices is None else self.choices:])


@dataclass(frozen=True)
class Progress:
    """A snapshot while a solve runs, in the problem's own objective sense."""

    objective: float | None  # best plan so far
    bound: float | None  # proven bound
    gap: float | None
    elapsed: float


@dataclass(frozen=True)
class Limits:
    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    # Called while the solve runs (by backends that can); returning True stops it.
    progress: Callable[[Progress], bool] | None = None
    # Called with each improved solution vector (by backends that can).
    on_solution: Callable[[np.ndarray], None] | None = None


@dataclass(frozen=True)
class MilpSolution:
    termination: Termination
    x: np.ndarray | None  # None when no feasible point was found
    bound: float | None  # proven bound on the optimum, in the problem's sense
    log_tail: tuple[str, ...] = ()
    message: str = ""


Backend = Callable[[MilpProblem, Limits], MilpSolution]


def get_backend(name: str) -> Backend:
    if name == "highs":
        from optimizer.backends.highs import solve_highs

        return solve_highs
    if name == "cbc":
        from optimizer.backends.cbc import solve_cbc

        return solve_cbc
    raise ValueError(f"solver: must be 'highs' or 'cbc', got {name!r}")


def tail(text: str, lines: int = 40) -> tuple[str, ...]:
    return tuple(text.splitlines()[-lines:])
