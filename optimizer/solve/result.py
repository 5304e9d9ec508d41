"""The typed options and result of a solve: what `optimizer.solve.dispatch` is asked and answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from optimizer.backends import Limits, Progress, Termination
from optimizer.errors import InputError, Issue, OfferOptError
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.coupling import VariantRows
from optimizer.formulation.offer_sets import OfferSets
from optimizer.model.instance import Instance
from optimizer.plan.model import Status as Status
from optimizer.solve.diagnose import Diagnosis
from optimizer.solve.methods import MAX_EXPLORE, Method, Solver, Where
from optimizer.solve.reports import (
    CheckOutcome,
    ExplorationReport,
    PricedRow,
    SolveStats,
    StabilityReport,
)
from optimizer.solve.supervise import PlanMessage
from optimizer.stability.reference import Stability


def _member(kind: type[StrEnum], field_name: str, value: object) -> StrEnum:
    if isinstance(value, str) and value in kind.__members__.values():
        return kind(value)
    raise OfferOptError(f"{field_name}: must be one of {', '.join(m.value for m in kind)}, "
                        f"got {value!r}")


@dataclass(frozen=True)
class SolveOptions:
    """How to solve; `solver`, `method` and `backend` accept their names and are checked here."""

    solver: Solver | str = Solver.HIGHS
    method: Method | str = Method.AUTO
    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    diagnose: bool = True
    progress: Callable[[Progress], bool] | None = None  # see Limits.progress
    backend: Where | str = Where.LOCAL
    scheduler: str | None = None  # a Dask scheduler address; None starts a local cluster
    partitions: int | None = None  # Dask partitions (default: two per worker)
    previous: pd.DataFrame | None = None  # yesterday's offers: warm start, fallback, stability
    # yesterday's plan's multipliers (its `solver.multipliers`): where the decomposition's
    # multiplier search starts
    previous_multipliers: tuple[PricedRow, ...] = ()
    stability: Stability = field(default_factory=Stability)
    split_traffic: bool = False  # the LP optimum as weighted offer sets (spec section 7)
    # exploration sets (spec section 9, `optimizer.exploration`): at most this share of each
    # segment's views sees other variants of its cells; 0 leaves the plan as solved
    explore: float = 0.0
    explore_seed: int = 0  # the Thompson draws' seed: the same seed, the same draws
    # the estimates' uncertainty per (segment, bundle), as `offeropt estimate -o` writes it
    # (`take_rate_se`, `price_sensitivity_se`); None: every cell gets the prior spread
    uncertainty: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "solver", _member(Solver, "solver", self.solver))
        object.__setattr__(self, "method", _member(Method, "method", self.method))
        object.__setattr__(self, "backend", _member(Where, "backend", self.backend))
        _check_explore(self.explore, self.explore_seed)

    @classmethod
    def chosen(cls, choices: Mapping[str, Any], **run: Any) -> SolveOptions:
        """The options a user chose, by the names they carry in every form (the command line's
        flags, the API's `options`, the nightly job's settings): any of `CHOSEN` that
        `choices` holds, the others at their defaults. `run` adds what the run itself
        decides: its time budget, its progress callback, yesterday's offers."""
        return cls(**{name: choices[name] for name in CHOSEN if name in choices}, **run)

    @property
    def limits(self) -> Limits:
        return Limits(self.time_limit, self.gap, self.threads, self.progress)


CHOSEN = ("solver", "method", "gap", "threads", "backend", "scheduler", "partitions",
          "split_traffic", "explore", "explore_seed")  # the options a user sets by name


def _check_explore(explore: object, seed: object) -> None:
    issues = []
    if isinstance(explore, bool) or not isinstance(explore, int | float) or \
            not 0.0 <= explore <= MAX_EXPLORE:  # NaN fails this too
        issues.append(Issue("explore", f"must be a number in [0, {MAX_EXPLORE:g}]", explore))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        issues.append(Issue("explore_seed", "must be an integer", seed))
    if issues:
        raise InputError(issues)


@dataclass(frozen=True)
class Solution:
    instance: Instance
    candidates: Candidates  # every candidate, or (decomposition) those of the plan
    coupling: VariantRows  # the coupling rows per unit of takes (KPIs, binding rows)
    status: Status
    selected: np.ndarray  # bool per candidate
    objective: float | None
    bound: float | None
    termination: Termination
    solver: str
    method: str = "exact"
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    log_tail: tuple[str, ...] = ()
    diagnosis: Diagnosis | None = None
    message: str = ""
    stats: SolveStats = field(default_factory=SolveStats)  # the method's figures, the curve, how found
    stability: StabilityReport | None = None  # None without yesterday's plan
    check: CheckOutcome | None = None  # None until `optimizer.solve.verify` checks the plan
    # split traffic: weighted sets per segment over `candidates`; None for an integral plan
    offer_sets: OfferSets | None = None
    # the solve's earlier plans, best first: what a caller falls back on when a check fails
    earlier: tuple[PlanMessage, ...] = ()
    # exploration sets were added to the optimized plan: `candidates`, `offer_sets` and
    # `objective` are then the served mix's; None without exploration
    exploration: ExplorationReport | None = None

    @property
    def share(self) -> np.ndarray:
        """Per candidate: the share of its segment's views that see it (spec section 7)."""
        if self.offer_sets is None:
            return self.selected.astype(np.float64)
        return self.offer_sets.shares(len(self.candidates))

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        return max(0.0, (self.bound - self.objective) / max(abs(self.bound), 1.0))

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.solve_seconds


def relative_gap(objective: float, bound: float) -> float:
    return max(0.0, (bound - objective) / max(abs(bound), 1.0))


def time_left(time_limit: float | None, start: float) -> float | None:
    return None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - start))


def thin(points: list[list[float | None]], most: int = 200) -> list[list[float | None]]:
    step = max(1, len(points) // most)
    return [*points[:-1][::step], points[-1]]
