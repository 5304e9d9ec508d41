"""The store: catalog plans, solve runs, result plans and the publication history."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.store.schema import (
    MIGRATIONS,
    active,
    catalog_plans,
    holdout_salt,
    new_salt,
    plans,
    publications,
    runs,
    schema_version,
    traffic_salt,
)
from optimizer.errors import InputError, Issue, OfferOptError, file_error
from optimizer.plan.model import Plan


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # a plan was produced (see its status)
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class NotFound(OfferOptError, LookupError):
    """An id that names nothing in the store. `str()` is `what: no such id`, unless a fuller
    message was given."""

    def __init__(self, what: str, message: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.message = message or f"{what}: no such id"

    def __str__(self) -> str:
        return self.message


class Conflict(OfferOptError, RuntimeError):
    """The store's state refuses the request (a reused key, an unpublishable plan, ...)."""


def new_id() -> str:
    return uuid.uuid4().hex


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_engine(url: str, create_folder: bool = True, name: str = "database URL") -> Engine:
    """An engine for `url`. A SQLite file's folder is created when `create_folder` (the
    default store under DATA_DIR), else it must exist; `name` is what messages call the URL
    (`--store`, `OFFEROPT_DATABASE_URL`)."""
    try:
        parsed = sa.engine.make_url(url)
        parsed.get_dialect()  # an unknown scheme or a missing driver is refused here
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise InputError([Issue(name, "must be a SQLAlchemy database URL with an installed "
                                "driver, e.g. sqlite:///data/offeropt.db or "
                                "postgresql+psycopg://user:pw@host/db", _shown(url))]) from exc
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if create_folder:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise file_error(folder, exc, f"must be a folder that can hold the store "
                                 f"({name})") from exc
        elif not folder.is_dir():
            raise InputError([Issue(name, f"must name a SQLite file in an existing folder "
                                    f"({folder} is not created for it)", _shown(url))])
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi: Any, _: Any) -> None:
            dbapi.isolation_level = None  # we issue BEGIN ourselves: DDL is transactional too
            cur = dbapi.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cur.execute("PRAGMA synchronous=FULL")  # a commit survives kill -9 and power loss
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            # A writer takes the lock up front (waiting on the busy timeout), so a
            # read-then-write transaction never fails to upgrade a stale snapshot.
            immediate = conn.get_execution_options().get("offeropt_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@dataclass
class Store:
    engine: Engine

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction (on SQLite: BEGIN IMMEDIATE)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(offeropt_write=True)
            with conn.begin():
                yield conn

    @classmethod
    def open(cls, url: str, create_folder: bool = True, name: str = "database URL") -> Store:
        """The store at `url`, migrated (see `make_engine` for `create_folder` and `name`)."""
        store = cls(make_engine(url, create_folder, name))
        try:
            store.migrate()
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise InputError([Issue(name, "must name a store that can be opened and written",
                                    value_text=f"{_shown(url)!r} ({reason})")]) from exc
        return store

    def migrate(self) -> int:
        """Apply pending migrations; safe when several processes start at once."""
        for version, step in enumerate(MIGRATIONS, start=1):
            if self._version_or_zero() >= version:
                continue
            try:
                with self.write() as conn:
                    schema_version.create(conn, checkfirst=True)
                    step(conn)
                    conn.execute(schema_version.insert().values(version=version,
                                                                applied_at=time.time()))
            except sa.exc.DBAPIError:
                if self._version_or_zero() < version:  # not another migrator's doing
                    raise
        return len(MIGRATIONS)

    def _version_or_zero(self) -> int:
        try:
            return self.schema_version()
        except sa.exc.DBAPIError:  # no schema_version table yet
            return 0

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- catalog plans and runs --------------------------------------------------------

    def submit(self, name: str, document: str, sha256: str, options: dict[str, Any],
               actor: str, idempotency_key: str | None) -> tuple[str, bool]:
        """Store a catalog plan and queue its run; returns (run id, created)."""
        now = time.time()
        with self.write() as conn:
            if idempotency_key is not None:
                prior = conn.execute(
                    sa.select(catalog_plans.c.id, catalog_plans.c.sha256)
                    .where(catalog_plans.c.idempotency_key == idempotency_key)).first()
                if prior is not None:
                    if prior.sha256 != sha256:
                        raise Conflict(f"Idempotency-Key {idempotency_key!r}: must be reused only "
                                       "with the same catalog plan, got a different one")
                    first = conn.execute(sa.select(runs.c.id, runs.c.options).where(
                        runs.c.catalog_plan_id == prior.id).order_by(runs.c.created_at)).first()
                    assert first is not None  # a catalog plan is stored with its run
                    changed = _changed_options(json.loads(first.options), options)
                    if changed:
                        raise Conflict(f"Idempotency-Key {idempotency_key!r}: must be reused only "
                                       f"with the same options, got {changed}")
                    return str(first.id), False
            catalog_id, run_id = new_id(), new_id()
            conn.execute(catalog_plans.insert().values(
                id=catalog_id, name=name, sha256=sha256, document=document,
                idempotency_key=idempotency_key, submitted_by=actor, created_at=now))
            conn.execute(runs.insert().values(
                id=run_id, catalog_plan_id=catalog_id, status=RunStatus.QUEUED,
                options=json.dumps(options), cancel_requested=False, created_at=now))
        return run_id, True

    def run(self, run_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs, plans.c.id.label("plan_id"),
                                         catalog_plans.c.name.label("catalog_name"))
                               .join(catalog_plans, catalog_plans.c.id == runs.c.catalog_plan_id)
                               .outerjoin(plans, plans.c.run_id == runs.c.id)
                               .where(runs.c.id == run_id)).mappings().first()
        if row is None:
            raise NotFound(f"run {run_id!r}")
        return dict(row)

    def queue_on_plan_catalog(self, plan_id: str, options: dict[str, Any]) -> str:
        """Queue a run on the catalog plan `plan_id` was solved from (a frontier, whose
        `options` name its kind); returns the run id."""
        with self.write() as conn:
            catalog_id = conn.execute(sa.select(runs.c.catalog_plan_id)
                                      .join(plans, plans.c.run_id == runs.c.id)
                                      .where(plans.c.id == plan_id)).scalar()
            if catalog_id is None:
                raise NotFound(f"plan {plan_id!r}")
            run_id = new_id()
            conn.execute(runs.insert().values(
                id=run_id, catalog_plan_id=catalog_id, status=RunStatus.QUEUED,
                options=json.dumps(options), cancel_requested=False, created_at=time.time()))
        return run_id

    def catalog_document(self, run_id: str) -> str:
        with self.engine.connect() as conn:
            doc = conn.execute(sa.select(catalog_plans.c.document)
                               .join(runs, runs.c.catalog_plan_id == catalog_plans.c.id)
                               .where(runs.c.id == run_id)).scalar()
        if doc is None:
            raise NotFound(f"run {run_id!r}")
        return str(doc)

    def claim_next(self, worker: str) -> str | None:
        """Atomically move the oldest queued run to running; None when the queue is empty."""
        with self.write() as conn:
            candidates = conn.execute(sa.select(runs.c.id).where(runs.c.status == RunStatus.QUEUED)
                                      .order_by(runs.c.created_at).limit(5)).scalars().all()
            now = time.time()
            for run_id in candidates:
                claimed = conn.execute(runs.update().where(
                    (runs.c.id == run_id) & (runs.c.status == RunStatus.QUEUED)).values(
                    status=RunStatus.RUNNING, worker=worker, started_at=now, heartbeat_at=now))
                if claimed.rowcount == 1:
                    return str(run_id)
        return None

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    def cancel(self, run_id: str) -> dict[str, Any]:
        with self.write() as conn:
            conn.execute(runs.update().where((runs.c.id == run_id) &
                                             (runs.c.status == RunStatus.QUEUED))
                         .values(status=RunStatus.CANCELLED, finished_at=time.time(),
                                 cancel_requested=True))
            conn.execute(runs.update().where((runs.c.id == run_id) &
                                             (runs.c.status == RunStatus.RUNNING))
                         .values(cancel_requested=True))
        return self.run(run_id)

    def cancel_requested(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(sa.select(runs.c.cancel_requested)
                                     .where(runs.c.id == run_id)).scalar())

    def finish_run(self, run_id: str, status: RunStatus, plan: Plan | None,
                   checked: bool, **values: Any) -> None:
        """Record the outcome and the plan in one transaction."""
        with self.write() as conn:
            if plan is not None:
                conn.execute(plans.insert().values(
                    id=new_id(), run_id=run_id, document=json.dumps(plan.to_dict()),
                    status=plan.status,
                    checked=checked, created_at=time.time()))
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                status=status, finished_at=time.time(), **values))

    def fail_lost_runs(self, stale_after: float, alive: set[str]) -> list[str]:
        """Runs marked running whose worker stopped beating (or is gone) become failed."""
        now = time.time()
        host = socket.gethostname()
        lost = []
        with self.write() as conn:
            rows = conn.execute(sa.select(runs.c.id, runs.c.worker, runs.c.heartbeat_at)
                                .where(runs.c.status == RunStatus.RUNNING)).all()
            for run_id, worker, beat in rows:
                pid_gone = worker and worker.startswith(f"{host}:") and worker not in alive \
                    and not pid_alive(int(worker.rsplit(":", 1)[1]))
                if pid_gone or beat is None or now - beat > stale_after:
                    conn.execute(runs.update().where((runs.c.id == run_id) &
                                                     (runs.c.status == RunStatus.RUNNING))
                                 .values(status=RunStatus.FAILED, finished_at=now,
                                         error="the solving process stopped (restart or crash)"))
                    lost.append(str(run_id))
        return lost

    # -- plans and publication -----------------------------------------------------------

    def plan(self, plan_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.id == plan_id)).mappings().first()
        if row is None:
            raise NotFound(f"plan {plan_id!r}")
        return dict(row)

    def publish(self, plan_id: str, actor: str, pause: float = 0.0) -> int:
        """Make a plan active; one transaction, so the active plan is always a whole plan."""
        with self.write() as conn:
            row = conn.execute(sa.select(plans.c.status, plans.c.checked)
                               .where(plans.c.id == plan_id)).first()
            if row is None:
                raise NotFound(f"plan {plan_id!r}")
            if row.status not in ("optimal", "feasible") or not row.checked:
                raise Conflict(f"plan {plan_id!r}: must be a checked plan with status optimal or "
                               f"feasible to be published, got status {row.status!r}")
            return self.activate(conn, plan_id, "publish", actor, pause)

    def rollback(self, actor: str, to_version: int | None = None, field: str = "to_version") -> int:
        """Re-activate the plan before the active one (or the one published as `to_version`;
        `field` is what a refusal calls it)."""
        with self.write() as conn:
            current = conn.execute(sa.select(active.c.plan_id, active.c.version)).first()
            if current is None:
                raise Conflict("no plan has been published yet")
            if to_version is not None:
                target = conn.execute(sa.select(publications.c.plan_id)
                                      .where(publications.c.version == to_version)).scalar()
                if target is None:
                    versions = conn.execute(sa.select(publications.c.version)
                                            .order_by(publications.c.version)).scalars().all()
                    raise NotFound(f"publication version {to_version}",
                                   f"{field}: must be a published version ({_ranges(versions)}), "
                                   f"got {to_version}: no publication {to_version} exists")
            else:
                target = conn.execute(
                    sa.select(publications.c.plan_id)
                    .where((publications.c.plan_id != current.plan_id) &
                           (publications.c.version < current.version))
                    .order_by(publications.c.version.desc()).limit(1)).scalar()
                if target is None:
                    raise Conflict("there is no earlier plan to roll back to")
            return self.activate(conn, str(target), "rollback", actor, 0.0)

    @staticmethod
    def activate(conn: sa.Connection, plan_id: str, action: str, actor: str, pause: float) -> int:
        result = conn.execute(publications.insert().values(
            plan_id=plan_id, action=action, actor=actor, created_at=time.time()))
        version = int(result.inserted_primary_key[0])  # type: ignore[index]
        if pause:
            time.sleep(pause)  # fault injection for crash tests: a kill lands mid-transaction
        updated = conn.execute(active.update().where(active.c.id == 1)
                               .values(plan_id=plan_id, version=version))
        if updated.rowcount == 0:
            conn.execute(active.insert().values(id=1, plan_id=plan_id, version=version))
        return version

    def active(self) -> dict[str, Any] | None:
        """The active plan's id and version (a cheap query, polled by the offer index)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(active.c.plan_id, active.c.version)).mappings().first()
        return None if row is None else dict(row)

    def serving(self) -> dict[str, Any] | None:
        """The active plan's id and version, and the traffic and holdout salts (one cheap
        query, read by the offer index on every request: a new version or a rotated salt
        makes it move)."""
        with self.engine.connect() as conn:
            row = conn.execute(_SERVING).first()
        return None if row is None else {"plan_id": row[0], "version": row[1], "salt": row[2],
                                         "holdout_salt": row[3]}

    def rotate_salt(self, actor: str, which: str = "traffic") -> dict[str, Any]:
        """A new salt. `traffic`: split segments' customers are assigned to offer sets
        afresh; `holdout`: a new control group is drawn."""
        table = _SALTS[which]
        values = {"salt": new_salt(), "rotated_at": time.time(), "rotated_by": actor}
        with self.write() as conn:
            current = conn.execute(sa.select(table.c.version).where(table.c.id == 1)).scalar()
            version = 1 if current is None else int(current) + 1
            if current is None:
                conn.execute(table.insert().values(id=1, version=version, **values))
            else:
                conn.execute(table.update().where(table.c.id == 1)
                             .values(version=version, **values))
        return {"salt_version": version, "rotated_at": values["rotated_at"], "rotated_by": actor}

    def active_bundle(self) -> dict[str, Any] | None:
        """The active plan with its version and the catalog it was solved from, and the
        salts read with them."""
        return self._bundle(publications.c.version == sa.select(active.c.version)
                            .scalar_subquery())

    def published_bundle(self, version: int) -> dict[str, Any] | None:
        """As `active_bundle`, for the plan published as `version`."""
        return self._bundle(publications.c.version == version)

    def _bundle(self, which: sa.ColumnElement[bool]) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(publications.c.version, plans.c.id, plans.c.document.label("plan"),
                          catalog_plans.c.document.label("catalog"), publications.c.created_at,
                          publications.c.actor, _salt_now(), _salt_now("holdout"))
                .join(plans, plans.c.id == publications.c.plan_id)
                .join(runs, runs.c.id == plans.c.run_id)
                .join(catalog_plans, catalog_plans.c.id == runs.c.catalog_plan_id)
                .where(which)).mappings().first()
        return None if row is None else dict(row)

    def plan_with_catalog(self, plan_id: str) -> dict[str, Any]:
        """A plan, the catalog it was solved from, and the versions it was published as."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(plans.c.document.label("plan"),
                          catalog_plans.c.document.label("catalog"))
                .join(runs, runs.c.id == plans.c.run_id)
                .join(catalog_plans, catalog_plans.c.id == runs.c.catalog_plan_id)
                .where(plans.c.id == plan_id)).mappings().first()
            if row is None:
                raise NotFound(f"plan {plan_id!r}")
            versions = conn.execute(sa.select(publications.c.version)
                                    .where(publications.c.plan_id == plan_id)
                                    .order_by(publications.c.version)).scalars().all()
        return {**row, "versions": [int(v) for v in versions]}

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(publications).order_by(publications.c.version.desc())
                                .limit(limit)).mappings().all()
        return [dict(r) for r in rows]


_SALTS = {"traffic": traffic_salt, "holdout": holdout_salt}


def _salt_now(which: str = "traffic") -> sa.Label[Any]:
    """A salt as a column of any query ("" if its row is missing): `salt`, `holdout_salt`."""
    table = _SALTS[which]
    salt = sa.select(table.c.salt).where(table.c.id == 1).scalar_subquery()
    return sa.func.coalesce(salt, "").label("salt" if which == "traffic" else f"{which}_salt")


_SERVING = sa.select(active.c.plan_id, active.c.version, _salt_now(),
                     _salt_now("holdout"))  # built once


def _changed_options(before: dict[str, Any], now: dict[str, Any]) -> str:
    """The options of a retried submission that differ from the first one's (JSON values
    compared; an option the first run did not record counts as its default, false)."""
    now = json.loads(json.dumps(now))
    diffs = [f"{k}={now.get(k, False)!r} (first sent as {before.get(k, False)!r})"
             for k in sorted(set(before) | set(now)) if before.get(k, False) != now.get(k, False)]
    return ", ".join(diffs)


def _shown(url: str) -> str:
    """A URL fit for a message: its password, if any, masked."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def _ranges(versions: Sequence[int], most: int = 8) -> str:
    """`1-4, 7, 9-12`: the versions as runs, the last `most` runs only."""
    runs: list[list[int]] = []
    for v in versions:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[-most:])
    return ("..., " if len(runs) > most else "") + text


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
