"""Guardrails a new plan must pass before it replaces the active one (nightly job).

Each is named, with the value found and its limit, so a report says which one failed
and by how much. They compare the new plan with yesterday's: the plan as published, and
the plan re-evaluated and made feasible on today's instance (the fallback).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.model.instance import Instance
from optimizer.plan.check import CheckReport
from optimizer.plan.model import WITH_OFFERS, Plan


@dataclass(frozen=True)
class Thresholds:
    objective_tolerance: float = 0.01  # may fall this far below yesterday's plan re-evaluated
    max_no_offer_increase: float = 0.05  # share of segments with no offer may rise this much
    max_gap: float = 0.01  # the solve's own relative gap
    max_objective_ratio: float = 3.0  # more than this x yesterday's objective is suspect
    max_estimate_drift: float = 0.5  # share of responses whose take rate moved beyond x2

    def __post_init__(self) -> None:
        issues = [Issue(name, "must be a finite number >= 0", value)
                  for name, value in asdict(self).items()
                  if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0)]
        if self.max_objective_ratio < 1:
            issues.append(Issue("max_objective_ratio", "must be >= 1", self.max_objective_ratio))
        if issues:
            raise InputError(issues)


@dataclass(frozen=True)
class Guardrail:
    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Yesterday:
    """The active plan and the catalog it was solved from; `fallback_objective` is its value
    made feasible on today's instance (None when it cannot be)."""

    plan: Plan
    instance: Instance
    fallback_objective: float | None


def evaluate(plan: Plan, check: CheckReport, instance: Instance, solved_gap: float | None,
             yesterday: Yesterday | None, limits: Thresholds) -> list[Guardrail]:
    rails = [_plan_check(check), _solver(plan, solved_gap, limits)]
    if yesterday is None:
        return rails
    return [*rails, _objective(plan, yesterday, limits), _no_offer(plan, instance, yesterday, limits),
            _objective_jump(plan, yesterday, limits), _drift(instance, yesterday, limits)]


def _plan_check(check: CheckReport) -> Guardrail:
    shown = "; ".join(check.violations[:5])
    return Guardrail("plan_check", check.ok, float(len(check.violations)), 0.0,
                     "the independent check passes" if check.ok else f"violations: {shown}")


def _solver(plan: Plan, gap: float | None, limits: Thresholds) -> Guardrail:
    status = plan.status
    ok = status in WITH_OFFERS and gap is not None and gap <= limits.max_gap
    gap_text = "none" if gap is None else f"{gap:.4%}"
    return Guardrail("solver_status", ok, gap, limits.max_gap,
                     f"status {status}, gap {gap_text} (limit {limits.max_gap:.2%})")


def _objective(plan: Plan, yesterday: Yesterday, limits: Thresholds) -> Guardrail:
    base = yesterday.fallback_objective
    new = plan.objective
    if base is None:
        return Guardrail("objective_vs_active", True, new, None,
                         "yesterday's plan cannot be made feasible today: nothing to compare")
    floor = base - limits.objective_tolerance * abs(base)
    ok = new is not None and new >= floor
    return Guardrail("objective_vs_active", ok, new, floor,
                     f"objective {_money(new)} vs yesterday's plan re-evaluated and made feasible "
                     f"{_money(base)} (may be {limits.objective_tolerance:.1%} lower)")


def no_offer_share(plan: Plan, instance: Instance) -> float:
    """Share of the segments that may be shown offers (not silent) left without any."""
    segments = instance.segments
    open_ = segments.loc[~segments["silent"].to_numpy(dtype=bool), "id"].astype(object)
    if not len(open_):
        return 0.0
    return float((~open_.isin(plan.offers.strings("segment"))).mean())


def _no_offer(plan: Plan, instance: Instance, yesterday: Yesterday,
              limits: Thresholds) -> Guardrail:
    today = no_offer_share(plan, instance)
    before = no_offer_share(yesterday.plan, yesterday.instance)
    limit = before + limits.max_no_offer_increase
    return Guardrail("no_offer_share", today <= limit + 1e-12, today, limit,
                     f"{today:.1%} of segments without an offer (yesterday {before:.1%})")


def _objective_jump(plan: Plan, yesterday: Yesterday, limits: Thresholds) -> Guardrail:
    before, new = yesterday.plan.objective, plan.objective
    if not before or before <= 0 or new is None:
        return Guardrail("objective_jump", True, None, limits.max_objective_ratio,
                         "no positive objective yesterday: nothing to compare")
    ratio = new / before
    return Guardrail("objective_jump", ratio <= limits.max_objective_ratio, ratio,
                     limits.max_objective_ratio,
                     f"expected margin {ratio:.2f}x yesterday's: a jump this large usually "
                     "means broken response estimates")


def estimate_drift(instance: Instance, before: Instance) -> tuple[float, int]:
    """Share of the (segment, bundle) responses in both catalogs whose take rate moved by
    more than a factor of two, and how many were compared."""
    key = ["segment", "bundle"]
    both = pd.merge(instance.responses[[*key, "take_rate"]].astype({k: object for k in key}),
                    before.responses[[*key, "take_rate"]].astype({k: object for k in key}),
                    on=key, suffixes=("", "_before"))
    if not len(both):
        return 0.0, 0
    ratio = np.log(both["take_rate"].to_numpy(np.float64) /
                   both["take_rate_before"].to_numpy(np.float64))
    return float((np.abs(ratio) > math.log(2)).mean()), len(both)


def _drift(instance: Instance, yesterday: Yesterday, limits: Thresholds) -> Guardrail:
    share, compared = estimate_drift(instance, yesterday.instance)
    return Guardrail("estimate_drift", share <= limits.max_estimate_drift, share,
                     limits.max_estimate_drift,
                     f"{share:.1%} of {compared} responses changed their take rate by more "
                     "than x2 since yesterday")


def _money(x: float | None) -> str:
    return "none" if x is None else f"{x:,.0f}"
