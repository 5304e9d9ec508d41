"""The shortest path for GET /v1/offers (api.storefront_path) answers exactly what the Flask
view answers: the same status, body and headers, the same recorded lines, for ordinary
views and for every case it hands to Flask (errors, HEAD, conditional requests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from api.app import create_app
from api.store import Store
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan
from tests.service.test_index_file import ODD_SEGMENT, _plans, _publish

HEADERS = ("Content-Type", "Content-Length", "ETag", "Cache-Control")
TOKENS = {"storefront": "Bearer s-token", "merchandiser": "Bearer m-token",
          "unknown": "Bearer nope", "none": None, "basic": "Basic s-token"}


@pytest.fixture(scope="module")
def solved() -> dict[str, tuple[Instance, Plan]]:
    return _plans()


def _app(data: Path, fast: bool, lines: list[bytes]) -> Flask:
    app = create_app({"TESTING": True, "DATA_DIR": str(data), "STOREFRONT_TOKENS": "s-token",
                      "MERCHANDISER_TOKENS": "m-token", "INDEX_POLL_SECONDS": 0.0,
                      "RUN_JOBS": False, "RECORDING": True, "OFFERS_FAST_PATH": fast,
                      "JOURNAL_DIR": str(data / f"journal-{fast}")})
    app.extensions["offeropt.recorder"].record = lines.append  # what each view records
    return app


def _requests(segments: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for segment in [*segments, "no-such-segment", ODD_SEGMENT]:
        for customer in (None, "c1", "c7", ""):
            for cart in (None, "", "not-an-item"):
                query = {"segment": segment} | ({} if customer is None else
                                                {"customer_id": customer}) | \
                    ({} if cart is None else {"exclude_items": cart})
                out.append({"query_string": query, "headers": {"X-Request-Id": "r-1"}})
    first = segments[0]
    out += [{"query_string": {"segment": first}, "token": token} for token in TOKENS]
    out += [
        {"query_string": {}},
        {"query_string": {"segment": ""}},
        {"query_string": f"segment={first}&segment=other"},
        {"query_string": "segment=" + ODD_SEGMENT.replace(" ", "+")},
        {"query_string": {"segment": first}, "method": "HEAD"},
        {"query_string": {"segment": first, "customer_id": "c1"}, "etag": True},
        {"query_string": {"segment": first, "customer_id": "c1", "exclude_items": "a,,b"}},
        {"query_string": {"segment": first}, "cookie": "x"},
    ]
    return out


def _ask(app: Flask, request: dict[str, Any], etag: str | None) -> tuple[Any, ...]:
    headers = {"X-Request-Id": "r-2", **request.get("headers", {})}  # no random draw
    token = TOKENS[request.get("token", "storefront")]
    if token is not None:
        headers["Authorization"] = token
    if request.get("etag") and etag is not None:
        headers["If-None-Match"] = etag
    client = app.test_client()
    if request.get("cookie"):
        client.set_cookie("offeropt_session", request["cookie"])
    response = client.open("/v1/offers", method=request.get("method", "GET"),
                                      query_string=request["query_string"], headers=headers)
    return (response.status_code, response.get_data(),
            tuple(response.headers.get(h) for h in HEADERS))


@pytest.mark.parametrize("case", ["integral", "split"])
def test_the_short_path_answers_what_the_flask_view_answers(
        solved: dict[str, tuple[Instance, Plan]], tmp_path: Path, case: str) -> None:
    inst, plan = solved[case]
    _publish(Store.open(f"sqlite:///{tmp_path / 'offeropt.db'}"), inst, plan)
    fast_lines: list[bytes] = []
    flask_lines: list[bytes] = []
    fast, plain = _app(tmp_path, True, fast_lines), _app(tmp_path, False, flask_lines)
    views = {"count": 0}
    view = fast.view_functions["offers.get_offers"]

    def counted(*args: Any, **kwargs: Any) -> Any:
        views["count"] += 1
        return view(*args, **kwargs)

    fast.view_functions["offers.get_offers"] = counted
    requests = _requests(list(inst.segments["id"]))
    etag = None
    for request in requests:
        want = _ask(plain, request, etag)
        assert _ask(fast, request, etag) == want, request
        etag = want[2][2] or etag
    assert fast_lines == flask_lines and fast_lines  # the same views recorded, in order
    # the ordinary views never reached Flask's view; the rest all did
    handed = [r for r in requests if r.get("token", "storefront") not in ("storefront",
                                                                          "merchandiser")
              or not r["query_string"] or r["query_string"] == {"segment": ""}
              or r.get("method") == "HEAD" or r.get("etag") or r.get("cookie")]
    assert views["count"] == len(handed)
