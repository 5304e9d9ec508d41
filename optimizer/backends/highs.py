"""HiGHS through highspy's array API: the whole model is passed in one call.

PuLP's HiGHS adapter adds columns and rows one Python call at a time, which dominates
the run time on large models; `passModel` with CSC arrays does not.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highspy
import numpy as np

from optimizer.backends import Limits, MilpProblem, MilpSolution, Progress, Termination, tail

_STOPPED = {
    highspy.HighsModelStatus.kTimeLimit,
    highspy.HighsModelStatus.kInterrupt,
    highspy.HighsModelStatus.kIterationLimit,
    highspy.HighsModelStatus.kSolutionLimit,
    highspy.HighsModelStatus.kMemoryLimit,
}
_INFEASIBLE = {highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible}
_FEASIBLE_POINT = 2  # HiGHS solution status "feasible"


def solve_highs(problem: MilpProblem, limits: Limits) -> MilpSolution:
    h = highspy.Highs()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "highs.log"
        _configure(h, limits, log_path)
        h.passModel(_to_lp(problem))
        if problem.start is not None:
            start = highspy.HighsSolution()
            start.col_value = np.asarray(problem.start, dtype=np.float64).tolist()
            h.setSolution(start)  # HiGHS ignores a start that breaks a row
        if limits.progress is not None:
            _report_progress(h, limits.progress)
        h.run()
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
    status = h.getModelStatus()
    info = h.getInfo()
    has_point = info.primal_solution_status == _FEASIBLE_POINT
    x = np.asarray(h.getSolution().col_value, dtype=np.float64) if has_point else None
    bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
    if status == highspy.HighsModelStatus.kOptimal:
        return MilpSolution(Termination.OPTIMAL, x, bound, tail(log))
    if status in _INFEASIBLE:
        return MilpSolution(Termination.INFEASIBLE, None, None, tail(log))
    if status in _STOPPED:
        return MilpSolution(Termination.TIME_LIMIT, x, bound, tail(log))
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


def _configure(h: highspy.Highs, limits: Limits, log_path: Path) -> None:
    h.setOptionValue("log_to_console", False)
    h.setOptionValue("log_file", str(log_path))
    h.setOptionValue("mip_rel_gap", float(limits.gap))
    if limits.time_limit is not None:
        h.setOptionValue("time_limit", float(limits.time_limit))
    if limits.threads is not None:
        h.setOptionValue("threads", int(limits.threads))


def _to_lp(problem: MilpProblem) -> highspy.HighsLp:
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
