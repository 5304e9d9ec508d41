"""Catalogs and plans stored in columns (store migration 5, docs/storage.md): round trips on
SQLite and PostgreSQL, payloads stored once and in chunks, rows written before the
migration still read by every reader, and plan downloads streamed as CSV or Parquet."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from flask import Flask

import api.store
from api.app import create_app
from api.index_file import IndexSource
from api.store import RunStatus, Store, new_id
from api.store.columnar import PARQUET_TYPE, SET_COLUMNS, offers_table, sets_table
from api.store.schema import MIGRATIONS, blob_chunks, blobs, plans
from optimizer.io.json_form import instance_to_document
from optimizer.model.instance import Instance
from optimizer.plan.document import build_plan, plan_csv
from optimizer.plan.model import Plan
from tests.constants import MERCHANDISER, STOREFRONT
from tests.split_helpers import split_solution, tight_demo


@pytest.fixture(scope="module")
def split_plan() -> tuple[Instance, Plan]:
    inst = tight_demo()
    plan = build_plan(split_solution(inst))
    assert plan.offer_sets
    return inst, plan


def _count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_catalogs_and_plans_round_trip_in_columns(database_url: str,
                                                  split_plan: tuple[Instance, Plan],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.store, "CHUNK_BYTES", 4096)  # every payload in several chunks
    store = Store.open(database_url)
    inst, plan = split_plan
    run_id, created = store.submit(inst.name, inst, None, {}, "me", "key-1")
    assert created and store.submit(inst.name, inst, None, {}, "me", "key-1") == (run_id, False)
    store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True, plan_status=plan.status)
    plan_id = str(store.run(run_id)["plan_id"])
    assert store.plan_object(plan_id) == plan
    assert store.plan(plan_id)["document"] == json.dumps(plan.to_dict())
    assert instance_to_document(store.catalog_instance(run_id)) == instance_to_document(inst)
    assert json.loads(store.catalog_document(run_id)) == instance_to_document(inst)
    assert store.offer_count(plan_id) == len(plan.offers)
    stream = store.offers_parquet(plan_id)
    first = next(iter(stream))
    assert store.engine.pool.checkedout() == 0  # a slow reader holds no connection
    offers = pq.read_table(io.BytesIO(first + b"".join(stream)))
    assert offers.equals(offers_table(plan.offers))
    assert _count(store, blobs) == 3 and _count(store, blob_chunks) > 6  # catalog, offers, sets
    again, _ = store.submit(inst.name, inst, None, {}, "me", None)  # the same catalog again
    store.finish_run(again, RunStatus.SUCCEEDED, plan, checked=True, plan_status=plan.status)
    assert _count(store, blobs) == 3  # stored once
    version = store.publish(plan_id, "me")
    bundle = store.active_bundle()
    assert bundle is not None and bundle["id"] == plan_id and bundle["version"] == version
    assert json.loads(bundle["plan"]) == plan.to_dict()
    assert json.loads(bundle["catalog"]) == instance_to_document(inst)
    publication = store.publication(version)
    assert publication is not None and publication.plan.plan() == plan
    both = store.plan_with_catalog(plan_id)
    assert json.loads(both["plan"]) == plan.to_dict() and both["versions"] == [version]


def test_rows_written_before_migration_5_are_read_by_every_reader(
        database_url: str, split_plan: tuple[Instance, Plan],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.store, "MIGRATIONS", MIGRATIONS[:4])
    store = Store.open(database_url)
    inst, plan = split_plan
    catalog = json.dumps(instance_to_document(inst), sort_keys=True)
    run_id, _ = store.submit(inst.name, catalog, None, {}, "me", None)
    plan_id = new_id()
    with store.write() as conn:  # as finish_run wrote a plan then
        conn.execute(plans.insert().values(id=plan_id, run_id=run_id,
                                           document=json.dumps(plan.to_dict()),
                                           status=plan.status, checked=True, created_at=0.0))
    monkeypatch.setattr(api.store, "MIGRATIONS", MIGRATIONS)
    assert store.migrate() == len(MIGRATIONS)
    assert store.catalog_document(run_id) == catalog
    assert store.plan(plan_id)["document"] == json.dumps(plan.to_dict())
    assert store.plan_object(plan_id) == plan
    assert instance_to_document(store.catalog_instance(run_id)) == instance_to_document(inst)
    assert store.offer_count(plan_id) > 0  # estimated from the document's size
    offers = pq.read_table(io.BytesIO(b"".join(store.offers_parquet(plan_id))))
    assert offers.equals(offers_table(plan.offers))
    publication = store.publication(store.publish(plan_id, "me"))
    assert publication is not None
    source = IndexSource.of(publication)
    assert source.offers.equals(offers_table(plan.offers)) and source.sets is not None
    assert source.catalog.segment_ids == list(inst.segments["id"])


def _serving_app(tmp_path: Path) -> Flask:
    return create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "RUN_JOBS": False,
                       "RECORDING": False, "MERCHANDISER_TOKENS": "m-token",
                       "STOREFRONT_TOKENS": "s-token"})


def _stored_run(store: Store, inst: Instance, plan: Plan) -> str:
    """A succeeded run of `plan`, checked; its run id."""
    run_id, _ = store.submit(inst.name, inst, None, {}, "me", None)
    store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True, plan_status=plan.status)
    return run_id


def test_plan_downloads_stream_csv_and_parquet(tmp_path: Path,
                                              split_plan: tuple[Instance, Plan]) -> None:
    app = _serving_app(tmp_path)
    store: Store = app.extensions["offeropt.store"]
    inst, plan = split_plan
    run_id = _stored_run(store, inst, plan)
    store.publish(str(store.run(run_id)["plan_id"]), "me")
    client = app.test_client()
    for url, role in ((f"/v1/runs/{run_id}/plan", MERCHANDISER), ("/v1/plans/active", STOREFRONT)):
        as_csv = client.get(url, headers={**role, "Accept": "text/csv"})
        assert as_csv.mimetype == "text/csv" and as_csv.is_streamed
        assert as_csv.get_data(as_text=True) == plan_csv(plan)
        as_parquet = client.get(url, headers={**role, "Accept": PARQUET_TYPE})
        assert as_parquet.mimetype == PARQUET_TYPE and as_parquet.is_streamed
        assert pq.read_table(io.BytesIO(as_parquet.get_data())).equals(offers_table(plan.offers))
        as_json = client.get(url, headers=role).get_json()
        assert as_json.get("plan", as_json) == plan.to_dict()
        app.config["MAX_JSON_PLAN_OFFERS"] = len(plan.offers) - 1
        for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
            refused = client.get(url, headers={**role, **accept})
            assert refused.status_code == 406, refused.get_data(as_text=True)
            assert f"Accept: text/csv or Accept: {PARQUET_TYPE}" in refused.get_json()["detail"]
        assert client.get(url, headers={**role, "Accept": "text/csv"}).status_code == 200
        app.config["MAX_JSON_PLAN_OFFERS"] = len(plan.offers)
    active = client.get("/v1/plans/active", headers={**STOREFRONT, "Accept": "text/csv"})
    assert active.headers["X-Offeropt-Plan-Version"] == "1"


def test_a_split_plans_offer_sets_download_as_json_csv_and_parquet(
        tmp_path: Path, split_plan: tuple[Instance, Plan]) -> None:
    app = _serving_app(tmp_path)
    store: Store = app.extensions["offeropt.store"]
    inst, plan = split_plan
    run_id = _stored_run(store, inst, plan)
    plan_id = str(store.run(run_id)["plan_id"])
    client = app.test_client()
    url = f"/v1/plans/{plan_id}/offer-sets"
    expected = sets_table(plan.offer_sets or ())
    assert client.get(url, headers=STOREFRONT).status_code == 403  # unpublished plans too
    as_json = client.get(url, headers=MERCHANDISER)
    assert as_json.status_code == 200 and as_json.get_json()["offer_sets"] == \
        plan.to_dict()["offer_sets"]
    as_csv = client.get(url, headers={**MERCHANDISER, "Accept": "text/csv"})
    assert as_csv.mimetype == "text/csv" and as_csv.is_streamed
    lines = as_csv.get_data(as_text=True).splitlines()
    assert lines[0] == ",".join(SET_COLUMNS) and len(lines) == expected.num_rows + 1
    as_parquet = client.get(url, headers={**MERCHANDISER, "Accept": PARQUET_TYPE})
    assert pq.read_table(io.BytesIO(as_parquet.get_data())).equals(expected)
    app.config["MAX_JSON_PLAN_OFFERS"] = expected.num_rows - 1
    refused = client.get(url, headers=MERCHANDISER)
    assert refused.status_code == 406 and "Accept: text/csv" in refused.get_json()["detail"]
    whole = build_plan(split_solution(inst))  # the same catalog's plan without sets: a 404
    integral = dataclasses.replace(whole, offer_sets=None)
    run_id = _stored_run(store, inst, integral)
    missing = client.get(f"/v1/plans/{store.run(run_id)['plan_id']}/offer-sets",
                         headers=MERCHANDISER)
    assert missing.status_code == 404 and "has no offer sets" in missing.get_json()["detail"]
    assert client.get("/v1/plans/nope/offer-sets", headers=MERCHANDISER).status_code == 404
