"""The vectorized per-segment optimum equals the MIP when there are no coupling rows."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from optimizer.formulation.candidates import expand
from optimizer.formulation.segment_choice import best_choice
from optimizer.io import instance_from_document
from optimizer.solve.dispatch import SolveOptions, Status, solve
from tests.strategies import tiny_instances

UNCOUPLED = {"max_discounted_share": None, "max_avg_discount": None, "promotion_budget": None,
             "min_aggregate_margin_rate": None}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_instances(max_segments=3))
def test_matches_the_mip_without_coupling_rows(doc: dict[str, Any]) -> None:
    doc["policy"].update(UNCOUPLED)
    for item in doc["items"]:
        item["stock"] = None
    inst = instance_from_document(doc)
    cands = expand(inst)
    chosen = best_choice(cands, cands.value)
    exact = solve(inst, SolveOptions(gap=0.0))
    assert exact.status == Status.OPTIMAL and exact.objective is not None
    assert abs(float(cands.value[chosen].sum()) - exact.objective) <= 1e-7 * max(
        1.0, abs(exact.objective))
    counts = {}
    for s, k in zip(cands.segment[chosen], cands.slot_key[chosen], strict=True):
        assert (s, k) not in counts  # one variant per slot
        counts[(s, k)] = 1
