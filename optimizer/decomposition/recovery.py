"""Plans from the decomposition: a greedy repair, then a MIP over the contested segments.

`repair` starts from the segments' choice under the best multipliers, which overdraws
some rows, and moves only the segments that shed the most overdraw per unit of value
lost to their choice under prices that meet every row. `recover` then keeps every
segment but the contested ones at the repaired plan, takes their use of each coupling
row off its limit, and lets the MIP backend decide the contested ones under every row
(the repaired choice is feasible for it). The contested set grows fourfold while the plan
is not within the gap and `grow` allows (on instances a MIP can take).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from optimizer.backends import Backend, Limits, Termination
from optimizer.decomposition.dual import gap_of
from optimizer.decomposition.oracle import Oracle
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.milp import formulate_rows, milp_problem

REPAIR_ROUNDS = 8
FILL_ROUNDS = 200
MIP_COLUMNS_PER_SECOND = 2_000  # what HiGHS's root LP takes here, with coupling rows


@dataclass(frozen=True)
class Recovered:
    plan: Candidates | None  # the chosen candidates
    how: str
    infeasible: bool  # the MIP over every segment proved that no plan exists
    bound: float | None = None  # the MIP's own bound, when it decided every segment


def repair(oracle: Oracle, rows: VariantRows, price_a: np.ndarray, safe_price: np.ndarray
           ) -> tuple[Candidates, np.ndarray]:
    """The best of two greedy repairs between the choice at `price_a` (the best multipliers,
    overdrawing some rows) and the one at `safe_price` (meeting every row); the plan and
    the segments not at a's choice."""
    K, limit = rows.as_le()
    segments, loss, shed, usage_a = oracle.compare(price_a, safe_price, K)
    tol = 1e-9 * np.maximum(1.0, np.abs(limit))
    down = _shed_overdraw(usage_a, limit, tol, loss, shed)
    up = _fill_slack(usage_a - shed.sum(axis=0), limit, tol, loss, shed)  # from the safe choice
    plans = [(segments[down], oracle.mixed(price_a, [(safe_price, segments[down])]))] \
        if down is not None else []
    stay = np.ones(len(segments), dtype=bool)
    stay[up] = False
    plans.append((segments[stay], oracle.mixed(price_a, [(safe_price, segments[stay])])))
    moved, plan = max(plans, key=lambda p: float(p[1].value.sum()))
    return plan, moved


def _shed_overdraw(usage: np.ndarray, limit: np.ndarray, tol: np.ndarray, loss: np.ndarray,
                   shed: np.ndarray) -> np.ndarray | None:
    """Moves to the safe choice, cheapest per unit of overdraw shed first, as few as suffice."""
    taken = np.zeros(len(loss), dtype=bool)
    for _ in range(REPAIR_ROUNDS):
        over = usage - limit
        bad = over > tol
        if not bad.any():
            return np.flatnonzero(taken)
        gain = shed[:, bad] @ (1.0 / over[bad])
        open_ = np.flatnonzero(~taken & (gain > 0))
        if not len(open_):
            return None
        order = open_[np.argsort(loss[open_] / gain[open_], kind="stable")]
        covered = np.cumsum(shed[order][:, bad], axis=0) >= (over[bad] - tol[bad])
        first = np.where(covered.any(axis=0), covered.argmax(axis=0), len(order) - 1)
        take = order[: int(first.max()) + 1]
        taken[take] = True
        usage = usage - shed[take].sum(axis=0)
    return np.flatnonzero(taken) if np.all(usage - limit <= tol) else None


def _fill_slack(usage: np.ndarray, limit: np.ndarray, tol: np.ndarray, loss: np.ndarray,
                shed: np.ndarray) -> np.ndarray:
    """Moves back from the safe choice, most value per unit of slack used first, while every
    row keeps within its limit."""
    back = np.zeros(len(loss), dtype=bool)
    rejected = np.zeros(len(loss), dtype=bool)
    for _ in range(FILL_ROUNDS):
        slack = np.maximum(limit - usage, 0.0)
        cost = np.maximum(shed, 0.0) @ (1.0 / np.maximum(slack, tol))  # a move back adds `shed`
        open_ = np.flatnonzero(~back & ~rejected & (loss > 0))
        if not len(open_):
            break
        order = open_[np.argsort(-loss[open_] / np.maximum(cost[open_], 1e-12), kind="stable")]
        tight = np.maximum(shed[open_], 0.0).sum(axis=0) > slack  # rows the moves could overfill
        fits = np.all(np.cumsum(shed[order][:, tight], axis=0) <= (slack + tol)[tight], axis=1)
        stop = int(np.argmin(fits)) if not fits.all() else len(order)
        if stop == 0:
            rejected[order[0]] = True  # it does not fit beside the moves already made
            continue
        back[order[:stop]] = True
        usage = usage + shed[order[:stop]].sum(axis=0)
    return np.flatnonzero(back)


def recover(oracle: Oracle, rows: VariantRows, anchor: Candidates, first: np.ndarray,
            ranked: np.ndarray, bound: float, limits: Limits, backend: Backend, grow: bool
            ) -> Recovered:
    """Re-decide the `first` segments (then the next of `ranked`) exactly; keep the rest.
    Segments are the oracle's units: with audience caps, an audience by its first segment."""
    started = time.perf_counter()
    leader = anchor.contacts.leader()
    units = np.unique(leader)
    n_segments = len(units)
    candidates = np.r_[first, ranked[np.isin(ranked, units)]].astype(np.int64)
    priority = candidates[np.sort(np.unique(candidates, return_index=True)[1])]  # first, then load
    size = max(20, len(first))
    best: Candidates | None = None
    best_value = -np.inf
    how, infeasible = "no plan met every row in time", False
    whole_bound: float | None = None
    while True:
        left = None if limits.time_limit is None else \
            limits.time_limit - (time.perf_counter() - started)
        if left is not None and left <= 0.5:
            break
        # HiGHS may overrun a limit while it solves a root LP: leave it half of what is left,
        # and no more columns than it can take in that time
        slice_ = None if left is None else max(0.5, left / 2)
        free = np.sort(priority[:size])
        sub = oracle.of_segments(free)
        if slice_ is not None and len(sub) > MIP_COLUMNS_PER_SECOND * slice_:
            if best is not None or len(free) <= 1:
                break
            size = max(1, int(len(free) * MIP_COLUMNS_PER_SECOND * slice_ / len(sub)))
            free = np.sort(priority[:size])
            sub = oracle.of_segments(free)
        free_mask = np.zeros(len(leader), dtype=bool)
        free_mask[free] = True
        fixed = anchor.subset(np.flatnonzero(~free_mask[leader[anchor.segment]]))
        form = formulate_rows(sub, rows, fixed)
        last = len(free) >= n_segments or not grow
        # no progress callback: a MIP over some segments reports bounds on those alone
        problem = milp_problem(form)
        result = backend(problem, Limits(slice_, limits.gap, limits.threads))
        if len(free) >= n_segments and result.bound is not None:
            whole_bound = result.bound  # nothing fixed: a bound on the whole problem
        if result.x is not None:
            plan = fixed.join(sub.subset(np.flatnonzero(problem.chosen(result.x))))
            value = float(plan.value.sum())
            if value > best_value:
                best, best_value = plan, value
                how = (f"fixed {n_segments - len(free)} segments (or audiences), solved "
                       f"{len(free)} contested ones exactly")
            if gap_of(best_value, bound) <= limits.gap:
                break
        if last:
            infeasible = len(free) >= n_segments and result.termination == Termination.INFEASIBLE
            break
        size *= 4
    return Recovered(best, how, infeasible, whole_bound)
