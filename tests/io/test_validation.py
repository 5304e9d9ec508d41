"""Every field rule of spec section 2 gives an input error naming the field and the value."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.exit_codes import ExitCode
from cli.main import main
from optimizer.errors import InputError
from optimizer.io import instance_from_document, load_instance
from tests.constants import ROOT

Doc = dict[str, Any]


def setter(path: str, value: Any) -> Callable[[Doc], None]:
    """Set a dotted path like `bundles.0.items.0.item` in a document."""
    def apply(doc: Doc) -> None:
        *head, last = path.split(".")
        node: Any = doc
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return apply


def deleter(path: str) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        *head, last = path.split(".")
        node: Any = doc
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]
    return apply


def duplicate(table: str, index: int) -> Callable[[Doc], None]:
    return lambda doc: doc[table].append(json.loads(json.dumps(doc[table][index])))


CASES: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown item", setter("bundles.0.items.0.item", "sku-9"),
     "bundles[0].items[0].item: must name a known item, got 'sku-9'"),
    ("unknown segment", setter("responses.3.segment", "nobody"),
     "responses[3].segment: must name a known segment, got 'nobody'"),
    ("unknown bundle", setter("responses.3.bundle", "nothing"),
     "responses[3].bundle: must name a known bundle, got 'nothing'"),
    ("duplicate item id", setter("items.1.id", "laptop-14"), "items[1].id: must be unique"),
    ("duplicate bundle id", setter("bundles.1.id", "laptop-care"), "bundles[1].id: must be unique"),
    ("duplicate segment id", setter("segments.2.id", "champions-cart"),
     "segments[2].id: must be unique"),
    ("duplicate response", duplicate("responses", 0), "responses[33].bundle: must be unique"),
    ("duplicate perk", lambda d: d["bundles"][0]["perks"].append(dict(d["bundles"][0]["perks"][0])),
     "bundles[0].perks[1].id: must be unique"),
    ("item twice in bundle", lambda d: d["bundles"][0]["items"].append(
        {"item": "mouse-m2", "qty": 2}), "bundles[0].items[2].item: must be unique"),
    ("NaN take rate", setter("responses.5.take_rate", math.nan),
     "responses[5].take_rate: must be a finite number, got nan"),
    ("infinite price", setter("items.0.price", math.inf),
     "items[0].price: must be a finite number, got inf"),
    ("take rate above 1", setter("responses.12.take_rate", 1.4),
     "responses[12].take_rate: must be in (0, 1), got 1.4"),
    ("take rate zero", setter("responses.12.take_rate", 0),
     "responses[12].take_rate: must be in (0, 1), got 0"),
    ("baseline of 1", setter("responses.1.baseline_rate", 1.0),
     "responses[1].baseline_rate: must be in [0, 1), got 1"),
    ("negative sensitivity", setter("responses.1.price_sensitivity", -2),
     "responses[1].price_sensitivity: must be >= 0, got -2"),
    ("bundle price above reference", setter("bundles.6.price", 9999),
     "bundles[6].price: must be <= the reference price (the sum of its items' prices), got 9999"),
    ("bundle price zero", setter("bundles.6.price", 0), "bundles[6].price: must be > 0, got 0"),
    ("bundle discount of 1", setter("bundles.0.discounts", [0, 1.0]),
     "bundles[0].discounts: must hold discounts in [0, 1), got [0.0, 1.0]"),
    ("repeated discount", setter("bundles.0.discounts", [0, 0.1, 0.1]),
     "bundles[0].discounts: must not repeat a discount"),
    ("policy ladder discount above 1", setter("policy.discount_ladder", [0, 1.2]),
     "policy.discount_ladder: must hold discounts in [0, 1)"),
    ("negative stock", setter("items.2.stock", -5), "items[2].stock: must be >= 0, got -5"),
    ("zero price", setter("items.2.price", 0), "items[2].price: must be > 0, got 0"),
    ("negative cost", setter("items.2.cost", -1), "items[2].cost: must be >= 0, got -1"),
    ("segment min above max", lambda d: d["segments"][0].update(min_offers=3, max_offers=1),
     "segments[0].min_offers: must be <= max_offers, got 3"),
    ("policy min above max", lambda d: d["policy"].update(min_offers_per_view=4),
     "policy.min_offers_per_view: must be <= max_offers_per_view (3), got 4"),
    ("policy max zero", setter("policy.max_offers_per_view", 0),
     "policy.max_offers_per_view: must be >= 1, got 0"),
    ("fraction above 1", setter("policy.max_discounted_share", 1.5),
     "policy.max_discounted_share: must be a fraction in [0, 1], got 1.5"),
    ("negative budget", setter("policy.promotion_budget", -10),
     "policy.promotion_budget: must be a finite number >= 0, got -10"),
    ("string price", setter("items.0.price", "abc"), "items[0].price: must be a number, got 'abc'"),
    ("numeric string price", setter("items.0.price", "128000"),
     "items[0].price: must be a number, got '128000'"),
    ("boolean views", setter("segments.0.views", True),
     "segments[0].views: must be a number, got True"),
    ("fractional qty", setter("bundles.0.items.0.qty", 1.5),
     "bundles[0].items[0].qty: must be an integer, got 1.5"),
    ("zero qty", setter("bundles.0.items.0.qty", 0), "bundles[0].items[0].qty: must be >= 1, got 0"),
    ("string silent", setter("segments.0.silent", "yes"),
     "segments[0].silent: must be true or false, got 'yes'"),
    ("numeric id", setter("items.0.id", 7), "items[0].id: must be a non-empty string, got 7"),
    ("empty id", setter("segments.0.id", ""), "segments[0].id: must be a non-empty string, got ''"),
    ("items not a list", setter("items", {"a": 1}), "items: must be a list, got {'a': 1}"),
    ("entry not an object", setter("segments.1", 5), "segments[1]: must be an object, got 5"),
    ("missing take rate", deleter("responses.2.take_rate"), "responses[2].take_rate: is required"),
    ("missing items", deleter("items"), "items: is required (a list)"),
    ("bad kind", setter("bundles.1.kind", "crosssell"),
     "bundles[1].kind: must be one of upsell, cross_sell, downsell, bundle, got 'crosssell'"),
    ("bundle without items", setter("bundles.1.items", []),
     "bundles[1].items: must list at least one item"),
    ("negative perk cost", setter("bundles.0.perks.0.cost", -5),
     "bundles[0].perks[0].cost: must be >= 0, got -5"),
    ("non-finite perk lift", setter("bundles.0.perks.0.lift", math.nan),
     "bundles[0].perks[0].lift: must be a finite number, got nan"),
    ("wrong format", setter("format", "offeropt/instance@2"),
     "format: must be 'offeropt/instance@1', got 'offeropt/instance@2'"),
    ("ladder of strings", setter("policy.discount_ladder", ["a"]),
     "policy.discount_ladder: must be a list of numbers, got ['a']"),
    ("bundle margin floor above 1", setter("bundles.0.min_margin_rate", 2),
     "bundles[0].min_margin_rate: must be in [0, 1], got 2"),
]


@pytest.mark.parametrize(("name", "mutate", "message"), CASES, ids=[c[0] for c in CASES])
def test_rule_is_reported_with_path_and_value(demo_doc: Doc, name: str,
                                              mutate: Callable[[Doc], None], message: str) -> None:
    mutate(demo_doc)
    with pytest.raises(InputError) as err:
        instance_from_document(demo_doc)
    assert any(message in str(i) for i in err.value.issues), err.value.describe()


@pytest.mark.parametrize(("name", "mutate", "message"), CASES, ids=[c[0] for c in CASES])
def test_cli_exits_with_input_error_and_no_traceback(
    demo_doc: Doc, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
    mutate: Callable[[Doc], None], message: str,
) -> None:
    mutate(demo_doc)
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(demo_doc))  # NaN and Infinity are written as JSON's extensions
    assert main(["solve", str(path)]) == ExitCode.INPUT_ERROR
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_every_issue_is_collected(demo_doc: Doc) -> None:
    demo_doc["items"][0]["price"] = -1
    demo_doc["responses"][0]["take_rate"] = 2
    demo_doc["segments"][0]["views"] = -3
    demo_doc["bundles"][0]["items"][0]["item"] = "ghost"
    with pytest.raises(InputError) as err:
        instance_from_document(demo_doc)
    paths = {i.path for i in err.value.issues}
    assert {"items[0].price", "responses[0].take_rate", "segments[0].views",
            "bundles[0].items[0].item"} <= paths


def test_loss_leader_is_a_warning_not_an_error(demo_doc: Doc) -> None:
    demo_doc["items"][2]["cost"] = 9000  # mouse sold below cost
    inst = instance_from_document(demo_doc)
    assert any("items[2].cost: above the item's price" in w for w in inst.warnings)


def test_unknown_fields_are_warned(demo_doc: Doc) -> None:
    demo_doc["policy"]["max_offers_per_veiw"] = 2
    demo_doc["items"][0]["colour"] = "silver"
    inst = instance_from_document(demo_doc)
    assert "policy.max_offers_per_veiw: unknown policy field, ignored" in inst.warnings
    assert "items[0].colour: unknown field, ignored" in inst.warnings


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("")
    with pytest.raises(InputError, match=r"empty.json: must be a JSON object, got an empty file"):
        load_instance(path)


def test_invalid_json_syntax(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"format": "offeropt/instance@1", "items": [}')
    with pytest.raises(InputError, match=r"broken.json: must be valid JSON, got .* line 1"):
        load_instance(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="must be an existing file or folder"):
        load_instance(tmp_path / "nope.json")


@pytest.fixture
def demo_csv(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "instances" / "demo", folder)
    return folder


def _edit_csv(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_csv_cell_errors_name_file_line_and_column(demo_csv: Path) -> None:
    _edit_csv(demo_csv / "responses.csv", "champions-cart,laptop-care,0.12",
              "champions-cart,laptop-care,abc")
    _edit_csv(demo_csv / "items.csv", "laptop-14,", "laptop-16-pro,")
    with pytest.raises(InputError) as err:
        load_instance(demo_csv)
    messages = [str(i) for i in err.value.issues]
    assert "responses.csv[line 2].take_rate: must be a number, got 'abc'" in messages
    assert "items.csv[line 3].id: must be unique (id repeats an earlier row), got 'laptop-16-pro'" \
        in messages


def test_csv_missing_column_and_table(demo_csv: Path) -> None:
    (demo_csv / "segments.csv").unlink()
    frame = (demo_csv / "items.csv").read_text().replace(",price,", ",prise,")
    (demo_csv / "items.csv").write_text(frame)
    with pytest.raises(InputError) as err:
        load_instance(demo_csv)
    messages = [str(i) for i in err.value.issues]
    assert "segments.csv: is required (a table file)" in messages
    assert "items.csv: must have a column 'price'" in messages


def test_csv_empty_table_file(demo_csv: Path) -> None:
    (demo_csv / "items.csv").write_text("")
    with pytest.raises(InputError, match=r"items.csv: must have a header row, got an empty file"):
        load_instance(demo_csv)


def test_csv_bad_boolean_and_ladder(demo_csv: Path) -> None:
    _edit_csv(demo_csv / "segments.csv", "champions-cart,12000,,,false", "champions-cart,12000,,,maybe")
    _edit_csv(demo_csv / "bundles.csv", "0;0.05;0.1", "0;five")
    with pytest.raises(InputError) as err:
        load_instance(demo_csv)
    messages = [str(i) for i in err.value.issues]
    assert "segments.csv[line 2].silent: must be true or false, got 'maybe'" in messages
    assert "bundles.csv[line 2].discounts: must be a list of numbers, got '0;five'" in messages


def test_published_json_schema_accepts_demo_and_rejects_bad_values(demo_doc: Doc) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "optimizer" / "schema" / "instance-1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(demo_doc, schema)
    demo_doc["responses"][12]["take_rate"] = 1.4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(demo_doc, schema)
