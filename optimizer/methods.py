"""The names a solve is asked for by: its method and where the decomposition runs (the
backends' names are `optimizer.backends.Solver`). The CLI's choices come from these."""

from __future__ import annotations

from enum import StrEnum


class Method(StrEnum):
    AUTO = "auto"  # LP-guided up to 400,000 candidates, the decomposition above
    EXACT = "exact"  # the whole MIP to the backend
    LP = "lp"  # LP-guided at any size
    DECOMPOSE = "decompose"  # Lagrangian decomposition


class Where(StrEnum):
    """Where the decomposition's segment step runs."""

    LOCAL = "local"
    DASK = "dask"
