"""Split-traffic plans for tests: the LP optimum of a real instance as weighted offer sets.

Built here with scipy's `linprog`, independently of the solver's `split_traffic` option.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from optimizer.backends import Termination
from optimizer.formulation.candidates import expand
from optimizer.formulation.milp import formulate
from optimizer.formulation.offer_sets import offer_sets
from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from optimizer.solve.dispatch import Solution, Status
from optimizer.solve.reports import SolveStats
from tests.constants import DATA


def tight_demo_document() -> dict[str, Any]:
    """The demo catalog with scarce lenses and camera bodies: its LP optimum splits traffic."""
    doc: dict[str, Any] = json.loads((DATA / "demo.json").read_text())
    for item in doc["items"]:
        if item["id"] in ("lens-35", "camera-a7", "laptop-16-pro"):
            item["stock"] = {"lens-35": 60.0, "camera-a7": 12.0, "laptop-16-pro": 20.0}[item["id"]]
    return doc


def tight_demo() -> Instance:
    return instance_from_document(tight_demo_document())


def split_solution(instance: Instance, integral_objective: float | None = None) -> Solution:
    """The LP relaxation's optimum over every candidate, as a split-traffic `Solution`."""
    cands = expand(instance)
    form = formulate(instance, cands)
    # one column per candidate: the structure rows and the (scaled) coupling rows on them
    coupling = form.coupling.normalized()
    A = sp.vstack([form.structure.matrix, coupling.matrix], format="csr")
    lower = np.r_[form.structure.lower, coupling.lower]
    upper = np.r_[form.structure.upper, coupling.upper]
    finite_hi, finite_lo = np.isfinite(upper), np.isfinite(lower)
    a_ub = sp.vstack([A[finite_hi], -A[finite_lo]], format="csr")
    b_ub = np.r_[upper[finite_hi], -lower[finite_lo]]
    res = linprog(-form.objective, A_ub=a_ub, b_ub=b_ub, bounds=(0, 1), method="highs")
    assert res.status == 0, res.message
    share = np.clip(res.x, 0.0, 1.0)
    sets = offer_sets(cands, share)
    share = sets.shares(len(cands))  # the shares the sets realize (shares ~0 or ~1 snapped)
    objective = float(share @ cands.value)
    return Solution(instance=instance, candidates=cands, coupling=form.per_take,
                    status=Status.OPTIMAL, selected=share > 0, objective=objective,
                    bound=objective, termination=Termination.OPTIMAL, solver="highs",
                    offer_sets=sets, stats=SolveStats(integral_objective=integral_objective))
