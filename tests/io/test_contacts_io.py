"""Spec section 8 at the boundary: audiences, channels and the segments' audience, channel and
timing are read, validated and written in every form, and a version 1 instance is unchanged."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import InputError
from optimizer.io import instance_from_document, load_instance, write_instance
from optimizer.io.json_form import instance_to_document
from optimizer.model.instance import TABLE_COLUMNS, Instance
from tests.constants import DATA, ROOT

Doc = dict[str, Any]
V1_FILES = {"instance.json", "policy.json", "items", "bundles", "bundle_items", "perks",
            "segments", "responses"}


@pytest.fixture
def contacts_doc(demo_doc: Doc) -> Doc:
    """The demo catalog with two audiences, three channels and segments tied to them."""
    demo_doc["audiences"] = [
        {"id": "champions", "customers": 4000, "max_offers_per_customer": 6, "max_repeats": 2},
        {"id": "everyone", "customers": 250000.5},
    ]
    demo_doc["channels"] = [
        {"id": "site", "cost_per_impression": 0},
        {"id": "email", "capacity": 50000, "cost_per_impression": 2.5},
        {"id": "cs-talk", "capacity": 800},  # no cost given: 0
    ]
    segs = demo_doc["segments"]
    segs[0].update(audience="champions", channel="site", timing="cart")
    segs[1].update(audience="champions", channel="email", timing="product page")
    segs[2].update(audience="everyone")
    segs[3].update(channel="cs-talk", timing="")  # an empty timing is none
    segs[4].update(audience=None, channel="")  # null and empty: none
    return demo_doc


def _v1_instance() -> Instance:
    """The demo catalog as version 1 (the fixture file, not the shipped folder)."""
    return instance_from_document(json.loads((DATA / "demo.json").read_text()), "demo-shop")


def _frames_equal(a: Instance, b: Instance) -> None:
    assert (a.name, a.currency, a.policy) == (b.name, b.currency, b.policy)
    for table in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(a.table(table).reset_index(drop=True),
                                      b.table(table).reset_index(drop=True), check_dtype=False)


def _issues(doc: Doc) -> list[str]:
    with pytest.raises(InputError) as err:
        instance_from_document(doc)
    return [str(i) for i in err.value.issues]


# --- reading and the in-memory model -------------------------------------------------------

def test_contacts_are_read_in_model_columns_and_dtypes(contacts_doc: Doc) -> None:
    inst = instance_from_document(contacts_doc)
    assert not [w for w in inst.warnings if "unknown" in w]
    assert tuple(inst.audiences.columns) == TABLE_COLUMNS["audiences"]
    assert tuple(inst.channels.columns) == TABLE_COLUMNS["channels"]
    assert inst.audiences["id"].dtype == object and inst.channels["id"].dtype == object
    for column in TABLE_COLUMNS["audiences"][1:]:
        assert inst.audiences[column].dtype == np.float64
    for column in TABLE_COLUMNS["channels"][1:]:
        assert inst.channels[column].dtype == np.float64
    assert inst.audiences["max_repeats"].tolist()[0] == 2.0
    assert math.isnan(inst.audiences["max_repeats"].tolist()[1])
    assert inst.channels["cost_per_impression"].tolist() == [0.0, 2.5, 0.0]  # default 0
    assert math.isnan(inst.channels["capacity"].tolist()[0])
    segs = inst.segments
    assert segs["audience"].tolist()[:6] == ["champions", "champions", "everyone", None, None, None]
    assert segs["channel"].tolist()[:6] == ["site", "email", None, "cs-talk", None, None]
    assert segs["timing"].tolist()[:5] == ["cart", "product page", None, None, None]
    assert all(segs[c].dtype == object for c in ("audience", "channel", "timing"))
    assert inst.has_contacts


def test_null_lists_and_absent_lists_mean_no_rows(demo_doc: Doc) -> None:
    demo_doc["audiences"] = None
    inst = instance_from_document(demo_doc)
    assert inst.audiences.empty and inst.channels.empty
    assert inst.segments["audience"].isna().all() and not inst.has_contacts


# --- round trips ---------------------------------------------------------------------------

def test_round_trip_json_csv_parquet_json(contacts_doc: Doc, tmp_path: Path) -> None:
    original = instance_from_document(contacts_doc, origin="demo-shop")
    doc = instance_to_document(original)
    write_instance(original, tmp_path / "a.json")
    from_json = load_instance(tmp_path / "a.json")
    write_instance(from_json, tmp_path / "csv", "csv")
    from_csv = load_instance(tmp_path / "csv")
    write_instance(from_csv, tmp_path / "parquet", "parquet")
    from_parquet = load_instance(tmp_path / "parquet")
    write_instance(from_parquet, tmp_path / "b.json")
    back = load_instance(tmp_path / "b.json")
    for inst in (from_json, from_csv, from_parquet, back):
        _frames_equal(original, inst)
        assert not inst.warnings
    assert json.loads((tmp_path / "b.json").read_text()) == doc
    assert doc["channels"][2] == {"id": "cs-talk", "capacity": 800, "cost_per_impression": 0}
    assert doc["segments"][3] == {"id": "potential-loyalists-product", "views": 26000,
                                  "silent": False, "channel": "cs-talk"}
    for form in ("csv", "parquet"):
        assert {p.name for p in (tmp_path / form).iterdir()} >= {f"audiences.{form}",
                                                                 f"channels.{form}"}


def test_csv_holds_the_tabular_columns(contacts_doc: Doc, tmp_path: Path) -> None:
    write_instance(instance_from_document(contacts_doc), tmp_path / "csv", "csv")
    assert (tmp_path / "csv" / "audiences.csv").read_text().splitlines() == [
        "id,customers,max_offers_per_customer,max_repeats",
        "champions,4000,6,2",
        "everyone,250000.5,,",
    ]
    assert (tmp_path / "csv" / "channels.csv").read_text().splitlines() == [
        "id,capacity,cost_per_impression", "site,,0", "email,50000,2.5", "cs-talk,800,0"]
    segments = (tmp_path / "csv" / "segments.csv").read_text().splitlines()
    assert segments[0] == "id,views,min_offers,max_offers,silent,audience,channel,timing"
    assert segments[1] == "champions-cart,12000,,,false,champions,site,cart"


def test_only_used_segment_columns_are_written(contacts_doc: Doc, tmp_path: Path) -> None:
    for seg in contacts_doc["segments"]:
        seg.pop("timing", None)
        seg.pop("channel", None)
    del contacts_doc["channels"]
    inst = instance_from_document(contacts_doc)
    write_instance(inst, tmp_path / "csv", "csv")
    header = (tmp_path / "csv" / "segments.csv").read_text().splitlines()[0]
    assert header == "id,views,min_offers,max_offers,silent,audience"
    assert not (tmp_path / "csv" / "channels.csv").exists()
    _frames_equal(inst, load_instance(tmp_path / "csv"))


def test_zip_of_a_folder_with_contacts(contacts_doc: Doc, tmp_path: Path) -> None:
    original = instance_from_document(contacts_doc, origin="demo-shop")
    for form in ("csv", "parquet"):
        folder = tmp_path / form
        write_instance(original, folder, form)
        archive = tmp_path / f"{form}.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for f in folder.iterdir():
                z.write(f, f"catalog/{f.name}")
        _frames_equal(original, load_instance(archive))


def test_hand_made_csv_folder_may_leave_every_addition_out(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    write_instance(_v1_instance(), folder, "csv")
    (folder / "channels.csv").write_text("id,cost_per_impression\nemail, 3\n")
    segments = (folder / "segments.csv").read_text().splitlines()
    segments[0] += ",channel"
    segments[1:] = [f"{line},{'email' if i == 0 else ' '}" for i, line in enumerate(segments[1:])]
    (folder / "segments.csv").write_text("\n".join(segments) + "\n")
    inst = load_instance(folder)
    assert inst.audiences.empty and inst.segments["timing"].isna().all()
    assert inst.channels["id"].tolist() == ["email"]
    assert inst.channels["cost_per_impression"].tolist() == [3.0]
    assert inst.channels["capacity"].isna().all()
    assert inst.segments["channel"].tolist()[:2] == ["email", None]


# --- a version 1 instance stays byte-identical ---------------------------------------------

def test_v1_document_has_no_new_keys(demo_doc: Doc) -> None:
    doc = instance_to_document(instance_from_document(demo_doc))
    assert "audiences" not in doc and "channels" not in doc
    assert list(doc) == ["format", "name", "currency", "items", "bundles", "segments",
                         "responses", "policy"]
    assert not any({"audience", "channel", "timing"} & set(s) for s in doc["segments"])


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_v1_folder_has_the_version_1_files(demo_doc: Doc, tmp_path: Path, form: str) -> None:
    write_instance(instance_from_document(demo_doc), tmp_path / "f", form)  # type: ignore[arg-type]
    names = {p.name.removesuffix(f".{form}") for p in (tmp_path / "f").iterdir()}
    assert names == V1_FILES
    columns = list(pd.read_csv(tmp_path / "f" / "segments.csv").columns) if form == "csv" else \
        list(pd.read_parquet(tmp_path / "f" / "segments.parquet").columns)
    assert columns == ["id", "views", "min_offers", "max_offers", "silent"]


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_v1_folder_rewrites_byte_identical(tmp_path: Path, form: str) -> None:
    write_instance(_v1_instance(), tmp_path / "a", form)  # type: ignore[arg-type]
    write_instance(load_instance(tmp_path / "a"), tmp_path / "b", form)  # type: ignore[arg-type]
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    if form == "csv":
        assert (tmp_path / "a" / "segments.csv").read_text().splitlines()[:2] == [
            "id,views,min_offers,max_offers,silent", "champions-cart,12000,,,false"]


def test_shipped_json_instance_writes_back_byte_identical(tmp_path: Path) -> None:
    small = ROOT / "instances" / "small.json"
    write_instance(load_instance(small), tmp_path / "small.json")
    assert (tmp_path / "small.json").read_bytes() == small.read_bytes()


def test_rewriting_a_folder_without_contacts_drops_their_stale_files(
    contacts_doc: Doc, tmp_path: Path,
) -> None:
    folder = tmp_path / "f"
    write_instance(instance_from_document(contacts_doc), folder, "parquet")
    write_instance(_v1_instance(), folder, "csv")
    assert {p.name.removesuffix(".csv") for p in folder.iterdir()} == V1_FILES
    assert load_instance(folder).audiences.empty


# --- validation ----------------------------------------------------------------------------

# Each rule breaks its own row; rows 0 of both tables stay valid (the duplicates repeat them).
RULES: list[tuple[str, Any, str]] = [
    ("audiences.1.id", "champions", "audiences[1].id: must be unique (id repeats an earlier "
                                    "row), got 'champions'"),
    ("audiences.2.id", "", "audiences[2].id: must be a non-empty string, got ''"),
    ("audiences.3.customers", 0, "audiences[3].customers: must be > 0, got 0"),
    ("audiences.4.customers", math.inf, "audiences[4].customers: must be a finite number, got inf"),
    ("audiences.5.customers", 1e16, "audiences[5].customers: must be <= 1e15 (the largest count "
                                    "offeropt takes), got 1e+16"),
    ("audiences.6.customers", "many", "audiences[6].customers: must be a number, got 'many'"),
    ("audiences.7.customers", None, "audiences[7].customers: is required"),
    ("audiences.8.max_offers_per_customer", -1,
     "audiences[8].max_offers_per_customer: must be >= 0, got -1"),
    ("audiences.9.max_offers_per_customer", math.nan,
     "audiences[9].max_offers_per_customer: must be a finite number, got nan"),
    ("audiences.10.max_offers_per_customer", 1e16,
     "audiences[10].max_offers_per_customer: must be <= 1e15"),
    ("audiences.11.max_repeats", 0, "audiences[11].max_repeats: must be >= 1, got 0"),
    ("audiences.12.max_repeats", 1.5, "audiences[12].max_repeats: must be an integer, got 1.5"),
    ("channels.1.id", "site", "channels[1].id: must be unique (id repeats an earlier row), "
                              "got 'site'"),
    ("channels.2.id", None, "channels[2].id: is required"),
    ("channels.3.capacity", -5, "channels[3].capacity: must be >= 0, got -5"),
    ("channels.4.capacity", 1e16, "channels[4].capacity: must be <= 1e15"),
    ("channels.5.cost_per_impression", -0.5,
     "channels[5].cost_per_impression: must be >= 0, got -0.5"),
    ("channels.6.cost_per_impression", math.inf,
     "channels[6].cost_per_impression: must be a finite number, got inf"),
    ("channels.7.cost_per_impression", 1e16, "channels[7].cost_per_impression: must be <= 1e15 "
                                             "(the largest amount of money offeropt takes)"),
    ("segments.5.audience", "nobody", "segments[5].audience: must name a known audience, "
                                      "got 'nobody'"),
    ("segments.6.channel", "fax", "segments[6].channel: must name a known channel, got 'fax'"),
    ("segments.7.audience", 7, "segments[7].audience: must be a string, got 7"),
    ("segments.8.timing", ["cart"], "segments[8].timing: must be a string, got ['cart']"),
]


def _break(doc: Doc, path: str, value: Any) -> None:
    table, row, field = path.split(".")
    entries = doc[table]
    while len(entries) <= int(row):  # a fresh, valid entry to break
        entries.append({"id": f"extra-{len(entries)}", "customers": 10} if table == "audiences"
                       else {"id": f"extra-{len(entries)}"})
    entries[int(row)][field] = value


@pytest.mark.parametrize(("path", "value", "message"), RULES, ids=[r[0] for r in RULES])
def test_rule_is_reported_with_path_and_value(contacts_doc: Doc, path: str, value: Any,
                                              message: str) -> None:
    _break(contacts_doc, path, value)
    issues = _issues(contacts_doc)
    assert any(i.startswith(message) for i in issues), issues


def test_every_rule_is_reported_at_once(contacts_doc: Doc) -> None:
    for path, value, _ in RULES:
        _break(contacts_doc, path, value)
    issues = _issues(contacts_doc)
    for _, _, message in RULES:
        assert any(i.startswith(message) for i in issues), (message, issues)


def test_wrong_shapes_of_the_lists(demo_doc: Doc) -> None:
    demo_doc["audiences"] = {"id": "a"}
    demo_doc["channels"] = ["email"]
    issues = _issues(demo_doc)
    assert "audiences: must be a list, got {'id': 'a'}" in issues
    assert "channels[0]: must be an object, got 'email'" in issues


def _contacts_folder(contacts_doc: Doc, tmp_path: Path, form: str) -> Path:
    folder = tmp_path / form
    write_instance(instance_from_document(contacts_doc), folder, form)  # type: ignore[arg-type]
    return folder


def test_csv_paths_name_file_line_and_column(contacts_doc: Doc, tmp_path: Path) -> None:
    folder = _contacts_folder(contacts_doc, tmp_path, "csv")
    (folder / "audiences.csv").write_text(
        "id,customers,max_repeats\nchampions,0,2\neveryone,10,2.5\neveryone,10,\n")
    (folder / "channels.csv").write_text("id,capacity\nsite,-1\nemail,\ncs-talk,\n")
    segments = folder / "segments.csv"
    segments.write_text(segments.read_text().replace("champions,site,cart", "ghost,site,cart"))
    with pytest.raises(InputError) as err:
        load_instance(folder)
    messages = {str(i) for i in err.value.issues}
    assert {
        "audiences.csv[line 2].customers: must be > 0, got 0",
        "audiences.csv[line 3].max_repeats: must be an integer, got '2.5'",
        "audiences.csv[line 4].id: must be unique (id repeats an earlier row), got 'everyone'",
        "channels.csv[line 2].capacity: must be >= 0, got -1",
        "segments.csv[line 2].audience: must name a known audience, got 'ghost'",
    } <= messages, messages


def test_parquet_paths_name_file_and_row(contacts_doc: Doc, tmp_path: Path) -> None:
    folder = _contacts_folder(contacts_doc, tmp_path, "parquet")
    channels = pd.read_parquet(folder / "channels.parquet")
    channels.loc[1, "cost_per_impression"] = -2.0
    channels.to_parquet(folder / "channels.parquet", index=False)
    audiences = pd.read_parquet(folder / "audiences.parquet")
    audiences.loc[0, "max_repeats"] = 0.0
    audiences.to_parquet(folder / "audiences.parquet", index=False)
    with pytest.raises(InputError) as err:
        load_instance(folder)
    messages = {str(i) for i in err.value.issues}
    assert {"channels.parquet[row 1].cost_per_impression: must be >= 0, got -2",
            "audiences.parquet[row 0].max_repeats: must be >= 1, got 0"} <= messages, messages


def test_a_missing_required_column_is_one_issue(contacts_doc: Doc, tmp_path: Path) -> None:
    folder = _contacts_folder(contacts_doc, tmp_path, "csv")
    (folder / "audiences.csv").write_text("id,max_repeats\nchampions,2\neveryone,\n")
    with pytest.raises(InputError) as err:
        load_instance(folder)
    assert [str(i) for i in err.value.issues] == ["audiences.csv: must have a column 'customers'"]


# --- JSON Schema ---------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "value"), [
    ("audiences.0.customers", 0), ("audiences.0.max_repeats", 0), ("audiences.0.max_repeats", 1.5),
    ("audiences.1.max_offers_per_customer", -1), ("channels.1.capacity", -1),
    ("channels.0.cost_per_impression", -0.1), ("segments.0.audience", 3),
    ("segments.0.timing", False), ("channels.0.id", ""),
])
def test_schema_accepts_contacts_and_rejects_bad_values(contacts_doc: Doc, path: str,
                                                        value: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "optimizer" / "schema" / "instance-1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(contacts_doc, schema)
    _break(contacts_doc, path, value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(contacts_doc, schema)
