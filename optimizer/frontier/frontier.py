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
- **Time.** `time_limit` is the whole curve's (at least MIN_SECONDS_PER_POINT per value),
  counted from `started` (the caller's own start: a command's loading counts) and less the
  caller's `reserve` (for writing its files): one deadline for the run. Each point gets an
  equal share of what is left when it starts (a quick point leaves more to the next ones),
  never less than its minimum (MIN_SOLVE_SECONDS of solve and the reserve of its check and
  plan), its solve that share less the reserve. When what is left cannot cover a point's
  minimum, the curve stops there: `complete` is False and `unsolved` names the values left.
- **Where the limit stops costing money.** `Frontier.stops_costing_at`: the first value `v`
  such that at every looser value the proven bound is at most the objective at `v` (within
  STOP_TOLERANCE, relative: the solves' own gap): relaxing the limit further provably earns
  no more. A looser point without a bound (a solve stopped before it proved one, or a value
  not solved) proves nothing: then None, and `Frontier.stop_words()` says why.
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
MIN_SECONDS_PER_POINT = 0.2  # the least `time_limit` per value (an input rule)
MIN_SOLVE_SECONDS = 0.1  # the least a point's solve is given (as `solve_budget`'s floor)
# What a point takes besides its solve: the solve's own overrun past its limit, the
# independent check and the plan document. Measured on a loaded 2-core box: about 0.1 s on
# the demo (33 responses), 0.33 s on realistic-2000 (30,000 responses: check 0.24 s).
POINT_RESERVE_SECONDS = 0.1
POINT_SECONDS_PER_RESPONSE = 1e-5
STOP_TOLERANCE = 1e-4  # relative; also each point's solve gap (`SolveOptions.gap`)
FORMAT = "offeropt/frontier@1"


@dataclass(frozen=True)
class FrontierPoint:
    """One solve of the curve: the limit's `value`, the plan's objective and proven bound
    (None without a plan, or without a bound), its status, whether the independent check
    passed, the rows at their limit (in words), the seconds it took, how much of the varied
    limit the plan uses (`used`: spend, average discount, discounted share, or units of the
    item), and the check's outcome (`check`: passed, "passed (earlier plan)", failed, or
    None when there was no plan to check)."""

    value: float
    objective: float | None
    bound: float | None
    gap: float | None
    status: str
    checked: bool
    binding: tuple[str, ...]
    seconds: float
    used: float | None = None
    check: str | None = None

    @property
    def abs_gap(self) -> float:
        """Bound less objective (infinite when either is unknown: nothing is proven)."""
        if self.objective is None or self.bound is None:
            return math.inf
        return max(0.0, self.bound - self.objective)

    @property
    def check_failed(self) -> bool:
        """The solve found a plan, and no plan of it passed the independent check."""
        return self.check == "failed"

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
    complete: bool = True  # False: stopped (time limit, cancel) before every value was solved
    unsolved: tuple[float, ...] = ()  # the values not solved, when known

    @property
    def stops_costing_at(self) -> float | None:
        """The first value `v` with a plan such that every looser value's proven bound is at
        most the objective at `v` (within STOP_TOLERANCE): relaxing the limit past `v` is
        proven to earn nothing more. None when no value proves it: the margin still rises, a
        looser point has no bound (or no solve), or the curve is incomplete."""
        if not self.complete:
            return None
        for i, p in enumerate(self.points[:-1]):
            if p.objective is not None and all(_proven_below(q, p.objective)
                                               for q in self.points[i + 1:]):
                return p.value
        return None

    @property
    def has_plan(self) -> bool:
        return any(p.objective is not None for p in self.points)

    @property
    def check_failed(self) -> tuple[float, ...]:
        """The values whose plans failed the independent check."""
        return tuple(p.value for p in self.points if p.check_failed)

    def stop_words(self) -> str:
        """Where the limit stops costing money, in words, or why that is not proven."""
        stop = self.stops_costing_at
        if stop is not None:
            return (f"The limit stops costing money at {number_text(stop)}: at every looser value "
                    f"the proven bound is within {100 * STOP_TOLERANCE:g}% of the margin at "
                    f"{number_text(stop)}, so relaxing it further earns no more.")
        solved = [p for p in self.points if p.objective is not None]
        if not solved:
            return "No value has a plan: where the limit stops costing money is not known."
        flat = self._flat_from()
        if flat is None:
            if len(solved) == 1:
                return (f"Only {number_text(solved[0].value)} has a plan: no looser value to "
                        f"compare it with, so a looser limit may earn more.")
            return (f"The margin still rises at the largest value ({number_text(solved[-1].value)}"
                    f"): a looser limit may earn more.")
        assert flat.objective is not None
        looser = [p for p in self.points if p.value > flat.value]
        failed = [p.value for p in looser if p.check_failed]
        looser = [p for p in looser if not p.check_failed]
        unknown = [p.value for p in looser if p.bound is None]
        above = [p for p in looser if p.bound is not None and not _proven_below(p, flat.objective)]
        reasons = []
        if failed:
            reasons.append(f"the plans at {_values_text(failed)} failed the independent check")
        if unknown:
            reasons.append(f"{_the('bound', unknown)} unknown (no solve proved one)")
        if above:
            worst = max(above, key=lambda p: float(p.bound or 0.0))
            gain = float(worst.bound or 0.0) - flat.objective
            reasons.append(f"{_the('bound', [p.value for p in above])} above that margin (by "
                           f"{gain:,.0f} at {number_text(worst.value)})")
        if self.unsolved:
            many = len(self.unsolved) > 1
            reasons.append(f"value{'s' if many else ''} {_values_text(self.unsolved)} "
                           f"{'were' if many else 'was'} not solved")
        elif not self.complete:
            reasons.append("the curve is incomplete")
        return (f"Not proven that the limit stops costing money at {number_text(flat.value)}: "
                f"no looser value's plan earns more, but {' and '.join(reasons)}, so a looser "
                f"limit may earn more.")

    def unsolved_words(self, why: str = "within the time limit") -> str | None:
        """`incomplete: values X, Y not solved within the time limit` (None when complete)."""
        if self.complete:
            return None
        if not self.unsolved:
            return "incomplete: stopped before every value was solved"
        return f"incomplete: values {_values_text(self.unsolved)} not solved {why}"

    def _flat_from(self) -> FrontierPoint | None:
        """The first point with a plan that no looser value's plan beats (within the
        tolerance), with a looser value after it: where the limit would stop costing money,
        proven or not."""
        for i, p in enumerate(self.points):
            looser = self.points[i + 1:]
            if p.objective is None or not (looser or self.unsolved or not self.complete):
                continue
            if all(q.objective is None or q.objective <= p.objective + _tolerance(q.objective)
                   for q in looser):
                return p
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
                "unsolved": list(self.unsolved), "stops_costing_at": self.stops_costing_at,
                "stops_costing": self.stop_words(),
                "points": [{**p.to_dict(), "marginal": m}
                           for p, m in zip(self.points, self.marginal(), strict=True)]}


def _tolerance(x: float | None) -> float:
    return STOP_TOLERANCE * max(1.0, abs(x or 0.0))


def _proven_below(q: FrontierPoint, objective: float) -> bool:
    """q's proven bound is at most `objective` (within the tolerance): no plan at q's limit
    earns more. An unknown bound proves nothing, nor does a solve whose plans failed the
    independent check."""
    return q.bound is not None and not q.check_failed and \
        q.bound <= objective + _tolerance(q.bound)


def number_text(x: float, digits: int = 6) -> str:
    """A limit's value or a figure: whole numbers, and anything from 100,000 up, with
    separators and no decimals (1,193,420); others to `digits` significant digits, never in
    e-notation (0.0425, 1,234.57, 0.000015)."""
    from decimal import Decimal

    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x.is_integer() or abs(x) >= 1e5:
        return f"{x:,.0f}"
    return f"{Decimal(f'{x:.{digits}g}'):,f}"


def _values_text(values: Sequence[float]) -> str:
    return ", ".join(number_text(v) for v in values)


def _the(what: str, values: Sequence[float]) -> str:
    """`the bound at 0.04 is`, `the bounds at 0.04, 0.06 are`."""
    many = len(values) > 1
    return f"the {what}{'s' if many else ''} at {_values_text(values)} {'are' if many else 'is'}"


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
             on_plan: Callable[[FrontierPoint, Plan], None] | None = None,
             started: float | None = None, reserve: float = 0.0) -> Frontier:
    """The curve of expected incremental margin against the limit `vary` at `values`.

    `time_limit` bounds the whole curve, counted from `started` (a `time.monotonic()`
    reading, the caller's own start, so that what it did before counts; default: now), less
    `reserve` seconds the caller keeps for its own work after the curve (writing files). The
    values left when the time cannot cover another point are `unsolved` (`complete` False).

    `progress` is called with each point as it is solved (in increasing value), `on_plan`
    with each point and its plan document (against the instance with the point's limit:
    `Vary.applied`); `solve_progress` is each solve's own progress callback
    (`SolveOptions.progress`): when it returns True the solve stops, and so does the curve
    (`complete` is then False)."""
    entered = time.monotonic()  # the solver's modules, imported now, count too
    from optimizer.plan.document import build_plan
    from optimizer.solve.dispatch import SolveOptions, solve
    from optimizer.solve.verify import verified

    limit, checked = checked_inputs(instance, vary, values, time_limit, method)
    deadline = (entered if started is None else started) + float(time_limit) - reserve
    stopped = [False]

    def relay(p: Progress) -> bool:
        if solve_progress is not None and solve_progress(p):
            stopped[0] = True
        return stopped[0]

    points: list[FrontierPoint] = []
    previous = None
    ordered = sorted(checked)
    own = point_reserve(instance)
    for n, value in enumerate(ordered):
        began = time.monotonic()
        left = deadline - began
        if stopped[0] or left < MIN_SOLVE_SECONDS + own:
            break  # cancelled, or what is left cannot cover this point's least solve and check
        # an equal share of what is left, never less than the point's least
        share = min(left, max(left / (len(ordered) - n), MIN_SOLVE_SECONDS + own))
        at = limit.applied(instance, value)
        options = SolveOptions(method=method or Method.AUTO, time_limit=share - own,
                               gap=STOP_TOLERANCE, previous=previous, progress=relay,
                               diagnose=False)
        solution = verified(solve(at, options), options)
        plan = build_plan(solution)
        passed = solution.check is not None and solution.check.passed
        point = FrontierPoint(
            value=value, objective=solution.objective, bound=solution.bound, gap=solution.gap,
            status=solution.status.value, checked=passed, binding=_binding(plan),
            seconds=round(time.monotonic() - began, 3),
            used=limit.used(plan) if solution.objective is not None else None,
            check=None if solution.check is None else solution.check.value)
        points.append(point)
        if on_plan is not None:
            on_plan(point, plan)
        if progress is not None:
            progress(point)
        if solution.objective is not None and passed:
            previous = plan.optimized_offer_keys()
    unsolved = tuple(ordered[len(points):])
    return Frontier(limit.name, tuple(points), instance.name, instance.currency, float(time_limit),
                    complete=not unsolved, unsolved=unsolved)


def point_reserve(instance: Instance) -> float:
    """What a point of `instance` takes besides its solve: the solve's overrun, the
    independent check and the plan document."""
    return POINT_RESERVE_SECONDS + POINT_SECONDS_PER_RESPONSE * len(instance.responses)


def _binding(plan: Plan) -> tuple[str, ...]:
    """The rows at their limit in the plan, in words (offers-per-view counts left out)."""
    return tuple(row_name(b["constraint"], b) for b in plan.binding or ()
                 if "segments_at_max" not in b and "more_binding" not in b)
