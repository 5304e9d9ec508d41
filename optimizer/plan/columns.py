"""JSON values read into columns, with typed views: how plans (`optimizer.plan.model`) and
the checker read millions of offers without a line of Python per offer."""

from __future__ import annotations

import gc
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd


@contextmanager
def gc_paused() -> Iterator[None]:
    """While millions of acyclic tuples are built: the cycle collector would only scan them
    again and again (half the time of reading a split plan's sets)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def is_instance(values: Sequence[Any], kind: type | tuple[type, ...]) -> np.ndarray:
    """isinstance(value, kind) for each of `values`, as a bool array."""
    return np.fromiter(map(isinstance, values, repeat(kind)), dtype=bool, count=len(values))


def is_number(values: Sequence[Any]) -> np.ndarray:
    """A JSON number: an int or a float, and not a bool."""
    return is_instance(values, (int, float)) & ~is_instance(values, bool)


def is_none(values: Sequence[Any]) -> np.ndarray:
    return np.fromiter(map(operator.is_, values, repeat(None)), dtype=bool, count=len(values))


def as_floats(values: Sequence[Any], numeric: np.ndarray | None = None) -> np.ndarray:
    """`values` as floats, NaN where `numeric` is False (None: all are numbers or None); an
    integer too large for a float is infinite."""
    if numeric is not None:
        values = pd.Series(values, dtype=object).where(numeric, np.nan).tolist()
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:  # a JSON integer of 309 digits: rare, so one at a time
        return np.array([json_float(v) if isinstance(v, int) else v for v in values], dtype=np.float64)


def json_float(v: int | float) -> float:
    """A JSON number as a float; an integer too large for one is infinite."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


class Columns:
    """Fields of JSON objects as columns of their JSON values (None where a field is
    missing), with typed views computed once per field."""

    def __init__(self, raw: Mapping[str, list[Any]]) -> None:
        self.raw = dict(raw)
        self._types: dict[str, set[type]] = {}

    def __len__(self) -> int:
        return len(next(iter(self.raw.values()), []))

    def types(self, name: str) -> set[type]:
        if name not in self._types:
            self._types[name] = set(map(type, self.raw[name]))
        return self._types[name]

    def floats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The field as floats (NaN where it is no number), and where it is a number; a bool
        counts as one, as `isinstance(got, int | float)` has it."""
        values = self.raw[name]
        if self.types(name) <= {float, int, type(None)}:
            return as_floats(values), np.ones(len(values), dtype=bool)
        numeric = is_instance(values, (int, float))
        return as_floats(values, numeric), numeric

    def numbers(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The field as floats where it is a JSON number (not a bool), NaN elsewhere, and where."""
        values = self.raw[name]
        if self.types(name) <= {float, int}:
            return as_floats(values), np.ones(len(values), dtype=bool)
        number = is_number(values)
        return as_floats(values, number), number

    def strings(self, name: str) -> list[Any]:
        """The field where it is a string, None elsewhere."""
        values = self.raw[name]
        if self.types(name) <= {str, type(None)}:
            return values
        return pd.Series(values, dtype=object).where(is_instance(values, str), None).tolist()

    def keys(self, name: str) -> list[Any]:
        """The field as a key: strings and None as they are, anything else as text no id is."""
        values = self.raw[name]
        if self.types(name) <= {str, type(None)}:
            return values
        other = ~(is_instance(values, str) | is_none(values))
        return [f"\0{v!r}" if o else v for v, o in zip(values, other, strict=True)]

    def shown(self, name: str, at: np.ndarray) -> list[Any]:
        """The field's values at the rows `at` as a table of them shows them (a whole number
        as a float where the column holds floats, a missing id as nan)."""
        values = self.raw[name]
        if not len(at):
            return []
        if name != "perk" and self.types(name) not in ({float}, {str}):
            shown: list[Any] = pd.Series(values).iloc[at].tolist()
            return shown
        return [values[i] for i in at.tolist()]
