"""LP-guided plans: the relaxation, a dive, a MIP over what stays fractional, then LNS.

The segments' choice polytopes are integral, so the LP optimum is fractional only on a
few segments (at most one per binding coupling row). Rounding those few is what is hard
on real catalogs: a heavy segment's choice moves stock and ratio rows by large discrete
amounts, and with every other segment fixed there is no room left to absorb it. So:

1. **Dive.** Fix the heaviest fractional segments to their most-weighted offer set and
   re-solve the LP warm (dual simplex): the LP re-balances every other segment around
   the rounded ones. Repeat until only light segments stay fractional (or a fix makes the
   LP infeasible: that segment is left free).
2. **Close.** A MIP over the segments still fractional and the near-ties next to them,
   every other segment fixed at the dive's choice with its usage taken off the limits.
3. **Improve** while time remains: neighbourhood MIPs (LNS) started from the incumbent,
   over segments the duals point at (misplaced under the LP prices, loading binding rows,
   heavy) mixed with random ones; on small instances, the full MIP warm-started instead.

Every plan found is handed to `on_plan` at once, so a supervisor that stops this run at
its deadline keeps the best so far.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import highspy
import numpy as np

from optimizer.backends import Backend, Limits, MilpProblem, Progress, Termination
from optimizer.backends.highs import new_highs, run_within, to_highs_lp
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.contacts import keys_of
from optimizer.formulation.milp import Formulation, coupling_scaling, formulate_rows, milp_problem
from optimizer.formulation.offer_sets import OfferSets, offer_sets
from optimizer.model.families import ON_CANDIDATES, ON_USAGE

INTEGRAL_TOL = 1e-6
PRIMAL_SIMPLEX = 4  # HiGHS's simplex_strategy value
FULL_MIP_MAX_CANDIDATES = 40_000  # up to this, the whole MIP follows the LP (no dive, no LNS)
DIVE_SHARE = 0.35  # of the time left after the LP, at most, for the dive
INTEGRAL_SHARE = 0.5  # of the time left, at most, for split traffic's integral comparison
LNS_START_SEGMENTS = 60
LNS_SLICE = 6.0  # seconds per neighbourhood MIP, at most
LNS_PATIENCE = 40  # neighbourhoods without improvement before stopping (no time limit)
SUB_GAP = 1e-7
CLOSE_GAP, CLOSE_SLICE = 1e-5, 10.0  # the closing MIP: a good plan soon, LNS improves it
LIGHT_SEGMENT = 1e-3  # share of all views below which the dive leaves a segment to the MIP


@dataclass(frozen=True)
class Found:
    """A plan: positions in the candidate table, its value, and how it was found."""

    positions: np.ndarray
    objective: float
    how: str
    sets: OfferSets | None = None  # split traffic: sets over `positions`


OnPlan = Callable[[Found], None]


@dataclass(frozen=True)
class Outcome:
    bound: float | None  # the LP bound (or the full MIP's, when it proved better)
    lp_objective: float | None
    termination: Termination
    infeasible: bool
    history: tuple[tuple[float, float | None, float | None], ...]
    steps: dict[str, float]
    integral_objective: float | None = None  # split traffic: the best integral plan found
    row_prices: np.ndarray | None = None  # the LP's duals of `form.coupling`'s rows


class Relaxation:
    """The LP relaxation in one HiGHS instance: fixing segments re-solves from the last basis."""

    def __init__(self, form: Formulation, problem: MilpProblem, threads: int | None) -> None:
        self.h = new_highs(threads)
        self.h.setOptionValue("output_flag", False)
        # simplex ends at a vertex (few fractional segments) and re-solves from its basis;
        # on this formulation it is also much faster than the interior point method
        self.h.setOptionValue("solver", "simplex")
        relaxed = dataclasses.replace(problem, integer=np.zeros(len(problem.objective), dtype=bool))
        self.h.passModel(to_highs_lp(relaxed))
        self.n = len(form.candidates)
        self.upper = np.asarray(problem.col_upper, dtype=np.float64)[: self.n]
        assert problem.row_family is not None
        self.coupling = np.flatnonzero(np.isin(problem.row_family, ON_USAGE))
        # coupling rows sit on the takes columns: their duals price a take of each variant
        self.per_take = problem.matrix[self.coupling][:, self.n:].tocsc()
        # rows 8-9 (audiences' caps) sit on the candidates: their duals price an offer
        self.contact = np.flatnonzero(np.isin(problem.row_family, ON_CANDIDATES))
        self.per_offer = problem.matrix[self.contact][:, : self.n].tocsc()
        self.form = form

    def solve(self, time_limit: float | None) -> tuple[Termination, np.ndarray | None, float | None]:
        if run_within(self.h, time_limit or None) == highspy.HighsStatus.kError:
            # the dual simplex gives up on rows of tiny coefficients beside large values ("excessive
            # dual values"); the primal simplex solves those, from the same basis
            self.h.setOptionValue("simplex_strategy", PRIMAL_SIMPLEX)
            self.h.run()
        status = self.h.getModelStatus()
        if status == highspy.HighsModelStatus.kModelEmpty:  # no candidate, no row: nothing shown
            return Termination.OPTIMAL, np.zeros(self.n), 0.0
        if status == highspy.HighsModelStatus.kOptimal:
            x = np.clip(np.asarray(self.h.getSolution().col_value)[: self.n], 0.0, self.upper)
            return Termination.OPTIMAL, x, float(self.h.getInfo().objective_function_value)
        if status in (highspy.HighsModelStatus.kInfeasible,
                      highspy.HighsModelStatus.kUnboundedOrInfeasible):
            return Termination.INFEASIBLE, None, None
        if status == highspy.HighsModelStatus.kTimeLimit:
            return Termination.TIME_LIMIT, None, None
        return Termination.ERROR, None, None

    def priced_values(self) -> np.ndarray:
        """Each column's value less what its coupling-row use costs at the LP's duals."""
        row_dual = np.asarray(self.h.getSolution().row_dual)
        price = np.asarray(self.per_take.T @ row_dual[self.coupling]).ravel()  # per used column
        c = self.form.candidates
        out: np.ndarray = c.value - self.form.usage_columns.priced(price, len(c)) - \
            np.asarray(self.per_offer.T @ row_dual[self.contact]).ravel()
        return out

    def row_duals(self) -> np.ndarray:
        """The LP's duals of every coupling row of `form.per_take`, in the row's own units."""
        duals = np.asarray(self.h.getSolution().row_dual)[self.coupling]
        return coupling_scaling(self.form).unscaled_duals(duals)  # only column generation asks

    def row_prices(self) -> np.ndarray:
        """The duals of `form.coupling`'s rows (coupling rows and capacities, then rows 8-9),
        in each row's own units, as magnitudes: margin per unit of the row."""
        return np.abs(np.r_[self.row_duals(), self._contact_row_duals()])

    def _contact_row_duals(self) -> np.ndarray:
        """Rows 8-9's duals, in each row's own units (`milp_problem` normalizes them)."""
        contact = self.form.contact
        peak = np.asarray(abs(contact.matrix).max(axis=1).todense()).ravel() if len(contact) \
            else np.zeros(0)
        out: np.ndarray = np.asarray(self.h.getSolution().row_dual)[self.contact] / \
            np.where(peak > 0, peak, 1)
        return out

    def contact_duals(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows 8-9 of the LP by key (`optimizer.formulation.contacts`, sorted), and their
        duals in each row's own units (margin per unit of the row, >= 0)."""
        contact = self.form.contact
        keys = keys_of(contact.family, contact.subject)
        dual = self._contact_row_duals()
        order = np.argsort(keys)
        return keys[order], np.maximum(dual[order], 0.0)

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        if len(cols):
            self.h.changeColsBounds(len(cols), cols.astype(np.int32), lower, upper)


@dataclass
class _Run:
    cands: Candidates
    form: Formulation
    backend: Backend
    limits: Limits
    on_plan: OnPlan
    started: float
    deadline: float | None
    rng: np.random.Generator
    steps: dict[str, float]
    best: Found | None = None
    bound: float | None = None
    history: list[tuple[float, float | None, float | None]] = dataclasses.field(default_factory=list)
    row_prices: np.ndarray | None = None

    def outcome(self, bound: float | None, lp_objective: float | None, termination: Termination,
                infeasible: bool, integral_objective: float | None = None) -> Outcome:
        return Outcome(bound, lp_objective, termination, infeasible, tuple(self.history),
                       self.steps, integral_objective, self.row_prices)

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def offer(self, positions: np.ndarray, how: str) -> bool:
        value = float(self.cands.value[positions].sum())
        if self.best is not None and value <= self.best.objective + 1e-9 * max(1.0, abs(value)):
            return False
        self.best = Found(np.sort(positions), value, how)
        self.on_plan(self.best)
        self.note()
        return True

    def note(self) -> None:
        elapsed = time.perf_counter() - self.started
        objective = None if self.best is None else self.best.objective
        self.history.append((round(elapsed, 3), objective, self.bound))
        if self.limits.progress is not None:
            gap = None if objective is None or self.bound is None else \
                max(0.0, (self.bound - objective) / max(abs(self.bound), 1.0))
            self.limits.progress(Progress(objective, self.bound, gap, elapsed))

    def gap(self) -> float:
        if self.best is None or self.bound is None:
            return np.inf
        return max(0.0, (self.bound - self.best.objective) / max(abs(self.bound), 1.0))


@dataclass(frozen=True)
class Solved:
    """A relaxation already at its optimum `x` (over the candidates) with `value`."""

    lp: Relaxation
    x: np.ndarray
    value: float


def lp_guided(cands: Candidates, form: Formulation, backend: Backend, limits: Limits,
              on_plan: OnPlan, split_traffic: bool = False, seed: int = 0,
              solved: Solved | None = None) -> Outcome:
    """Plans for `form` (every candidate), each reported to `on_plan` as it improves;
    `solved` is form's relaxation when the caller has solved it already."""
    started = time.perf_counter()
    deadline = None if limits.time_limit is None else started + limits.time_limit
    steps: dict[str, float] = {}
    run = _Run(cands, form, backend, limits, on_plan, started, deadline,
               np.random.default_rng(seed), steps)
    if solved is None:
        lp = Relaxation(form, milp_problem(form), limits.threads)
        termination, x, value = lp.solve(run.left())
    else:
        lp, x, value, termination = solved.lp, solved.x, solved.value, Termination.OPTIMAL
    steps["lp_seconds"] = round(time.perf_counter() - started, 3)
    if termination != Termination.OPTIMAL or x is None or value is None:
        return run.outcome(None, None, termination, termination == Termination.INFEASIBLE)
    run.bound = value
    run.note()  # the LP bound is known: a progress line even before the first plan
    fractional = _fractional_segments(cands, x)
    steps["lp_fractional_segments"] = len(fractional)
    priced = lp.priced_values()
    run.row_prices = lp.row_prices()
    if split_traffic:
        sets = offer_sets(cands, x)
        positions = np.unique(sets.member)
        share = sets.shares(len(cands))
        run.best = Found(positions, float(cands.value @ share), "the LP optimum as offer sets",
                         _sets_on(positions, sets))
        on_plan(run.best)
        run.note()
        integral = _integral_comparison(run, lp, x, priced)
        return run.outcome(value, value, Termination.OPTIMAL, False, integral)
    if not len(fractional):
        run.offer(np.flatnonzero(x > 0.5), "the LP optimum is integral")
        return run.outcome(value, value, Termination.OPTIMAL, False)

    if len(cands) <= FULL_MIP_MAX_CANDIDATES:  # small: the whole MIP is quicker than LNS
        bound_out, termination = _full_mip(run, value)
        if run.best is None and termination == Termination.OPTIMAL:
            return run.outcome(None, value, Termination.INFEASIBLE, True)
        return run.outcome(bound_out, value, termination, False)
    x, stuck = _dive(run, lp, x)
    steps["dive_seconds"] = round(time.perf_counter() - started - steps["lp_seconds"], 3)
    open_ = _fractional_segments(cands, x)
    steps["after_dive_fractional_segments"] = len(open_)
    if not len(open_):
        run.offer(np.flatnonzero(x > 0.5), "LP dive: heaviest fractional segments rounded")
    elif not _close(run, x, open_, priced):
        return run.outcome(None, value, Termination.INFEASIBLE, True)
    bound_out = value
    termination = Termination.OPTIMAL if run.gap() <= limits.gap else Termination.TIME_LIMIT
    if run.best is not None and run.gap() > limits.gap:
        bound_out, termination = _improve(run, priced, x, value)
    steps["stuck_segments"] = len(stuck)
    return run.outcome(bound_out, value, termination, False)


def _integral_comparison(run: _Run, lp: Relaxation, x: np.ndarray, priced: np.ndarray
                         ) -> float | None:
    """The best integral plan the dive and the closing MIP find, to show what splitting
    gains; it is not reported as a plan. It takes at most half the time left, so that the
    split plan's own result (with its multipliers) comes back before the deadline."""
    left = run.left()
    deadline = None if left is None else time.perf_counter() + INTEGRAL_SHARE * max(left, 0.0)
    integral = dataclasses.replace(run, on_plan=lambda found: None, best=None, history=[],
                                   deadline=deadline,
                                   limits=dataclasses.replace(run.limits, progress=None))
    x, _ = _dive(integral, lp, x)
    open_ = _fractional_segments(run.cands, x)
    if not len(open_):
        integral.offer(np.flatnonzero(x > 0.5), "LP dive")
    else:
        _close(integral, x, open_, priced)
    return None if integral.best is None else integral.best.objective


def _sets_on(positions: np.ndarray, sets: OfferSets) -> OfferSets:
    """Sets over candidate table positions, re-indexed onto `positions` (sorted)."""
    return dataclasses.replace(sets, member=np.searchsorted(positions, sets.member))


def _fractional_segments(cands: Candidates, x: np.ndarray) -> np.ndarray:
    frac = (x > INTEGRAL_TOL) & (x < 1 - INTEGRAL_TOL)
    return np.unique(cands.segment[frac])


def _dive(run: _Run, lp: Relaxation, x: np.ndarray) -> tuple[np.ndarray, set[int]]:
    """Round the heaviest fractional segments to their most-weighted set, re-solving the LP."""
    cands = run.cands
    views = cands.segment_views
    stuck: set[int] = set()
    left = run.left()
    budget_end = None if left is None else time.perf_counter() + DIVE_SHARE * left
    order = np.argsort(cands.segment, kind="stable")  # already sorted; positions per segment
    seg_start = np.searchsorted(cands.segment[order], np.arange(len(views) + 1))
    while True:
        frac = [s for s in _fractional_segments(cands, x) if int(s) not in stuck]
        if not frac or (budget_end is not None and time.perf_counter() > budget_end):
            return x, stuck
        frac_arr = np.asarray(frac)
        heavy = frac_arr[np.argsort(-views[frac_arr], kind="stable")]
        # light segments are rounded by the closing MIP at little cost: dive on the heavy
        if views[heavy[0]] < LIGHT_SEGMENT * views.sum():
            return x, stuck
        batch = heavy[: max(1, len(heavy) // 3)]
        fixed = _fix_to_main_set(run, lp, x, batch, seg_start)
        left = run.left()
        termination, new_x, _ = lp.solve(left)
        run.steps["dive_lp_solves"] = run.steps.get("dive_lp_solves", 0) + 1
        if termination == Termination.OPTIMAL and new_x is not None:
            x = new_x
            run.steps["dive_fixed_segments"] = run.steps.get("dive_fixed_segments", 0) + len(batch)
            continue
        _unfix(lp, fixed)
        if termination != Termination.INFEASIBLE:  # out of time: keep the last LP point
            return x, stuck
        if len(batch) == 1:
            stuck.add(int(batch[0]))
            continue
        fixed = _fix_to_main_set(run, lp, x, batch[:1], seg_start)  # retry one at a time
        termination, new_x, _ = lp.solve(run.left())
        if termination == Termination.OPTIMAL and new_x is not None:
            x = new_x
            continue
        _unfix(lp, fixed)
        stuck.add(int(batch[0]))


def _fix_to_main_set(run: _Run, lp: Relaxation, x: np.ndarray, segments: np.ndarray,
                     seg_start: np.ndarray) -> np.ndarray:
    """Fix each segment's columns to its heaviest offer set; return the columns touched."""
    cands = run.cands
    cols = np.concatenate([np.arange(seg_start[s], seg_start[s + 1]) for s in segments])
    mask = np.zeros(len(x))
    mask[cols] = x[cols]
    sets = offer_sets(cands, mask)
    one = np.zeros(len(x), dtype=bool)
    for s in segments:
        mine = np.flatnonzero(sets.segment == s)
        if not len(mine):
            continue
        top = mine[int(np.argmax(sets.weight[mine]))]
        one[sets.member[sets.start[top]:sets.start[top + 1]]] = True
    value = one[cols].astype(np.float64)
    lp.set_bounds(cols, value, value)
    return cols


def _unfix(lp: Relaxation, cols: np.ndarray) -> None:
    lp.set_bounds(cols, np.zeros(len(cols)), lp.upper[cols])


def _close(run: _Run, x: np.ndarray, open_: np.ndarray, priced: np.ndarray) -> bool:
    """A MIP over the open segments and near-ties, the rest fixed at x's integral choice,
    grown fourfold while it finds no plan. False when the MIP over every segment proved
    that no plan exists (the LP was feasible only within its tolerances)."""
    cands = run.cands
    n = len(cands.lo)
    anchor = np.flatnonzero(x > 0.5)
    ties = _near_ties(run, priced, anchor)
    size = max(4 * len(open_), 100)
    while True:
        free = np.union1d(open_, ties[:size])
        left = run.left()
        if left is not None and left <= 0.2:
            return True
        everything = len(free) >= n
        slice_ = CLOSE_SLICE if left is None else max(0.2, min(left * 0.5, CLOSE_SLICE))
        found, termination = _sub_mip(run, free, anchor, slice_, gap=CLOSE_GAP)
        if found is not None:
            run.offer(found, f"LP dive, then a MIP over {len(free)} open and near-tie segments")
            return True
        if everything:
            return termination != Termination.INFEASIBLE
        size *= 4


def _near_ties(run: _Run, priced: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Segments by how little it costs them, at the LP prices, to change their choice."""
    cands = run.cands
    n = len(cands.lo)
    best = np.full(n, -np.inf)
    np.maximum.at(best, cands.segment, priced)
    mine = np.full(n, -np.inf)
    np.maximum.at(mine, cands.segment[anchor], priced[anchor])
    others = np.where(np.isin(np.arange(len(cands)), anchor), -np.inf, priced)
    second = np.full(n, -np.inf)
    np.maximum.at(second, cands.segment, others)
    both = np.isfinite(second) & np.isfinite(mine)
    slack = np.full(n, np.inf)
    slack[both] = np.abs(mine[both] - second[both])
    scale = cands.segment_views * 1.0 + 1.0
    out: np.ndarray = np.argsort(slack / scale, kind="stable")
    return out


def _sub_mip(run: _Run, free: np.ndarray, incumbent: np.ndarray, time_limit: float | None,
             start: bool = False, gap: float = SUB_GAP) -> tuple[np.ndarray | None, Termination]:
    """The best plan moving only the `free` segments from `incumbent` (None if none found)."""
    cands = run.cands
    is_free = np.zeros(len(cands.lo), dtype=bool)
    is_free[free] = True
    sub_pos = np.flatnonzero(is_free[cands.segment])
    fixed = incumbent[~is_free[cands.segment[incumbent]]]
    # the segments held outside `cands`, and the fixed ones of `cands`
    form = formulate_rows(cands.subset(sub_pos), run.form.per_take,
                          run.form.held_with(cands.subset(fixed)))
    problem = milp_problem(form)
    if start:
        x0 = np.isin(sub_pos, incumbent).astype(np.float64)
        problem = dataclasses.replace(problem, start=form.start(x0))
    result = run.backend(problem, Limits(time_limit, gap, run.limits.threads))
    if result.x is None:
        return None, result.termination
    return np.sort(np.r_[fixed, sub_pos[problem.chosen(result.x)]]), result.termination


def _improve(run: _Run, priced: np.ndarray, x: np.ndarray, lp_value: float
             ) -> tuple[float, Termination]:
    """Neighbourhood MIPs from the incumbent until the gap, the deadline or patience ends."""
    assert run.best is not None
    cands = run.cands
    n = len(cands.lo)
    size = min(LNS_START_SEGMENTS, n)
    kinds = ("misplaced", "binding", "heavy", "lp")
    lp_choice = x
    failures = 0
    k = 0
    while run.gap() > run.limits.gap and failures < (LNS_PATIENCE if run.deadline is None
                                                     else 10**9):
        left = run.left()
        if left is not None and left <= 0.3:
            return lp_value, Termination.TIME_LIMIT
        free = _neighbourhood(run, kinds[k % len(kinds)], size, priced, lp_choice)
        k += 1
        slice_ = LNS_SLICE if left is None else max(0.2, min(LNS_SLICE, left - 0.2))
        t0 = time.perf_counter()
        found, _ = _sub_mip(run, free, run.best.positions, slice_, start=True)
        took = time.perf_counter() - t0
        if found is not None and run.offer(found, f"LNS: neighbourhood MIPs of about {size} "
                                                  "segments from the dive's plan"):
            failures = 0
        else:
            failures += 1
        size = min(n, int(size * 1.25) + 1) if took < slice_ / 3 else max(10, int(size * 0.8))
    termination = Termination.OPTIMAL if run.gap() <= run.limits.gap else Termination.TIME_LIMIT
    return lp_value, termination


def _full_mip(run: _Run, lp_value: float) -> tuple[float, Termination]:
    """The whole MIP (warm-started from the incumbent, if any); its proof, when it ends with
    one, is the method's. OPTIMAL with no plan means it proved that no plan exists."""
    problem = milp_problem(run.form)
    if run.best is not None:
        start = np.zeros(len(run.cands))
        start[run.best.positions] = 1.0
        problem = dataclasses.replace(problem, start=run.form.start(start))
    # the whole problem: its progress (objective, bound) is the method's, and each incumbent
    # is a plan to keep should a deadline stop it
    def incumbent(x: np.ndarray) -> None:
        run.offer(np.flatnonzero(problem.chosen(x)), "the whole MIP's incumbent")

    result = run.backend(problem, Limits(run.left(), run.limits.gap, run.limits.threads,
                                         run.limits.progress, incumbent))
    if result.x is not None:
        run.offer(np.flatnonzero(problem.chosen(result.x)), "the whole MIP, after the LP")
    if result.termination == Termination.INFEASIBLE:
        return lp_value, Termination.OPTIMAL
    if run.best is None:
        return lp_value, result.termination
    bound = lp_value if result.bound is None else min(lp_value, max(result.bound,
                                                                    run.best.objective))
    run.bound = bound
    run.note()
    proved = result.termination == Termination.OPTIMAL or run.gap() <= run.limits.gap
    return bound, Termination.OPTIMAL if proved else Termination.TIME_LIMIT


def _neighbourhood(run: _Run, kind: str, size: int, priced: np.ndarray,
                   lp_x: np.ndarray) -> np.ndarray:
    """`size` segments: half picked by `kind`, half at random."""
    assert run.best is not None
    cands, rng = run.cands, run.rng
    n = len(cands.lo)
    views = cands.segment_views
    inc = run.best.positions
    if kind == "misplaced":  # furthest from their best choice at the LP prices
        best = np.full(n, -np.inf)
        np.maximum.at(best, cands.segment, priced)
        mine = np.bincount(cands.segment[inc], priced[inc], minlength=n)
        score = best - np.where(np.bincount(cands.segment[inc], minlength=n) > 0, mine, 0.0)
    elif kind == "binding":  # loading the priced rows most
        score = np.bincount(cands.segment[inc], np.abs(cands.value[inc] - priced[inc]), minlength=n)
    elif kind == "heavy":
        score = views.astype(np.float64)
    else:  # where the incumbent differs from the LP
        diff = np.abs(lp_x.copy())
        diff[inc] -= 1.0
        score = np.bincount(cands.segment, np.abs(diff), minlength=n)
    pool = np.argsort(-score, kind="stable")[: max(2 * size, 100)]
    take = min(len(pool), max(1, size // 2))
    chosen = rng.choice(pool, size=take, replace=False)
    rest = rng.choice(n, size=min(n, size - take + len(chosen)), replace=False)
    out: np.ndarray = np.unique(np.r_[chosen, rest])[: max(size, 1)]
    return out
