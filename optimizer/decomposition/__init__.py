"""Lagrangian decomposition: the dual, the per-segment oracles (local, Dask), column
generation, the LP-guided repair and recovery of a feasible plan."""
