"""Lookups of id columns by Arrow's hash kernels: the strings stay in Arrow, with no Python
object per cell (a million ids are looked up in well under a second). The independent plan
checker keeps its own copy of `positions` (optimizer/plan/check_catalog.py): it shares no code
with the path that builds plans, input reading included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def positions(values: Any, ids: Any) -> np.ndarray:
    """The row in the unique `ids` of each of `values` (strings, None for none), -1 if absent."""
    found = pc.index_in(arrow_strings(values), value_set=arrow_strings(ids))
    return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64)


def arrow_strings(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pd.Series | pd.Index):
        array = pa.array(values) if len(values) else pa.array([], pa.large_string())
    else:
        array = pa.array(values, type=pa.large_string())
    return array if array.type == pa.large_string() else array.cast(pa.large_string())


def first_occurrences(frame: pd.DataFrame) -> np.ndarray:
    """Whether each row is the first with its values (nulls equal to nulls), as
    `DataFrame.duplicated(keep="first")` negated, from integer codes per column."""
    if len(frame) == 0:
        return np.zeros(0, dtype=bool)
    codes = np.column_stack([pd.factorize(frame[c], use_na_sentinel=True)[0]
                             for c in frame.columns])
    _, first = np.unique(codes, axis=0, return_index=True)
    out = np.zeros(len(frame), dtype=bool)
    out[first] = True
    return out
