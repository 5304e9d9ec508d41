"""The storefront's memory-mapped index (issue 19): it serves exactly what the index it
replaced served, byte for byte (answers, ETags, tokens, journal lines, what purchases are
attributed to); a publish under load never shows a half-built index; a damaged, missing or
foreign file is built again; a version that cannot be indexed leaves the previous plan
served, with one clear line in the log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from api import index_file
from api.app import create_app
from api.exposure import RECORDED, UNRECORDED
from api.index_file import IndexFileError, file_name, open_index
from api.offers import IndexHolder
from api.store import RunStatus, Store, new_id
from api.store.schema import plans
from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from optimizer.plan.document import build_plan
from optimizer.plan.model import Plan
from optimizer.solve.verify import solve_verified
from tests.constants import DATA, STOREFRONT
from tests.service.old_index import ActiveIndex as OldIndex
from tests.split_helpers import split_solution, tight_demo_document

CART = b'"reason":"every offer holds an item already in the cart"'
NO_OFFERS = b'"reason":"no offers for this segment in the active plan"'
# ids and names that JSON must escape: quotes, a backslash, non-ASCII, a line separator
ODD_SEGMENT = 'loyal "checkout" \\ Åsa ✓'
ODD_ITEM_NAME = "Écran “pro” 4K\u2028"


def _odd(doc: dict[str, Any], holdout: float) -> dict[str, Any]:
    for row in (*doc["segments"], *doc["responses"]):
        if row.get("id", row.get("segment")) == "loyal-checkout":
            row["id" if "id" in row else "segment"] = ODD_SEGMENT
    doc["items"][0]["name"] = ODD_ITEM_NAME
    doc["policy"]["holdout_fraction"] = holdout
    return doc


def _plans() -> dict[str, tuple[Instance, Plan]]:
    demo = instance_from_document(_odd(json.loads((DATA / "demo.json").read_text()), 0.2))
    tight = instance_from_document(_odd(tight_demo_document(), 0.2))
    sparse_doc = _odd(tight_demo_document(), 0.0)
    sparse_doc["policy"]["min_offers_per_view"] = 0  # a split plan with empty sets
    sparse = instance_from_document(sparse_doc)
    return {"integral": (demo, build_plan(solve_verified(demo))),
            "split": (tight, build_plan(split_solution(tight))),
            "split-empty-sets": (sparse, build_plan(split_solution(sparse)))}


@pytest.fixture(scope="module")
def solved() -> dict[str, tuple[Instance, Plan]]:
    return _plans()


def _publish(store: Store, inst: Instance, plan: Plan, legacy: bool = False) -> int:
    """Store the catalog and the plan (in columns; as JSON rows, written as before store
    migration 5, when `legacy`) and publish the plan."""
    catalog: str | Instance = inst
    if legacy:
        from optimizer.io.json_form import instance_to_document

        catalog = json.dumps(instance_to_document(inst), sort_keys=True)
    run_id, _ = store.submit(inst.name, catalog, None, {}, "test", None)
    if legacy:
        plan_id = new_id()
        with store.write() as conn:
            conn.execute(plans.insert().values(id=plan_id, run_id=run_id,
                                               document=json.dumps(plan.to_dict()),
                                               status=plan.status, checked=True,
                                               created_at=0.0))
        store.update_run(run_id, status=RunStatus.SUCCEEDED)
    else:
        store.finish_run(run_id, RunStatus.SUCCEEDED, plan, checked=True, plan_status=plan.status)
        plan_id = str(store.run(run_id)["plan_id"])
    return store.publish(plan_id, "test")


def _etag(version: int, body: bytes) -> str:
    return f"{version}-{hashlib.sha1(body).hexdigest()[:20]}"


@pytest.mark.parametrize(("case", "legacy"), [("integral", False), ("integral", True),
                                              ("split", False), ("split-empty-sets", False)])
def test_the_file_serves_what_the_old_index_served(solved: dict[str, tuple[Instance, Plan]],
                                                   tmp_path: Path, case: str,
                                                   legacy: bool) -> None:
    inst, plan = solved[case]
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    version = _publish(store, inst, plan, legacy)
    bundle = store.active_bundle()  # the JSON the old index was built from
    assert bundle is not None
    old = OldIndex.build(bundle)
    holder = IndexHolder(store, 0.0, tmp_path / "index")
    new = holder.current()
    assert new.version == version and new.holdout_salt == bundle["holdout_salt"]
    items = sorted({i for b in old.bundle_items.values() for i in b})
    rng = random.Random(7)
    carts = [frozenset(), frozenset({"not-an-item"}),
             *(frozenset(rng.sample(items, k)) for k in (1, 1, 2, 3, 6))]
    changed = compared = 0
    for segment in [*old.offers, "no-such-segment", "bad\udcff"]:
        for customer in [None, *(f"c{i}" for i in range(30))]:
            for key in ("r-1", "r-2"):
                for cart in carts:
                    want = old.answer(segment, customer, cart, key)
                    got = new.answer(segment, customer, cart, key)
                    body = want[0]
                    if old.offers.get(segment) == () and segment not in old.sets:
                        # the one answer that changed: a segment with no offers, viewed
                        # anonymously or with a cart, gave the cart as the reason
                        body = body.replace(CART, NO_OFFERS)
                        changed += body != want[0]
                    assert got[:2] == (body, want[1] if body == want[0] else _etag(version, body))
                    assert (got[2] and got[2].line) == (want[2] and want[2].line)
                    assert (got[2] is not None and got[2].shown) == \
                        (want[2] is not None and bool(want[2].cells))
                    compared += 1
        if segment not in old.offers:
            continue
        sets = old.sets[segment].ids if segment in old.sets else ("a",)
        assert new.set_ids(segment) == sets and new.is_split(segment) == (segment in old.sets)
        for k in [None, *range(len(sets))]:
            if k is not None or old.holdout_fraction > 0:
                assert new.exposure(segment, k) == old.exposure(segment, k)
            for kind in (RECORDED, UNRECORDED):
                assert new.propensity(segment, k, kind) == old.propensity(segment, k, kind)
        if segment in old.sets:
            assert all(new.choose(segment, f"c{i}") == old.choose(segment, f"c{i}")
                       for i in range(300))
    assert compared > 5_000
    assert (changed > 0) == any(o == () for s, o in old.offers.items() if s not in old.sets)
    assert [new.segment_at(p) for p in range(new.segment_count)] == list(old.segment_ids)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "STOREFRONT_TOKENS": "s-token",
                      "INDEX_POLL_SECONDS": 0.0, "RUN_JOBS": False, "RECORDING": False})
    yield app


def _versions(solved: dict[str, tuple[Instance, Plan]], store: Store) -> dict[int, Plan]:
    inst, plan = solved["integral"]
    tight, split = solved["split"]
    return {_publish(store, inst, plan): plan, _publish(store, tight, split): split}


def test_a_publish_during_load_never_shows_a_half_built_index(
        app: Flask, solved: dict[str, tuple[Instance, Plan]],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Requests from four threads while versions 2 and 3 are published and built (slowly):
    every answer is a whole answer of one version, and no thread sees a version older than
    one it saw; a second worker opening the folder meanwhile finds no file or a whole one."""
    store: Store = app.extensions["offeropt.store"]
    inst, plan = solved["integral"]
    _publish(store, inst, plan)
    segments = list(inst.segments["id"])
    expected: dict[tuple[int, str, str], bytes] = {}
    real_write = index_file._Writer.write

    def slow_write(self: Any, data: Any) -> None:
        real_write(self, data)
        threading.Event().wait(0.002)  # a build that takes a while, written in pieces

    monkeypatch.setattr(index_file._Writer, "write", slow_write)
    stop, seen = threading.Event(), []
    failures: list[tuple[Any, ...]] = []

    def load() -> None:
        client, last = app.test_client(), 0
        while not stop.is_set():
            segment, customer = random.choice(segments), random.choice(("c1", "c2", "c3"))
            response = client.get("/v1/offers", query_string={
                "segment": segment, "customer_id": customer}, headers=STOREFRONT)
            body = response.get_data()
            version = json.loads(body)["plan_version"]
            if response.headers["ETag"] != f'"{_etag(version, body)}"' or version < last:
                failures.append(("not whole, or older", version, last, body[:200]))
            if expected.setdefault((version, segment, customer), body) != body:
                failures.append(("another answer", version, segment, customer))
            last = version
            seen.append(version)

    def other_worker() -> None:
        while not stop.is_set():
            for path in (tmp_path / "index").glob("v*.idx"):
                try:
                    open_index(path)
                except IndexFileError as exc:
                    if "no such file" not in str(exc):  # pruned meanwhile: fine
                        failures.append(("opened a part of a file", str(exc)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    threads.append(threading.Thread(target=other_worker))
    for t in threads:
        t.start()
    try:
        for name in ("split", "integral"):
            inst, plan = solved[name]
            version = _publish(store, inst, plan)
            holder: IndexHolder = app.extensions["offeropt.index"]
            for _ in range(600):
                if holder.index.version == version and seen and seen[-1] == version:
                    break
                threading.Event().wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:5]
    assert {1, 2, 3} <= set(seen)


def _first_answer(app: Flask) -> bytes:
    return app.test_client().get("/v1/offers?segment=champions-product&customer_id=c1",
                                 headers=STOREFRONT).get_data()


@pytest.mark.parametrize("damage", ["flipped", "cut", "foreign", "header", "not-an-index"])
def test_a_damaged_file_is_built_again(app: Flask, solved: dict[str, tuple[Instance, Plan]],
                                       tmp_path: Path, damage: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    store: Store = app.extensions["offeropt.store"]
    inst, plan = solved["integral"]
    _publish(store, inst, plan)
    served = _first_answer(app)
    path = tmp_path / "index" / file_name(1)
    data = bytearray(path.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0x10
    elif damage == "cut":
        data = data[:len(data) // 3]
    elif damage == "header":  # the prefix's own fields are outside the checksum
        magic, fmt, crc, meta_at, meta_size, total = index_file.PREFIX.unpack_from(data)
        index_file.PREFIX.pack_into(data, 0, magic, fmt, crc, meta_at, meta_size - 1, total)
    elif damage == "foreign":  # a whole file of version 1 of another store's plan
        publication = store.publication(1)
        assert publication is not None
        index_file.write_index(dataclasses.replace(index_file.IndexSource.of(publication),
                                                   plan_id="another-plan"), path)
        data = bytearray(path.read_bytes())
    else:
        data = bytearray(b"x" * 100)
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, "api.offers")
    restarted = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "RUN_JOBS": False,
                            "STOREFRONT_TOKENS": "s-token", "RECORDING": False})
    assert _first_answer(restarted) == served
    assert open_index(path).plan_id == store.active()["plan_id"]  # type: ignore[index]
    assert "building it again" in caplog.text and "Traceback" not in caplog.text


def test_a_version_that_cannot_be_indexed_keeps_the_previous_plan(
        app: Flask, solved: dict[str, tuple[Instance, Plan]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store: Store = app.extensions["offeropt.store"]
    inst, plan = solved["integral"]
    _publish(store, inst, plan)
    served = _first_answer(app)

    def out_of_memory(*_: Any) -> None:
        raise MemoryError

    monkeypatch.setattr(index_file, "build_version", out_of_memory)
    caplog.set_level(logging.INFO, "api.offers")
    _publish(store, inst, plan)  # version 2
    for _ in range(3):
        assert _first_answer(app) == served  # version 1, whole
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "out of memory while indexing version 2; still serving version 1"]
    assert all(r.exc_info is None for r in caplog.records)
    # a worker started now, with no index yet, serves the version before
    restarted = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "RUN_JOBS": False,
                            "STOREFRONT_TOKENS": "s-token", "RECORDING": False})
    assert _first_answer(restarted) == served
    assert "serving version 1, the newest earlier version indexed" in caplog.text
    monkeypatch.undo()  # the next attempt, after RETRY_SECONDS, succeeds
    holder: IndexHolder = app.extensions["offeropt.index"]
    holder._failed.clear()
    for _ in range(100):
        if json.loads(_first_answer(app))["plan_version"] == 2:
            break
        threading.Event().wait(0.05)
    assert json.loads(_first_answer(app))["plan_version"] == 2


def test_a_large_plan_is_indexed_by_a_child_process(
        solved: dict[str, tuple[Instance, Plan]], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    config = {"TESTING": True, "DATA_DIR": str(tmp_path), "STOREFRONT_TOKENS": "s-token",
              "RUN_JOBS": False, "RECORDING": False, "INDEX_IN_PROCESS_OFFERS": 0}
    app = create_app({**config, "INDEX_BUILD_SECONDS": 0.01})
    store: Store = app.extensions["offeropt.store"]
    inst, plan = solved["integral"]
    _publish(store, inst, plan)
    caplog.set_level(logging.ERROR, "api.offers")
    body = json.loads(_first_answer(app))
    assert body["plan_version"] is None and body["reason"] == "no plan is published yet"
    assert "indexing version 1 took longer than 0.01 s (OFFEROPT_INDEX_BUILD_SECONDS): " \
           "stopped; no earlier version is served" in caplog.text
    app = create_app(config)
    assert json.loads(_first_answer(app))["plan_version"] == 1
    assert (tmp_path / "index" / file_name(1)).exists()
    assert not list((tmp_path / "index").glob(".v*"))  # no leftover of the builds
