"""A unit whose choice alone overdraws a row chooses again within it: the bound tightens and
stays a bound."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings

from optimizer.decomposition.oracle import LocalOracle
from optimizer.formulation.candidates import expand
from optimizer.formulation.milp import live_coupling
from optimizer.io import instance_from_document
from tests.bruteforce import best_objective
from tests.strategies import tiny_instances

POLICY = {"discount_ladder": [0], "min_offers_per_view": 0, "max_offers_per_view": 1,
          "min_margin_rate": 0.0, "allow_negative_uplift": False}


def _scarce_item() -> dict[str, Any]:
    """One segment whose best offer takes 50 of an item stocked 5: no plan can show it."""
    return {
        "format": "offeropt/instance@1", "name": "scarce", "policy": POLICY,
        "items": [{"id": "rare", "price": 1000.0, "cost": 400.0, "stock": 5.0},
                  {"id": "plain", "price": 500.0, "cost": 300.0, "stock": None}],
        "bundles": [{"id": "big", "kind": "upsell", "items": [{"item": "rare", "qty": 1}],
                     "discounts": [0]},
                    {"id": "small", "kind": "cross_sell", "items": [{"item": "plain", "qty": 1}],
                     "discounts": [0]}],
        "segments": [{"id": "s", "views": 100.0}],
        "responses": [{"segment": "s", "bundle": "big", "take_rate": 0.5, "baseline_rate": 0.0,
                       "price_sensitivity": 0.0},
                      {"segment": "s", "bundle": "small", "take_rate": 0.3,
                       "baseline_rate": 0.0, "price_sensitivity": 0.0}],
    }


def _zero_price_bounds(doc: dict[str, Any]) -> tuple[float, float, LocalOracle]:
    """The Lagrangian value at zero prices without and with the rows in the units' choice."""
    inst = instance_from_document(doc)
    cands = expand(inst)
    rows = live_coupling(inst, cands)
    plain, limited = LocalOracle(cands), LocalOracle(cands, rows=rows)
    zero = np.zeros(cands.n_columns)
    return plain.evaluate(zero).adjusted, limited.evaluate(zero).adjusted, limited


def test_an_offer_that_alone_overdraws_its_stock_leaves_the_bound() -> None:
    doc = _scarce_item()
    loose, tight, oracle = _zero_price_bounds(doc)
    optimum = best_objective(doc)
    assert optimum is not None
    assert loose > 1.5 * optimum  # the overdrawing offer counts without the rows
    assert np.isclose(tight, optimum, rtol=1e-9)  # with them, the bound is the optimum
    chosen = oracle.cands.subset(oracle.choose(np.zeros(oracle.n_columns)))
    assert list(chosen.bundle) == [1]  # "small"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_instances(max_segments=3))
def test_the_tighter_bound_still_bounds_the_optimum(doc: dict[str, Any]) -> None:
    optimum = best_objective(doc, rel_tol=1e-9)
    if optimum is None:
        return
    loose, tight, _ = _zero_price_bounds(doc)
    scale = 1e-7 * max(1.0, abs(optimum))
    assert tight <= loose + scale
    assert tight >= optimum - scale
