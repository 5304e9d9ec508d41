"""Tables, and the versioned migrations that create them.

Migrations are an ordered list applied at start-up, each in its own transaction, with
the applied version recorded in `schema_version`; a new schema change appends a step.
"""

from __future__ import annotations

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
    sa.Column("checked", sa.Boolean, nullable=False),  # passed optimizer.check
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


def _v1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[catalog_plans, runs, plans, publications, active])


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1]
