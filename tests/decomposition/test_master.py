"""The master LP over whole-audience choices: its columns give back each price's choice, its
bound holds, and its plan meets every row and beats the plan it starts from."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from optimizer.backends import Limits, Termination, get_backend
from optimizer.decomposition.dual import Decomposition, decompose
from optimizer.decomposition.master import (
    ColumnPool,
    MasterFound,
    MasterLP,
    lp_choices,
    master_plan,
    mixes_rounded,
    near_units,
)
from optimizer.decomposition.oracle import LocalOracle
from optimizer.decomposition.reassign import choice_mip, holds_every_row
from optimizer.decomposition.recovery import repair
from optimizer.formulation.candidates import Candidates, expand
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.milp import live_coupling
from optimizer.model.generate import generate
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import Solution, SolveOptions, Status, solve
from tests.plans import plan_document


@functools.cache
def _catalog(segments: int = 400, items: int = 1000
             ) -> tuple[Instance, Candidates, VariantRows, Decomposition]:
    inst = generate(segments, seed=11, items=items, contexts=4, channels=True)
    cands = expand(inst)
    rows = live_coupling(inst, cands)
    d = decompose(LocalOracle(cands), rows, 3.0, 1e-4)
    assert d.price is not None
    return inst, cands, rows, d


def _checked(inst: Instance, rows: VariantRows, plan: Candidates) -> bool:
    solution = Solution(instance=inst, candidates=plan, coupling=rows, status=Status.FEASIBLE,
                        selected=np.ones(len(plan), dtype=bool),
                        objective=float(plan.value.sum()), bound=None,
                        termination=Termination.TIME_LIMIT, solver="highs")
    return check_plan(inst, plan_document(solution)).ok


def _per_audience(plan: Candidates) -> np.ndarray:
    leader = plan.contacts.leader()
    return np.bincount(leader[plan.segment], plan.variant + 1.0, minlength=len(plan.lo))


def test_a_columns_positions_give_back_each_choice() -> None:
    _, cands, rows, d = _catalog()
    oracle = LocalOracle(cands)
    pool = ColumnPool(oracle, rows.as_le()[0])
    assert d.price is not None
    choices = [oracle.choose(p) for p in (d.bound_price, d.price, 0.5 * d.bound_price)]
    none = np.zeros(0, dtype=np.int64)
    for chosen in choices:
        pool.add(chosen, none)
    assert len(pool.add(choices[0], none)) == 0  # a choice seen before adds no column
    for t, chosen in enumerate(choices):
        assert np.array_equal(pool.positions(pool.column_of[t]), np.sort(chosen))
        assert np.isclose(pool.value[pool.column_of[t]].sum(), cands.value[chosen].sum())
    # more than one column only where an audience chose differently
    assert len(pool) > len(pool.units)
    assert np.array_equal(np.unique(pool.unit), np.arange(len(pool.units)))


def _master(segments: int, items: int, most: int) -> tuple[Candidates, MasterFound]:
    """The repair's plan and the master's, from the repair."""
    _, cands, rows, d = _catalog(segments, items)
    assert d.price is not None
    oracle = LocalOracle(cands)
    repaired, moved = repair(oracle, rows, d.bound_price, d.price)
    start = np.zeros(len(cands.lo), dtype=np.int64)
    start[moved] = 1
    return repaired, master_plan(oracle, rows, [d.bound_price, d.price],
                                 [(oracle.choose(0.8 * d.bound_price), oracle.broken_units())],
                                 start,
                                 get_backend("highs"), Limits(30.0, 1e-9, 1), most)


def test_a_choice_that_breaks_caps_gives_no_usable_column() -> None:
    """Columns of audiences whose choice breaks their caps map a choice back, but neither
    the LP nor the MIP can take them."""
    _, cands, rows, d = _catalog()
    assert d.price is not None
    oracle = LocalOracle(cands)
    K, limit = rows.as_le()
    pool = ColumnPool(oracle, K)
    pool.add(oracle.choose(d.price), np.zeros(0, dtype=np.int64))
    every = pool.units
    new = pool.add(oracle.choose(d.bound_price), every)  # as if every audience broke them
    assert len(new) and not pool.usable[new].any()
    assert np.array_equal(pool.positions(pool.column_of[1]), np.sort(oracle.choose(d.bound_price)))
    lp = MasterLP(pool, limit, 1)
    assert lp.solve(None)
    assert np.all(lp.share[new] == 0.0) and np.isclose(lp.share.sum(), len(pool.units))


@pytest.mark.parametrize("most", [10_000, 5])
def test_the_master_plan_beats_its_start_and_holds_every_row(most: int) -> None:
    inst, _, rows, d = _catalog()
    repaired, found = _master(400, 1000, most)
    assert found.plan is not None
    value, before = float(found.plan.value.sum()), float(repaired.value.sum())
    assert value >= before - 1e-9 * abs(before)
    assert _checked(inst, rows, found.plan) and found.plan.meets_caps()
    assert np.count_nonzero(_per_audience(found.plan) != _per_audience(repaired)) <= most
    assert found.lp_value is not None and found.lp_value <= d.bound * (1 + 1e-9)
    assert found.rounds >= 1 and found.columns > 0


def test_the_master_bound_and_plan_bracket_the_optimum() -> None:
    """The Lagrangian bound at the LP's duals is a bound: the exact MIP's optimum lies
    between the master's plan and it."""
    inst, _, rows, _ = _catalog(40, 60)
    _, found = _master(40, 60, 10_000)
    exact = solve(inst, SolveOptions(method="exact", gap=1e-9, threads=1))
    assert exact.objective is not None and exact.status == Status.OPTIMAL
    assert found.plan is not None and _checked(inst, rows, found.plan)
    assert float(found.plan.value.sum()) <= exact.objective * (1 + 1e-9)
    assert np.isfinite(found.bound) and found.bound >= exact.objective * (1 - 1e-9)


def test_the_decomposition_prices_a_master_lp_where_audiences_have_caps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the LP step's size (1M segments), capped audiences go through the master;
    made to take that path on a small catalog, its plan passes the check."""
    import optimizer.decomposition.master as module
    import optimizer.decomposition.run as run

    calls: list[int] = []
    original = module.master_plan

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[3]))  # the search's latest choices
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "LP_STEP_MAX_CANDIDATES", 0)
    monkeypatch.setattr(run, "AUTO_EXACT_MAX_CANDIDATES", 0)
    monkeypatch.setattr(module, "master_plan", counted)
    inst = generate(60, seed=5, items=1000, contexts=4, channels=True)
    # no time limit: a limited solve runs in a child process, out of the patch's sight
    solution = solve(inst, SolveOptions(method="decompose", gap=1e-3, threads=1))
    assert calls and calls[0] == run.MASTER_CHOICES
    assert solution.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert check_plan(inst, plan_document(solution)).ok


def test_a_kept_choice_is_the_choice_made_again() -> None:
    """The latest prices' choices are kept (the repair and the master ask for them again):
    a kept one, its bound and the caps it breaks equal a fresh oracle's, whatever came
    between."""
    _, cands, _, d = _catalog()
    assert d.price is not None
    oracle = LocalOracle(cands)
    prices = (d.bound_price, d.price)
    first = [(oracle.choose(p), oracle.last, oracle.broken_units()) for p in prices]
    for price, (positions, last, broken) in zip(prices[::-1], first[::-1], strict=True):
        again = oracle.choose(price)
        assert again is positions and oracle.last is last  # kept, not chosen again
        np.testing.assert_array_equal(oracle.broken_units(), broken)
        fresh = LocalOracle(cands)
        np.testing.assert_array_equal(fresh.choose(price), positions)
        assert fresh.last.bound == pytest.approx(last.bound, rel=1e-12)
        np.testing.assert_array_equal(fresh.broken_units(), broken)
    with pytest.raises(ValueError, match="read-only"):
        first[0][0][0] = 0  # shared by every caller: nobody may change it


def test_entries_too_small_for_highs_are_dropped_not_refused() -> None:
    """HiGHS drops matrix entries below 1e-9 with a warning; the master goes on without them."""
    _, cands, rows, d = _catalog()
    oracle = LocalOracle(cands)
    K, limit = rows.as_le()
    pool = ColumnPool(oracle, K)
    none = np.zeros(0, dtype=np.int64)
    assert d.price is not None
    for price in (d.bound_price, d.price):  # the second meets every row: the LP is feasible
        pool.add(oracle.choose(price), none)
    usage = pool.usage.tocsc(copy=True)
    mixed = np.flatnonzero(np.bincount(pool.unit)[pool.unit] > 1)  # columns the LP takes in
    entry = usage.indptr[mixed[np.diff(usage.indptr)[mixed] > 0][0]]
    usage.data[entry] *= 1e-14  # one entry far below its row's peak
    pool.usage = usage
    assert MasterLP(pool, limit, 1).solve(30.0)


def test_near_units_are_those_whose_next_best_column_is_closest() -> None:
    """Checked unit by unit: the gap between a unit's best and next-best usable column at the
    prices, smallest first; units with one column, or excluded, are never picked."""
    _, cands, rows, d = _catalog()
    assert d.price is not None
    oracle = LocalOracle(cands)
    pool = ColumnPool(oracle, rows.as_le()[0])
    none = np.zeros(0, dtype=np.int64)
    for price in (d.bound_price, d.price, 0.7 * d.bound_price, 1.3 * d.price):
        pool.add(oracle.choose(price), none)
    prices = np.abs(np.random.default_rng(3).normal(size=pool.usage.shape[0]))
    priced = pool.value - pool.usage.T @ prices
    gaps = {}
    for u in range(len(pool.units)):
        values = np.sort(priced[(pool.unit == u) & pool.usable])[::-1]
        below = values[values < values[0]] if len(values) else values
        if len(below):
            gaps[u] = values[0] - below[0]
    exclude = np.array(sorted(gaps)[:3])
    picked = near_units(pool, prices, exclude, 5)
    expected = sorted((g, u) for u, g in gaps.items() if u not in exclude)[:5]
    assert len(gaps) > 8 and list(picked) == [u for _, u in expected]


def test_the_units_the_lp_mixes_are_rounded_exactly_in_the_room_the_others_leave() -> None:
    """Units the LP takes whole keep its column; the units it mixes get the best choice among
    all their candidates within what the others leave: at least as good as the best among
    their columns, and the whole plan passes the check."""
    inst, cands, rows, d = _catalog(40, 60)  # a catalog whose rounding MIP HiGHS proves in 1 s
    assert d.price is not None
    oracle = LocalOracle(cands)
    K, limit = rows.as_le()
    pool = ColumnPool(oracle, K)
    none = np.zeros(0, dtype=np.int64)
    for price in (d.bound_price, d.price, 0.7 * d.bound_price, 1.3 * d.price):
        pool.add(oracle.choose(price), none)
    lp = MasterLP(pool, limit, 1)
    assert lp.solve(None)
    share, columns = lp.share, len(pool)
    largest, mixed = lp_choices(pool, share)
    assert 0 < mixed.sum() < len(mixed)
    rounded = mixes_rounded(pool, rows, share, get_backend("highs"), Limits(60.0, 1e-9, 1))
    assert rounded is not None
    np.testing.assert_array_equal(rounded[~mixed], largest[~mixed])
    plan = cands.subset(pool.positions(rounded))
    assert holds_every_row(plan, K, limit) and plan.meets_caps() and _checked(inst, rows, plan)
    # the same rounding among the units' columns alone, every other unit held alike
    units = np.flatnonzero(mixed)
    room = limit - np.asarray(pool.usage[:, rounded[~mixed]].sum(axis=1)).ravel()
    own = np.flatnonzero(mixed[pool.unit[:columns]] & pool.usable[:columns])
    problem = choice_mip(pool.value[own], pool.usage[:, own],
                         np.searchsorted(units, pool.unit[own]), len(units), room, limit,
                         np.zeros(len(own)))
    assert problem is not None
    among_columns = get_backend("highs")(problem, Limits(30.0, 1e-9, 1))
    assert among_columns.x is not None
    best_of_columns = float(pool.value[own] @ among_columns.x)
    exact = pool.value[rounded[units]].sum()
    assert exact >= best_of_columns * (1 - 1e-6)
    assert exact > best_of_columns * 1.01  # on this catalog, by 5%: its columns are too few
