"""Catalogs and plans in columns: the forms the store keeps them in (docs/storage.md).

- A **catalog** is the zip of its Parquet folder (`offeropt convert --to parquet`: one file
  per table, `instance.json`, `policy.json`), entries stored uncompressed (Parquet compresses
  its own columns) with fixed timestamps, so the same instance always gives the same bytes.
  It is exactly what `POST /v1/catalog-plans` accepts as `application/zip`, and it reads back
  through the same validating loader. Beside it the store keeps the instance's header
  (format, name, currency, policy) as JSON.
- A **plan** is its document without `offers` and `offer_sets` (JSON), its offers as a
  Parquet table with the columns of `OFFER_FIELDS`, and a split plan's sets as a Parquet
  table with one row per (set, offer) (`SET_COLUMNS`; an empty set is one row whose bundle,
  discount and perk are null).

Rows written before store migration 5 hold the whole JSON document; every reader here takes
either form.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from optimizer.io import ZipLimits, instance_from_document, load_instance
from optimizer.io.json_form import instance_to_document
from optimizer.io.tables import write_folder
from optimizer.model.instance import FORMAT as INSTANCE_FORMAT
from optimizer.model.instance import Instance
from optimizer.plan.model import OFFER_FIELDS, OfferSet, OfferTable, Plan, SetOffer

CATALOG_ZIP, OFFERS_PARQUET, SETS_PARQUET = "catalog-zip", "offers-parquet", "sets-parquet"
PARQUET_TYPE = "application/vnd.apache.parquet"
ROW_GROUP = 131_072  # rows per Parquet row group: a download streams one group at a time
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip's entries carry no wall-clock time
_OWN_ZIP = ZipLimits(max_entries=100, max_expanded_bytes=1 << 62)  # the store's own zips
_IDS = ("segment", "bundle", "perk")
OFFERS_SCHEMA = pa.schema([(name, pa.string() if name in _IDS else pa.float64())
                           for name in OFFER_FIELDS])
SET_COLUMNS = ("entry", "segment", "set", "weight", "explore", "bundle", "discount", "perk")
SETS_SCHEMA = pa.schema([("entry", pa.int64()), ("segment", pa.string()), ("set", pa.string()),
                         ("weight", pa.float64()), ("explore", pa.bool_()),
                         ("bundle", pa.string()), ("discount", pa.float64()),
                         ("perk", pa.string())])


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=ROW_GROUP, compression="zstd")
    return sink.getvalue()


def read_parquet(data: bytes, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(data), columns=columns)


# -- catalogs ------------------------------------------------------------------------------


def catalog_zip(instance: Instance) -> bytes:
    """The instance's Parquet folder as a zip: the same bytes for the same instance."""
    with tempfile.TemporaryDirectory(prefix="offeropt-catalog-") as tmp:
        folder = Path(tmp) / "catalog"
        write_folder(instance, folder, "parquet")
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(folder.iterdir()):
                info = zipfile.ZipInfo(path.name, date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
        return sink.getvalue()


def catalog_header(instance: Instance) -> str:
    """What `catalog_plans.document` holds for a catalog stored in columns."""
    return json.dumps({"format": INSTANCE_FORMAT, "name": instance.name,
                       "currency": instance.currency, "policy": instance.policy.to_dict()},
                      sort_keys=True)


@dataclass(frozen=True)
class ServingCatalog:
    """What the storefront's answers take from a catalog: segment ids in catalog order (a
    token names a segment by its position), items' names, bundles (id, name, kind, lines of
    (item, qty)) in catalog order, and the holdout fraction."""

    segment_ids: list[str]
    item_names: dict[str, str | None]
    bundles: list[tuple[str, str | None, str, list[tuple[str, int]]]]
    holdout_fraction: float


@dataclass(frozen=True)
class StoredCatalog:
    """A catalog plan as stored: `document` is the whole instance@1 JSON (a row written
    before migration 5) or its header, with `tables` the zip of its Parquet folder."""

    document: str
    tables: bytes | None

    def instance(self) -> Instance:
        if self.tables is None:
            return instance_from_document(json.loads(self.document), origin="catalog")
        with tempfile.TemporaryDirectory(prefix="offeropt-catalog-") as tmp:
            path = Path(tmp) / "catalog.zip"
            path.write_bytes(self.tables)
            return load_instance(path, _OWN_ZIP)

    def json_document(self) -> str:
        """The instance@1 JSON (sorted keys), as the store kept it before migration 5."""
        if self.tables is None:
            return self.document
        return json.dumps(instance_to_document(self.instance()), sort_keys=True)

    def serving(self) -> ServingCatalog:
        if self.tables is None:
            return _serving_from_document(json.loads(self.document))
        with zipfile.ZipFile(io.BytesIO(self.tables)) as archive:
            def table(name: str, columns: list[str]) -> pd.DataFrame:
                return read_parquet(archive.read(f"{name}.parquet"), columns).to_pandas()

            segments = table("segments", ["id"])
            items = table("items", ["id", "name"])
            bundles = table("bundles", ["id", "name", "kind"])
            lines = table("bundle_items", ["bundle", "item", "qty"])
            policy = json.loads(archive.read("policy.json"))
        names = items["name"].astype(object).where(items["name"].notna(), None)
        by_bundle: dict[str, list[tuple[str, int]]] = {}
        for bundle, item, qty in zip(lines["bundle"].tolist(), lines["item"].tolist(),
                                     lines["qty"].tolist(), strict=True):
            by_bundle.setdefault(bundle, []).append((item, int(qty)))
        bundle_names = bundles["name"].astype(object).where(bundles["name"].notna(), None)
        return ServingCatalog(
            segments["id"].tolist(), dict(zip(items["id"].tolist(), names.tolist(), strict=True)),
            [(b, n, k, by_bundle.get(b, [])) for b, n, k in zip(
                bundles["id"].tolist(), bundle_names.tolist(), bundles["kind"].tolist(),
                strict=True)],
            float((policy or {}).get("holdout_fraction", 0.0)))


def _serving_from_document(catalog: dict[str, Any]) -> ServingCatalog:
    """As the storefront read a catalog kept as JSON (absent names are None)."""
    return ServingCatalog(
        [s["id"] for s in catalog["segments"]],
        {i["id"]: i.get("name") for i in catalog["items"]},
        [(b["id"], b.get("name"), b["kind"], [(line["item"], int(line["qty"]))
                                                for line in b["items"]])
         for b in catalog["bundles"]],
        float((catalog.get("policy") or {}).get("holdout_fraction", 0.0)))


# -- plans ---------------------------------------------------------------------------------


def plan_header(plan: Plan) -> str:
    """What `plans.document` holds for a plan stored in columns: the document without
    `offers` and `offer_sets`."""
    doc = dataclasses.replace(plan, offers=OfferTable.empty(), offer_sets=None).to_dict()
    del doc["offers"]
    return json.dumps(doc)


def offers_table(offers: OfferTable) -> pa.Table:
    return pa.table({name: pa.array(offers.raw[name], type=OFFERS_SCHEMA.field(name).type)
                     for name in OFFER_FIELDS}, schema=OFFERS_SCHEMA)


def sets_table(sets: tuple[OfferSet, ...]) -> pa.Table:
    """One row per (set, offer) in the plan's order; an empty set is one row of nulls."""
    columns: dict[str, list[Any]] = {name: [] for name in SET_COLUMNS}
    for k, entry in enumerate(sets):
        offers: tuple[SetOffer | tuple[None, None, None], ...] = \
            entry.offers or ((None, None, None),)
        for bundle, discount, perk in offers:
            for name, value in (("entry", k), ("segment", entry.segment), ("set", entry.set),
                                ("weight", entry.weight), ("explore", entry.explore),
                                ("bundle", bundle), ("discount", discount), ("perk", perk)):
                columns[name].append(value)
    return pa.table({name: pa.array(columns[name], type=SETS_SCHEMA.field(name).type)
                     for name in SET_COLUMNS}, schema=SETS_SCHEMA)


def sets_from_table(table: pa.Table) -> tuple[OfferSet, ...]:
    cols = [table.column(name).to_pylist() for name in SET_COLUMNS]
    out: list[OfferSet] = []
    members: list[SetOffer] = []
    for i, (entry, segment, set_id, weight, explore, bundle, discount, perk) in \
            enumerate(zip(*cols, strict=True)):
        if bundle is not None:
            members.append(SetOffer(bundle, discount, perk))
        if i + 1 == len(cols[0]) or cols[0][i + 1] != entry:
            out.append(OfferSet(segment, set_id, weight, explore, tuple(members)))
            members = []
    return tuple(out)


@dataclass(frozen=True)
class StoredPlan:
    """A plan as stored: `document` is the whole plan (a row written before migration 5), or
    its header with `offers` (and `offer_sets`) Parquet tables."""

    document: str
    offers: bytes | None
    offer_sets: bytes | None

    @property
    def columnar(self) -> bool:
        return self.offers is not None

    def plan(self) -> Plan:
        if self.offers is None:
            return Plan.from_dict(json.loads(self.document))
        header = Plan.from_dict({**json.loads(self.document), "offers": []})
        table = read_parquet(self.offers)
        offers = OfferTable({name: table.column(name).to_pylist() for name in OFFER_FIELDS})
        sets = None if self.offer_sets is None else sets_from_table(read_parquet(self.offer_sets))
        return dataclasses.replace(header, offers=offers, offer_sets=sets)

    def json_document(self) -> str:
        """The plan@1 JSON, as the store kept it before migration 5."""
        if self.offers is None:
            return self.document
        return json.dumps(self.plan().to_dict())

    def offers_table(self) -> pa.Table:
        if self.offers is not None:
            return read_parquet(self.offers)
        return offers_table(self.plan().offers)

    def sets_table(self) -> pa.Table | None:
        if self.offers is not None:
            return None if self.offer_sets is None else read_parquet(self.offer_sets)
        sets = self.plan().offer_sets
        return None if sets is None else sets_table(sets)


def csv_chunks(batches: Iterable[pa.RecordBatch],
               fields: tuple[str, ...] = OFFER_FIELDS) -> Iterator[bytes]:
    """The offers (or another table's `fields`) as CSV: the header, then one row per row, as
    `plan_csv` writes them, one batch of rows at a time."""
    yield (",".join(fields) + "\n").encode()
    for part in batches:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows(zip(*(["" if v is None else v for v in part.column(name).to_pylist()]
                               for name in fields), strict=True))
        yield buffer.getvalue().encode()
