"""Field specs of every table, and type coercion that records what it could not read.

JSON values are typed strictly (a string is not a number); CSV cells are text and
are parsed; Parquet columns keep their native types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pyarrow.lib import ArrowException

from optimizer.errors import Issue
from optimizer.io.safe_json import SURROGATE_RULE, has_lone_surrogate

# "label": a string where an empty one means not given (an optional reference or a tag)
Kind = Literal["id", "text", "label", "number", "int", "bool", "ladder"]
Source = Literal["json", "text", "native"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    required: bool = False


TABLE_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "items": (
        FieldSpec("id", "id", True),
        FieldSpec("name", "text"),
        FieldSpec("price", "number", True),
        FieldSpec("cost", "number", True),
        FieldSpec("stock", "number"),
    ),
    "bundles": (
        FieldSpec("id", "id", True),
        FieldSpec("name", "text"),
        FieldSpec("kind", "text", True),
        FieldSpec("price", "number"),
        FieldSpec("discounts", "ladder"),
        FieldSpec("exclusion_group", "id"),
        FieldSpec("min_margin_rate", "number"),
    ),
    "bundle_items": (
        FieldSpec("bundle", "id", True),
        FieldSpec("item", "id", True),
        FieldSpec("qty", "int", True),
    ),
    "perks": (
        FieldSpec("bundle", "id", True),
        FieldSpec("id", "id", True),
        FieldSpec("cost", "number", True),
        FieldSpec("lift", "number", True),
    ),
    "segments": (
        FieldSpec("id", "id", True),
        FieldSpec("views", "number", True),
        FieldSpec("min_offers", "int"),
        FieldSpec("max_offers", "int"),
        FieldSpec("silent", "bool"),
        # spec section 8: the segment's audience and channel (ids of those tables) and a
        # free timing label; empty means none
        FieldSpec("audience", "label"),
        FieldSpec("channel", "label"),
        FieldSpec("timing", "label"),
    ),
    "responses": (
        FieldSpec("segment", "id", True),
        FieldSpec("bundle", "id", True),
        FieldSpec("take_rate", "number", True),
        FieldSpec("baseline_rate", "number"),
        FieldSpec("price_sensitivity", "number"),
    ),
    # spec section 8, optional tables (absent = no rows)
    "audiences": (
        FieldSpec("id", "id", True),
        FieldSpec("customers", "number", True),
        FieldSpec("max_offers_per_customer", "number"),
        FieldSpec("max_repeats", "int"),
    ),
    "channels": (
        FieldSpec("id", "id", True),
        FieldSpec("capacity", "number"),
        FieldSpec("cost_per_impression", "number"),
    ),
}

POLICY_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("discount_ladder", "ladder"),
    FieldSpec("min_offers_per_view", "int"),
    FieldSpec("max_offers_per_view", "int"),
    FieldSpec("min_margin_rate", "number"),
    FieldSpec("max_discount", "number"),
    FieldSpec("max_discounted_share", "number"),
    FieldSpec("max_avg_discount", "number"),
    FieldSpec("promotion_budget", "number"),
    FieldSpec("min_aggregate_margin_rate", "number"),
    FieldSpec("allow_negative_uplift", "bool"),
    FieldSpec("holdout_fraction", "number"),
)

_KIND_RULE: dict[str, str] = {
    "id": "must be a non-empty string",
    "text": "must be a string",
    "label": "must be a string",
    "number": "must be a number",
    "int": "must be an integer",
    "bool": "must be true or false",
    "ladder": "must be a list of numbers",
}
_KIND_COLUMN: dict[str, str] = {
    "id": "text", "text": "text", "label": "text", "number": "numbers", "int": "integers",
    "bool": "booleans", "ladder": "lists of numbers (or text)",
}
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class Locator:
    """Turns a row number of a table into the path a user can find in their file."""

    table: str
    style: Literal["json", "csv", "parquet", "nested"]
    parent: str = ""
    parent_pos: np.ndarray | None = None
    child_pos: np.ndarray | None = None

    def row(self, i: int) -> str:
        if self.style == "json" and self.child_pos is not None:
            return f"{self.table}[{self.child_pos[i]}]"
        if self.style == "csv":
            return f"{self.table}.csv[line {i + 2}]"
        if self.style == "parquet":
            return f"{self.table}.parquet[row {i}]"
        if self.style == "nested":
            assert self.parent_pos is not None and self.child_pos is not None
            return f"{self.parent}[{self.parent_pos[i]}].{self.table}[{self.child_pos[i]}]"
        return f"{self.table}[{i}]"

    def path(self, i: int, field_name: str | None = None) -> str:
        base = self.row(i)
        return base if field_name is None else f"{base}.{field_name}"


@dataclass
class RawTable:
    """A table after type coercion: typed columns, plus which cells were null or unreadable."""

    name: str
    frame: pd.DataFrame
    locator: Locator
    null: dict[str, np.ndarray] = field(default_factory=dict)
    bad: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def given(self, column: str) -> np.ndarray:
        """Cells that hold a readable, non-null value."""
        return ~(self.null[column] | self.bad[column])


def coerce_table(
    name: str, columns: Mapping[str, Sequence[object] | pd.Series], source: Source, locator: Locator,
    issues: list[Issue], synthetic: frozenset[str] = frozenset(),
) -> RawTable:
    """Coerce every spec'd column of a table; unreadable cells become issues.

    `synthetic` columns were filled in by the reader (a nested row's parent id), so
    their problems are reported on the parent, not here.
    """
    specs = TABLE_FIELDS[name]
    n = len(next(iter(columns.values()))) if columns else 0
    out: dict[str, object] = {}
    table = RawTable(name, pd.DataFrame(), locator)
    for spec in specs:
        raw = columns.get(spec.name)
        if raw is None:
            series = pd.Series([None] * n, dtype=object)
        elif isinstance(raw, pd.Series):
            series = raw
        else:
            series = pd.Series(list(raw), dtype=object)
        try:
            values, null, bad = coerce(series.reset_index(drop=True), spec.kind, source)
        except (TypeError, ValueError, UnicodeError, ArrowException):
            if source != "native":
                raise
            # A Parquet column of a type no cell can be read from (binary, struct, ...):
            # one issue for the column, its cells unreadable.
            issues.append(Issue(f"{locator.table}.parquet",
                                f"must have a column {spec.name!r} of {_KIND_COLUMN[spec.kind]}",
                                value_text=f"a column of {series.dtype}"))
            values, null, _ = coerce(pd.Series([None] * n, dtype=object), spec.kind, source)
            null = series.isna().to_numpy(dtype=bool)
            bad = ~null
            out[spec.name], table.null[spec.name], table.bad[spec.name] = values, null, bad
            continue
        if spec.name in synthetic:
            bad = np.zeros(n, bool)
            null = np.asarray([v is None for v in series], dtype=bool)
        for i in np.flatnonzero(bad):
            value = series.iloc[int(i)]
            rule = SURROGATE_RULE if has_lone_surrogate(value) else _KIND_RULE[spec.kind]
            issues.append(Issue(locator.path(int(i), spec.name), rule, value))
        if spec.required and raw is not None:  # an absent column is reported once, by the reader
            for i in np.flatnonzero(null):
                issues.append(Issue(locator.path(int(i), spec.name), "is required", has_value=False))
        out[spec.name] = values
        table.null[spec.name] = null
        table.bad[spec.name] = bad
    table.frame = pd.DataFrame(out, index=pd.RangeIndex(n))
    return table


def coerce(series: pd.Series, kind: Kind, source: Source) -> tuple[object, np.ndarray, np.ndarray]:
    """Return (typed values, null mask, unreadable mask) for one column."""
    return _COERCERS[kind](series, source)


def _null_mask(s: pd.Series, source: Source) -> np.ndarray:
    if source == "json":
        return s.map(lambda v: v is None).to_numpy(dtype=bool)
    if source == "text":
        return (s.isna() | (_text(s).str.strip() == "")).to_numpy(dtype=bool, na_value=True)
    return s.isna().to_numpy(dtype=bool)


def _text(s: pd.Series) -> pd.Series:
    """A column as Arrow-backed strings: whole-column string operations, no object per cell."""
    return s.astype(pd.StringDtype("pyarrow"))


def _coerce_number(s: pd.Series, source: Source) -> tuple[object, np.ndarray, np.ndarray]:
    null = _null_mask(s, source)
    if source == "native" and pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.float64, na_value=np.nan), null, np.zeros(len(s), bool)
    if source == "json":
        ok = s.map(lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool)))
        bad = ~ok.to_numpy(dtype=bool)
        vals = np.array([np.nan if b or v is None else _float(v) for v, b in zip(s, bad, strict=True)],
                        dtype=np.float64)
        return vals, null, bad
    text = _text(s).str.strip().mask(null)
    vals = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    literal_nan = (text.str.lower().str.lstrip("+-") == "nan").to_numpy(dtype=bool, na_value=False)
    bad = ~null & np.isnan(vals) & ~literal_nan
    return vals, null, bad


def _float(value: int | float) -> float:
    """A JSON number as a float; an integer beyond the float range is +-inf (not finite)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def _coerce_int(s: pd.Series, source: Source) -> tuple[object, np.ndarray, np.ndarray]:
    vals, null, bad = _coerce_number(s, source)
    assert isinstance(vals, np.ndarray)
    with np.errstate(invalid="ignore"):
        fractional = np.isfinite(vals) & (np.floor(vals) != vals)
    bad = bad | fractional | (~null & ~bad & ~np.isfinite(vals))
    return np.where(bad, np.nan, vals), null, bad


def _coerce_bool(s: pd.Series, source: Source) -> tuple[object, np.ndarray, np.ndarray]:
    null = _null_mask(s, source)
    if source != "json" and pd.api.types.is_bool_dtype(s):
        return s.fillna(False).to_numpy(dtype=bool), null, np.zeros(len(s), bool)
    if source == "text":
        low = _text(s).str.strip().str.lower()
        true = low.isin(_TRUE).to_numpy(dtype=bool, na_value=False)
        false = low.isin(_FALSE).to_numpy(dtype=bool, na_value=False)
        return true, null, ~(true | false) & ~null

    def parse(v: object) -> bool | None:
        if isinstance(v, bool | np.bool_):
            return bool(v)
        if source == "native" and isinstance(v, str):
            low = v.strip().lower()
            return True if low in _TRUE else False if low in _FALSE else None
        if source == "native" and isinstance(v, int | np.integer) and v in (0, 1):
            return bool(v)
        return None

    parsed = [None if n else parse(v) for v, n in zip(s, null, strict=True)]
    bad = np.array([p is None for p in parsed], dtype=bool) & ~null
    return np.array([bool(p) for p in parsed], dtype=bool), null, bad


def _coerce_text(s: pd.Series, source: Source, *, nonempty: bool,
                  empty_null: bool = False) -> tuple[object, np.ndarray, np.ndarray]:
    """Strings; an empty one is unreadable when `nonempty`, not given when `empty_null`."""
    null = _null_mask(s, source)
    if source != "json":  # whole columns of Arrow strings: large tables stay columnar
        text = _text(s)
        text = (text.str.strip() if source == "text" else text).mask(null)
        bad = np.zeros(len(s), bool)
        if nonempty or empty_null:
            empty = (text == "").to_numpy(dtype=bool, na_value=False)
            text = text.mask(empty)
            if nonempty:
                bad = empty
            else:
                null = null | empty
        return text, null, bad
    bad = ~s.map(lambda v: v is None or isinstance(v, str)).to_numpy(dtype=bool)
    vals = [None if (n or b) else str(v) for v, n, b in zip(s, null, bad, strict=True)]
    if nonempty or empty_null:
        empty = np.array([v == "" for v in vals], dtype=bool)
        if nonempty:
            bad = bad | empty
        else:
            null = null | empty
        vals = [None if e else v for v, e in zip(vals, empty, strict=True)]
    try:
        return _text(pd.Series(vals, dtype=object)), null, bad
    except UnicodeEncodeError:  # a lone surrogate, in a document not read by parse_json
        broken = np.array([has_lone_surrogate(v) for v in vals], dtype=bool)
        vals = [None if b else v for v, b in zip(vals, broken, strict=True)]
        return _text(pd.Series(vals, dtype=object)), null, bad | broken


def _coerce_ladder(s: pd.Series, source: Source) -> tuple[object, np.ndarray, np.ndarray]:
    null = _null_mask(s, source)

    def parse(v: object) -> tuple[float, ...] | None:
        if isinstance(v, str) and source != "json":
            parts = [p.strip() for p in v.replace(",", ";").split(";") if p.strip()]
            try:
                return tuple(float(p) for p in parts)
            except ValueError:
                return None
        if isinstance(v, list | tuple | np.ndarray) and all(
            isinstance(x, int | float | np.number) and not isinstance(x, bool) for x in v
        ):
            return tuple(_float(x) for x in v)
        return None

    parsed = [None if n else parse(v) for v, n in zip(s, null, strict=True)]
    bad = np.array([p is None for p in parsed], dtype=bool) & ~null
    return pd.Series(parsed, dtype=object), null, bad


_COERCERS: dict[str, Callable[[pd.Series, Source], tuple[object, np.ndarray, np.ndarray]]] = {
    "id": lambda s, src: _coerce_text(s, src, nonempty=True),
    "text": lambda s, src: _coerce_text(s, src, nonempty=False),
    "label": lambda s, src: _coerce_text(s, src, nonempty=False, empty_null=True),
    "number": _coerce_number,
    "int": _coerce_int,
    "bool": _coerce_bool,
    "ladder": _coerce_ladder,
}
