"""Errors as `application/problem+json` (RFC 9457), never a bare 500 with a traceback."""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from api.store import Conflict, NotFound
from optimizer.errors import InputError, show_value

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.errors = status, title, detail, errors


def problem_response(status: int, title: str, detail: str | None = None,
                     errors: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return problem_response(exc.status, exc.title, exc.detail, exc.errors)

    @app.errorhandler(InputError)
    def _input(exc: InputError) -> Response:
        return input_problem(exc, "The catalog plan breaks rules of the spec")

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return problem_response(404, "Not found", str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict) -> Response:
        return problem_response(409, "Conflict", str(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = exc.description
        if status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            detail = f"request body: must be at most {limit} bytes (OFFEROPT_MAX_CONTENT_LENGTH)"
        headers = dict(exc.get_headers()) if status == 405 else None
        headers = {k: v for k, v in (headers or {}).items() if k.lower() == "allow"}
        return problem_response(status, exc.name, detail, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error",
                                "the error was logged; no details are exposed")


def input_problem(exc: InputError, title: str) -> Response:
    """A `422` listing the issues of an input error, each with its path and rule, under a
    title that says what was refused (a blueprint's own handler may give its own)."""
    errors = [{"path": i.path, "rule": i.rule, "value": _plain(i), "message": str(i)}
              for i in exc.issues]
    return problem_response(422, title, f"{len(errors)} issue(s); each names the field and the "
                            "rule", errors)


def _plain(issue: Any) -> Any:
    """The issue's value as JSON: scalars as they are, anything large or odd as its text."""
    value = issue.value_text if issue.value_text is not None else issue.value
    if isinstance(value, float) and not math.isfinite(value):  # NaN and inf are not JSON
        return repr(value)
    if isinstance(value, str) and not _encodable(value):  # a lone surrogate
        return ascii(value)
    if isinstance(value, list | tuple | dict) and not _small(value):
        return show_value(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _small(value: object, most: int = 100) -> bool:
    """At most `most` scalars, all finite numbers or valid text, in all (value's nesting is
    at most 64 levels: the readers refuse deeper documents)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > most:
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(item.keys())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif (isinstance(item, float) and not math.isfinite(item)) or (
                isinstance(item, str) and not _encodable(item)):
            return False
    return True
