"""What-if and the efficient frontier (issue 17): re-solve across values of one limit.

`frontier(instance, "promotion_budget", [1e5, 2e5, 4e5], time_limit=60)` solves the
instance once per value, the limit set to it, and returns the curve of expected
incremental margin (with the proven bound) against the limit.

- **Order and warm starts.** Values are solved from the tightest to the loosest. Every
  point starts from the previous point's plan (`SolveOptions.previous`, the nightly job's
  warm start: the plan is matched to the candidates, made feasible, handed to the MIP as
  its start and kept as a candidate plan). A plan that meets a limit meets every looser
  one, so each point starts from a plan as good as the last: the curve never falls.
- **Checked.** Every point's plan is re-verified by the independent checker
  (`optimizer.plan.check.check_plan`, through `optimizer.solve.verify.verified`), against the
  instance with that point's limit.
- **Time.** `time_limit` is the whole curve's (at least MIN_SECONDS_PER_POINT per value):
  each point gets an equal share of what is left when it starts (a quick point leaves more
  to the next ones), its solve that share less the check's reserve.
- **Where the limit stops costing money.** `Frontier.stops_costing_at`: the first value past
  which the objective rises by no more than the points' solver gaps (absolute: bound less
  objective), so a looser limit is not proven to earn anything more.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.backends import Progress
from optimizer.errors import InputError, Issue
from optimizer.model.families import row_name
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan
from optimizer.solve.methods import Method

POLICY_LIMITS = ("promotion_budget", "max_avg_discount", "max_discounted_share")
FRACTIONS = ("max_avg_discount", "max_discounted_share")
STOCK = "stock:"
VARY_RULE = "must be one of promotion_budget, max_avg_discount, max_discounted_share or stock:ITEM"
MAX_VALUES = 50
MIN_SECONDS_PER_POINT = 0.2
FORMAT = "offeropt/frontier@1"


@dataclass(frozen=True)
class FrontierPoint:
    """One solve of the curve: the limit's `value`, the plan's objective and proven bound
    (None without a plan), its status, whether the independent check passed, the rows at
    their limit (in words), the seconds it took, and how much of the varied limit the plan
    uses (`used`: spend, average discount, discounted share, or units of the item)."""

    value: float
    objective: float | None
    bound: float | None
    gap: float | None
    status: str
    checked: bool
    binding: tuple[str, ...]
    seconds: float
    used: float | None = None

    @property
    def abs_gap(self) -> float:
        """Bound less objective (0 when either is unknown)."""
        if self.objective is None or self.bound is None:
            return 0.0
        return max(0.0, self.bound - self.objective)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["binding"] = list(self.binding)
        return out


@dataclass(frozen=True)
class Frontier:
    """The curve: points by increasing value of the varied limit."""

    vary: str
    points: tuple[FrontierPoint, ...]
    instance: str = ""
    currency: str | None = None
    time_limit: float | None = None
    complete: bool = True  # False: cancelled before every value was solved

    @property
    def stops_costing_at(self) -> float | None:
        """The first value past which the objective rises by no more than the solver gaps
        of the points compared (None: it still rises at the largest value, or no plan)."""
        solved = [p for p in self.points if p.objective is not None]
        for i, p in enumerate(solved[:-1]):
            assert p.objective is not None
            if all((q.objective or 0.0) - p.objective <= _tolerance(p, q) for q in solved[i + 1:]):
                return p.value
        return None

    def marginal(self) -> list[float | None]:
        """Per point: the objective gained per unit of the limit since the previous point
        with a plan (None for the first, or without a plan)."""
        out: list[float | None] = []
        last: FrontierPoint | None = None
        for p in self.points:
            if p.objective is None:
                out.append(None)
                continue
            out.append(None if last is None or last.objective is None or p.value == last.value
                       else (p.objective - last.objective) / (p.value - last.value))
            last = p
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "instance": self.instance, "currency": self.currency,
                "vary": self.vary, "time_limit": self.time_limit, "complete": self.complete,
                "stops_costing_at": self.stops_costing_at,
                "points": [{**p.to_dict(), "marginal": m}
                           for p, m in zip(self.points, self.marginal(), strict=True)]}


def _tolerance(p: FrontierPoint, q: FrontierPoint) -> float:
    scale = max(1.0, abs(p.objective or 0.0), abs(q.objective or 0.0))
    return max(p.abs_gap, q.abs_gap, 1e-9 * scale)


@dataclass(frozen=True)
class Vary:
    """The limit a frontier varies: a policy field, or an item's stock."""

    field: str  # a policy field, or "stock"
    item: str | None = None

    @property
    def name(self) -> str:
        return self.field if self.item is None else f"{STOCK}{self.item}"

    def applied(self, instance: Instance, value: float) -> Instance:
        """The instance with this limit at `value`."""
        if self.item is None:
            limits: dict[str, Any] = {self.field: float(value)}
            return dataclasses.replace(instance, policy=dataclasses.replace(instance.policy,
                                                                            **limits))
        items = instance.items.copy()
        items["stock"] = items["stock"].astype(np.float64)
        items.loc[items["id"] == self.item, "stock"] = float(value)
        return dataclasses.replace(instance, items=items)

    def used(self, plan: Plan) -> float | None:
        kpis: Mapping[str, Any] = plan.kpis or {}
        if not kpis:
            return None
        if self.item is not None:
            use = (kpis.get("inventory") or {}).get(self.item)
            return None if use is None else float(use["used"])
        key = {"promotion_budget": "promotion_spend", "max_avg_discount": "avg_discount",
               "max_discounted_share": "discounted_share"}[self.field]
        return float(kpis[key])


def checked_inputs(instance: Instance, vary: object, values: object, time_limit: object,
                   method: object = None) -> tuple[Vary, list[float]]:
    """The limit and the values, every issue reported at once with its path."""
    issues: list[Issue] = []
    limit: Vary | None = None
    if isinstance(vary, str) and vary in POLICY_LIMITS:
        limit = Vary(vary)
    elif isinstance(vary, str) and vary.startswith(STOCK):
        item = vary[len(STOCK):]
        if item in set(instance.items["id"].astype(str)):
            limit = Vary("stock", item)
        else:
            issues.append(Issue("vary", "must name an item of the instance after stock:", vary))
    else:
        issues.append(Issue("vary", VARY_RULE, vary))
    out: list[float] = []
    if isinstance(values, str) or not isinstance(values, Sequence):
        issues.append(Issue("values", "must be a list of numbers", values))
    elif not 1 <= len(values) <= MAX_VALUES:
        issues.append(Issue("values", f"must hold 1 to {MAX_VALUES} numbers",
                            value_text=f"{len(values)} numbers"))
    else:
        out = _values(values, limit, issues)
    if isinstance(time_limit, bool) or not isinstance(time_limit, int | float) or \
            not (math.isfinite(time_limit) and time_limit > 0):
        issues.append(Issue("time_limit", "must be a number > 0 (seconds for the whole curve)",
                            time_limit))
    elif out and time_limit < MIN_SECONDS_PER_POINT * len(out):
        issues.append(Issue("time_limit", f"must be at least {MIN_SECONDS_PER_POINT:g} s per "
                                          f"value ({MIN_SECONDS_PER_POINT * len(out):g} s for "
                                          f"{len(out)} values)", time_limit))
    if method is not None and method not in [m.value for m in Method]:
        issues.append(Issue("method", f"must be one of {', '.join(m.value for m in Method)}",
                            method))
    if issues:
        raise InputError(issues)
    assert limit is not None
    return limit, out


def _values(values: Sequence[object], limit: Vary | None, issues: list[Issue]) -> list[float]:
    out: list[float] = []
    first: dict[float, int] = {}
    fraction = limit is not None and limit.field in FRACTIONS
    for i, v in enumerate(values):
        path = f"values[{i}]"
        if isinstance(v, bool) or not isinstance(v, int | float):
            issues.append(Issue(path, "must be a number", v))
            continue
        x = float(v)
        if not math.isfinite(x):
            issues.append(Issue(path, "must be a finite number", v))
        elif x < 0:
            issues.append(Issue(path, "must be >= 0", v))
        elif fraction and x > 1:
            assert limit is not None
            issues.append(Issue(path, f"must be <= 1 ({limit.field} is a fraction)", v))
        elif x in first:
            issues.append(Issue(path, f"must differ from the other values (values[{first[x]}] "
                                      f"is the same)", v))
        else:
            first[x] = i
            out.append(x)
    return out


def frontier(instance: Instance, vary: str, values: Sequence[float], *, time_limit: float,
             method: str | None = None, progress: Callable[[FrontierPoint], None] | None = None,
             solve_progress: Callable[[Progress], bool] | None = None,
             on_plan: Callable[[FrontierPoint, Plan], None] | None = None) -> Frontier:
    """The curve of expected incremental margin against the limit `vary` at `values`.

    `progress` is called with each point as it is solved (in increasing value), `on_plan`
    with each point and its plan document (against the instance with the point's limit:
    `Vary.applied`); `solve_progress` is each solve's own progress callback
    (`SolveOptions.progress`): when it returns True the solve stops, and so does the curve
    (`complete` is then False)."""
    from optimizer.plan.document import build_plan
    from optimizer.solve.dispatch import SolveOptions, solve
    from optimizer.solve.verify import solve_budget, verified

    started = time.monotonic()
    limit, checked = checked_inputs(instance, vary, values, time_limit, method)
    deadline = started + float(time_limit)
    stopped = [False]

    def relay(p: Progress) -> bool:
        if solve_progress is not None and solve_progress(p):
            stopped[0] = True
        return stopped[0]

    points: list[FrontierPoint] = []
    previous = None
    ordered = sorted(checked)
    for n, value in enumerate(ordered):
        if stopped[0]:
            break
        began = time.monotonic()
        share = max(0.05, (deadline - began) / (len(ordered) - n))
        at = limit.applied(instance, value)
        options = SolveOptions(method=method or Method.AUTO, time_limit=solve_budget(at, share),
                               previous=previous, progress=relay, diagnose=False)
        solution = verified(solve(at, options), options)
        plan = build_plan(solution)
        passed = solution.check is not None and solution.check.passed
        point = FrontierPoint(
            value=value, objective=solution.objective, bound=solution.bound, gap=solution.gap,
            status=solution.status.value, checked=passed, binding=_binding(plan),
            seconds=round(time.monotonic() - began, 3),
            used=limit.used(plan) if solution.objective is not None else None)
        points.append(point)
        if on_plan is not None:
            on_plan(point, plan)
        if progress is not None:
            progress(point)
        if solution.objective is not None and passed:
            previous = plan.optimized_offer_keys()
    return Frontier(limit.name, tuple(points), instance.name, instance.currency, float(time_limit),
                    complete=len(points) == len(ordered))


def _binding(plan: Plan) -> tuple[str, ...]:
    """The rows at their limit in the plan, in words (offers-per-view counts left out)."""
    return tuple(row_name(b["constraint"], b) for b in plan.binding or ()
                 if "segments_at_max" not in b and "more_binding" not in b)
