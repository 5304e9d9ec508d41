"""JSON, CSV and Parquet forms load into the same instance, and write back losslessly."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from optimizer.io import instance_from_document, load_instance, write_instance
from optimizer.io.json_form import instance_to_document
from optimizer.model.instance import Instance
from tests.constants import DATA, ROOT


def same(a: Instance, b: Instance) -> None:
    assert (a.name, a.currency, a.policy) == (b.name, b.currency, b.policy)
    for table in ("items", "bundles", "bundle_items", "perks", "segments", "responses"):
        pd.testing.assert_frame_equal(a.table(table).reset_index(drop=True),
                                      b.table(table).reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_round_trip_through_tables(demo_doc: dict[str, Any], tmp_path: Path, form: str) -> None:
    original = instance_from_document(demo_doc, origin="demo-shop")
    write_instance(original, tmp_path / "folder", form)  # type: ignore[arg-type]
    assert list((tmp_path / "folder").glob(f"*.{form}"))
    loaded = load_instance(tmp_path / "folder")
    same(original, loaded)
    write_instance(loaded, tmp_path / "back.json")
    same(original, load_instance(tmp_path / "back.json"))


def test_json_document_round_trip_is_exact(demo_doc: dict[str, Any]) -> None:
    doc = instance_to_document(instance_from_document(demo_doc))
    assert instance_to_document(instance_from_document(doc)) == doc
    assert doc["bundles"][0]["perks"] == demo_doc["bundles"][0]["perks"]


def test_shipped_demo_folder_equals_fixture() -> None:
    """The shipped demo (with audiences and channels) is `demo_contacts.json`; the older
    `demo.json`, the same shop without them, stays the fixture of most tests."""
    doc = json.loads((DATA / "demo_contacts.json").read_text())
    same(instance_from_document(doc), load_instance(ROOT / "instances" / "demo"))


def test_zip_of_csv_folder(tmp_path: Path) -> None:
    archive = tmp_path / "catalog.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (ROOT / "instances" / "demo").iterdir():
            z.write(f, f"demo/{f.name}")
    assert load_instance(archive).name == "demo-shop"


def test_written_files_are_readable_by_others(tmp_path: Path, demo_doc: dict[str, Any]) -> None:
    write_instance(instance_from_document(demo_doc), tmp_path / "x.json")
    assert (tmp_path / "x.json").stat().st_mode & 0o044


def test_shipped_instances_are_valid() -> None:
    for name, segments in (("small.json", 200), ("medium.json", 2000)):
        inst = load_instance(ROOT / "instances" / name)
        assert len(inst.segments) == segments
        assert len(inst.responses) == 15 * segments


def test_converted_json_is_plain_json(tmp_path: Path, demo_doc: dict[str, Any]) -> None:
    write_instance(instance_from_document(demo_doc), tmp_path / "x.json")
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["format"] == "offeropt/instance@1"
