"""Tables, and the versioned migrations that create them.

Migrations are an ordered list applied at start-up, each in its own transaction, with
the applied version recorded in `schema_version`; a new schema change appends a step.
A step only ever creates tables of its own (`metadata.create_all` of the current
definitions), so no step alters a table an earlier one created.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

catalog_plans = sa.Table(
    "catalog_plans", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("document", sa.Text, nullable=False),  # the validated instance@1 JSON
    sa.Column("idempotency_key", sa.String(200), unique=True),
    sa.Column("submitted_by", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("catalog_plan_id", sa.String(32), sa.ForeignKey("catalog_plans.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # see RunStatus
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("progress", sa.Text),  # JSON: objective, bound, gap, elapsed
    sa.Column("plan_status", sa.String(16)),
    sa.Column("objective", sa.Float),
    sa.Column("bound", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("log_tail", sa.Text),
    sa.Column("worker", sa.String(100)),  # host:pid of the solving process
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
)

plans = sa.Table(
    "plans", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), unique=True, nullable=False),
    sa.Column("document", sa.Text, nullable=False),  # offeropt/plan@1
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("checked", sa.Boolean, nullable=False),  # passed optimizer.plan.check
    sa.Column("created_at", sa.Float, nullable=False),
)

publications = sa.Table(
    "publications", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_id", sa.String(32), sa.ForeignKey("plans.id"), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # publish | rollback
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Exactly one row (id = 1): the active plan. Publishing rewrites it in the same
# transaction that appends to `publications`.
active = sa.Table(
    "active", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("plan_id", sa.String(32), sa.ForeignKey("plans.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)


# One row per nightly run key: what makes a second run with the same key a no-op.
nightly_runs = sa.Table(
    "nightly_runs", metadata,
    sa.Column("run_key", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # see NightlyStatus
    sa.Column("exit_code", sa.Integer),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(100)),  # host:pid of the job
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("plan_id", sa.String(32), sa.ForeignKey("plans.id")),
    sa.Column("version", sa.Integer),  # the publication, when it published
    sa.Column("report", sa.Text),  # the run report (JSON)
    sa.Column("error", sa.Text),
)


# Exactly one row (id = 1): the salt of the storefront's split-traffic assignment (spec
# section 7). It changes only when a merchandiser rotates it, never with a plan.
traffic_salt = sa.Table(
    "traffic_salt", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # 1, then one more per rotation
    sa.Column("rotated_at", sa.Float, nullable=False),
    sa.Column("rotated_by", sa.String(64), nullable=False),
)


# Exactly one row (id = 1): the salt of the stable holdout (spec section 9). A customer's
# holdout draw depends on it and on the customer id only, so the control group lasts across
# plans until a merchandiser rotates it.
holdout_salt = sa.Table(
    "holdout_salt", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("rotated_at", sa.Float, nullable=False),
    sa.Column("rotated_by", sa.String(64), nullable=False),
)

# What the storefront served and what was bought: exposures@1 counters (spec sections 6, 9)
# per day and cell. `set` is "" for a holdout row; the propensity is the cell's set's.
exposure_counts = sa.Table(
    "exposure_counts", metadata,
    sa.Column("day", sa.String(10), primary_key=True),  # UTC, YYYY-MM-DD
    sa.Column("plan_version", sa.Integer, primary_key=True),
    sa.Column("segment", sa.Text, primary_key=True),
    sa.Column("set", sa.Text, primary_key=True),
    sa.Column("bundle", sa.Text, primary_key=True),
    sa.Column("shown", sa.Integer, primary_key=True),
    sa.Column("discount", sa.Float, primary_key=True),
    sa.Column("perk", sa.Text, primary_key=True),  # "" for none
    sa.Column("propensity", sa.Float, nullable=False),
    sa.Column("views", sa.BigInteger, nullable=False),
    sa.Column("purchases", sa.BigInteger, nullable=False),
)

# One row per purchase event received: what makes a resent event count once.
events = sa.Table(
    "events", metadata,
    sa.Column("event_id", sa.String(100), primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("plan_version", sa.Integer),
    sa.Column("segment", sa.Text),
    sa.Column("bundle", sa.Text, nullable=False),
    sa.Column("attributed", sa.Boolean, nullable=False),  # counted in exposure_counts
)

# One row per journal batch of served views added to exposure_counts: a batch replayed
# after its worker died is never counted twice.
journal_batches = sa.Table(
    "journal_batches", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("committed_at", sa.Float, nullable=False, index=True),
)


# Columnar payloads (store migration 5, docs/storage.md). A blob is immutable and named by the
# SHA-256 of its bytes (a second write of the same bytes adds nothing), stored in chunks of
# at most CHUNK_BYTES so that no single value nears a database's limit on one field.
blobs = sa.Table(
    "blobs", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("format", sa.String(32), nullable=False),  # see api.store.columnar
    sa.Column("size", sa.BigInteger, nullable=False),  # bytes, all chunks together
    sa.Column("rows", sa.BigInteger),  # a table's rows (null for a catalog's zip)
    sa.Column("created_at", sa.Float, nullable=False),
)

blob_chunks = sa.Table(
    "blob_chunks", metadata,
    sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),  # 0, 1, ...
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# A catalog plan stored in columns: `catalog_plans.document` then holds the instance's
# header (format, name, currency, policy), and `tables` the zip of its Parquet folder.
catalog_payloads = sa.Table(
    "catalog_payloads", metadata,
    sa.Column("catalog_plan_id", sa.String(32), sa.ForeignKey("catalog_plans.id"),
              primary_key=True),
    sa.Column("tables", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
)

# A plan stored in columns: `plans.document` then holds the plan without `offers` and
# `offer_sets`, and these are Parquet tables.
plan_payloads = sa.Table(
    "plan_payloads", metadata,
    sa.Column("plan_id", sa.String(32), sa.ForeignKey("plans.id"), primary_key=True),
    sa.Column("offers", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
    sa.Column("offer_sets", sa.String(64), sa.ForeignKey("blobs.sha256")),  # null: none
    sa.Column("offer_count", sa.BigInteger, nullable=False),
)


def new_salt() -> str:
    return secrets.token_hex(16)


def _v1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[catalog_plans, runs, plans, publications, active])


def _v2(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[nightly_runs])


def _v3(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[traffic_salt])
    conn.execute(traffic_salt.insert().values(id=1, salt=new_salt(), version=1,
                                              rotated_at=time.time(), rotated_by="migration"))


def _v4(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[holdout_salt, exposure_counts, events, journal_batches])
    conn.execute(holdout_salt.insert().values(id=1, salt=new_salt(), version=1,
                                              rotated_at=time.time(), rotated_by="migration"))


def _v5(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[blobs, blob_chunks, catalog_payloads, plan_payloads])


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3, _v4, _v5]
