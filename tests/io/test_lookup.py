"""The Arrow lookups used by validation agree with pandas' own on random id columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.io.lookup import first_occurrences, positions

ids = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "é", ""])), max_size=30)


@settings(max_examples=60, deadline=None)
@given(ids, ids)
def test_first_occurrences_is_pandas_duplicated_negated(left: list[str | None],
                                                        right: list[str | None]) -> None:
    n = min(len(left), len(right))
    frame = pd.DataFrame({"x": pd.array(left[:n], dtype="string[pyarrow]"),
                          "y": pd.array(right[:n], dtype="string[pyarrow]")})
    assert (first_occurrences(frame) == ~frame.duplicated(keep="first").to_numpy()).all()
    assert (first_occurrences(frame[["x"]]) == ~frame[["x"]].duplicated().to_numpy()).all()


@settings(max_examples=60, deadline=None)
@given(ids, ids)
def test_positions_finds_what_get_indexer_finds(values: list[str | None],
                                                known: list[str | None]) -> None:
    column = pd.Series(values, dtype="string[pyarrow]")
    target = pd.Series(known, dtype="string[pyarrow]").dropna()
    expected = pd.Index(target.unique()).get_indexer(column) >= 0
    found = positions(column, target) >= 0
    given_values = column.notna().to_numpy()
    assert (found[given_values] == expected[given_values]).all()
    assert np.isin(column[found].dropna(), target).all()
