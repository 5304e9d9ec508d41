"""GET /v1/offers on its shortest path: a WSGI layer in front of Flask.

The storefront calls /v1/offers on every page view, and most of the time a request spends
in the service is Flask's (request and app contexts, routing, hooks, the response object),
not the answer's (one lookup in the memory-mapped index). This layer answers the ordinary
view itself, with the same `ActiveIndex.answer`, the same headers, the same recording and
the same metrics as the Flask view (`api.offers.get_offers`). Everything else is handed to
Flask, which owns every error and every rarer case: another path or method, a missing or
unknown token or a role without access, no segment, a conditional request
(`If-None-Match`), a cookie (a workbench session), the ops listener, and any failure on the
way (nothing is recorded
before the answer is complete, so the Flask view can start over).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug import urls  # registers the codec error handler its query parsing uses

from api.auth import MERCHANDISER, STOREFRONT, role_of_digest
from api.offers import PATH, answer_headers
from api.ops import LATENCY, REQUESTS  # imported by the app factory, after prometheus is set up

StartResponse = Callable[..., Any]
ROUTE = PATH  # the route label of the metrics, as Flask's rule names it
_ROLES = frozenset({STOREFRONT, MERCHANDISER})
URL_QUOTE = "werkzeug.url_quote"  # invalid UTF-8 in escapes stays percent-encoded
assert urls  # the import is for its side effect


class StorefrontPath:
    def __init__(self, app: Flask) -> None:
        self.flask = app.wsgi_app
        self.roles: dict[bytes, str] = app.config["TOKEN_ROLES"]
        ops_port = app.config.get("OPS_PORT")
        self.ops_port = None if ops_port is None else str(ops_port)
        self.holder = app.extensions["offeropt.index"]
        self.recorder = app.extensions.get("offeropt.recorder")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        found = self._answer(environ) if environ.get("PATH_INFO") == PATH else None
        if found is None:
            return self.flask(environ, start_response)
        body, headers, line = found
        if line is not None and self.recorder is not None:
            self.recorder.record(line)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body))), *headers.items()])
        REQUESTS.labels("GET", ROUTE, "200").inc()
        LATENCY.labels(ROUTE).observe(time.perf_counter() - started)
        return [body]

    def _answer(self, environ: dict[str, Any]
                ) -> tuple[bytes, dict[str, str], bytes | None] | None:
        """The body, headers and recorded line of an ordinary view; None for Flask."""
        if environ.get("REQUEST_METHOD") != "GET" or "HTTP_IF_NONE_MATCH" in environ or \
                "HTTP_COOKIE" in environ or \
                (self.ops_port is not None and str(environ.get("SERVER_PORT")) == self.ops_port):
            return None  # a cookie may carry a workbench session, which Flask keeps
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or role_of_digest(self.roles, token.strip()) not in _ROLES:
            return None
        try:  # WSGI gives the query's bytes as Latin-1 text; read as Flask reads it
            query = environ.get("QUERY_STRING", "").encode("latin-1").decode()
        except UnicodeError:
            return None
        args: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True, errors=URL_QUOTE):
            args.setdefault(key, value)  # the first value, as Flask's `request.args.get`
        segment = args.get("segment", "")
        if not segment:
            return None
        try:
            index = self.holder.current()
            cart = args.get("exclude_items")
            excluded = frozenset(i for i in cart.split(",") if i) if cart else frozenset()
            customer = args.get("customer_id")
            body, etag, exposed = index.answer(segment, customer, excluded,
                                               environ.get("HTTP_X_REQUEST_ID"))
            headers = answer_headers(index, segment, customer, etag,
                                     self.recorder is not None and exposed is not None)
        except Exception:  # any failure: Flask's view answers it again, with its error pages
            return None
        shown = self.recorder is not None and exposed is not None and exposed.shown
        return body, headers, exposed.line if shown and exposed is not None else None
