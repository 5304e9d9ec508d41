"""Order lines: read a CSV or Parquet log, validate it, and turn it into an order x item matrix.

One row per order line: an order id and an item id, optionally the customer and the date of
the order. Ids become integer codes (items sorted by id, orders in order of appearance) and
the lines a scipy.sparse CSR matrix with a 1 where an order holds an item; an item repeated
within an order (two lines, or a quantity) counts once. Dates are ISO 8601 unless a format is
given; one with an offset is converted to UTC, so that mixed offsets compare. Every broken
rule is an issue naming the file's line (CSV, the header being line 1) or row (Parquet, from
0) and the column.
"""

from __future__ import annotations

import csv
import re
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
# Dates are kept as datetime64[ns] (UTC when written with an offset); these whole years lie
# inside its range, so no date wraps around.
FIRST_DAY, LAST_DAY = np.datetime64("1678-01-01", "D"), np.datetime64("2261-12-31", "D")
RANGE_RULE = "must be a date in the years 1678 to 2261"
CLOCK_WORDS = ("now", "today")  # pandas reads them as the time of reading: not a date of a log


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
    dates: np.ndarray | None = None  # datetime64[ns] per order (UTC for dates with an offset)
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
    window = _window(since, until, columns.date_format, date_col)
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
        low, high = window  # [low, high): the day after --until excluded
        keep = (dates >= low) & (dates < high)
        if not keep.any():
            raise InputError([Issue("--since/--until", "must leave at least one order line",
                                    value_text=f"none of {len(frame):,} lines from "
                                    f"{since or 'the first day'} to {until or 'the last day'}")])
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


def _one_column(frame: pd.DataFrame, column: str, name: str) -> pd.Series:
    raw = frame[column]
    if isinstance(raw, pd.DataFrame):  # the header names the column twice
        raise InputError([Issue(name, f"must have one column named {column!r}",
                                value_text=f"{raw.shape[1]} of them")])
    return raw


def _encode(frame: pd.DataFrame, column: str, name: str) -> _Column:
    raw = _one_column(frame, column, name)
    try:
        arrow = getattr(raw.array, "__arrow_array__", None)
        data = arrow() if arrow is not None else pa.array(raw, from_pandas=True)
        text = pc.fill_null(pc.cast(data, pa.string()), "")
    except (TypeError, ValueError, UnicodeError, ArrowException):  # bytes, lists, structs
        raise InputError([Issue(name, f"must have a column {column!r} of text",
                                value_text=f"a column of {_type_name(raw)}")]) from None
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


def _type_name(raw: pd.Series) -> str:
    """The column's Arrow type when pandas holds it as objects (lists, structs, bytes)."""
    if raw.dtype == object:
        try:
            return str(pa.array(raw, from_pandas=True).type)
        except (TypeError, ValueError, ArrowException):
            pass
    return str(raw.dtype)


def _window(since: str | None, until: str | None, date_format: str | None,
            date_col: str | None) -> tuple[np.datetime64, np.datetime64] | None:
    """--since and --until (whole days, both included) as [first instant, instant after the
    last), datetime64[ns]; also refuses a --date-format that is no strftime format."""
    issues = []
    if date_format:
        try:  # a bad directive fails on any value; a date that does not match is NaT
            pd.to_datetime(pd.Series(["2026-01-05"]), format=date_format, errors="coerce",
                           utc=True)
        except (ValueError, TypeError) as exc:
            issues.append(Issue("--date-format", "must be a strftime format (e.g. %Y%m%d)",
                                value_text=f"{date_format!r} ({str(exc)[:120]})"))
    bounds = []
    for flag, text in (("--since", since), ("--until", until)):
        day = None
        if text is not None:
            try:  # YYYY-MM-DD and nothing else (no time, no offset, no 'now')
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
                    raise ValueError(text)
                day = np.datetime64(text.strip(), "D")
            except ValueError:
                issues.append(Issue(flag, "must be a date (YYYY-MM-DD)", text))
        bounds.append(day)
    given = [flag for flag, v in (("--since", since), ("--until", until),
                                  ("--date-format", date_format)) if v]
    if date_col is None and given:
        issues.append(Issue("/".join(given), "must go with a date column (--date-column)",
                            value_text="a file without a 'date' column"))
    if issues:
        raise InputError(issues)
    low, high = bounds
    if low is not None and high is not None and high < low:
        raise InputError([Issue("--until", f"must not be before --since ({since})", until)])
    if since is None and until is None:
        return None
    # every date read lies in [FIRST_DAY, LAST_DAY]: bounds beyond are clipped, not wrapped
    low = FIRST_DAY if low is None else min(max(low, FIRST_DAY), LAST_DAY + 1)
    high = LAST_DAY + 1 if high is None else min(max(high + 1, FIRST_DAY), LAST_DAY + 1)
    return low.astype("datetime64[ns]"), high.astype("datetime64[ns]")


def _dates(frame: pd.DataFrame, column: str, date_format: str | None,
           report: _Report) -> tuple[np.ndarray, Callable[[int], str]]:
    """Dates as datetime64[ns] per line (a date with an offset or time zone in UTC, one
    without as written), and each line's date as written (for messages); the distinct texts
    are parsed once (a log has few days)."""
    raw = _one_column(frame, column, report.name)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):  # a Parquet timestamp column
        try:
            stamps = _naive_utc(raw)
        except (TypeError, ValueError, ArrowException):
            raise InputError([Issue(report.name, f"must have a column {column!r} of dates or "
                                    "text", value_text=f"a column of {raw.dtype}")]) from None
        out = _out_of_range(stamps)
        report.rows(np.isnat(stamps), column, "must be a date", nothing=True)
        report.rows(out, column, RANGE_RULE, lambda i: str(raw.iloc[i]))
        return _as_ns(stamps, out), lambda i: str(raw.iloc[i])
    text = _encode(frame, column, report.name)
    stamps = _parse_dates(text.values, date_format)
    stamps[np.isin(text.values, CLOCK_WORDS)] = np.datetime64("NaT")
    rule = f"must be a date ({date_format or 'ISO 8601, e.g. 2026-01-05'})"
    bad, out = np.isnat(stamps), _out_of_range(stamps)
    report.rows(text.where(bad & (text.values == "")), column, rule, nothing=True)
    report.rows(text.where(bad & (text.values != "")), column, rule, text.text)
    report.rows(text.where(out), column, RANGE_RULE, text.text)
    return _as_ns(stamps, out)[text.codes], text.text


def _naive_utc(values: pd.Series) -> np.ndarray:
    """datetime64 in the column's own unit, naive: UTC when the column has a time zone."""
    if isinstance(values.dtype, pd.ArrowDtype):
        values = values.astype(values.dtype.numpy_dtype)
    if values.dt.tz is not None:
        values = values.dt.tz_convert(None)
    return np.asarray(values.to_numpy(), dtype=values.dtype)


def _parse_dates(texts: np.ndarray, date_format: str | None) -> np.ndarray:
    """Distinct texts as naive datetime64 (UTC for those with an offset, so that mixed offsets
    compare), NaT for a text that is not a date in `date_format` (ISO 8601 by default)."""
    fmt = date_format or "ISO8601"
    try:
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), format=fmt, errors="coerce",
                                utc=True)
    except (ValueError, TypeError, OverflowError):  # one by one, a failure marking its text
        parsed = pd.Series([_parse_one(t, fmt) for t in texts], dtype="datetime64[us, UTC]")
    return _naive_utc(parsed).copy()


def _parse_one(text: str, fmt: str) -> pd.Timestamp:
    try:
        value = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        return pd.Timestamp("NaT") if pd.isna(value) else pd.Timestamp(value).as_unit("us")
    except (ValueError, TypeError, OverflowError):
        return pd.Timestamp("NaT")


def _out_of_range(stamps: np.ndarray) -> np.ndarray:
    """Dates outside [FIRST_DAY, LAST_DAY], compared in their own unit (never wrapped)."""
    low = FIRST_DAY.astype(stamps.dtype)
    high = (LAST_DAY + 1).astype(stamps.dtype)
    return ~np.isnat(stamps) & ((stamps < low) | (stamps >= high))


def _as_ns(stamps: np.ndarray, out: np.ndarray) -> np.ndarray:
    stamps = stamps.copy()
    stamps[out] = np.datetime64("NaT")
    return stamps.astype("datetime64[ns]")


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
