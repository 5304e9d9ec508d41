"""CBC through PuLP: the model is built as a PuLP problem from the same arrays.

CBC comes from the `cbcbox` package (PuLP's `cbc` extra). PuLP writes an MPS file for
it; the proven bound is read back from CBC's log, which PuLP does not parse.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import cbcbox
import numpy as np
import pulp

from optimizer.backends import Limits, MilpProblem, MilpSolution, Termination, tail

_RESULT = re.compile(r"^Result - (.+)$", re.MULTILINE)
_BEST_POSSIBLE = re.compile(r"best possible (\S+)")  # in the minimization CBC is given


def build_pulp(problem: MilpProblem) -> tuple[pulp.LpProblem, list[pulp.LpVariable]]:
    """Always a minimization: the CBC shipped by cbcbox reads PuLP's `-max` flag as ambiguous."""
    lp = pulp.LpProblem("offeropt", pulp.LpMinimize)
    cost = -problem.objective if problem.maximize else problem.objective
    x = [
        lp.add_variable(f"x{j}", 0, None if np.isinf(ub) else float(ub),
                        pulp.LpInteger if integer else pulp.LpContinuous)
        for j, (ub, integer) in enumerate(zip(problem.col_upper, problem.integer, strict=True))
    ]
    lp.setObjective(pulp.LpAffineExpression(zip(x, cost.tolist(), strict=True)))
    csr = problem.matrix
    for i in range(csr.shape[0]):
        cols = csr.indices[csr.indptr[i]:csr.indptr[i + 1]]
        vals = csr.data[csr.indptr[i]:csr.indptr[i + 1]]
        expr = pulp.LpAffineExpression(zip([x[j] for j in cols], vals.tolist(), strict=True))
        lo, hi = problem.row_lower[i], problem.row_upper[i]
        if lo == hi:
            lp.addConstraint(expr == float(lo), f"r{i}")
            continue
        if np.isfinite(lo):
            lp.addConstraint(expr >= float(lo), f"r{i}_lo")
        if np.isfinite(hi):
            lp.addConstraint(expr <= float(hi), f"r{i}_hi")
    return lp, x


def solve_cbc(problem: MilpProblem, limits: Limits) -> MilpSolution:
    lp, x = build_pulp(problem)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "cbc.log"
        solver = pulp.COIN_CMD(path=cbcbox.cbc_bin_path(), msg=False, timeLimit=limits.time_limit,
                               gapRel=limits.gap, threads=limits.threads, logPath=str(log_path))
        try:
            lp.solve(solver)
        except pulp.PulpSolverError as exc:
            return MilpSolution(Termination.ERROR, None, None, (), str(exc))
        log = log_path.read_text(errors="replace")
    result = _RESULT.search(log)
    outcome = result.group(1) if result else ""
    values = np.array([v.varValue if v.varValue is not None else np.nan for v in x])
    has_point = pulp.LpSolution[lp.sol_status] in ("Optimal Solution Found", "Solution Found") \
        and not np.isnan(values).any()
    point = values if has_point else None
    bound = _bound(log, problem, point)
    if "infeasible" in outcome.lower() or lp.status == pulp.LpStatusInfeasible:
        return MilpSolution(Termination.INFEASIBLE, None, None, tail(log))
    if outcome.startswith("Optimal"):
        return MilpSolution(Termination.OPTIMAL, point, bound, tail(log))
    if outcome.startswith("Stopped"):
        return MilpSolution(Termination.TIME_LIMIT, point, bound, tail(log))
    return MilpSolution(Termination.ERROR, None, None, tail(log), outcome or "CBC gave no result")


def _bound(log: str, problem: MilpProblem, point: np.ndarray | None) -> float | None:
    """The bound CBC proved: the point itself after a complete search, else the last one logged."""
    if point is not None and ("Search completed" in log or not _BEST_POSSIBLE.search(log)) \
            and "Result - Optimal" in log:
        return float(problem.objective @ point)
    found = _BEST_POSSIBLE.findall(log)
    if not found:
        return None
    internal = float(found[-1])
    return -internal if problem.maximize else internal
