"""From instance to arrays: the candidate table, coupling rows, the per-segment choice and
the MIP and LP built from them."""
