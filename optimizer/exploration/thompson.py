"""Which variant each cell of an exploration set shows: Thompson sampling against the plan.

A cell is a (segment, bundle) the optimized plan shows. Its candidates are the variants
(discounts, perks) that `optimizer.formulation.candidates.expand` makes of its response. One
posterior draw per cell, normal around the estimates with the spread of
`optimizer.exploration.uncertainty`, gives its take logit and price sensitivity; `expand` of
the drawn responses values every candidate again.

A candidate stands `gain_point` from the plan's variant at the point estimates and
`gain_draw` under the draw. One worse at the point estimates (`gain_point < 0`) replaces the
plan's when the draw says it is better: Thompson sampling. One better there was kept out by
the coupling rows (or by what an integral plan can fit in them), at a cost the plan does not
say; it replaces the plan's when the draw moves it by more than its lead again. Both are the score
`(gain_draw - gain_point) - |gain_point|`, positive when the draw moves the candidate
further than it stands from the plan's choice, either way. At zero spread no score is
positive (the plan stands); the wider a cell's spread, the more often and the farther its
variant moves. When no cell of a set moves, the cell the draw moved most (the largest
`|gain_draw - gain_point|` of its candidates: the least certain, where as much is at stake)
moves all the same, to its best-scoring candidate, so that every set with another variant is
explored. Where it can, that move is to a candidate that asks the coupling rows the
optimized plan (nearly) fills for no more: such a move leaves room for other segments'.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logit, ndtri

from optimizer.exploration.uncertainty import Spread
from optimizer.formulation.candidates import Candidates, expand
from optimizer.formulation.offer_sets import OfferSets
from optimizer.model.instance import Instance

MAX_DRAWN_LOGIT = 30.0  # a drawn take rate stays a number strictly between 0 and 1
SCORE_TOL = 1e-9  # relative to the plan variant's value: a score this small is a tie
PUSH_TOL = 1e-9  # relative to a row's terms: a change this small in a tight row is rounding


@dataclass(frozen=True)
class Cells:
    """The (segment, bundle) cells of a plan, by segment then bundle."""

    segment: np.ndarray  # int64: row of instance.segments
    bundle: np.ndarray  # int64: row of instance.bundles
    response: np.ndarray  # int64: row of instance.responses

    def __len__(self) -> int:
        return len(self.segment)


def plan_cells(instance: Instance, segment: np.ndarray, bundle: np.ndarray) -> Cells:
    """The distinct cells of candidates given by segment and bundle rows."""
    n_bundles = len(instance.bundles)
    keys = np.unique(segment.astype(np.int64) * n_bundles + bundle)
    seg, bun = keys // max(n_bundles, 1), keys % max(n_bundles, 1)
    r = instance.responses
    r_key = pd.Index(instance.segments["id"]).get_indexer(r["segment"]).astype(np.int64) * \
        n_bundles + pd.Index(instance.bundles["id"]).get_indexer(r["bundle"])
    return Cells(seg, bun, pd.Index(r_key).get_indexer(keys).astype(np.int64))


def draws(seed: int, segment_ids: np.ndarray, bundle_ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """Two standard normal numbers per cell, from a stable hash of (seed, segment id, bundle
    id): a cell draws the same numbers whatever else the catalog holds or in which order."""
    cell = pd.Series(segment_ids, dtype=object).str.cat(
        pd.Series(bundle_ids, dtype=object), sep="\x1f")
    out = []
    for k in (0, 1):
        text = (f"{seed}\x1f{k}\x1f" + cell).to_numpy(dtype=object)
        hashed = pd.util.hash_array(text)  # SipHash with a fixed key: the same on every machine
        uniform = ((hashed >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0 ** 53
        out.append(ndtri(uniform))
    return tuple(out)


def cell_candidates(instance: Instance, cells: Cells, spread: Spread, seed: int
                    ) -> tuple[Candidates, np.ndarray]:
    """Every candidate of the cells at the point estimates, and its value under the cells'
    posterior draws. Both come from `expand`: the model's semantics have one source."""
    responses = instance.responses.iloc[cells.response].reset_index(drop=True)
    sub = dataclasses.replace(instance, responses=responses, warnings=())
    point = expand(sub)
    z_take, z_sensitivity = draws(seed, instance.segments["id"].to_numpy(dtype=object)[cells.segment],
                                  instance.bundles["id"].to_numpy(dtype=object)[cells.bundle])
    take = responses["take_rate"].to_numpy(dtype=np.float64)
    drawn_logit = np.clip(logit(take) + spread.logit_se * z_take, -MAX_DRAWN_LOGIT, MAX_DRAWN_LOGIT)
    sensitivity = responses["price_sensitivity"].to_numpy(dtype=np.float64)
    drawn = responses.assign(
        take_rate=expit(drawn_logit),
        price_sensitivity=np.maximum(0.0, sensitivity + spread.sensitivity_se * z_sensitivity))
    # a drawn value below 0 keeps its candidate: only the point estimates say what is one
    policy = dataclasses.replace(instance.policy, allow_negative_uplift=True)
    again = expand(dataclasses.replace(sub, responses=drawn, policy=policy))
    n_variants = len(point.variants)
    at = pd.Index(again.segment.astype(np.int64) * n_variants + again.variant).get_indexer(
        point.segment.astype(np.int64) * n_variants + point.variant)
    drawn_value: np.ndarray = again.value[at]
    return point, drawn_value


@dataclass(frozen=True)
class Moves:
    """Per member of the optimized sets, the candidate of its cell it shows in the set's
    exploration set (a position in the cells' candidates, -1 to keep the plan's); per set,
    whether anything moves."""

    to: np.ndarray  # int64 per member
    changed: np.ndarray  # bool per set


def thompson_moves(plan: Candidates, sets: OfferSets, point: Candidates, drawn_value: np.ndarray,
                   tight: sp.csr_matrix | None = None) -> Moves:
    """The moves of every set's members (module docstring), over whole arrays. `tight` (rows
    x variants, per unit of takes, signed so that a positive use moves toward the limit) holds
    the coupling rows the optimized plan leaves (nearly) no room in: a set that no draw moves moves,
    where it can, a cell to a candidate that uses none of them more, so that the rows can
    balance it against other segments' exploration."""
    member, member_set = sets.member, sets.set_of_member
    n_bundles, n_variants = plan.variants.n_bundles, len(plan.variants)
    # the cells' candidates grouped by cell; the plan's own candidate among them
    cell_key = point.segment.astype(np.int64) * n_bundles + point.bundle
    order = np.argsort(cell_key, kind="stable")
    keys, first, count = np.unique(cell_key[order], return_index=True, return_counts=True)
    star = pd.Index(point.segment.astype(np.int64) * n_variants + point.variant).get_indexer(
        plan.segment[member].astype(np.int64) * n_variants + plan.variant[member])
    m_cell = np.searchsorted(keys, plan.segment[member].astype(np.int64) * n_bundles +
                             plan.bundle[member])
    m_count = np.where(star >= 0, count[np.minimum(m_cell, max(len(keys) - 1, 0))]
                       if len(keys) else 0, 0)
    # every (member, candidate of its cell) pair
    pair_member = np.repeat(np.arange(len(member)), m_count)
    within = np.arange(len(pair_member)) - np.repeat(np.cumsum(m_count) - m_count, m_count)
    cand = order[first[m_cell[pair_member]] + within] if len(pair_member) else \
        np.zeros(0, np.int64)
    s = star[pair_member]
    gain_point = point.value[cand] - point.value[s]
    gain_draw = drawn_value[cand] - drawn_value[s]
    score = np.where(cand == s, -np.inf, (gain_draw - gain_point) - np.abs(gain_point))
    best, best_cand = _best(score, cand, pair_member, m_count)
    tol = SCORE_TOL * np.maximum(1.0, np.abs(np.where(star >= 0, point.value[star], 0.0)))
    move = np.isfinite(best) & (best > tol)
    to = np.where(move, best_cand, -1)

    # a set no draw moves: the cell the draw moved most moves anyway (the first on ties), to
    # its best-scoring candidate; to one that asks no tight row for more where there is one
    moved = np.bincount(member_set, move, minlength=len(sets)) > 0
    pushes = _pushes(point, cand, s, tight)
    surprise = np.where(cand == s, -np.inf, np.abs(gain_draw - gain_point))
    thrifty_cand = _best(np.where(pushes, -np.inf, score), cand, pair_member, m_count)[1]
    thrifty_surprise = _best(np.where(pushes, -np.inf, surprise), cand, pair_member, m_count)[0]
    set_thrifty = np.full(len(sets), -np.inf)
    np.maximum.at(set_thrifty, member_set, thrifty_surprise)
    use_thrifty = np.isfinite(set_thrifty)[member_set]
    most = np.where(use_thrifty, thrifty_surprise,
                    _best(surprise, cand, pair_member, m_count)[0])
    best_cand = np.where(use_thrifty, thrifty_cand, best_cand)
    set_most = np.full(len(sets), -np.inf)
    np.maximum.at(set_most, member_set, most)
    forced = np.flatnonzero(np.isfinite(most) & (most == set_most[member_set]) &
                            ~moved[member_set])
    forced = forced[np.r_[True, member_set[forced][1:] != member_set[forced][:-1]]] \
        if len(forced) else forced
    to[forced] = best_cand[forced]
    return Moves(to, np.bincount(member_set, to >= 0, minlength=len(sets)) > 0)


def _best(score: np.ndarray, cand: np.ndarray, pair_member: np.ndarray, m_count: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Per member: its pairs' best score (-inf without one) and the first candidate reaching it."""
    best = np.full(len(m_count), -np.inf)
    best_cand = np.full(len(m_count), -1, dtype=np.int64)
    with_pairs = np.flatnonzero(m_count > 0)
    if len(with_pairs):
        best[with_pairs] = np.maximum.reduceat(score, (np.cumsum(m_count) - m_count)[with_pairs])
        hit = np.flatnonzero((score == best[pair_member]) & np.isfinite(score))
        first_hit = hit[np.r_[True, pair_member[hit][1:] != pair_member[hit][:-1]]] \
            if len(hit) else hit
        best_cand[pair_member[first_hit]] = cand[first_hit]
    return best, best_cand


def _pushes(point: Candidates, cand: np.ndarray, star: np.ndarray,
            tight: sp.csr_matrix | None) -> np.ndarray:
    """Per pair: whether showing `cand` instead of `star` uses some tight row more."""
    if tight is None or tight.shape[0] == 0 or not len(cand):
        return np.zeros(len(cand), dtype=bool)
    takes, by_column = point.takes, sp.csc_matrix(tight)  # one column per pair: CSC picks fast
    to = sp.csc_matrix(by_column[:, point.variant[cand]] @ sp.diags(takes[cand]))
    away = sp.csc_matrix(by_column[:, point.variant[star]] @ sp.diags(takes[star]))
    more = sp.csc_matrix(to - away - PUSH_TOL * (abs(to) + abs(away))) > 0
    out: np.ndarray = np.asarray(more.sum(axis=0)).ravel() > 0
    return out
