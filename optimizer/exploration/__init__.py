"""Exploration sets (spec section 9): after the solve, a share of each segment's views sees
other variants of its cells, drawn by Thompson sampling from the estimates' uncertainty
(`uncertainty`, `thompson`), in the largest shares every coupling row allows (`mix`);
`run` turns the optimized plan into the served one."""
