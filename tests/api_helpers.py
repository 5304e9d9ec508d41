"""Helpers shared by the API tests."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient

from tests.constants import MERCHANDISER


def wait_for_run(client: FlaskClient, run_id: str, timeout: float = 90.0,
                 until: tuple[str, ...] = ("succeeded", "failed", "cancelled")) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/runs/{run_id}", headers=MERCHANDISER).get_json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def solved_plan(client: FlaskClient, doc: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = client.post("/v1/catalog-plans", json=doc, headers=MERCHANDISER,
                           query_string=params)
    assert response.status_code == 202, response.get_json()
    run = wait_for_run(client, response.get_json()["run_id"])
    assert run["status"] == "succeeded", run
    return run


def offers_at_version(client: FlaskClient, segment: str, version: int,
                      timeout: float = 60.0) -> dict[str, Any]:
    """Offers once the worker's index has moved to `version` (rebuilds run in the background)."""
    from tests.constants import STOREFRONT

    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/offers?segment={segment}",
                                          headers=STOREFRONT).get_json()
        if body["plan_version"] == version or time.monotonic() > deadline:
            return body
        time.sleep(0.02)
