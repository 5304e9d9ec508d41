"""The workbench's pages through Flask's test client: uploads and their errors, a plan,
publishing and rolling back with a confirmation, "why not", and the frontier form."""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.store import Store
from tests.constants import DATA, MERCHANDISER, STOREFRONT
from tests.web.conftest import solved

DEMO_FOLDER = DATA.parent.parent / "instances" / "demo"


def _upload(client: FlaskClient, token: str, payload: bytes, name: str,
            **fields: str) -> Any:
    return client.post("/catalogs", content_type="multipart/form-data",
                       data={"csrf_token": token, "nonce": "0123456789abcdef0123", **fields,
                             "catalog": (io.BytesIO(payload), name)})


def _issues(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
            for row in re.findall(r'<tr class="issue"[^>]*>(.*?)</tr>', html, re.S)]


def _store(app: Flask) -> Store:
    store: Store = app.extensions["offeropt.store"]
    return store


def test_a_bad_json_catalog_is_listed_by_table_row_and_field(
        signed_in: tuple[FlaskClient, str], demo_doc: dict[str, Any], wb_app: Flask) -> None:
    client, token = signed_in
    demo_doc["items"][1]["price"] = -5
    demo_doc["responses"][2]["take_rate"] = 1.7
    demo_doc["bundles"][0]["items"][1]["item"] = "nope"
    demo_doc["policy"]["max_discount"] = "x"
    answer = _upload(client, token, json.dumps(demo_doc).encode(), "shop.json")
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    rows = _issues(html)
    assert "items row 2 price In items, row 2 (laptop-16-pro): price must be &gt; 0, got -5." in rows
    assert ("responses row 3 take_rate In responses, row 3 (champions-cart / hair-duo): take_rate "
            "must be in (0, 1), got 1.7.") in rows
    assert ("bundles row 1 items[1].item In bundles, row 1 (laptop-care): items[1].item must name "
            "a known item, got &#39;nope&#39;.") in rows
    assert "policy — max_discount In policy: max_discount must be a number, got &#39;x&#39;." in rows
    assert "The catalog <code>shop.json</code> was not accepted" in html
    assert "No runs yet." in html  # nothing stored


def test_a_zip_of_csv_tables_is_read_by_the_library_with_its_lines(
        signed_in: tuple[FlaskClient, str]) -> None:
    client, token = signed_in
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in DEMO_FOLDER.iterdir():
            text = path.read_text()
            if path.name == "responses.csv":
                lines = text.splitlines()
                cells = lines[2].split(",")
                cells[2] = "1.9"
                lines[2] = ",".join(cells)
                text = "\n".join(lines) + "\n"
            archive.writestr(f"shop/{path.name}", text)
    answer = _upload(client, token, buffer.getvalue(), "shop.zip")
    assert answer.status_code == 422
    assert _issues(answer.get_data(as_text=True)) == [
        "responses.csv line 3 take_rate In responses.csv, line 3: take_rate must be in (0, 1), "
        "got 1.9."]


def _parquet_zip(folder: Path, responses: Any = None) -> bytes:
    """The demo's catalog as a zip of a folder of Parquet tables, written by the library;
    `responses` may change the responses table first."""
    import pandas as pd

    from optimizer.io import load_instance, write_instance

    write_instance(load_instance(DEMO_FOLDER), folder, "parquet")
    if responses is not None:
        table = pd.read_parquet(folder / "responses.parquet")
        responses(table)
        table.to_parquet(folder / "responses.parquet", index=False)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.writestr(f"shop/{path.name}", path.read_bytes())
    return buffer.getvalue()


def test_a_zip_of_parquet_tables_is_accepted_and_stored(
        signed_in: tuple[FlaskClient, str], wb_app: Flask, tmp_path: Path) -> None:
    from optimizer.io import load_instance
    from optimizer.io.json_form import instance_to_document

    client, token = signed_in
    payload = _parquet_zip(tmp_path / "shop")
    assert b"responses.parquet" in payload and b"responses.csv" not in payload
    answer = _upload(client, token, payload, "shop.zip", time_limit="12")
    assert answer.status_code == 303, _issues(answer.get_data(as_text=True))
    run_id = answer.headers["Location"].rsplit("/", 1)[1]
    run = _store(wb_app).run(run_id)
    assert run["status"] == "queued" and run["catalog_name"] == "demo-shop"
    stored = _store(wb_app).catalog_instance(run_id)
    assert instance_to_document(stored) == instance_to_document(load_instance(DEMO_FOLDER))
    assert run_id[:8] in client.get("/").get_data(as_text=True)


def test_a_zip_of_parquet_tables_with_a_bad_value_names_its_file_and_row(
        signed_in: tuple[FlaskClient, str], tmp_path: Path) -> None:
    client, token = signed_in

    def bad_take_rate(table: Any) -> None:
        table.loc[1, "take_rate"] = 1.9

    answer = _upload(client, token, _parquet_zip(tmp_path / "shop", bad_take_rate), "shop.zip")
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    # the CSV test's record (its line 3): Parquet rows are counted from 0, as the library does
    assert _issues(html) == [
        "responses.parquet row 1 take_rate In responses.parquet, row 1: take_rate must be in "
        "(0, 1), got 1.9."]
    assert "The catalog <code>shop.zip</code> was not accepted" in html
    assert "No runs yet." in html  # nothing stored


@pytest.mark.parametrize(("payload", "name", "expected"), [
    (b"", "", "the upload form — catalog In the upload form: catalog must be a file: a JSON "
              "catalog, or a zip of a folder of CSV or Parquet tables."),
    (b'{"format": ', "broken.json", "broken.json"),
    (b"PK\x03\x04not a zip at all", "x.zip", "x.zip"),
])
def test_files_that_are_no_catalog_are_refused_in_words(
        signed_in: tuple[FlaskClient, str], payload: bytes, name: str, expected: str) -> None:
    client, token = signed_in
    answer = _upload(client, token, payload, name)
    assert answer.status_code == 422
    rows = _issues(answer.get_data(as_text=True))
    assert rows and rows[0].startswith(expected), rows


def test_a_time_limit_past_the_service_maximum_is_refused(
        signed_in: tuple[FlaskClient, str]) -> None:
    client, token = signed_in
    answer = _upload(client, token, (DATA / "demo.json").read_bytes(), "demo.json",
                     time_limit="99999")
    assert answer.status_code == 422
    assert _issues(answer.get_data(as_text=True)) == [
        "the upload form — time_limit In the upload form: time_limit must be in (0, 3600] seconds, "
        "got 99999."]


def test_an_upload_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    from api.app import create_app
    from tests.web.conftest import sign_in

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
                      "RUN_JOBS": False, "RECORDING": False, "MAX_CONTENT_LENGTH": 4096})
    client = app.test_client()
    token = sign_in(client)
    answer = _upload(client, token, (DATA / "demo.json").read_bytes(), "demo.json")
    assert answer.status_code == 413
    assert "at most 4,096 bytes" in answer.get_data(as_text=True)


def test_a_good_catalog_is_stored_and_its_run_followed(
        signed_in: tuple[FlaskClient, str], wb_app: Flask) -> None:
    client, token = signed_in
    answer = _upload(client, token, (DATA / "demo.json").read_bytes(), "demo.json",
                     time_limit="12")
    assert answer.status_code == 303
    run_id = answer.headers["Location"].rsplit("/", 1)[1]
    run = _store(wb_app).run(run_id)
    assert run["status"] == "queued" and json.loads(run["options"])["time_limit"] == 12
    again = _upload(client, token, (DATA / "demo.json").read_bytes(), "demo.json",
                    time_limit="12")  # the same form sent twice: the same run
    assert again.headers["Location"] == answer.headers["Location"]
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert 'id="progress-chart"' in page and 'hx-trigger="every 1s"' in page
    poll = client.get(f"/runs/{run_id}/progress").get_data(as_text=True)
    assert 'data-status="queued"' in poll and "Cancel the solve" in poll
    # the run, as the API shows it, was submitted by the signed-in merchandiser
    api = client.get(f"/v1/runs/{run_id}", headers=MERCHANDISER).get_json()
    assert api["status"] == "queued"
    home = client.get("/").get_data(as_text=True)
    assert run_id[:8] in home and "demo-shop" in home
    cancel = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
    assert cancel.status_code == 303 and _store(wb_app).run(run_id)["status"] == "cancelled"


@pytest.fixture
def two_plans(wb_app: Flask, demo_doc: dict[str, Any]) -> tuple[str, str]:
    """The demo's plan, and a plan of the demo with one offer per view at most."""
    first = solved(wb_app, demo_doc)["plan_id"]
    variant = copy.deepcopy(demo_doc)
    variant["policy"]["max_offers_per_view"] = 1
    return first, solved(wb_app, variant)["plan_id"]


def test_a_plan_is_read_published_compared_and_rolled_back(
        signed_in: tuple[FlaskClient, str], wb_app: Flask, two_plans: tuple[str, str]) -> None:
    client, token = signed_in
    demo, variant = two_plans
    page = client.get(f"/plans/{demo}").get_data(as_text=True)
    for section in ("kpi-table", "inventory-chart", "shadow-table", "offers-table", "why-not",
                    "frontier-form"):
        assert f'id="{section}"' in page, section
    assert "No plan is published yet: publishing this one makes it the first." in page
    assert re.search(r"One more unit of sleeve-14 stock would add about [\d,]+ JPY", page)
    # publishing needs the confirmation page's "yes"
    assert client.post(f"/plans/{demo}/publish", data={"csrf_token": token}).status_code == 422
    assert _store(wb_app).active() is None
    confirm = client.get(f"/plans/{demo}/publish").get_data(as_text=True)
    assert "becomes version 1" in confirm and 'name="confirm" value="yes"' in confirm
    done = client.post(f"/plans/{demo}/publish", data={"csrf_token": token, "confirm": "yes"})
    assert done.status_code == 303 and done.headers["Location"] == "/history"
    assert client.get("/v1/offers?segment=loyal-checkout",
                      headers=STOREFRONT).get_json()["plan_version"] == 1
    # the variant against the active plan
    page = client.get(f"/plans/{variant}").get_data(as_text=True)
    assert "Against version 1" in page and 'id="movers"' in page and 'id="offers-removed"' in page
    client.post(f"/plans/{variant}/publish", data={"csrf_token": token, "confirm": "yes"})
    history = client.get("/history").get_data(as_text=True)
    assert history.count("<td>publish") == 2 and "Roll back to the previous plan" in history
    assert "merchandiser:" in history
    # roll back, confirmed
    confirm = client.get("/rollback").get_data(as_text=True)
    assert "version <strong>1</strong>" in confirm
    assert client.post("/rollback", data={"csrf_token": token}).status_code == 422
    back = client.post("/rollback", data={"csrf_token": token, "confirm": "yes"})
    assert back.status_code == 303
    assert _store(wb_app).active() == {"plan_id": demo, "version": 3}
    assert client.get("/rollback?to=99").status_code == 200  # says it was never published
    refused = client.post("/rollback", data={"csrf_token": token, "confirm": "yes",
                                             "to_version": "99"})
    assert refused.status_code == 404
    assert "must be a published version (1-3), got 99" in refused.get_data(as_text=True)


def test_why_not_answers_in_words(signed_in: tuple[FlaskClient, str], wb_app: Flask,
                                  demo_doc: dict[str, Any]) -> None:
    client, token = signed_in
    plan_id = solved(wb_app, demo_doc)["plan_id"]
    answer = client.post(f"/plans/{plan_id}/why-not", headers={"HX-Request": "true"},
                         data={"csrf_token": token, "segment": "champions-cart",
                               "bundle": "laptop-pro-upgrade"})
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert 'id="why-not-result"' in html and 'data-bundle="laptop-pro-upgrade"' in html
    assert "not in the plan" in html and "<html" not in html  # a fragment for htmx
    unknown = client.post(f"/plans/{plan_id}/why-not", headers={"HX-Request": "true"},
                          data={"csrf_token": token, "segment": "nobody"})
    assert unknown.status_code == 422
    assert "segment: must be a segment id of the instance, got &#39;nobody&#39;" in \
        unknown.get_data(as_text=True)


def test_why_not_states_no_negative_cost(signed_in: tuple[FlaskClient, str], wb_app: Flask,
                                        demo_doc: dict[str, Any]) -> None:
    """The demo's multipliers prove no cost for bargain-hunters-cart's bundles (their bound
    stands millions above the plan): no "costs at least -5,034,165 JPY", for the bundles
    shown or left out, but what the other choice could gain at most."""
    client, token = signed_in
    plan_id = solved(wb_app, demo_doc)["plan_id"]
    for segment in [s["id"] for s in demo_doc["segments"]]:
        answer = client.post(f"/plans/{plan_id}/why-not", headers={"HX-Request": "true"},
                             data={"csrf_token": token, "segment": segment})
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200 and "costs at least -" not in html, segment
        for cell in re.findall(r"costs at least</th>.*?<td class=\"num\">([^<]*)<", html, re.S):
            assert not cell.startswith("-"), (segment, cell)
    html = client.post(f"/plans/{plan_id}/why-not", headers={"HX-Request": "true"},
                       data={"csrf_token": token, "segment": "bargain-hunters-cart"}
                       ).get_data(as_text=True)
    hair = re.search(r'<article[^>]*data-bundle="hair-duo".*?</article>', html, re.S)
    assert hair is not None and "Not proven: dropping it could gain at most" in hair.group(0)
    assert "(proof:" not in hair.group(0)
    lens = re.search(r'<article[^>]*data-bundle="lens-and-card".*?</article>', html, re.S)
    assert lens is not None and "Not proven: showing it could gain at most" in lens.group(0)
    assert "(proof:" not in lens.group(0)
    api = client.get(f"/v1/plans/{plan_id}/explain?segment=bargain-hunters-cart",
                     headers=MERCHANDISER).get_json()
    for entry in api["entries"]:
        assert entry["proof"] is None or entry["loss_at_least"] is None or \
            entry["loss_at_least"] > 0, entry
        assert entry["bundle"] not in ("hair-duo", "lens-and-card") or \
            entry["gain_at_most"] is not None


def test_why_not_without_htmx_answers_on_the_plans_page(
        signed_in: tuple[FlaskClient, str], wb_app: Flask, demo_doc: dict[str, Any]) -> None:
    """The form sent by a browser without htmx (no HX-Request): the whole plan page, with the
    answer in place and the question still selected, not a bare fragment."""
    client, token = signed_in
    plan_id = solved(wb_app, demo_doc)["plan_id"]
    answer = client.post(f"/plans/{plan_id}/why-not",
                         data={"csrf_token": token, "segment": "champions-cart",
                               "bundle": "laptop-pro-upgrade"})
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    assert "<html" in html and "</html>" in html and 'id="kpi-table"' in html
    assert 'id="offers-table"' in html and 'id="frontier"' in html
    result = html.index('id="why-not-answer"')
    assert html.index('id="why-not-result"') > result  # in its place on the page
    assert 'data-bundle="laptop-pro-upgrade"' in html and "not in the plan" in html
    assert '<option value="champions-cart" selected>' in html
    assert re.search(r'<option value="laptop-pro-upgrade" selected>', html)
    assert f'action="/plans/{plan_id}/why-not#why-not"' in html
    bad = client.post(f"/plans/{plan_id}/why-not", data={"csrf_token": token, "segment": "x"})
    assert bad.status_code == 422 and "<html" in bad.get_data(as_text=True)  # the error page
    fragment = client.post(f"/plans/{plan_id}/why-not", headers={"HX-Request": "true"},
                           data={"csrf_token": token, "segment": "champions-cart"})
    assert "<html" not in fragment.get_data(as_text=True)


def test_the_frontier_form_queues_the_same_run_as_the_api(
        signed_in: tuple[FlaskClient, str], wb_app: Flask, demo_doc: dict[str, Any]) -> None:
    client, token = signed_in
    plan_id = solved(wb_app, demo_doc)["plan_id"]
    page = client.get(f"/plans/{plan_id}").get_data(as_text=True)
    assert 'value="450000"' in page and 'value="1350000"' in page
    bad = client.post(f"/plans/{plan_id}/frontier", data={
        "csrf_token": token, "vary": "stock:nope", "values": ["1", "x", "1"], "time_limit": "0"})
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "vary: must name an item of the instance after stock:, got &#39;stock:nope&#39;" in text
    assert "values[1]: must be a number, got &#39;x&#39;" in text
    assert "values[2]: must differ from the other values" in text and "time_limit: must be" in text
    started = client.post(f"/plans/{plan_id}/frontier", data={
        "csrf_token": token, "vary": "max_avg_discount", "values": ["0.03", "0.06", "0.09"],
        "time_limit": "20"})
    assert started.status_code == 303
    frontier_id = started.headers["Location"].rsplit("/", 1)[1]
    api = client.get(f"/v1/frontiers/{frontier_id}", headers=MERCHANDISER).get_json()
    assert api["status"] == "queued" and api["vary"] == "max_avg_discount"
    assert api["values"] == [0.03, 0.06, 0.09] and api["plan_id"] == plan_id
    page = client.get(f"/frontiers/{frontier_id}").get_data(as_text=True)
    assert "maximum average discount" in page and 'id="frontier-chart"' in page
    assert "0 of 3 points solved" in page
    assert client.get(f"/runs/{frontier_id}").headers["Location"] == f"/frontiers/{frontier_id}"


def test_unknown_ids_are_pages_not_problems(signed_in: tuple[FlaskClient, str]) -> None:
    client, _ = signed_in
    for path in ("/plans/nope", "/runs/nope", "/frontiers/nope", "/plans/nope/publish"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.mimetype == "text/html" and "Not found" in answer.get_data(as_text=True)
