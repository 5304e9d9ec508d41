"""What a solve reports beside its plan: the method's figures, the comparison with yesterday's
plan and the independent check. `optimizer.plan.document` writes them into the plan's `solver`
section; each `to_dict` gives that section's keys in the order the plan has always had them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

import numpy as np
import pandas as pd

from optimizer.model.families import Family, row_subject
from optimizer.model.instance import Instance

History = list[list[float | None]]  # [seconds, objective, bound] points, the last the final plan


class FoundPlan(TypedDict):
    """A plan the solve found on its way: when (seconds since the solve began), its value,
    and the step that found it."""

    seconds: float
    objective: float
    how: str


class PricedRow(TypedDict):
    """A coupling row with a positive multiplier: margin per unit of the row."""

    constraint: str
    item: str | None  # the item of an inventory row
    multiplier: float
    audience: NotRequired[str]  # a frequency or repeat cap's (spec section 8)
    bundle: NotRequired[str]  # a repeat cap's
    channel: NotRequired[str]  # a channel capacity's


@dataclass(frozen=True)
class PreviousPlanReport:
    """Yesterday's plan against today's catalog and against the plan solved."""

    offers: int  # yesterday's offers in segments that still exist
    still_candidates: int  # of those, the ones still among today's candidates
    reevaluated_objective: float  # their value under today's estimates
    fallback_objective: float | None  # yesterday's plan made feasible; None when it could not be
    changed_segments: int
    changed_offers: int
    forced_segments: int  # segments that must change, not counted against max_churn

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StabilitySettingsReport:
    """The stability settings the solve ran with, and the plan's objective under them."""

    max_churn: float | None
    change_penalty: float
    churn_budget: int | None  # segments that may change voluntarily, under max_churn
    penalized_objective: float  # value - change_penalty x changes
    penalized_bound: float | None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StabilityReport:
    """A solve against yesterday's plan: its `previous` and (under settings) `stability` keys."""

    previous: PreviousPlanReport
    settings: StabilitySettingsReport | None  # None without max_churn or change_penalty

    def to_dict(self) -> dict[str, object]:
        if self.settings is None:
            return {"previous": self.previous.to_dict()}
        return {"previous": self.previous.to_dict(), "stability": self.settings.to_dict()}


@dataclass(frozen=True, kw_only=True)
class SolveStats:
    """The figures any solve may report: all of them for the exact MIP and a solve stopped at
    its deadline; the methods with figures of their own extend it."""

    history: History | None = None  # the objective-and-bound curve; None until it is drawn
    integral_objective: float | None = None  # split traffic: the best integral plan's value
    recovery: str | None = None  # how the plan was found, when not by the method's own MIP
    plans: list[FoundPlan] | None = None  # the plans found on the way, when each was found
    # a solve stopped at its deadline: the latest multipliers its search reached, if any
    multipliers: list[PricedRow] | None = None

    def to_dict(self, stability: StabilityReport | None = None) -> dict[str, object]:
        """The `solver` keys; `stability` comes first, the curve being drawn after the method."""
        return {**_reported(stability), **_given(history=self.history,
                                                 integral_objective=self.integral_objective,
                                                 recovery=self.recovery,
                                                 multipliers=self.multipliers, plans=self.plans)}


@dataclass(frozen=True, kw_only=True)
class DecompositionStats(SolveStats):
    """The decomposition's figures: its multiplier search and how a plan was recovered."""

    iterations: int
    multipliers: list[PricedRow]

    def to_dict(self, stability: StabilityReport | None = None) -> dict[str, object]:
        return {**_given(iterations=self.iterations, recovery=self.recovery,
                         multipliers=self.multipliers, integral_objective=self.integral_objective,
                         history=self.history), **_reported(stability), **_given(plans=self.plans)}


@dataclass(frozen=True, kw_only=True)
class LpGuidedStats(SolveStats):
    """The LP-guided method's figures: its steps' counts and timings and the LP's value."""

    steps: dict[str, float]
    lp_bound: float | None = None  # the LP relaxation's objective
    multipliers: list[PricedRow] | None = None  # the LP relaxation's duals

    def to_dict(self, stability: StabilityReport | None = None) -> dict[str, object]:
        return {**_given(steps=self.steps, history=self.history, lp_bound=self.lp_bound,
                         multipliers=self.multipliers,
                         integral_objective=self.integral_objective, recovery=self.recovery),
                **_reported(stability), **_given(plans=self.plans)}


@dataclass(frozen=True)
class ExplorationReport:
    """Exploration sets (spec section 9, `optimizer.exploration`): what was asked, what the
    coupling rows allowed, and what it is expected to cost against the optimized sets. The
    plan's `exploration` object; `optimized_split` (whether the optimized plan came as offer
    sets) is not in it, it only says whether the plan's `solver.split` describes them."""

    explore: float  # F: the share of each segment's views asked for
    seed: int
    optimized_objective: float  # the optimized sets' value: what the solver found
    cost: float  # optimized_objective minus the served plan's objective
    views_explored: float  # sum over exploration sets of weight x views
    share_explored: float  # views_explored / the views of the segments with offers
    segments_explored: int
    segments_held_back: int  # explored at less than F: coupling rows allowed no more
    cells_explored: int  # (segment, bundle) cells shown another variant in some exploration set
    sets: int  # exploration sets
    cells_from_prior: int  # explored-for cells whose spread is the prior, not an estimate
    held_back_by: list[str]  # the rows at their limit that held exploration back, in words
    seconds: float
    optimized_split: bool = False

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        del out["optimized_split"]
        return out


class CheckOutcome(StrEnum):
    """What the independent check (`optimizer.solve.verify`) made of the solve's plans."""

    PASSED = "passed"
    PASSED_EARLIER = "passed (earlier plan)"  # the final plan failed; an earlier one is used
    FAILED = "failed"  # no plan passed: the result is an error

    @property
    def passed(self) -> bool:
        return self != CheckOutcome.FAILED


def priced_rows(instance: Instance, family: np.ndarray, subject: np.ndarray,
                prices: np.ndarray) -> list[PricedRow]:
    """The rows with a positive multiplier (margin per unit of the row), named by id."""
    out: list[PricedRow] = []
    for i in np.flatnonzero(prices > 0):
        kind = Family(int(family[i]))
        named = row_subject(instance, kind, int(subject[i]))
        row: PricedRow = {"constraint": kind.label, "item": named.pop("item", None),
                          "multiplier": float(prices[i])}
        out.append({**row, **named})  # type: ignore[typeddict-item]
    return out


def row_prices(instance: Instance, family: np.ndarray, subject: np.ndarray,
               priced: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Multipliers named as `priced_rows` names them (yesterday's plan's), on the rows
    (family, subject) of `instance`: 0 for a row they do not name."""
    out = np.zeros(len(family))
    if not len(family) or not priced:
        return out
    names = pd.DataFrame([{"constraint": Family(int(f)).label,
                           **row_subject(instance, Family(int(f)), int(j))}
                          for f, j in zip(family, subject, strict=True)]).reindex(columns=_NAMED)
    known = pd.DataFrame(list(priced)).reindex(columns=[*_NAMED, "multiplier"])
    known = known.drop_duplicates(subset=_NAMED, keep="last")
    names = names.astype(object).fillna("")
    known[_NAMED] = known[_NAMED].astype(object).fillna("")
    found = names.merge(known, how="left", on=_NAMED)
    values = pd.to_numeric(found["multiplier"], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, 0.0)


_NAMED = ["constraint", "item", "audience", "bundle", "channel"]


def _given(**figures: object) -> dict[str, object]:
    """The figures a solve has, in order: the plan leaves out those it does not."""
    return {name: value for name, value in figures.items() if value is not None}


def _reported(stability: StabilityReport | None) -> dict[str, object]:
    return {} if stability is None else stability.to_dict()
