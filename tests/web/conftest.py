"""Fixtures of the workbench's tests: signed-in test clients, and for the browser tests one
real `offeropt serve` per module with headless Chromium driving it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.jobs import execute_run
from api.store import Store
from optimizer.io import instance_from_document
from optimizer.io.json_form import instance_to_document
from tests.server import Processes, Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page holds no form with a CSRF token"
    return found.group(1)


def sign_in(client: FlaskClient, token: str = "m-token") -> str:
    """Signs `client` in through the form; returns the signed-in session's CSRF token."""
    form = csrf_of(client.get("/sign-in").get_data(as_text=True))
    answer = client.post("/sign-in", data={"token": token, "csrf_token": form})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return csrf_of(client.get("/").get_data(as_text=True))


@pytest.fixture
def wb_app(tmp_path: Path) -> Flask:
    """The service without its solve dispatcher or view recording: the pages' tests run
    solves themselves when they need a plan (`solved`)."""
    return create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
                       "STOREFRONT_TOKENS": "s-token", "RUN_JOBS": False, "RECORDING": False,
                       "SECRET_KEY": "test-secret"})


@pytest.fixture
def web(wb_app: Flask) -> FlaskClient:
    return wb_app.test_client()


@pytest.fixture
def signed_in(web: FlaskClient) -> tuple[FlaskClient, str]:
    """A client signed in as a merchandiser, and its session's CSRF token."""
    return web, sign_in(web)


def solved(app: Flask, doc: dict[str, Any], actor: str = "test") -> dict[str, Any]:
    """Stores `doc` as a catalog plan and solves it in this process (as `offeropt demo`
    does): the run, with its plan id."""
    store: Store = app.extensions["offeropt.store"]
    document = json.dumps(instance_to_document(instance_from_document(doc)), sort_keys=True)
    run_id, _ = store.submit(doc.get("name", "catalog"), document,
                             hashlib.sha256(document.encode()).hexdigest(),
                             {"time_limit": 30.0, "gap": 1e-4, "solver": "highs", "threads": 1},
                             actor, None)
    assert store.claim_next("test") == run_id
    execute_run(app.config["DATABASE_URL"], run_id)
    run = store.run(run_id)
    assert run["plan_id"] is not None, run
    return run


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real `offeropt serve` on loopback with a fresh SQLite store: two web workers (a
    session signed in on one is honoured by the other) and solves of at most 20 s."""
    data = tmp_path_factory.mktemp("workbench-server")
    processes = Processes(data / "processes")
    try:
        yield processes.server(data, OFFEROPT_SOLVE_TIME_LIMIT="20", OFFEROPT_RECORDING="false",
                               OFFEROPT_SECRET_KEY="web-test-secret")
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM:
        pytest.skip("Chromium is not installed (apt-get install chromium; `make test` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
