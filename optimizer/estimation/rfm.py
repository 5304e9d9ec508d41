"""RFM segmentation of a transaction log: recency, frequency and monetary scores 1 to 5.

Per customer: recency = days from the last purchase to `asof`; frequency = number of
purchases (transaction rows) up to `asof`; monetary = average amount per purchase.
Each is scored against four thresholds, 5 being the best; the segment id is
`rfm{R}{F}{M}`, as in the demo catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.io.tables import read_table_file


@dataclass(frozen=True)
class Thresholds:
    recency_days: tuple[float, ...] = (30, 60, 90, 180)  # at most this many days: 5, 4, 3, 2
    frequency: tuple[float, ...] = (10, 7, 5, 3)  # at least this many purchases: 5, 4, 3, 2
    monetary: tuple[float, ...] = (100_000, 70_000, 50_000, 30_000)  # average at least: 5..2

    def __post_init__(self) -> None:
        issues = []
        for name, values, rising in (("recency_days", self.recency_days, True),
                                     ("frequency", self.frequency, False),
                                     ("monetary", self.monetary, False)):
            steps = np.diff(np.asarray(values, dtype=np.float64))
            if len(values) != 4 or not (np.all(steps > 0) if rising else np.all(steps < 0)):
                order = "increasing" if rising else "decreasing"
                issues.append(Issue(f"--{name.replace('_', '-')}",
                                    f"must be 4 strictly {order} numbers", list(values)))
        if issues:
            raise InputError(issues)


@dataclass(frozen=True)
class Columns:
    customer: str = "customer_id"
    date: str = "date"
    amount: str = "amount"


def read_transactions(path: str | Path, columns: Columns = Columns(),
                      date_format: str | None = None) -> pd.DataFrame:
    """A transaction log (CSV or Parquet) as typed `customer`, `date`, `amount` columns."""
    frame, loc = read_table_file(path)
    name = Path(path).name
    missing = [c for c in (columns.customer, columns.date, columns.amount) if c not in frame.columns]
    if missing:
        raise InputError([Issue(name, f"must have a column {c!r}", has_value=False)
                          for c in missing])
    issues: list[Issue] = []
    customer = frame[columns.customer].astype("string").str.strip()
    for i in np.flatnonzero((customer.isna() | (customer == "")).to_numpy()):
        issues.append(Issue(loc.path(int(i), columns.customer), "is required", has_value=False))
    raw_date = frame[columns.date]
    date = pd.to_datetime(raw_date.astype("string") if date_format else raw_date,
                          format=date_format, errors="coerce")
    for i in np.flatnonzero(date.isna().to_numpy()):
        rule = f"must be a date{f' ({date_format})' if date_format else ''}"
        issues.append(Issue(loc.path(int(i), columns.date), rule, raw_date.iloc[i]))
    raw_amount = frame[columns.amount]
    amount = pd.to_numeric(raw_amount, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad_amount = ~(np.isfinite(amount) & (amount >= 0))
    for i in np.flatnonzero(bad_amount):
        issues.append(Issue(loc.path(int(i), columns.amount), "must be a number >= 0",
                            raw_amount.iloc[i]))
    if issues:
        raise InputError(issues)
    return pd.DataFrame({"customer": customer.to_numpy(dtype=object), "date": date.to_numpy(),
                         "amount": amount})


def score(transactions: pd.DataFrame, asof: pd.Timestamp | None = None,
          thresholds: Thresholds = Thresholds()) -> pd.DataFrame:
    """One row per customer: recency_days, frequency, monetary, R, F, M and the segment id.

    `asof` defaults to the day after the last transaction; later transactions are ignored.
    """
    if asof is None:
        asof = transactions["date"].max().normalize() + pd.Timedelta(days=1)
    t = transactions[transactions["date"] <= asof]
    per = t.groupby("customer", sort=True).agg(last=("date", "max"), frequency=("date", "size"),
                                                total=("amount", "sum"))
    recency = (asof - per["last"]).dt.days.to_numpy()
    frequency = per["frequency"].to_numpy()
    monetary = (per["total"] / per["frequency"]).to_numpy()
    r = 5 - np.searchsorted(np.asarray(thresholds.recency_days), recency, side="left")
    f = 5 - np.searchsorted(-np.asarray(thresholds.frequency, dtype=np.float64), -frequency)
    m = 5 - np.searchsorted(-np.asarray(thresholds.monetary, dtype=np.float64), -monetary)
    codes = r * 100 + f * 10 + m
    return pd.DataFrame({
        "customer": per.index.to_numpy(), "recency_days": recency, "frequency": frequency,
        "monetary": monetary, "r": r, "f": f, "m": m,
        "segment": ("rfm" + pd.Series(codes).astype(str)).to_numpy(dtype=object),
    })


def segment_sizes(scores: pd.DataFrame) -> pd.DataFrame:
    """Segment ids and their customer counts, best segments first."""
    sizes = scores.groupby(["segment", "r", "f", "m"], as_index=False).size()
    return sizes.rename(columns={"size": "customers"}).sort_values(
        ["r", "f", "m"], ascending=False).reset_index(drop=True)
