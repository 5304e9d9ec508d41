"""The vectorized cell fits (optimizer.estimation.glm) from a cold start reach each cell's
optimum: the gradient vanishes on free parameters and points outward at a bound, with or
without a prior, however many Newton steps each cell needs (cells stop on their own)."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.estimation.glm import Rows, fit_cells, sigmoid


def _rows(seed: int, cells: int) -> Rows:
    rng = np.random.default_rng(seed)
    per_cell = rng.integers(1, 5, cells)
    cell = np.repeat(np.arange(cells), per_cell)
    discount = rng.choice([0.0, 0.05, 0.1, 0.2], len(cell))
    n = rng.integers(1, 400, len(cell)).astype(np.float64)
    truth = rng.normal(-3, 2, cells)[cell] + rng.uniform(0, 8, cells)[cell] * discount
    y = rng.binomial(n.astype(np.int64), sigmoid(truth)).astype(np.float64)
    y[cell % 7 == 0] = 0.0  # cells without a purchase: their take logit runs to its bound
    y[cell % 11 == 0] = n[cell % 11 == 0]  # cells where every view bought
    return Rows(cell, np.column_stack([np.ones(len(cell)), discount]), np.zeros(len(cell)), n, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("prior", [False, True])
def test_every_cell_reaches_its_optimum_from_a_cold_start(seed: int, prior: bool) -> None:
    cells = 400
    rows = _rows(seed, cells)
    lower, upper = np.array([-15.0, 0.0]), np.array([15.0, 60.0])
    mean = np.tile([-2.0, 1.0], (cells, 1)) if prior else None
    precision = np.array([0.5, 0.1]) if prior else None
    fit = fit_cells(rows, cells, np.zeros((cells, 2)), lower, upper, mean, precision)
    mu = sigmoid(np.einsum("rp,rp->r", rows.x, fit.theta[rows.cell]))
    grad = np.column_stack([np.bincount(rows.cell, (rows.y - rows.n * mu) * rows.x[:, j],
                                        minlength=cells) for j in range(2)])
    if prior:
        grad -= precision * (fit.theta - mean)
    at_lower = fit.theta <= lower + 1e-9
    at_upper = fit.theta >= upper - 1e-9
    free = ~(at_lower | at_upper)
    scale = np.bincount(rows.cell, rows.n, minlength=cells)[:, None] * np.ones((1, 2))
    assert np.all(np.abs(grad[free]) <= 1e-5 * scale[free])
    assert np.all(grad[at_lower] <= 1e-5 * scale[at_lower])  # it would go further down
    assert np.all(grad[at_upper] >= -1e-5 * scale[at_upper])
    assert at_lower[:, 0].any() or prior  # the cells without a purchase reached the bound
    assert np.all(np.isfinite(fit.cov)) and np.all(fit.cov[:, 0, 0] > 0)
