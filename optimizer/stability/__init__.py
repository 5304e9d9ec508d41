"""Yesterday's plan: the change reference, the warm start and the fallback that makes it
feasible today."""
