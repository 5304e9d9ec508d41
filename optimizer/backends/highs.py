"""HiGHS through highspy's array API: the whole model is passed in one call.

PuLP's HiGHS adapter adds columns and rows one Python call at a time, which dominates
the run time on large models; `passModel` with CSC arrays does not.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highspy
import numpy as np

from optimizer.backends import Limits, MilpProblem, MilpSolution, Progress, Termination, tail

_STOPPED = {
    highspy.HighsModelStatus.kTimeLimit,
    highspy.HighsModelStatus.kIterationLimit,
    highspy.HighsModelStatus.kSolutionLimit,
    highspy.HighsModelStatus.kMemoryLimit,
}
_INFEASIBLE = {highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible}
_FEASIBLE_POINT = 2  # HiGHS solution status "feasible"
MIP_FEASIBILITY_TOLERANCE = 1e-8


# HiGHS runs one thread pool per process, sized at its first run: None (no pool yet), 0 (its
# default size) or a thread count. A run that asks for another count fails, so the pool is
# restarted when the count changes.
_pool: list[int | None] = [None]


def after_fork() -> None:
    """In a forked child: the inherited pool has no threads (a run would deadlock); drop it."""
    highspy.Highs.resetGlobalScheduler(False)
    _pool[0] = None


def _use_threads(h: highspy.Highs, threads: int | None) -> None:
    wanted = 0 if threads is None else int(threads)
    current = _pool[0]
    if wanted and current is not None and current != wanted:
        highspy.Highs.resetGlobalScheduler(True)
        current = None
    if wanted:
        h.setOptionValue("threads", wanted)
    _pool[0] = wanted if current is None else current


def run_within(h: highspy.Highs, seconds: float | None) -> highspy.HighsStatus:
    """`h.run()`, stopped `seconds` from now (None: never). HiGHS measures its time limit
    against the time of every run of the object so far (ERGO-Code/HiGHS#1477), so a re-solve
    given the seconds left alone would stop at once once earlier runs took longer."""
    h.setOptionValue("time_limit", highspy.kHighsInf if seconds is None
                     else h.getRunTime() + max(0.0, float(seconds)))
    return h.run()


def new_highs(threads: int | None = None) -> highspy.Highs:
    """A HiGHS instance that writes nothing to the console, on `threads` threads (None: any).

    Since HiGHS 1.16 the constructor prints its banner on standard output before any option
    can be set, which would corrupt `--json` output; file descriptor 1 points at /dev/null
    for the construction only.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("log_to_console", False)
    _use_threads(h, threads)
    return h


def solve_highs(problem: MilpProblem, limits: Limits) -> MilpSolution:
    started = time.monotonic()
    found = _run(problem, limits)
    if problem.start is None or found.x is None or found.claimed is None:
        return found.solution
    # HiGHS 1.16 can end `Optimal` at a value its returned point does not reach: presolve
    # maps the caller's start to a better point, and postsolve hands back the start. Its
    # answer is then re-sought without the start, in the time that is left.
    reached = float(problem.objective @ found.x)
    if abs(reached - found.claimed) <= 1e-9 * max(1.0, abs(found.claimed)):
        return found.solution
    left = None if limits.time_limit is None else \
        max(0.0, limits.time_limit - (time.monotonic() - started))
    again = _run(dataclasses.replace(problem, start=None),
                 dataclasses.replace(limits, time_limit=left)).solution
    sign = 1.0 if problem.maximize else -1.0
    if again.x is None or sign * float(problem.objective @ again.x) < sign * reached:
        return dataclasses.replace(again, x=found.x)  # the start stays the better plan
    return again


@dataclasses.dataclass(frozen=True)
class _Run:
    solution: MilpSolution
    x: np.ndarray | None
    claimed: float | None  # the objective HiGHS reports for its point


def _run(problem: MilpProblem, limits: Limits) -> _Run:
    h = new_highs(limits.threads)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "highs.log"
        _configure(h, limits, log_path)
        h.passModel(to_highs_lp(problem))
        if problem.start is not None:
            start = highspy.HighsSolution()
            start.col_value = np.asarray(problem.start, dtype=np.float64).tolist()
            h.setSolution(start)  # HiGHS ignores a start that breaks a row
        if limits.on_solution is not None:  # first: a plan is known before its progress line
            _report_solutions(h, limits.on_solution)
        if limits.progress is not None:
            _report_progress(h, limits.progress)
        h.run()
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
    status = h.getModelStatus()
    info = h.getInfo()
    has_point = info.primal_solution_status == _FEASIBLE_POINT
    x = np.asarray(h.getSolution().col_value, dtype=np.float64) if has_point else None
    bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
    claimed = float(info.objective_function_value) if has_point else None
    return _Run(_solution(h, status, x, bound, log), x, claimed)


def _solution(h: highspy.Highs, status: highspy.HighsModelStatus, x: np.ndarray | None,
              bound: float | None, log: str) -> MilpSolution:
    if status == highspy.HighsModelStatus.kOptimal:
        return MilpSolution(Termination.OPTIMAL, x, bound, tail(log))
    if status in _INFEASIBLE:
        return MilpSolution(Termination.INFEASIBLE, None, None, tail(log))
    if status in _STOPPED:
        return MilpSolution(Termination.TIME_LIMIT, x, bound, tail(log))
    if status == highspy.HighsModelStatus.kInterrupt:
        return MilpSolution(Termination.INTERRUPTED, x, bound, tail(log))
    return MilpSolution(Termination.ERROR, None, None, tail(log), h.modelStatusToString(status))


def _report_progress(h: highspy.Highs, progress: Callable[[Progress], bool]) -> None:
    def finite(x: float) -> float | None:
        return float(x) if np.isfinite(x) and abs(x) < highspy.kHighsInf else None

    def on_event(event: Any) -> None:
        d = event.data_out
        snapshot = Progress(finite(d.mip_primal_bound), finite(d.mip_dual_bound),
                            finite(d.mip_gap), float(d.running_time))
        if progress(snapshot):
            event.interrupt()

    h.cbMipInterrupt.subscribe(on_event)
    h.cbMipImprovingSolution.subscribe(on_event)


def _report_solutions(h: highspy.Highs, on_solution: Callable[[np.ndarray], None]) -> None:
    def on_event(event: Any) -> None:
        on_solution(np.asarray(event.data_out.mip_solution, dtype=np.float64))

    h.cbMipImprovingSolution.subscribe(on_event)


def _configure(h: highspy.Highs, limits: Limits, log_path: Path) -> None:
    h.setOptionValue("log_to_console", False)
    h.setOptionValue("log_file", str(log_path))
    h.setOptionValue("mip_rel_gap", float(limits.gap))
    # The default (1e-6 on rows scaled to a unit coefficient) lets a plan overdraw a tight
    # limit by more than the independent check accepts.
    h.setOptionValue("mip_feasibility_tolerance", MIP_FEASIBILITY_TOLERANCE)
    if limits.time_limit is not None:
        h.setOptionValue("time_limit", float(limits.time_limit))


def to_highs_lp(problem: MilpProblem) -> highspy.HighsLp:
    csc = problem.matrix.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_ = len(problem.objective)
    lp.num_row_ = int(csc.shape[0])
    lp.col_cost_ = np.ascontiguousarray(problem.objective, dtype=np.float64)
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.asarray(problem.col_upper, dtype=np.float64)  # kHighsInf is IEEE inf
    lp.row_lower_ = np.asarray(problem.row_lower, dtype=np.float64)
    lp.row_upper_ = np.asarray(problem.row_upper, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(np.float64)
    lp.a_matrix_.num_col_ = lp.num_col_
    lp.a_matrix_.num_row_ = lp.num_row_
    kinds = {True: highspy.HighsVarType.kInteger, False: highspy.HighsVarType.kContinuous}
    lp.integrality_ = [kinds[bool(i)] for i in problem.integer]
    lp.sense_ = highspy.ObjSense.kMaximize if problem.maximize else highspy.ObjSense.kMinimize
    return lp
