"""Signing in and out of the workbench, CSRF on every form, the session cookie's flags."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.workbench.blueprint import configure
from tests.constants import DATA
from tests.web.conftest import csrf_of, sign_in


def _form_token(client: FlaskClient) -> str:
    return csrf_of(client.get("/sign-in").get_data(as_text=True))


def test_signed_out_pages_send_to_the_sign_in_form(web: FlaskClient) -> None:
    home = web.get("/")
    assert home.status_code == 303 and home.headers["Location"] == "/sign-in"
    plan = web.get("/plans/abc?x=1")
    assert plan.status_code == 303
    assert plan.headers["Location"] == "/sign-in?next=/plans/abc?x%3D1"
    poll = web.get("/runs/abc/progress", headers={"HX-Request": "true"})  # htmx: whole page
    assert poll.status_code == 204 and poll.headers["HX-Redirect"].startswith("/sign-in")
    page = web.get("/sign-in")
    assert page.status_code == 200
    assert b'name="token"' in page.data and b'name="csrf_token"' in page.data


def test_a_merchandiser_token_signs_in_and_out(web: FlaskClient) -> None:
    token = sign_in(web)
    home = web.get("/").get_data(as_text=True)
    assert "Signed in as <code>merchandiser:" in home and "Upload a catalog plan" in home
    out = web.post("/sign-out", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["Location"] == "/sign-in"
    assert web.get("/").status_code == 303  # signed out


def test_sign_in_goes_back_to_the_page_asked_for_but_never_elsewhere(web: FlaskClient) -> None:
    form = _form_token(web)
    back = web.post("/sign-in?next=/history", data={"token": "m-token", "csrf_token": form})
    assert back.headers["Location"] == "/history"
    assert web.get("/sign-in?next=/history").headers["Location"] == "/history"  # signed in
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        web.post("/sign-out", data={"csrf_token": csrf_of(web.get("/").get_data(as_text=True))})
        form = _form_token(web)
        answer = web.post("/sign-in", query_string={"next": target},
                          data={"token": "m-token", "csrf_token": form})
        assert answer.headers["Location"] == "/", target


# A browser drops tabs and newlines from a Location (`/<tab>/evil` is `//evil`, another host);
# Werkzeug refuses a newline in a header (a 500); `/\x` is `//x` to a browser.
HOSTILE_NEXT = ["/%09/evil.example", "/%0d/evil", "/%0a/", "/%0D%0ALocation:%20//evil", "//x",
                "/%5Cx", "/%5C%5Cevil.example", "https://x", "https:/x", "/%00/x", "/%7F/x",
                "///evil.example", "/sign-in", "/v1/runs", "/no-such-page", "/runs/x/cancel"]


@pytest.mark.parametrize("query", HOSTILE_NEXT)
def test_sign_in_never_sends_elsewhere_than_a_workbench_page(web: FlaskClient, query: str) -> None:
    """`next` (raw in the query string, as a link would carry it) must be a workbench page
    answered by a GET: anything else goes to the home page."""
    answer = web.post(f"/sign-in?next={query}",
                      data={"token": "m-token", "csrf_token": _form_token(web)})
    assert answer.status_code == 303 and answer.headers["Location"] == "/", query
    again = web.get(f"/sign-in?next={query}")  # signed in: the GET redirects at once
    assert again.status_code == 303 and again.headers["Location"] == "/", query


@pytest.mark.parametrize("good", ["/history", "/plans/abc?x=1", "/runs/r-1", "/rollback?to=3"])
def test_sign_in_goes_to_a_good_local_page(web: FlaskClient, good: str) -> None:
    answer = web.post("/sign-in", query_string={"next": good},
                      data={"token": "m-token", "csrf_token": _form_token(web)})
    assert answer.status_code == 303 and answer.headers["Location"] == good
    assert web.get("/sign-in", query_string={"next": good}).headers["Location"] == good


def test_a_storefront_token_cannot_sign_in(web: FlaskClient) -> None:
    answer = web.post("/sign-in", data={"token": "s-token", "csrf_token": _form_token(web)})
    assert answer.status_code == 401
    text = answer.get_data(as_text=True)
    assert "this is a storefront token" in text and "only a merchandiser token" in text
    assert web.get("/").status_code == 303  # not signed in


@pytest.mark.parametrize("token", ["nope", "", "m-token " * 3])
def test_an_unknown_token_cannot_sign_in(web: FlaskClient, token: str) -> None:
    answer = web.post("/sign-in", data={"token": token, "csrf_token": _form_token(web)})
    assert answer.status_code == 401
    assert b"Not signed in" in answer.data
    assert web.get("/").status_code == 303


def test_forms_without_the_csrf_token_are_refused(signed_in: tuple[FlaskClient, str]) -> None:
    client, token = signed_in
    posts: dict[str, dict[str, Any]] = {
        "/sign-out": {}, "/catalogs": {"time_limit": "5"}, "/plans/x/publish": {"confirm": "yes"},
        "/rollback": {"confirm": "yes"}, "/runs/x/cancel": {}, "/plans/x/why-not": {"segment": "a"},
        "/plans/x/frontier": {"vary": "promotion_budget"}}
    for path, data in posts.items():
        for extra in ({}, {"csrf_token": "forged"}, {"csrf_token": token[:-1]}):
            catalog = {"catalog": (io.BytesIO((DATA / "demo.json").read_bytes()), "demo.json")}
            answer = client.post(path, data={**data, **extra, **catalog},
                                 content_type="multipart/form-data")
            assert answer.status_code == 400, (path, extra)
            text = answer.get_data(as_text=True)
            assert "The form was refused" in text and "CSRF token" in text, (path, text)
    assert client.get("/").status_code == 200  # still signed in: nothing was done
    assert "No runs yet." in client.get("/").get_data(as_text=True)
    # the sign-in form is no exception: a forged sign-in does not sign anyone in
    fresh = client.application.test_client()
    assert fresh.post("/sign-in", data={"token": "m-token"}).status_code == 400
    assert fresh.get("/").status_code == 303


def test_htmx_sends_the_token_as_a_header(signed_in: tuple[FlaskClient, str]) -> None:
    client, token = signed_in
    page = client.get("/").get_data(as_text=True)
    assert re.search(r"<body hx-headers='\{&#34;X-CSRF-Token&#34;: &#34;" + re.escape(token), page) \
        or f'"X-CSRF-Token": "{token}"' in page
    cancel = client.post("/runs/nope/cancel", headers={"X-CSRF-Token": token})
    assert cancel.status_code == 404  # past the CSRF check: the run is unknown
    assert client.post("/runs/nope/cancel", headers={"X-CSRF-Token": "forged"}).status_code == 400


def test_a_session_from_before_sign_in_has_a_new_csrf_token(web: FlaskClient) -> None:
    before = _form_token(web)
    after = sign_in(web)
    assert before != after
    assert web.post("/sign-out", data={"csrf_token": before}).status_code == 400


def test_the_session_cookie_is_http_only_and_same_site_lax(web: FlaskClient) -> None:
    answer = web.post("/sign-in", data={"token": "m-token", "csrf_token": _form_token(web)})
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("offeropt_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Expires=" in cookie  # a signed-in session ends (12 hours)
    assert "m-token" not in cookie


def test_the_cookie_is_secure_when_configured(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
                      "RUN_JOBS": False, "RECORDING": False, "SESSION_COOKIE_SECURE": "true"})
    client = app.test_client()
    form = csrf_of(client.get("/sign-in").get_data(as_text=True))
    cookie = client.post("/sign-in", data={"token": "m-token", "csrf_token": form}).headers["Set-Cookie"]
    assert "; Secure" in cookie


def test_without_a_secret_key_one_is_derived_from_the_merchandiser_tokens(
        caplog: pytest.LogCaptureFixture) -> None:
    """Two web workers of one service sign the same cookies, and the key changes when the
    tokens do; never the empty key."""
    keys = []
    for tokens in (("a", "b"), ("b", "a"), ("a", "c")):
        app = Flask("x")
        app.config.update(SECRET_KEY=None, MERCHANDISER_TOKENS=tokens)
        configure(app)
        keys.append(app.config["SECRET_KEY"])
    assert keys[0] == keys[1] != keys[2] and len(keys[0]) == 64
    assert "OFFEROPT_SECRET_KEY is not set" in caplog.text
    app = Flask("x")
    app.config.update(SECRET_KEY="mine", MERCHANDISER_TOKENS=("a",))
    configure(app)
    assert app.config["SECRET_KEY"] == "mine"


def test_removing_a_token_ends_its_sessions(signed_in: tuple[FlaskClient, str],
                                            wb_app: Flask) -> None:
    client, _ = signed_in
    assert client.get("/").status_code == 200
    wb_app.config["MERCHANDISER_TOKENS"] = ("a-new-token",)
    assert client.get("/").status_code == 303


def test_a_session_ends_its_hours_after_signing_in_however_often_it_polls(
        signed_in: tuple[FlaskClient, str], wb_app: Flask) -> None:
    client, _ = signed_in
    assert wb_app.config["SESSION_HOURS"] == 12.0
    with client.session_transaction() as held:
        held["since"] -= 11.9 * 3600  # signed in nearly 12 hours ago: still in
    assert client.get("/").status_code == 200
    assert client.get("/runs/abc/progress", headers={"HX-Request": "true"}).status_code == 404
    with client.session_transaction() as held:
        held["since"] -= 0.2 * 3600  # past 12 hours: polling kept the cookie fresh, not the session
    page = client.get("/plans/abc")
    assert page.status_code == 303 and page.headers["Location"] == "/sign-in?next=/plans/abc"
    poll = client.get("/runs/abc/progress", headers={"HX-Request": "true"})
    assert poll.status_code == 204 and poll.headers["HX-Redirect"].startswith("/sign-in")
    assert client.get("/sign-in").status_code == 200  # the form, not a redirect
    for since in (None, "yesterday", float("nan"), 1e300):  # missing, forged or from the future
        sign_in(client)
        with client.session_transaction() as held:
            held["since"] = since
        assert client.get("/").status_code == 303, since


def test_the_session_hours_are_a_setting(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
                      "RUN_JOBS": False, "RECORDING": False, "SECRET_KEY": "k",
                      "SESSION_HOURS": "0.5"})
    assert app.config["SESSION_HOURS"] == 0.5
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 1800
    client = app.test_client()
    sign_in(client)
    with client.session_transaction() as held:
        held["since"] -= 1700
    assert client.get("/").status_code == 200
    with client.session_transaction() as held:
        held["since"] -= 200
    assert client.get("/").status_code == 303


def test_the_actor_is_the_tokens_fingerprint_not_what_the_cookie_says(
        signed_in: tuple[FlaskClient, str]) -> None:
    client, _ = signed_in
    name = f"merchandiser:{hashlib.sha256(b'm-token').hexdigest()[:8]}"  # as the API records
    with client.session_transaction() as held:
        held["actor"] = "merchandiser:somebody-else"
    page = client.get("/").get_data(as_text=True)
    assert f"Signed in as <code>{name}</code>" in page and "somebody-else" not in page


def test_pages_forbid_framing_and_caching(signed_in: tuple[FlaskClient, str]) -> None:
    client, _ = signed_in
    home = client.get("/")
    assert "frame-ancestors 'none'" in home.headers["Content-Security-Policy"]
    assert "script-src 'self'" in home.headers["Content-Security-Policy"]
    assert home.headers["Cache-Control"] == "no-store"
    script = client.get("/assets/vendor/htmx.min.js")
    assert script.status_code == 200 and "no-store" not in script.headers.get("Cache-Control", "")
    script.close()
    assert client.get("/assets/vendor/..%2F..%2Fviews.py").status_code == 404
    assert client.get("/assets/nope.js").status_code == 404
