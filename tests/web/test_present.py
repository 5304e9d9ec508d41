"""The workbench's words: validation issues by table, row and field; shadow prices."""

from __future__ import annotations

import pytest

from api.workbench.present import issue_row, kpi_rows, row_labels, shadow_prices
from optimizer.errors import Issue


@pytest.mark.parametrize(("issue", "table", "row", "field", "sentence"), [
    (Issue("responses[2].take_rate", "must be in (0, 1)", 1.7), "responses", "row 3", "take_rate",
     "In responses, row 3: take_rate must be in (0, 1), got 1.7."),
    (Issue("bundles[0].items[1].item", "must name a known item", "x"), "bundles", "row 1",
     "items[1].item", "In bundles, row 1: items[1].item must name a known item, got 'x'."),
    (Issue("responses.csv[line 14].take_rate", "must be in (0, 1)", 2.0), "responses.csv",
     "line 14", "take_rate", "In responses.csv, line 14: take_rate must be in (0, 1), got 2."),
    (Issue("segments.parquet[row 12].views", "is required", has_value=False), "segments.parquet",
     "row 12", "views", "In segments.parquet, row 12: views is required."),
    (Issue("policy.max_discount", "must be a number", "x"), "policy", "", "max_discount",
     "In policy: max_discount must be a number, got 'x'."),
    (Issue("name", "must be a string", 3), "the catalog", "", "name",
     "In the catalog: name must be a string, got 3."),
    (Issue("catalog.zip", "must hold at most 1000 entries", value_text="2000 entries"),
     "catalog.zip", "", "", "In catalog.zip: must hold at most 1000 entries, got 2000 entries."),
])
def test_issue_paths_in_words(issue: Issue, table: str, row: str, field: str,
                              sentence: str) -> None:
    found = issue_row(issue)
    assert (found.table, found.row, found.field, found.sentence) == (table, row, field, sentence)
    assert found.path == issue.path


def test_json_rows_are_named_by_their_ids() -> None:
    doc = {"items": [{"id": "a"}, {"id": "sleeve-14"}],
           "responses": [{"segment": "s", "bundle": "b"}], "policy": {"x": 1}}
    labels = row_labels(doc)
    assert labels == {"items[0]": "a", "items[1]": "sleeve-14", "responses[0]": "s / b"}
    found = issue_row(Issue("items[1].stock", "must be >= 0", -1), labels)
    assert found.sentence == "In items, row 2 (sleeve-14): stock must be >= 0, got -1."
    assert row_labels([1, 2]) == {} and row_labels({"items": "no"}) == {}


def test_shadow_prices_in_plain_words() -> None:
    plan = {"kpis": {"inventory": {"sleeve-14": {"used": 5870.0, "stock": 6000.0}},
                     "promotion_spend": 881539.1, "expected_offer_revenue": 2.0e8,
                     "discounted_share": 0.0347},
            "binding": [{"constraint": "offers per view", "segments_at_max": 4},
                        {"constraint": "inventory", "item": "sleeve-14", "used": 6000.0,
                         "limit": 6000.0, "multiplier": 1950.2}],
            "solver": {"multipliers": [
                {"constraint": "inventory", "item": "sleeve-14", "multiplier": 1950.2},
                {"constraint": "promotion_budget", "item": None, "multiplier": 2.3477},
                {"constraint": "max_discounted_share", "item": None, "multiplier": 0.004},
                {"constraint": "channel capacity", "channel": "talk", "multiplier": 595.0}]}}
    rows = shadow_prices(plan, "JPY", {"promotion_budget": 900000, "max_discounted_share": 0.5})
    words = [r.sentence for r in rows]
    assert words[0] == "4 segments show their maximum number of offers per view."
    assert words[1] == ("One more unit of sleeve-14 stock would add about 1,950 JPY of "
                        "incremental margin.")  # the issue's own example
    assert rows[1].binding and rows[1].use == "5,870.0 of 6,000 units"
    # the rest: priced, not binding, highest price first
    assert [r.name for r in rows[2:]] == ["capacity of channel talk", "promotion_budget",
                                          "max_discounted_share"]
    assert words[2] == ("One more impression of capacity in channel talk would add about 595 JPY "
                        "of incremental margin.")
    assert words[3] == ("One more JPY of promotion budget would add about 2.35 JPY of incremental "
                        "margin (2,348 JPY per 1,000 JPY).")
    assert rows[3].use == "881,539 JPY of 900,000 JPY"
    assert words[4].startswith("Allowing one more percentage point of discounted share would add "
                               "about 8,000 JPY of incremental margin")
    assert rows[4].use == "3.47% (at most 50.00%)"
    assert not any(r.binding for r in rows[2:])


def test_kpis_stand_beside_their_limits() -> None:
    kpis = {"expected_incremental_margin": 1e6, "promotion_spend": 900000.0,
            "aggregate_margin_rate": 0.25, "discounted_share": 0.1, "segments_with_offers": 3,
            "avg_discount": 0.058}
    policy = {"promotion_budget": 900000, "min_aggregate_margin_rate": 0.2,
              "max_discounted_share": None, "max_avg_discount": 0.06}
    rows = {r.label: r for r in kpi_rows(kpis, policy, 11, "JPY")}
    assert rows["Promotion spend"].state == "at the limit"
    assert rows["Promotion spend"].limit == "budget 900,000 JPY"
    assert rows["Aggregate margin rate"].state == "within"
    assert rows["Aggregate margin rate"].limit == "at least 20.00%"
    assert rows["Discounted share"].limit == "" and rows["Discounted share"].share is None
    assert rows["Average discount"].state == "near the limit"  # 97% of it
    assert rows["Segments with offers"].value == "3 of 11"
