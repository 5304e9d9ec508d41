"""Whole segments re-assigned between the choices of a few prices, by one MIP.

The greedy repair moves a segment from its choice under the best multipliers to its choice
under prices that meet every row, one segment at a time. Here every segment whose choice
differs between the prices gets one binary column per distinct choice, worth that choice's
value and using its takes of each coupling row; every other segment keeps the first price's
choice, its usage taken off the limits. The columns are few (a few per segment that
differs, against about 120 candidates per segment in the whole MIP) and the rows are the
coupling rows, so HiGHS solves it where the whole MIP, or even its LP, does not fit.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optimizer.backends import Backend, Limits, MilpProblem
from optimizer.decomposition.oracle import LocalOracle
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows

MIN_MIP_SECONDS = 2.0


@dataclass(frozen=True)
class Alternatives:
    """Per price, per segment: its choice's signature, value and usage of each row, and the
    value less its takes priced at the first price (the Lagrangian's view of the choice)."""

    signature: np.ndarray  # prices x segments
    value: np.ndarray  # prices x segments
    usage: list[sp.csc_matrix]  # per price: rows x segments
    priced: np.ndarray  # prices x segments


def alternatives(oracle: LocalOracle, prices: list[np.ndarray], K: sp.csr_matrix) -> Alternatives:
    per = [oracle.per_segment(p, K, prices[0]) for p in prices]
    return Alternatives(np.stack([s for s, _, _, _ in per]), np.stack([v for _, v, _, _ in per]),
                        [sp.csc_matrix(u) for _, _, u, _ in per],
                        np.stack([v - c for _, v, _, c in per]))


def reassign(oracle: LocalOracle, rows: VariantRows, prices: list[np.ndarray],
             start: np.ndarray, backend: Backend, limits: Limits, most: int) -> Candidates | None:
    """The best plan the MIP finds in `limits` (None without one). `start` gives, per
    segment, the index of the price whose choice it has in a plan known to meet every row.
    At most `most` segments are free: those `start` moves, then those the first prices
    leave closest to indifferent between their choices; the others keep `start`'s."""
    started = time.perf_counter()
    K, limit = rows.as_le()
    alt = alternatives(oracle, prices, K)
    differ = np.flatnonzero((alt.signature != alt.signature[0]).any(axis=0))
    if not len(differ):
        return None
    free, kept, held_at = _free(alt, differ, start, most)  # kept: held at `start`'s choice
    # a price's choice is a column only where no earlier price chose the same
    sig = alt.signature[:, free]
    new = np.ones(sig.shape, dtype=bool)
    for t in range(1, len(prices)):
        new[t] = np.all(sig[t] != sig[:t], axis=0)
    held = np.asarray(alt.usage[0].sum(axis=1)).ravel() - \
        np.asarray(alt.usage[0][:, free].sum(axis=1)).ravel() + held_at
    where = [np.flatnonzero(new[t]) for t in range(len(prices))]  # indices into free
    value = np.concatenate([alt.value[t, free[w]] for t, w in enumerate(where)])
    usage = sp.hstack([alt.usage[t][:, free[w]] for t, w in enumerate(where)], format="csr")
    owner = np.concatenate(where)  # each column's segment, as an index into free
    problem = choice_mip(value, usage, owner, len(free), limit - held, limit,
                         _start_columns(sig, start[free], where))
    if problem is None:
        return None  # the held segments alone overdraw a row no column touches
    if limits.time_limit is not None:  # the limit covers finding the alternatives too
        left = limits.time_limit - (time.perf_counter() - started)
        if left < MIN_MIP_SECONDS:
            return None
        limits = dataclasses.replace(limits, time_limit=left)
    result = backend(problem, limits)
    if result.x is None:
        return None
    pick = result.x > 0.5
    column_price = np.concatenate([np.full(len(w), t) for t, w in enumerate(where)])
    moves = [(prices[t], np.r_[free[owner[pick & (column_price == t)]], kept[start[kept] == t]])
             for t in range(1, len(prices))]
    plan = oracle.mixed(prices[0], moves)
    return plan if holds_every_row(plan, K, limit) else None


def choice_mip(objective: np.ndarray, usage: sp.spmatrix, owner: np.ndarray, n_units: int,
               room: np.ndarray, limit: np.ndarray, start: np.ndarray) -> MilpProblem | None:
    """One binary column per choice (`usage`: rows x choices; `owner`: each choice's unit),
    one choice per unit, every row within `room`; None when a row no choice touches is
    already over its room."""
    assign = sp.csr_matrix((np.ones(len(owner)), (owner, np.arange(len(owner)))),
                           shape=(n_units, len(owner)))
    scale = np.asarray(abs(usage).max(axis=1).todense()).ravel()
    live = scale > 0
    if np.any(~live & (room < -1e-9 * np.maximum(1.0, np.abs(limit)))):
        return None
    # each row divided by its largest coefficient, as the coupling rows of every MIP here
    rows = sp.csr_matrix(sp.diags(1.0 / scale[live]) @ sp.csr_matrix(usage)[live])
    return MilpProblem(
        objective=objective, matrix=sp.vstack([assign, rows], format="csr"),
        row_lower=np.r_[np.ones(n_units), np.full(int(live.sum()), -np.inf)],
        row_upper=np.r_[np.ones(n_units), room[live] / scale[live]],
        col_upper=np.ones(len(objective)), integer=np.ones(len(objective), dtype=bool),
        start=start)


def holds_every_row(plan: Candidates, K: sp.csr_matrix, limit: np.ndarray) -> bool:
    """Within the solver's tolerance of each row's own size (a ratio row's limit is 0)."""
    takes = plan.usage_per_column()
    size = np.maximum(np.maximum(1.0, np.abs(limit)), abs(K) @ takes)
    return bool(np.all(K @ takes <= limit + 1e-9 * size))


def _free(alt: Alternatives, differ: np.ndarray, start: np.ndarray, most: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The segments of `differ` to free, those to hold, and the change to the rows' usage
    from holding them at `start`'s choice instead of the first price's."""
    if len(differ) <= most:
        return differ, differ[:0], np.zeros(alt.usage[0].shape[0])
    regret = alt.priced[0, differ] - alt.priced[1:, differ].max(axis=0)  # >= 0: 0 first
    regret[start[differ] > 0] = -np.inf  # the moved segments first
    free = np.sort(differ[np.argsort(regret, kind="stable")[:most]])
    held = np.setdiff1d(differ, free)
    moved = [held[start[held] == t] for t in range(1, len(alt.usage))]
    shift = sum((np.asarray((alt.usage[t][:, m] - alt.usage[0][:, m]).sum(axis=1)).ravel()
                 for t, m in enumerate(moved, start=1) if len(m)), np.zeros(alt.usage[0].shape[0]))
    return free, held, shift


def _start_columns(sig: np.ndarray, at: np.ndarray, where: list[np.ndarray]) -> np.ndarray:
    """The start plan's columns: each segment's column is the first price with its choice."""
    chosen_sig = sig[at, np.arange(sig.shape[1])]
    first = np.argmax(sig == chosen_sig, axis=0)  # the earliest price choosing the same
    return np.concatenate([(first[w] == t).astype(np.float64) for t, w in enumerate(where)])
