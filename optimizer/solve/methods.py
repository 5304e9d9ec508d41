"""The names a solve is asked for by: its method, its MIP backend and where the
decomposition runs. The CLI's choices and the API's validation come from these; the module
is light, so that parsing a command line loads no solver."""

from __future__ import annotations

from enum import StrEnum


class Method(StrEnum):
    AUTO = "auto"  # LP-guided up to 400,000 candidates, the decomposition above
    EXACT = "exact"  # the whole MIP to the backend
    LP = "lp"  # LP-guided at any size
    DECOMPOSE = "decompose"  # Lagrangian decomposition


class Solver(StrEnum):
    """The MIP backends (`optimizer.backends.get_backend`)."""

    HIGHS = "highs"
    CBC = "cbc"


class Where(StrEnum):
    """Where the decomposition's segment step runs."""

    LOCAL = "local"
    DASK = "dask"


# The most of a segment's views that exploration sets may take (`SolveOptions.explore`):
# beyond half, exploring a segment is no longer the exception.
MAX_EXPLORE = 0.5
