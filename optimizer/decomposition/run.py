"""The decomposition's solve: multipliers, plans from them, and split traffic at scale.

`decomposed_solution` runs over any `Oracle` (local, or the segment step on Dask through
`optimizer.decomposition.distributed`); `decomposed` adds yesterday's plan (warm start, stability).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from optimizer.backends import Backend, Limits, Termination
from optimizer.decomposition.dual import (
    BISECTIONS,
    DUAL_SHARE,
    MAX_ITERATIONS,
    RPROP_ITERATIONS,
    decompose,
    gap_of,
)
from optimizer.decomposition.oracle import LocalOracle, Oracle
from optimizer.decomposition.restricted import restricted_lp, split_lp
from optimizer.formulation.candidates import Candidates, expand
from optimizer.formulation.choice import chooser_for
from optimizer.formulation.contacts import Contacts
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.milp import formulate, live_coupling
from optimizer.formulation.segment_choice import SegmentBest
from optimizer.model.instance import Instance
from optimizer.solve.diagnose import diagnose
from optimizer.solve.reports import DecompositionStats, PricedRow, priced_rows, row_prices
from optimizer.solve.result import Solution, SolveOptions, Status, relative_gap, thin, time_left
from optimizer.solve.supervise import OnPlan, PlanMessage, Sink
from optimizer.stability.warm import FALLBACK_HOW, WarmStart

AUTO_EXACT_MAX_CANDIDATES = 400_000  # with yesterday's plan, `auto` decomposes above this
# Above this size a unit whose choice alone overdraws a row chooses again within it
# (`optimizer.decomposition.alone`): there a choice takes seconds and its MIP little more,
# and no recovery MIP reaches every unit. Below it the MIP (about 0.1 s a call, for many units
# of a small catalog) slowed a 100-segment search tenfold, and it found no plan in 10 s
ALONE_MIN_CANDIDATES = AUTO_EXACT_MAX_CANDIDATES
RESTRICTED_MIN_SECONDS = 20.0  # time left below which the decomposition skips its LP step
LP_STEP_MAX_CANDIDATES = 20_000_000  # the decomposition's LP step, measured at 1M segments
DUAL_SHARE_BEFORE_LP = 0.2  # of the time limit for the multipliers, when the LP step follows
MAX_CONTESTED_SEGMENTS = 2_000  # the recovery MIP's first round, above that size
# Above the LP step's size, the repair's moves and the segments nearest indifference are
# re-assigned by one MIP: 30,000 of them took L from 0.074% to 0.029% in 60 s
REASSIGN_SEGMENTS = 30_000
REASSIGN_SHARE = 0.6  # of the time left after the repair; the contested-segment MIP gets the rest
REASSIGN_MIN_SECONDS = 20.0
# With audience caps, the master LP over whole-audience choices replaces that MIP
# (`optimizer.decomposition.master`); it starts from the search's latest choices
MASTER_CHOICES = 8
# the master mixes choices itself: a safe price bisected finer is worth less than its time
# (at a million segments each bisection is a 10 s choice)
MASTER_BISECTIONS = 2
MASTER_SHARE = 0.85  # of the time left after the repair; the contested-segment MIP gets the rest
# There, the repair starts from the best multipliers of the sign-based descent (Rprop); the
# cutting planes that follow only tighten the bound. At L, four duals stopped by the clock
# within Rprop (42-58 iterations) gave repairs 0.074-0.077% below the bound, one that ran to
# 99 (cutting planes near convergence) 0.25%: converged multipliers leave more segments
# indifferent, and their choice overdraws more.
REPAIR_FROM_EVALUATIONS = RPROP_ITERATIONS + 1  # the zero point and the Rprop steps
# the bound and the plan's value sum the same numbers in different orders (the audience
# step's prefix sums): a gap this small is rounding, not a gap
SUMMATION_GAP = 1e-12


def against_previous(found: Solution, warm: WarmStart, penalized_bound: float | None
                      ) -> Solution:
    """The solve's plan or yesterday's made feasible, whichever is better under the stability
    settings; with those settings the bound (on the penalized problem) moves to the report."""
    c = found.candidates
    plan = c.subset(np.flatnonzero(found.selected))
    fallback = warm.fallback_plan()
    use_fallback = fallback is not None and found.status != Status.INFEASIBLE and \
        warm.within_churn(fallback) and \
        (found.objective is None or warm.penalized(fallback) > warm.penalized(plan) + 1e-9)
    if use_fallback:
        assert fallback is not None
        plan = fallback
        found = dataclasses.replace(
            found, candidates=fallback, selected=np.ones(len(fallback), dtype=bool),
            objective=float(fallback.value.sum()), status=Status.FEASIBLE,
            bound=None if found.bound is None else max(found.bound, float(fallback.value.sum())),
            message="yesterday's plan, made feasible, beat the solve's plan")
    report = warm.report(plan, penalized_bound)
    if warm.stability.constrains:  # a bound on the penalized objective bounds no plan's value
        return dataclasses.replace(found, bound=None, stability=report)
    return dataclasses.replace(found, stability=report)


def decomposed(instance: Instance, cands: Candidates, options: SolveOptions, backend: Backend,
                start: float, on_plan: OnPlan) -> Solution:
    """The decomposition; with yesterday's plan, on values adjusted by the change penalty.
    Yesterday's plan made feasible is the first plan sent, and each plan found after it is
    sent with its true values, ranked by the penalized objective: a solve stopped at its
    deadline keeps the best of them."""
    rows = live_coupling(instance, cands)
    own_rows = rows if len(cands) > ALONE_MIN_CANDIDATES else None
    if options.previous is None:
        return decomposed_solution(instance, LocalOracle(cands, rows=own_rows), rows, len(cands),
                                   options, backend, start, time.perf_counter(), on_plan)
    chooser = chooser_for(cands)  # the segments' structure: the same for adjusted values
    warm = WarmStart.build(instance, cands, rows, chooser, options.previous, options.stability)
    adjusted = dataclasses.replace(cands, value=warm.adjusted_values())
    penalty = options.stability.change_penalty

    def unadjusted(plan: Candidates) -> Candidates:
        return dataclasses.replace(plan, value=plan.value - warm.ref.penalty(plan, penalty))

    def on_adjusted_plan(plan: Candidates, how: str, score: float | None = None,
                         multipliers: list[PricedRow] | None = None) -> None:
        true_plan = unadjusted(plan)
        on_plan(true_plan, how, warm.penalized(true_plan), multipliers)

    fallback = warm.fallback_plan()
    if fallback is not None:
        on_plan(fallback, FALLBACK_HOW, warm.penalized(fallback))
    found = decomposed_solution(instance, LocalOracle(adjusted, chooser, own_rows), rows, len(cands),
                                options, backend, start, time.perf_counter(), on_adjusted_plan)
    true_plan = unadjusted(found.candidates)
    objective = None if found.objective is None else float(true_plan.value.sum())
    return against_previous(dataclasses.replace(found, candidates=true_plan, objective=objective),
                             warm, warm.penalized_bound(found.bound))


def split_decomposed(instance: Instance, cands: Candidates, options: SolveOptions,
                      backend: Backend, start: float, channel: Sink) -> Solution:
    """Split traffic on a catalog too large for one LP: multipliers, then column
    generation from the candidates near them until the LP meets its Lagrangian bound."""
    rows = live_coupling(instance, cands)
    oracle = LocalOracle(cands)
    built = time.perf_counter()
    # the multipliers bound the LP: audiences' caps are relaxed in them (the columns price
    # those rows at the LP's duals); plans near them still meet every cap
    relaxed = LocalOracle(cands, SegmentBest(cands)) if cands.contacts.audience_capped else oracle
    d = decompose(relaxed, rows, time_left(options.time_limit, start), options.gap,
                  dual_share=DUAL_SHARE_BEFORE_LP, on_progress=options.progress)
    found = split_lp(oracle, rows, d, backend, Limits(time_left(options.time_limit, start),
                                                        options.gap, options.threads))
    base = dict(instance=instance, coupling=rows, solver=options.solver, method="decompose",
                build_seconds=built - start, solve_seconds=time.perf_counter() - built)
    bound = min(d.bound, found.bound)
    stats = DecompositionStats(iterations=d.iterations, recovery=found.how,
                               multipliers=priced_rows(instance, rows.family, rows.subject, d.row_prices))
    if d.infeasible or found.plan is None or found.sets is None or found.value is None:
        infeasible = d.infeasible or found.infeasible
        status = Status.INFEASIBLE if infeasible else Status.TIME_LIMIT
        diagnosis = diagnose(instance, formulate(instance, cands), options.limits, backend) \
            if infeasible and options.diagnose else None
        return Solution(candidates=cands.subset(np.zeros(0, np.int64)), status=status,
                        selected=np.zeros(0, dtype=bool), objective=None,
                        bound=None if infeasible else bound, termination=Termination(status.value),
                        diagnosis=diagnosis, stats=stats, **base)  # type: ignore[arg-type]
    plan = found.plan
    channel.plan(PlanMessage(plan.segment, plan.variant, plan.take_prob, plan.value, found.how,
                             found.sets))
    bound = max(bound, found.value)
    optimal = found.converged or relative_gap(found.value, bound) <= options.gap + SUMMATION_GAP
    return Solution(candidates=plan, status=Status.OPTIMAL if optimal else Status.FEASIBLE,
                    selected=np.ones(len(plan), dtype=bool), objective=found.value, bound=bound,
                    termination=Termination.CONVERGED if optimal else Termination.TIME_LIMIT,
                    offer_sets=found.sets,
                    stats=dataclasses.replace(stats, integral_objective=found.integral),
                    **base)  # type: ignore[arg-type]


def decomposed_solution(instance: Instance, oracle: Oracle, rows: VariantRows, n_candidates: int,
                        options: SolveOptions, backend: Backend, start: float,
                        built: float, on_plan: OnPlan | None = None,
                        max_iterations: int = MAX_ITERATIONS) -> Solution:
    """Multipliers, then plans: a subproblem choice or price shift, its greedy repair, and
    the contested-segment MIP (growing to every segment on instances a MIP can take).
    Each plan found is handed to `on_plan` as soon as it is known, with the multipliers.
    The multipliers start from `options.previous_multipliers` (yesterday's) when given;
    the search takes at most `max_iterations` steps."""
    from optimizer.decomposition.master import master_plan
    from optimizer.decomposition.reassign import reassign
    from optimizer.decomposition.recovery import recover, repair

    over = Contacts.of(instance).over_at_minimum(oracle.lo)
    if len(over):  # no price changes the least offers: no plan meets these caps
        return _infeasible_caps(instance, over, options, backend, start, built, rows,
                                oracle.chosen(np.zeros(oracle.n_columns)))
    small = n_candidates <= AUTO_EXACT_MAX_CANDIDATES
    # with the restricted LP step to follow (its columns are a few per segment, about a
    # tenth of all candidates), the multipliers need not be exact; far above its size
    # (1M segments) its LP does not solve in the time left, and the repair is the plan
    lp_step = isinstance(oracle, LocalOracle) and not small and \
        n_candidates <= LP_STEP_MAX_CANDIDATES and not oracle.cands.contacts.audience_capped
    reassigning = not lp_step and not small and isinstance(oracle, LocalOracle)
    mastering = reassigning and isinstance(oracle, LocalOracle) and \
        oracle.cands.contacts.audience_capped  # isinstance again: mypy narrows on it
    share = DUAL_SHARE_BEFORE_LP if lp_step else DUAL_SHARE
    if mastering and isinstance(oracle, LocalOracle):
        oracle.keep = MASTER_CHOICES
    yesterday = row_prices(instance, rows.family, rows.subject, options.previous_multipliers) \
        if options.previous_multipliers else None
    d = decompose(oracle, rows, time_left(options.time_limit, start), options.gap,
                  max_iterations=max_iterations, dual_share=share, on_progress=options.progress,
                  early_until=REPAIR_FROM_EVALUATIONS if reassigning else 0,
                  start_prices=yesterday, bisections=MASTER_BISECTIONS if mastering else BISECTIONS)
    priced = priced_rows(instance, rows.family, rows.subject, d.row_prices)
    recent: list[tuple[np.ndarray, np.ndarray]] = []
    if isinstance(oracle, LocalOracle):  # the latest choices go to the master, or nowhere
        recent, oracle.keep, oracle.recent = oracle.recent, 0, []

    def send(plan: Candidates, how: str) -> None:
        if on_plan is not None:
            on_plan(plan, how, multipliers=priced)

    repair_from = d.bound_price if d.early_price is None else d.early_price
    plan = None if d.price is None else oracle.chosen(d.price)
    objective = None if plan is None else float(plan.value.sum())
    if plan is not None:
        send(plan, d.recovery)
    how, infeasible = d.recovery, d.infeasible
    bound_seen = d.bound  # the Lagrangian bound, or a lower one proved later
    moved = np.zeros(0, dtype=np.int64)
    # the plan as a base price's choice with some segments moved to the safe prices' choice:
    # every segment at the safe prices, until the repair is adopted
    base_price, repair_moves = d.price, None if d.price is None else np.zeros(0, dtype=np.int64)
    if d.price is not None and gap_of(float(objective or 0.0), d.bound) > options.gap:
        repaired, moved = repair(oracle, rows, repair_from, d.price)
        # a price other than the safe one may choose past an audience's cap (the audience
        # step lists such audiences): such a mix is no plan
        if repaired.value.sum() > float(objective or 0.0) and repaired.meets_caps():
            plan, objective = repaired, float(repaired.value.sum())
            how = f"greedy repair: {len(moved)} segments moved to prices that meet every row"
            base_price, repair_moves = repair_from, moved
            send(plan, how)
    left = time_left(options.time_limit, start)
    if reassigning and isinstance(oracle, LocalOracle) and base_price is not None \
            and d.price is not None and repair_moves is not None and objective is not None and \
            gap_of(objective, d.bound) > options.gap and (left is None or left > REASSIGN_MIN_SECONDS):
        other = d.price if base_price is repair_from else repair_from
        at = np.zeros(len(oracle.signature), dtype=np.int64)
        at[repair_moves] = 1
        if mastering:
            m = master_plan(oracle, rows, [base_price, other], recent, at, backend,
                            Limits(None if left is None else left * MASTER_SHARE, options.gap,
                                   options.threads), REASSIGN_SEGMENTS)
            bound_seen = min(bound_seen, m.bound)
            found_mip = m.plan
            after = (f"then a master LP over {m.columns:,} audience choices "
                     f"({m.rounds} rounds of column generation) and a MIP over "
                     f"{m.free_units:,} audiences")
        else:
            found_mip = reassign(oracle, rows, [base_price, other], at, backend,
                                 Limits(None if left is None else left * REASSIGN_SHARE,
                                        options.gap, options.threads), REASSIGN_SEGMENTS)
            after = f"then up to {REASSIGN_SEGMENTS:,} segments re-assigned by a MIP"
        if found_mip is not None and found_mip.value.sum() > objective and \
                found_mip.meets_caps():
            plan, objective = found_mip, float(found_mip.value.sum())
            how = f"{how}, {after}"
            send(plan, how)
    left = time_left(options.time_limit, start)
    if lp_step and isinstance(oracle, LocalOracle) and not infeasible and \
            (objective is None or gap_of(objective, d.bound) > options.gap) and \
            (left is None or left > RESTRICTED_MIN_SECONDS):
        held = None if repair_moves is None or d.price is None or base_price is None else \
            oracle.mixed_positions(base_price, [(d.price, repair_moves)])
        found_lp = restricted_lp(oracle, rows, d, held, moved, backend,
                                 Limits(time_left(options.time_limit, start), options.gap,
                                        options.threads), send)
        bound_seen = min(bound_seen, found_lp.bound)
        if found_lp.plan is not None and (objective is None or
                                          found_lp.plan.value.sum() > objective):
            plan, objective, how = found_lp.plan, float(found_lp.plan.value.sum()), found_lp.how
    left = time_left(options.time_limit, start)
    if not infeasible and (objective is None or gap_of(objective, d.bound) > options.gap) and \
            (left is None or left > 1.0):
        first = np.union1d(oracle.contested(), moved)
        if not small:
            first = first[:MAX_CONTESTED_SEGMENTS]
        weight = np.asarray(abs(rows.K).T @ d.row_prices).ravel()
        ranked = np.argsort(-oracle.load(d.bound_price, weight), kind="stable")
        anchor = plan if plan is not None else oracle.chosen(d.bound_price)
        found = recover(oracle, rows, anchor, first, ranked, d.bound,
                        Limits(left, options.gap, options.threads, options.progress), backend,
                        grow=small)
        infeasible = found.infeasible
        if found.bound is not None:
            bound_seen = min(bound_seen, found.bound)
        if found.plan is not None and found.plan.meets_caps() and \
                (objective is None or found.plan.value.sum() > objective):
            plan, objective, how = found.plan, float(found.plan.value.sum()), found.how
            send(plan, how)
    if plan is None:
        plan = oracle.chosen(d.bound_price).subset(np.zeros(0, dtype=np.int64))
    bound = bound_seen if objective is None else max(bound_seen, objective)
    if infeasible:
        status = Status.INFEASIBLE
    elif objective is None:
        status = Status.TIME_LIMIT
    else:
        status = Status.OPTIMAL if relative_gap(objective, bound) <= options.gap + SUMMATION_GAP \
            else Status.FEASIBLE
    diagnosis = None
    if status == Status.INFEASIBLE and options.diagnose:
        diagnosis = diagnose(instance, formulate(instance, expand(instance)), options.limits,
                             backend)
    return Solution(
        instance=instance, candidates=plan, coupling=rows, status=status,
        selected=np.ones(len(plan), dtype=bool),
        objective=objective, bound=None if status == Status.INFEASIBLE else bound,
        termination=Termination.CONVERGED if status == Status.OPTIMAL
        else Termination.TIME_LIMIT,
        solver=options.solver, method="decompose", build_seconds=built - start,
        solve_seconds=time.perf_counter() - built, diagnosis=diagnosis,
        stats=DecompositionStats(
            iterations=d.iterations, recovery=how,
            multipliers=priced,
            history=_thinned(d.history, time.perf_counter() - start, objective, bound)))


def _infeasible_caps(instance: Instance, over: np.ndarray, options: SolveOptions,
                     backend: Backend, start: float, built: float, rows: VariantRows,
                     empty: Candidates) -> Solution:
    """Audiences whose segments' least offers exceed their frequency cap: no plan."""
    names = ", ".join(repr(str(a)) for a in instance.audiences["id"].iloc[over[:5]])
    diagnosis = diagnose(instance, formulate(instance, expand(instance)), options.limits,
                         backend) if options.diagnose else None
    return Solution(
        instance=instance, candidates=empty.subset(np.zeros(0, dtype=np.int64)), coupling=rows,
        status=Status.INFEASIBLE, selected=np.zeros(0, dtype=bool), objective=None, bound=None,
        termination=Termination.INFEASIBLE, solver=options.solver, method="decompose",
        build_seconds=built - start, solve_seconds=time.perf_counter() - built,
        diagnosis=diagnosis,
        message=f"{len(over)} audiences need more offers per customer at their segments' "
                f"minimum than their frequency cap allows: {names}")


def _thinned(history: list[tuple[float, float | None, float]], total: float,
             objective: float | None, bound: float) -> list[list[float | None]]:
    """[seconds, objective, bound] along the multiplier search, ending with the final plan."""
    return thin([*([round(t, 3), o, b] for t, o, b in history), [round(total, 3), objective, bound]])
