"""Order lines: read a CSV or Parquet log, validate it, and turn it into an order x item matrix.

One row per order line: an order id and an item id, optionally the customer and the date of
the order. Ids become integer codes (items sorted by id, orders in order of appearance) and
the lines a scipy.sparse CSR matrix with a 1 where an order holds an item; an item repeated
within an order (two lines, or a quantity) counts once. Every broken rule is an issue naming
the file's line (CSV, the header being line 1) or row (Parquet, from 0) and the column.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import scipy.sparse as sp
from pyarrow.lib import ArrowException

from optimizer.errors import InputError, Issue
from optimizer.io.tables import read_frame

LineFormat = Literal["csv", "parquet"]
MAX_PER_RULE = 50  # as the instance validator: then one line counting the rest
SEPARATOR = ";"  # between the items of an itemset in the output; no item id may hold it


@dataclass(frozen=True)
class LineColumns:
    """Column names of an order-lines file. `customer` and `date` are optional: None means
    the column `customer_id` (`date`) when the file has one, else none."""

    order: str = "order_id"
    item: str = "item_id"
    customer: str | None = None
    date: str | None = None
    date_format: str | None = None


@dataclass(frozen=True, eq=False)
class Baskets:
    """Orders as rows of a binary sparse matrix over item codes."""

    matrix: sp.csr_matrix  # orders x items, int32, 1 where the order holds the item
    items: np.ndarray  # item id (str, object array) per item code, sorted
    orders: np.ndarray  # order id per row (object array)
    customers: np.ndarray | None = None  # customer id per order ("" for none), object array
    dates: np.ndarray | None = None  # datetime64[ns] per order
    lines: int = 0  # order lines read (after --since/--until)
    duplicates: int = 0  # lines naming an item its order already held
    name: str = "orders"

    @property
    def n_orders(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])


def read_order_lines(path: str | Path, columns: LineColumns = LineColumns(),
                     fmt: LineFormat | None = None, since: str | None = None,
                     until: str | None = None) -> Baskets:
    """Read and validate an order-lines file (`fmt` from the extension when not given)."""
    path = Path(path)
    if not path.is_file():
        raise InputError([Issue(str(path), "must be an existing CSV or Parquet file",
                                has_value=False)])
    fmt = fmt or ("parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv")
    frame = _read_csv(path) if fmt == "csv" else read_frame(path, "parquet")
    return baskets_from_frame(frame, path.name, fmt, columns, since, until)


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell as text, read by Arrow's multi-threaded CSV reader (millions of lines in
    about a second); the header is read first so that no column is typed as numbers."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeError, csv.Error) as exc:
        raise InputError([Issue(path.name, "must be a readable CSV file",
                                value_text=str(exc)[:200])]) from exc
    if not header or not any(h.strip() for h in header):
        raise InputError([Issue(path.name, "must have a header row", value_text="an empty file")])
    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False,
                quoted_strings_can_be_null=False),
        )
    except (ArrowException, OSError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError([Issue(path.name, "must be a readable CSV file",
                                value_text=first[:200])]) from exc
    frame = table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if t == pa.string() else None)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


@dataclass
class _Report:
    """Issues of one file, at most MAX_PER_RULE rows per rule, then one line counting the rest."""

    name: str
    fmt: LineFormat
    issues: list[Issue] = field(default_factory=list)

    def where(self, i: int, column: str) -> str:
        at = f"line {i + 2}" if self.fmt == "csv" else f"row {i}"
        return f"{self.name}[{at}].{column}"

    def rows(self, mask: np.ndarray, column: str, rule: str,
             value: Callable[[int], object] | None = None, nothing: bool = False) -> None:
        rows = np.flatnonzero(mask)
        for i in rows[:MAX_PER_RULE]:
            if nothing:
                self.issues.append(Issue(self.where(int(i), column), rule, value_text="nothing"))
            else:
                assert value is not None
                self.issues.append(Issue(self.where(int(i), column), rule, value(int(i))))
        if len(rows) > MAX_PER_RULE:
            self.issues.append(Issue(f"{self.name}[*].{column}",
                                     f"{len(rows) - MAX_PER_RULE} more rows break this rule: {rule}",
                                     has_value=False))


def baskets_from_frame(frame: pd.DataFrame, name: str = "orders.csv", fmt: LineFormat = "csv",
                       columns: LineColumns = LineColumns(), since: str | None = None,
                       until: str | None = None) -> Baskets:
    """Validate order lines already read (text or typed columns) into `Baskets`.

    Each column is dictionary-encoded once by Arrow; the checks run on the distinct values
    (trimming, emptiness, the separator) and on integer codes per line."""
    report = _Report(name, fmt)
    customer_col, date_col = _resolve_columns(frame, name, columns)
    window = _window(since, until, date_col)
    if len(frame) == 0:
        raise InputError([Issue(name, "must hold at least one order line", value_text="none")])
    order = _encode(frame, columns.order, name)
    item = _encode(frame, columns.item, name)
    customer = _encode(frame, customer_col, name) if customer_col else None
    report.rows(order.where(order.values == ""), columns.order, "must be given", nothing=True)
    report.rows(item.where(item.values == ""), columns.item, "must be given", nothing=True)
    separated = np.array([SEPARATOR in v for v in item.values], dtype=bool)
    report.rows(item.where(separated), columns.item, f"must not contain {SEPARATOR!r} (it "
                "separates the items of an itemset in the output)", item.text)
    # orders numbered by their first line
    first_line = np.full(len(order.values), len(frame), dtype=np.int64)
    np.minimum.at(first_line, order.codes, np.arange(len(frame), dtype=np.int64))
    by_first = np.argsort(first_line, kind="stable")
    renumber = np.empty_like(by_first)
    renumber[by_first] = np.arange(len(by_first))
    order_code, order_ids, first_line = renumber[order.codes], order.values[by_first], first_line[by_first]
    if customer is not None:
        assert customer_col is not None
        _same_in_order(report, customer.codes, customer.text, customer_col, order_code,
                       order_ids, first_line)
    dates = None
    if date_col is not None:
        dates, date_text = _dates(frame, date_col, columns.date_format, report)
        if not report.issues:
            _same_in_order(report, dates.view(np.int64), date_text, date_col, order_code,
                           order_ids, first_line)
    if report.issues:
        raise InputError(report.issues)

    keep = np.ones(len(frame), dtype=bool)
    if window is not None and dates is not None:
        low, high = window
        keep = (dates >= low) & (dates <= high)
        if not keep.any():
            raise InputError([Issue("--since/--until", "must leave at least one order line",
                                    value_text=f"none of {len(frame):,} lines between "
                                    f"{_day(low)} and {_day(high)}")])
    kept_items = np.flatnonzero(np.bincount(item.codes[keep], minlength=len(item.values)) > 0)
    item_ids = item.values[kept_items]
    by_id = np.argsort(item_ids, kind="stable")
    item_rank = np.full(len(item.values), -1, dtype=np.int64)
    item_rank[kept_items[by_id]] = np.arange(len(by_id))
    kept_orders = np.flatnonzero(np.bincount(order_code[keep], minlength=len(order_ids)) > 0)
    row = np.full(len(order_ids), -1, dtype=np.int64)
    row[kept_orders] = np.arange(len(kept_orders))
    n_lines = int(keep.sum())
    matrix = sp.csr_matrix((np.ones(n_lines, dtype=np.int32),
                            (row[order_code[keep]], item_rank[item.codes[keep]])),
                           shape=(len(kept_orders), len(by_id)))
    matrix.sum_duplicates()
    duplicates = n_lines - matrix.nnz
    matrix.data[:] = 1
    heads = first_line[kept_orders]
    return Baskets(
        matrix=matrix, items=item_ids[by_id], orders=order_ids[kept_orders],
        customers=None if customer is None else customer.values[customer.codes[heads]],
        dates=None if dates is None else dates[heads], lines=n_lines, duplicates=duplicates,
        name=name,
    )


@dataclass(frozen=True, eq=False)
class _Column:
    """A column as a code per line into its distinct values (trimmed text, "" for empty)."""

    codes: np.ndarray  # int64 per line
    values: np.ndarray  # object array of str

    def where(self, bad_values: np.ndarray) -> np.ndarray:
        """Lines whose value is one of the `bad_values` (a mask over the distinct values)."""
        return np.asarray(bad_values, dtype=bool)[self.codes]

    def text(self, i: int) -> str:
        return str(self.values[self.codes[i]])


def _encode(frame: pd.DataFrame, column: str, name: str) -> _Column:
    raw = frame[column]
    if isinstance(raw, pd.DataFrame):  # the header names the column twice
        raise InputError([Issue(name, f"must have one column named {column!r}",
                                value_text=f"{raw.shape[1]} of them")])
    try:
        arrow = getattr(raw.array, "__arrow_array__", None)
        data = arrow() if arrow is not None else pa.array(raw, from_pandas=True)
        text = pc.fill_null(pc.cast(data, pa.string()), "")
    except (TypeError, ValueError, UnicodeError, ArrowException):  # a Parquet binary column
        raise InputError([Issue(name, f"must have a column {column!r} of text",
                                value_text=f"a column of {raw.dtype}")]) from None
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    raw_codes = text.dictionary_encode()
    trimmed = pc.utf8_trim_whitespace(raw_codes.dictionary).dictionary_encode()
    codes = trimmed.indices.to_numpy(zero_copy_only=False).astype(np.int64)[
        raw_codes.indices.to_numpy(zero_copy_only=False)]
    values = np.asarray(trimmed.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    return _Column(codes, values)


def _resolve_columns(frame: pd.DataFrame, name: str,
                     columns: LineColumns) -> tuple[str | None, str | None]:
    """The customer and date columns in use; a named column the file lacks is an issue."""
    have = list(frame.columns)
    issues = []
    for column, flag in ((columns.order, "--order-column"), (columns.item, "--item-column"),
                         (columns.customer, "--customer-column"), (columns.date, "--date-column")):
        if column is not None and column not in have:
            issues.append(Issue(name, f"must have a column {column!r} ({flag})",
                                value_text="the columns " + ", ".join(repr(h) for h in have[:20])
                                + (" ..." if len(have) > 20 else "")))
    if issues:
        raise InputError(issues)
    customer = columns.customer or ("customer_id" if "customer_id" in have else None)
    date = columns.date or ("date" if "date" in have else None)
    return customer, date


def _window(since: str | None, until: str | None,
            date_col: str | None) -> tuple[np.datetime64, np.datetime64] | None:
    if since is None and until is None:
        return None
    issues = []
    bounds = []
    for flag, text, default in (("--since", since, np.datetime64("1677-09-22", "ns")),
                                ("--until", until, np.datetime64("2262-04-11", "ns"))):
        if text is None:
            bounds.append(default)
            continue
        value = pd.to_datetime(text, errors="coerce")
        if pd.isna(value):
            issues.append(Issue(flag, "must be a date (YYYY-MM-DD)", text))
        else:
            bounds.append(np.datetime64(value.to_datetime64(), "ns"))
    if date_col is None:
        issues.append(Issue("--since/--until", "must go with a date column (--date-column)",
                            value_text="a file without a 'date' column"))
    if issues:
        raise InputError(issues)
    if until is not None and len(bounds) == 2 and bounds[1] < bounds[0]:
        raise InputError([Issue("--until", f"must not be before --since ({since})", until)])
    return bounds[0], bounds[1]


def _day(value: np.datetime64) -> str:
    return str(value.astype("datetime64[D]"))


def _dates(frame: pd.DataFrame, column: str, date_format: str | None,
           report: _Report) -> tuple[np.ndarray, Callable[[int], str]]:
    """Dates as datetime64[ns] per line, and each line's date as written (for messages);
    the distinct texts are parsed once (a log has few days)."""
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):  # a Parquet timestamp column
        values = raw.dt.tz_localize(None) if raw.dt.tz is not None else raw
        dates = values.to_numpy(dtype="datetime64[ns]")
        report.rows(np.isnat(dates), column, "must be a date", nothing=True)
        return dates, lambda i: str(values.iloc[i])
    text = _encode(frame, column, report.name)
    parsed = pd.to_datetime(pd.Series(text.values), format=date_format, errors="coerce")
    day = parsed.to_numpy(dtype="datetime64[ns]")
    rule = f"must be a date{f' ({date_format})' if date_format else ''}"
    bad = np.isnat(day)
    report.rows(text.where(bad & (text.values == "")), column, rule, nothing=True)
    report.rows(text.where(bad & (text.values != "")), column, rule, text.text)
    return day[text.codes], text.text


def _same_in_order(report: _Report, codes: np.ndarray, text: Callable[[int], str], column: str,
                   order_code: np.ndarray, order_ids: np.ndarray, first_line: np.ndarray) -> None:
    """Every line of an order must repeat the value on the order's first line."""
    first = first_line[order_code]
    rows = np.flatnonzero(codes != codes[first])
    for i in rows[:MAX_PER_RULE]:
        j = int(first[i])
        at = f"line {j + 2}" if report.fmt == "csv" else f"row {j}"
        report.issues.append(Issue(
            report.where(int(i), column),
            f"must be the same on every line of order {order_ids[order_code[i]]!r} "
            f"({text(j)!r} on {at})", text(int(i))))
    if len(rows) > MAX_PER_RULE:
        report.issues.append(Issue(f"{report.name}[*].{column}",
                                   f"{len(rows) - MAX_PER_RULE} more rows break this rule: must "
                                   "be the same on every line of the order", has_value=False))
