"""The recorded logs in the store: exposures@1 counters, purchase events, journal batches.

Counters are added, never overwritten (an upsert that sums), so any number of workers may
flush into the same cell. A journal batch and a purchase event are each counted at most
once: the batch's name and the event's id are inserted in the same transaction as the
counts they add, and a second insert of either adds nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from api.store import Store
from api.store.schema import events, exposure_counts, journal_batches

CELL_KEY = ("day", "plan_version", "segment", "set", "bundle", "shown", "discount", "perk")
LOG_COLUMNS = ("segment", "bundle", "shown", "discount", "perk", "views", "purchases",
               "plan_version", "set", "propensity")


@dataclass(frozen=True)
class Purchase:
    """One purchase event; `cell` is the exposures@1 cell it adds to (None: the bundle was
    not shown, nor held out, in the view it names: kept, not counted)."""

    event_id: str
    bundle: str
    version: int | None
    segment: str | None
    cell: dict[str, Any] | None  # the CELL_KEY values and the propensity


def add_counts(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add views and purchases to their cells (CELL_KEY, propensity, views, purchases)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(exposure_counts)
    stmt = insert.on_conflict_do_update(
        index_elements=list(CELL_KEY),
        set_={"views": exposure_counts.c.views + insert.excluded.views,
              "purchases": exposure_counts.c.purchases + insert.excluded.purchases})
    conn.execute(stmt, list(rows))


def commit_batch(store: Store, name: str, rows: Sequence[dict[str, Any]]) -> bool:
    """Add a journal batch's counts unless a batch of that name was added already."""
    with store.write() as conn:
        done = conn.execute(sa.select(journal_batches.c.name)
                            .where(journal_batches.c.name == name)).first()
        if done is not None:
            return False
        conn.execute(journal_batches.insert().values(name=name, committed_at=time.time()))
        add_counts(conn, rows)
    return True


def record_purchases(store: Store, purchases: Sequence[Purchase]) -> tuple[int, int]:
    """Store the events not seen before and add their purchases, in one transaction:
    (accepted, duplicates). A resent event id is a duplicate, whatever it carries; two
    requests resending one id at once count it once (the insert skips a known id)."""
    now = time.time()
    fresh: dict[str, Purchase] = {}
    for p in purchases:
        fresh.setdefault(p.event_id, p)  # one id twice in a request counts once
    with store.write() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(events).on_conflict_do_nothing(index_elements=["event_id"])
        inserted = set(conn.execute(insert.returning(events.c.event_id, sort_by_parameter_order=True), [
            {"event_id": p.event_id, "received_at": now, "plan_version": p.version,
             "segment": p.segment, "bundle": p.bundle, "attributed": p.cell is not None}
            for p in fresh.values()]).scalars())
        add_counts(conn, summed({**p.cell, "views": 0, "purchases": 1}
                                for p in fresh.values() if p.event_id in inserted and p.cell))
    return len(inserted), len(purchases) - len(inserted)


def summed(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of one cell merged (an upsert statement must not name a cell twice), in key
    order (concurrent upserts then lock cells in one order: no deadlock)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in CELL_KEY)
        if key in out:
            out[key]["views"] += row["views"]
            out[key]["purchases"] += row["purchases"]
        else:
            out[key] = dict(row)
    return [out[k] for k in sorted(out, key=repr)]


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def prune_batches(store: Store, keep_days: float = 7.0) -> None:
    """Forget the names of batches stored more than `keep_days` ago: a journal file is
    replayed within seconds of its worker's death, never days later."""
    with store.write() as conn:
        conn.execute(journal_batches.delete().where(
            journal_batches.c.committed_at < time.time() - keep_days * 86400))


def recorded_logs(store: Store, since_version: int | None = None,
                  since_day: str | None = None, version: int | None = None) -> pd.DataFrame:
    """The recorded logs as exposures@1 rows with the section 9 columns (plan_version, set,
    propensity), summed over days by the store. A cell whose purchases were counted on a day
    its views were not (a purchase reported after midnight, read with `since_day`), or
    whose views are still in a journal, keeps at most its views' purchases."""
    c = exposure_counts.c
    key = [c.plan_version, c.segment, c.set, c.bundle, c.shown, c.discount, c.perk]
    query = sa.select(*key, sa.func.sum(c.views).label("views"),
                      sa.func.sum(c.purchases).label("purchases"),
                      sa.func.max(c.propensity).label("propensity")).group_by(*key).order_by(*key)
    if since_version is not None:
        query = query.where(c.plan_version >= since_version)
    if version is not None:
        query = query.where(c.plan_version == version)
    if since_day is not None:
        query = query.where(c.day >= since_day)
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=[k.name for k in key] +
                             ["views", "purchases", "propensity"])
    frame["purchases"] = frame["purchases"].clip(upper=frame["views"])
    return frame.astype({"plan_version": "int64", "shown": "int64", "views": "int64",
                         "purchases": "int64", "discount": "float64",
                         "propensity": "float64"}).loc[:, list(LOG_COLUMNS)]
