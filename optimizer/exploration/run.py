"""Exploration sets added to a solved plan (spec section 9): the served plan.

For every optimized set (one per segment, or a split segment's several) the exploration set
shows the same bundles, each cell's variant moved by Thompson sampling
(`optimizer.exploration.thompson`): rows 1-3 and the audiences' and channels' rows 8-10,
which count offers and bundles, are those of the optimized set. A segment serves its
optimized sets at `1 - F_s` of their weights and their exploration sets at `F_s`, the
shares `optimizer.exploration.mix` allows under every coupling row, written by the
formulation's own row builders. The solver's status and bound stay; the plan's objective is
the served mix's value (spec section 4), and the report says what exploring costs against
the optimized sets.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.exploration.mix import explore_shares
from optimizer.exploration.thompson import cell_candidates, plan_cells, thompson_moves
from optimizer.exploration.uncertainty import cell_spread, uncertainty_table
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.contacts import family_of, subject_of
from optimizer.formulation.offer_sets import SHARE_TOL, OfferSets
from optimizer.model.families import Family, row_name, row_subject
from optimizer.model.instance import Instance
from optimizer.solve.reports import ExplorationReport
from optimizer.solve.result import Solution, SolveOptions, Status
from optimizer.solve.supervise import PlanMessage

TINY = 1e-12  # a row's change this small against its terms is rounding: the row does not move
FALLBACK = "the optimized plan, without its exploration sets"
MAX_LISTED = 20  # rows named in `held_back_by`; a large catalog has many tight items


def explored(solution: Solution, options: SolveOptions) -> Solution:
    """`solution` with exploration sets, when `options.explore` asks for them and it has a plan."""
    if options.explore <= 0 or solution.status not in (Status.OPTIMAL, Status.FEASIBLE) or \
            solution.objective is None:
        return solution
    began = time.perf_counter()
    inst, plan = solution.instance, solution.candidates
    table = None if options.uncertainty is None else uncertainty_table(options.uncertainty)
    sets = solution.offer_sets if solution.offer_sets is not None else \
        whole_sets(plan, solution.selected)
    opt_share = sets.shares(len(plan))
    optimized = float(opt_share @ plan.value)

    cells = plan_cells(inst, plan.segment[sets.member], plan.bundle[sets.member])
    spread = cell_spread(inst.segments["id"].to_numpy(dtype=object)[cells.segment],
                         inst.bundles["id"].to_numpy(dtype=object)[cells.bundle],
                         inst.responses["take_rate"].to_numpy(np.float64)[cells.response], table)
    point, drawn = cell_candidates(inst, cells, spread, options.explore_seed)
    moves = thompson_moves(plan, sets, point, drawn,
                           _tight(solution, plan.usage_per_column(opt_share), options.explore))
    pool, target = _pool(plan, point, moves.to)
    explore_member = np.where(moves.to >= 0, target, sets.member)

    # one unit per segment with a changed set: exploring all of it moves every row by delta
    changed = moves.changed
    seg_of_set = sets.segment
    units, unit_of_set = np.unique(seg_of_set[changed], return_inverse=True)
    unit = np.full(len(sets), -1)
    unit[changed] = unit_of_set
    member_set = sets.set_of_member
    on = changed[member_set]
    w = sets.weight[member_set[on]]
    u = unit[member_set[on]]
    n_pool = len(pool)
    M = sp.csr_matrix((np.r_[w, -w], (np.r_[explore_member[on], sets.member[on]], np.r_[u, u])),
                      shape=(n_pool, len(units)))
    base_share = np.r_[opt_share, np.zeros(n_pool - len(plan))]
    delta, base, lower, upper, tags = _rows(solution, pool, M, base_share)
    views = pool.segment_views[units] * np.bincount(unit[changed], sets.weight[changed],
                                                    minlength=len(units))
    cost = -(M.T @ pool.value)
    shares = explore_shares(delta, np.minimum(lower - base, 0.0), np.maximum(upper - base, 0.0),
                            views, cost, options.explore)

    set_share = np.append(shares.share, 0.0)[unit]  # unit -1: a set that does not change
    live = changed & (sets.weight * set_share >= SHARE_TOL)
    with_offers = np.unique(seg_of_set[np.diff(sets.start) > 0])
    report = ExplorationReport(
        explore=float(options.explore), seed=int(options.explore_seed),
        optimized_objective=optimized, cost=0.0,
        views_explored=float((sets.weight * set_share * pool.segment_views[seg_of_set])[live].sum()),
        share_explored=0.0, segments_explored=len(np.unique(seg_of_set[live])),
        segments_held_back=int((shares.share < options.explore * (1 - 1e-6)).sum()),
        cells_explored=_cells_explored(inst, pool, sets, moves.to, target, live),
        sets=int(live.sum()), cells_from_prior=int(spread.from_prior.sum()),
        held_back_by=_named(inst, tags[shares.held_back]),
        seconds=0.0, optimized_split=solution.offer_sets is not None)
    seen = float(pool.segment_views[with_offers].sum())
    report = dataclasses.replace(report, share_explored=report.views_explored / seen if seen else 0.0)
    if not live.any():
        return dataclasses.replace(solution, exploration=dataclasses.replace(
            report, seconds=time.perf_counter() - began))

    served, served_sets = _served(pool, sets, explore_member, set_share, live)
    objective = float(served_sets.shares(len(served)) @ served.value)
    report = dataclasses.replace(report, cost=optimized - objective,
                                 seconds=time.perf_counter() - began)
    optimized_plan = PlanMessage.of(plan, solution.selected, solution.offer_sets, FALLBACK)
    bound = None if solution.bound is None else max(solution.bound, objective)
    return dataclasses.replace(
        solution, candidates=served, selected=np.ones(len(served), dtype=bool),
        offer_sets=served_sets, objective=objective, bound=bound, exploration=report,
        earlier=(optimized_plan, *solution.earlier))


def whole_sets(plan: Candidates, selected: np.ndarray) -> OfferSets:
    """An integral plan as offer sets: one set of weight 1 per segment with offers."""
    pick = np.flatnonzero(selected)
    pick = pick[np.argsort(plan.segment[pick], kind="stable")]
    segments, count = np.unique(plan.segment[pick], return_counts=True)
    return OfferSets(segments.astype(np.int64), np.ones(len(segments)),
                     np.r_[0, np.cumsum(count)].astype(np.int64), pick.astype(np.int64))


def _tight(solution: Solution, usage: np.ndarray, explore: float) -> sp.csr_matrix:
    """The coupling rows with less room than `explore` of their use in the optimized plan
    (`usage` per usage column), over the variants and signed: a positive use moves toward
    the limit."""
    rows = solution.coupling
    use, size = rows.K @ usage, abs(rows.K) @ usage
    room = explore * size + 1e-9 * np.maximum(1.0, size)
    upper = np.isfinite(rows.upper) & (use >= rows.upper - room)
    lower = np.isfinite(rows.lower) & (use <= rows.lower + room)
    pick = np.flatnonzero(upper | lower)
    signed = sp.diags(np.where(upper[pick], 1.0, -1.0)) @ rows.K[pick]
    return sp.csr_matrix(sp.csr_matrix(signed)[:, :len(solution.candidates.variants)])


def _pool(plan: Candidates, point: Candidates, to: np.ndarray) -> tuple[Candidates, np.ndarray]:
    """The plan's candidates, then those the moves show that the plan does not hold; and per
    member, the pool position of the candidate it moves to (-1 where it stays)."""
    n_variants = len(plan.variants)
    held = pd.Index(plan.segment.astype(np.int64) * n_variants + plan.variant)
    targets = np.unique(to[to >= 0])
    at = held.get_indexer(point.segment[targets].astype(np.int64) * n_variants +
                          point.variant[targets])
    new = targets[at < 0]
    position = np.full(len(point), -1, dtype=np.int64)
    position[targets] = at
    position[new] = len(plan) + np.arange(len(new))
    pool = plan.join(point.subset(new))
    return pool, np.where(to >= 0, position[np.maximum(to, 0)], -1)


def _rows(solution: Solution, pool: Candidates, M: sp.csr_matrix, base_share: np.ndarray
          ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every row of the plan beside rows 1-3, as the solve writes them: the coupling rows on
    the usage columns (rows 4-7, 10) and the audiences' caps on the candidates (rows 8-9).
    Their change per unit (rows x units), the optimized plan's use, the limits, and each
    row's family and subject."""
    rows = solution.coupling
    usage = pool.usage_matrix()  # usage columns x pool
    keys, coef, pos = pool.contacts.entries(pool.segment, pool.bundle)
    uniq, key_row = np.unique(keys, return_inverse=True)
    caps = sp.csr_matrix((coef, (key_row, pos)), shape=(len(uniq), len(pool)))
    on_pool = sp.vstack([rows.K @ usage, caps], format="csr")
    change = sp.csr_matrix(on_pool @ M)
    moves = sp.csr_matrix(abs(change) - TINY * sp.csr_matrix(abs(on_pool) @ abs(M))) > 0
    delta = sp.csr_matrix(change.multiply(moves))
    base = on_pool @ base_share
    limit = pool.contacts.limit(uniq)
    tags = np.c_[np.r_[rows.family, family_of(uniq)], np.r_[rows.subject, subject_of(uniq)]]
    return (delta, base, np.r_[rows.lower, np.full(len(uniq), -np.inf)],
            np.r_[rows.upper, limit], tags)


def _served(pool: Candidates, sets: OfferSets, explore_member: np.ndarray, set_share: np.ndarray,
            live: np.ndarray) -> tuple[Candidates, OfferSets]:
    """The served plan's candidates (in (segment, slot) order) and sets: per segment its
    optimized sets, the explored ones at `1 - F_s` of their weight, then their exploration
    sets at `F_s`."""
    member_set = sets.set_of_member
    n_sets, kept = len(sets), np.flatnonzero(live)
    weight = np.r_[np.where(live, sets.weight * (1.0 - set_share), sets.weight),
                   sets.weight[kept] * set_share[kept]]
    segment = np.r_[sets.segment, sets.segment[kept]]
    explore = np.r_[np.zeros(n_sets, dtype=bool), np.ones(len(kept), dtype=bool)]
    rank_of_kept = np.full(n_sets, -1)
    rank_of_kept[kept] = n_sets + np.arange(len(kept))
    in_live = live[member_set]
    member = np.r_[sets.member, explore_member[in_live]]
    owner = np.r_[member_set, rank_of_kept[member_set[in_live]]]
    # sets by segment, optimized before exploration; the candidates in (segment, slot) order
    order = np.lexsort((np.arange(len(segment)), explore, segment))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    used = np.unique(member)
    used = used[np.lexsort((pool.variant[used], pool.slot_key[used], pool.segment[used]))]
    position = np.empty(len(pool), dtype=np.int64)
    position[used] = np.arange(len(used))
    owner, member = rank[owner], position[member]
    by_set = np.lexsort((member, owner))
    owner, member = owner[by_set], member[by_set]
    start = np.r_[0, np.cumsum(np.bincount(owner, minlength=len(order)))].astype(np.int64)
    return pool.subset(used), OfferSets(segment[order].astype(np.int64), weight[order], start,
                                        member.astype(np.int64), explore[order])


def _named(inst: Instance, tags: np.ndarray) -> list[str]:
    """Rows given by (family, subject), in words: at most MAX_LISTED, then how many more."""
    names = [row_name(Family(f).label, row_subject(inst, Family(f), s))
             for f, s in tags[:MAX_LISTED].tolist()]
    more = len(tags) - MAX_LISTED
    return [*names, f"... and {more} more rows"] if more > 0 else names


def _cells_explored(inst: Instance, pool: Candidates, sets: OfferSets, to: np.ndarray,
                    target: np.ndarray, live: np.ndarray) -> int:
    """The (segment, bundle) cells some exploration set shows in another variant."""
    moved = (to >= 0) & live[sets.set_of_member]
    n_bundles = len(inst.bundles)
    at = target[moved]
    return len(np.unique(pool.segment[at].astype(np.int64) * n_bundles + pool.bundle[at]))
