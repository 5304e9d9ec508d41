"""The measurement of a plan from its logs, as values: `Figure` (a value with its standard
error and 95% interval) and `Measurement` (docs/measurement.md defines every field)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd

LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
GroupBy = Literal["audience", "channel", "timing", "segment"]


def number(x: Any) -> float | None:
    """A JSON-safe float: None for NaN, infinity and None."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Figure:
    """A measured value, its standard error and its 95% interval (None where undefined)."""

    value: float | None
    se: float | None = None

    @property
    def lo(self) -> float | None:
        return None if self.value is None or self.se is None else self.value - Z * self.se

    @property
    def hi(self) -> float | None:
        return None if self.value is None or self.se is None else self.value + Z * self.se

    @classmethod
    def of(cls, value: Any, se: Any = None) -> Figure:
        v = number(value)
        return cls(v, None if v is None else number(se))

    def covers(self, x: float) -> bool:
        return self.lo is not None and self.hi is not None and self.lo <= x <= self.hi

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "se": self.se, "lo": self.lo, "hi": self.hi}


@dataclass(frozen=True)
class Measurement:
    """What a plan realized in its logs. Money is in the instance's currency; "per view" is
    per served (non-holdout) view, the unit the logs count."""

    instance: str
    currency: str | None
    version: int | None
    views: float  # served views, the estimated views of empty sets included
    holdout_views: float
    impressions: float  # offers shown (a view shown three offers counts three)
    takes: float
    take_rate: Figure  # takes per impression
    attach_rate: Figure  # takes per served view
    incremental_margin: Figure  # in all, against the holdout, net of contact cost
    incremental_margin_per_view: Figure
    aov_increment: Figure  # incremental revenue per served view
    offer_revenue: float
    promotion_spend: float  # discounts given plus perks' cost, on the takes
    contact_cost: float
    roi: Figure  # incremental margin per unit of promotion spend plus contact cost
    expected_incremental_margin: float  # the plan's own expectation, on the same views
    expected_takes: float
    group_by: GroupBy
    groups: pd.DataFrame  # one row per segment group: docs/measurement.md
    baseline: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def realized_over_expected(self) -> float | None:
        m, e = self.incremental_margin.value, self.expected_incremental_margin
        return None if m is None or not e > 0 else m / e

    def to_dict(self) -> dict[str, Any]:
        figures = {name: getattr(self, name).to_dict() for name in (
            "take_rate", "attach_rate", "incremental_margin", "incremental_margin_per_view",
            "aov_increment", "roi")}
        counts = {name: number(getattr(self, name)) for name in (
            "views", "holdout_views", "impressions", "takes", "offer_revenue", "promotion_spend",
            "contact_cost", "expected_incremental_margin", "expected_takes")}
        return {"format": "offeropt/measurement@1", "instance": self.instance,
                "currency": self.currency, "version": self.version, "level": LEVEL,
                **counts, **figures, "realized_over_expected": number(self.realized_over_expected),
                "group_by": self.group_by, "groups": records(self.groups),
                "baseline": {k: number(v) for k, v in self.baseline.items()},
                "warnings": list(self.warnings)}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects: numbers as floats (None for NaN), text as text."""
    out: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            out[name] = column.astype(bool).tolist()
        elif pd.api.types.is_numeric_dtype(column):
            out[name] = list(map(number, column.to_numpy(np.float64).tolist()))
        else:
            out[name] = column.astype(object).tolist()
    return [dict(zip(out, row, strict=True)) for row in zip(*out.values(), strict=True)]
