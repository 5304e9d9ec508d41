"""The store: catalog plans, solve runs, result plans and the publication history.

Catalogs and plans are kept in columns (store migration 5, `api.store.columnar`,
docs/storage.md): Parquet payloads in content-addressed blobs, written in the same
transaction as the rows that name them. Rows written before keep their JSON, and every
reader takes either form: the JSON readers (`plan`, `catalog_document`, `active_bundle`,
`published_bundle`, `plan_with_catalog`) build the JSON of a columnar row, the columnar ones
(`stored_plan`, `plan_object`, `catalog_instance`, `publication`, `active_publication`,
`offers_parquet`) read a JSON row's columns, and `active_summary` reads headers only.
"""

from __future__ import annotations

import hashlib
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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from api.store.columnar import (
    CATALOG_ZIP,
    OFFERS_PARQUET,
    SETS_PARQUET,
    StoredCatalog,
    StoredPlan,
    catalog_header,
    catalog_zip,
    offers_table,
    parquet_bytes,
    plan_header,
    sets_table,
)
from api.store.schema import (
    MIGRATIONS,
    active,
    blob_chunks,
    blobs,
    catalog_payloads,
    catalog_plans,
    holdout_salt,
    new_salt,
    plan_payloads,
    plans,
    publications,
    runs,
    schema_version,
    traffic_salt,
)
from optimizer.errors import InputError, Issue, OfferOptError, file_error
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan

CHUNK_BYTES = 8 << 20  # a blob's bytes per row of blob_chunks
LEGACY_BYTES_PER_OFFER = 250  # a JSON plan row's size per offer, to estimate its offers


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

    def submit(self, name: str, catalog: str | Instance, sha256: str | None,
               options: dict[str, Any], actor: str,
               idempotency_key: str | None) -> tuple[str, bool]:
        """Store a catalog plan and queue its run; returns (run id, created). An `Instance` is
        stored in columns (its SHA-256, unless given, that of its zip); a JSON string as it is."""
        now = time.time()
        encoded = encode_catalog(catalog, sha256)  # before the write transaction opens
        sha256 = encoded.sha256
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
            insert_catalog(conn, catalog_id, name, encoded, actor, idempotency_key)
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
        """The run's catalog as instance@1 JSON (built from the columns when so stored)."""
        return self.stored_catalog(run_id).json_document()

    def catalog_instance(self, run_id: str) -> Instance:
        """The run's catalog, validated (read from its Parquet tables when so stored)."""
        return self.stored_catalog(run_id).instance()

    def stored_catalog(self, run_id: str) -> StoredCatalog:
        with self.engine.connect() as conn:
            catalog_id = conn.execute(sa.select(runs.c.catalog_plan_id)
                                      .where(runs.c.id == run_id)).scalar()
            if catalog_id is None:
                raise NotFound(f"run {run_id!r}")
            return _stored_catalog(conn, str(catalog_id))

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
        encoded = None if plan is None else encode_plan(plan)  # before the transaction opens
        with self.write() as conn:
            if plan is not None and encoded is not None:
                insert_plan(conn, new_id(), run_id, plan, checked, encoded)
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
        """The plan's row, its `document` the whole plan@1 JSON (built from the columns when
        so stored: for large plans read `plan_object` or `offers_parquet`)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.id == plan_id)).mappings().first()
            if row is None:
                raise NotFound(f"plan {plan_id!r}")
            return {**row, "document": _stored_plan(conn, plan_id).json_document()}

    def plan_row(self, plan_id: str) -> dict[str, Any]:
        """The plan's row, with its `header` (the document without offers and offer sets)
        in place of the document: no payload is read."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.id == plan_id)).mappings().first()
        if row is None:
            raise NotFound(f"plan {plan_id!r}")
        header = {k: v for k, v in json.loads(row["document"]).items()
                  if k not in ("offers", "offer_sets")}
        return {**{k: v for k, v in row.items() if k != "document"}, "header": header}

    def stored_plan(self, plan_id: str) -> StoredPlan:
        with self.engine.connect() as conn:
            return _stored_plan(conn, plan_id)

    def plan_object(self, plan_id: str) -> Plan:
        return self.stored_plan(plan_id).plan()

    def offer_count(self, plan_id: str) -> int:
        """How many offers the plan holds (estimated from its size for a JSON row)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(plan_payloads.c.offer_count, sa.func.length(plans.c.document))
                .select_from(plans.outerjoin(plan_payloads, plan_payloads.c.plan_id == plans.c.id))
                .where(plans.c.id == plan_id)).first()
        if row is None:
            raise NotFound(f"plan {plan_id!r}")
        return int(row[0]) if row[0] is not None else int(row[1] or 0) // LEGACY_BYTES_PER_OFFER

    def offers_parquet(self, plan_id: str) -> Iterator[bytes]:
        """The plan's offers as a Parquet file, in chunks as stored (a JSON row's are encoded
        first); a chunk is read when the one before it was consumed."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(plans.c.id, plan_payloads.c.offers)
                                 .select_from(plans.outerjoin(
                                     plan_payloads, plan_payloads.c.plan_id == plans.c.id))
                                 .where(plans.c.id == plan_id)).first()
        if found is None:
            raise NotFound(f"plan {plan_id!r}")
        if found.offers is None:
            return iter([parquet_bytes(offers_table(self.plan_object(plan_id).offers))])
        return self.blob_stream(str(found.offers))

    def blob_stream(self, sha256: str) -> Iterator[bytes]:
        """A blob's chunks, each read in its own short query (a slow reader holds no
        transaction open)."""
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(blob_chunks)
                                 .where(blob_chunks.c.sha256 == sha256)).scalar() or 0

        if not count:
            raise NotFound(f"blob {sha256!r}")

        def chunks() -> Iterator[bytes]:
            for seq in range(int(count)):
                with self.engine.connect() as conn:  # closed before the chunk is handed on
                    data = bytes(conn.execute(sa.select(blob_chunks.c.data).where(
                        (blob_chunks.c.sha256 == sha256) & (blob_chunks.c.seq == seq))).scalar_one())
                yield data
        return chunks()

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

    def published_plan_id(self, version: int) -> str | None:
        """The plan published as `version` (None: no such publication)."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(publications.c.plan_id)
                                 .where(publications.c.version == version)).scalar()
        return None if found is None else str(found)

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
        found = self._publication(which)
        if found is None:
            return None
        row, plan, catalog = found
        return {**row, "plan": plan.json_document(), "catalog": catalog.json_document()}

    def publication(self, version: int) -> Publication | None:
        """The plan published as `version`, in columns, with the catalog it was solved from."""
        return self._columnar(publications.c.version == version)

    def active_publication(self) -> Publication | None:
        """As `publication`, for the active version."""
        return self._columnar(publications.c.version == sa.select(active.c.version)
                              .scalar_subquery())

    def _columnar(self, which: sa.ColumnElement[bool]) -> Publication | None:
        found = self._publication(which)
        if found is None:
            return None
        row, plan, catalog = found
        return Publication(int(row["version"]), str(row["id"]), plan, catalog)

    def active_summary(self) -> dict[str, Any] | None:
        """The active version, its plan id, when and by whom it was published, its plan's
        header (the document without offers) and its catalog's currency: no payload is read,
        so the answer is as quick at a million offers as at ten."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(publications.c.version, plans.c.id, publications.c.created_at,
                          publications.c.actor, plans.c.document.label("plan"),
                          catalog_plans.c.document.label("catalog"))
                .join(active, active.c.version == publications.c.version)
                .join(plans, plans.c.id == publications.c.plan_id)
                .join(runs, runs.c.id == plans.c.run_id)
                .join(catalog_plans, catalog_plans.c.id == runs.c.catalog_plan_id)
            ).mappings().first()
        if row is None:
            return None
        header = {k: v for k, v in json.loads(row["plan"]).items() if k not in ("offers",
                                                                                "offer_sets")}
        return {"version": int(row["version"]), "plan_id": str(row["id"]),
                "created_at": row["created_at"], "actor": row["actor"], "plan": header,
                "currency": json.loads(row["catalog"]).get("currency")}

    def _publication(self, which: sa.ColumnElement[bool]
                     ) -> tuple[dict[str, Any], StoredPlan, StoredCatalog] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(publications.c.version, plans.c.id,
                          catalog_plans.c.id.label("catalog_id"), publications.c.created_at,
                          publications.c.actor, _salt_now(), _salt_now("holdout"))
                .join(plans, plans.c.id == publications.c.plan_id)
                .join(runs, runs.c.id == plans.c.run_id)
                .join(catalog_plans, catalog_plans.c.id == runs.c.catalog_plan_id)
                .where(which)).mappings().first()
            if row is None:
                return None
            plan = _stored_plan(conn, str(row["id"]))
            catalog = _stored_catalog(conn, str(row["catalog_id"]))
        out = {k: v for k, v in row.items() if k != "catalog_id"}
        return out, plan, catalog

    def plan_with_catalog(self, plan_id: str) -> dict[str, Any]:
        """A plan, the catalog it was solved from (both as JSON), and the versions it was
        published as; for large plans read `plan_record`."""
        record = self.plan_record(plan_id)
        return {"plan": record.plan.json_document(), "catalog": record.catalog.json_document(),
                "versions": list(record.versions)}

    def plan_record(self, plan_id: str) -> PlanRecord:
        """A plan and the catalog it was solved from, as stored, and the versions it was
        published as."""
        with self.engine.connect() as conn:
            catalog_id = conn.execute(
                sa.select(runs.c.catalog_plan_id).join(plans, plans.c.run_id == runs.c.id)
                .where(plans.c.id == plan_id)).scalar()
            if catalog_id is None:
                raise NotFound(f"plan {plan_id!r}")
            plan = _stored_plan(conn, plan_id)
            catalog = _stored_catalog(conn, str(catalog_id))
            versions = conn.execute(sa.select(publications.c.version)
                                    .where(publications.c.plan_id == plan_id)
                                    .order_by(publications.c.version)).scalars().all()
        return PlanRecord(plan, catalog, tuple(int(v) for v in versions))

    def history(self, limit: int = 50, version: int | None = None) -> list[dict[str, Any]]:
        """Publications, newest first; only the one of `version` when given."""
        query = sa.select(publications).order_by(publications.c.version.desc()).limit(limit)
        if version is not None:
            query = query.where(publications.c.version == version)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(r) for r in rows]


@dataclass(frozen=True)
class Publication:
    """A published version's plan and catalog, as stored (`Store.publication`)."""

    version: int
    plan_id: str
    plan: StoredPlan
    catalog: StoredCatalog


@dataclass(frozen=True)
class PlanRecord:
    """A plan and its catalog, as stored, and the versions it was published as
    (`Store.plan_record`)."""

    plan: StoredPlan
    catalog: StoredCatalog
    versions: tuple[int, ...]


@dataclass(frozen=True)
class EncodedCatalog:
    document: str  # the instance@1 JSON, or (with `tables`) the instance's header
    tables: bytes | None  # the zip of its Parquet folder
    sha256: str


def encode_catalog(catalog: str | Instance, sha256: str | None = None) -> EncodedCatalog:
    """What `insert_catalog` writes: an `Instance` in columns (its SHA-256, unless given,
    that of its zip), a JSON string as it is (its SHA-256, unless given, that of the text)."""
    if isinstance(catalog, Instance):
        tables = catalog_zip(catalog)
        return EncodedCatalog(catalog_header(catalog), tables,
                              sha256 or hashlib.sha256(tables).hexdigest())
    return EncodedCatalog(catalog, None, sha256 or hashlib.sha256(catalog.encode()).hexdigest())


def insert_catalog(conn: sa.Connection, catalog_id: str, name: str, encoded: EncodedCatalog,
                   actor: str, idempotency_key: str | None = None) -> None:
    """Write a catalog plan within the caller's transaction."""
    conn.execute(catalog_plans.insert().values(
        id=catalog_id, name=name, sha256=encoded.sha256, document=encoded.document,
        idempotency_key=idempotency_key, submitted_by=actor, created_at=time.time()))
    if encoded.tables is not None:
        conn.execute(catalog_payloads.insert().values(
            catalog_plan_id=catalog_id, tables=put_blob(conn, encoded.tables, CATALOG_ZIP)))


@dataclass(frozen=True)
class EncodedPlan:
    header: str
    offers: bytes
    offer_sets: bytes | None
    offer_count: int


def encode_plan(plan: Plan) -> EncodedPlan:
    """A plan's stored columns (Parquet) and header (JSON): what `insert_plan` writes."""
    sets = None if plan.offer_sets is None else parquet_bytes(sets_table(plan.offer_sets))
    return EncodedPlan(plan_header(plan), parquet_bytes(offers_table(plan.offers)), sets,
                       len(plan.offers))


def insert_plan(conn: sa.Connection, plan_id: str, run_id: str, plan: Plan, checked: bool,
                encoded: EncodedPlan | None = None) -> None:
    """Write a plan in columns within the caller's transaction."""
    encoded = encoded or encode_plan(plan)
    conn.execute(plans.insert().values(id=plan_id, run_id=run_id, document=encoded.header,
                                       status=plan.status, checked=checked,
                                       created_at=time.time()))
    sets = None if encoded.offer_sets is None else \
        put_blob(conn, encoded.offer_sets, SETS_PARQUET)
    conn.execute(plan_payloads.insert().values(
        plan_id=plan_id, offers=put_blob(conn, encoded.offers, OFFERS_PARQUET,
                                         encoded.offer_count),
        offer_sets=sets, offer_count=encoded.offer_count))


def put_blob(conn: sa.Connection, data: bytes, fmt: str, rows: int | None = None) -> str:
    """Store `data` under its SHA-256 (once: the same bytes again add nothing); returns it."""
    sha = hashlib.sha256(data).hexdigest()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = conn.execute(dialect.insert(blobs).on_conflict_do_nothing(
        index_elements=["sha256"]).returning(blobs.c.sha256), {
        "sha256": sha, "format": fmt, "size": len(data), "rows": rows,
        "created_at": time.time()}).first()
    if inserted is not None:  # a new blob: its chunks, one statement each (a bounded packet)
        for seq, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES)):
            conn.execute(blob_chunks.insert().values(sha256=sha, seq=seq,
                                                     data=data[start:start + CHUNK_BYTES]))
    return sha


def read_blob(conn: sa.Connection, sha256: str) -> bytes:
    parts = conn.execute(sa.select(blob_chunks.c.data).where(blob_chunks.c.sha256 == sha256)
                         .order_by(blob_chunks.c.seq)).scalars().all()
    if not parts:
        raise NotFound(f"blob {sha256!r}", f"blob {sha256}: must be in the store, got nothing "
                                           "(the store lost a payload)")
    return b"".join(bytes(p) for p in parts)


def _stored_plan(conn: sa.Connection, plan_id: str) -> StoredPlan:
    row = conn.execute(sa.select(plans.c.document, plan_payloads.c.offers,
                                 plan_payloads.c.offer_sets)
                       .select_from(plans.outerjoin(plan_payloads,
                                                    plan_payloads.c.plan_id == plans.c.id))
                       .where(plans.c.id == plan_id)).first()
    if row is None:
        raise NotFound(f"plan {plan_id!r}")
    if row.offers is None:
        return StoredPlan(str(row.document), None, None)
    return StoredPlan(str(row.document), read_blob(conn, row.offers),
                      None if row.offer_sets is None else read_blob(conn, row.offer_sets))


def _stored_catalog(conn: sa.Connection, catalog_id: str) -> StoredCatalog:
    row = conn.execute(sa.select(catalog_plans.c.document, catalog_payloads.c.tables)
                       .select_from(catalog_plans.outerjoin(
                           catalog_payloads, catalog_payloads.c.catalog_plan_id == catalog_plans.c.id))
                       .where(catalog_plans.c.id == catalog_id)).first()
    if row is None:
        raise NotFound(f"catalog plan {catalog_id!r}")
    return StoredCatalog(str(row.document),
                         None if row.tables is None else read_blob(conn, row.tables))


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
