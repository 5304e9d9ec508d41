"""The decomposition with audiences (spec section 8): units are whole audiences, mixes of
two prices' choices meet every audience's caps, and repairs meet every row."""

from __future__ import annotations

import functools

import numpy as np

from optimizer.decomposition.dual import decompose
from optimizer.decomposition.oracle import LocalOracle
from optimizer.decomposition.recovery import repair
from optimizer.formulation.candidates import Candidates, expand
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.milp import live_coupling
from optimizer.model.generate import generate


@functools.cache
def _catalog() -> tuple[Candidates, VariantRows, LocalOracle]:
    inst = generate(400, seed=11, items=1000, contexts=4, channels=True)
    cands = expand(inst)
    return cands, live_coupling(inst, cands), LocalOracle(cands)


def _within_caps(plan: Candidates) -> bool:
    keys, used = plan.contact_usage(np.ones(len(plan)))
    return bool(np.all(used <= plan.contacts.limit(keys) * (1 + 1e-9)))


def test_an_audience_is_one_unit() -> None:
    cands, _, oracle = _catalog()
    first = cands.contacts.leader()
    assert len(np.unique(first)) == 100  # 400 segments in audiences of 4
    whole = oracle.of_segments(np.array([first[5]]))
    audience = np.flatnonzero(cands.contacts.audience == cands.contacts.audience[5])
    assert audience.tolist() == [4, 5, 6, 7]
    assert np.unique(whole.segment).tolist() == \
        np.intersect1d(audience, cands.segment).tolist()  # those with a candidate


def test_mixing_every_differing_audience_gives_the_other_choice() -> None:
    """The repair's accounting: audiences whose choices differ at two prices, all moved,
    give the second price's choice (a sum of positions once took two swapped offers of an
    audience for no change, and the repair overdrew stock)."""
    _, rows, oracle = _catalog()
    d = decompose(oracle, rows, 3.0, 1e-4)
    assert d.price is not None
    K, _ = rows.as_le()
    differ, _, _, _ = oracle.compare(d.bound_price, d.price, K)
    mixed = oracle.mixed_positions(d.bound_price, [(d.price, differ)])
    assert np.array_equal(mixed, np.sort(oracle.choose(d.price)))


def test_plans_of_the_decomposition_meet_every_row() -> None:
    _, rows, oracle = _catalog()
    d = decompose(oracle, rows, 3.0, 1e-4)
    assert d.price is not None
    K, limit = rows.as_le()
    tol = 1e-6 * np.maximum(1.0, np.abs(limit))
    for plan in (oracle.chosen(d.price), repair(oracle, rows, d.bound_price, d.price)[0],
                 oracle.chosen(d.bound_price)):
        assert _within_caps(plan)
    for plan in (oracle.chosen(d.price), repair(oracle, rows, d.bound_price, d.price)[0]):
        assert np.all(K @ plan.usage_per_column() <= limit + tol)
