"""The workbench blueprint: configuration, the guard every request passes, errors as pages.

Pages are server-rendered Jinja templates; htmx (polling, the "why not" answer) and
Chart.js (the charts) are vendored under `static/vendor/`, so nothing is built or fetched
from elsewhere. Every page says who may do what in the same roles as the API.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from api.openapi import Param, doc
from api.store import Conflict, NotFound
from api.workbench import csrf, present, session
from optimizer.errors import InputError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
STATIC = Path(__file__).resolve().parent / "static"
TAG = "workbench (HTML pages)"
PUBLIC = frozenset({"workbench.sign_in", "workbench.asset", "workbench.vendor_asset"})
# Scripts, styles and data only from this service; no framing (a publish button must not be
# clickable through another site's page).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

workbench = Blueprint("workbench", __name__, template_folder="templates")


def page(summary: str, *extra: Param, ok: int = 200, what: str = "an HTML page") -> Callable[[F], F]:
    """Documents a page in the OpenAPI document like every other route (tag `workbench`)."""
    return doc(summary, TAG, {ok: what, 303: "Redirect (to the sign-in page when signed out)"},
               params=extra)


@workbench.record_once
def _configure(state: BlueprintSetupState) -> None:
    configure(cast(Flask, state.app))


def configure(app: Flask) -> None:
    """Session cookie settings. Without `OFFEROPT_SECRET_KEY`, cookies are signed with a key
    derived from the merchandiser tokens: the same in every web worker and every replica that
    shares the tokens (a random key per process would sign a user out whenever gunicorn
    hands a request to another worker), and changed when the tokens change."""
    cfg = app.config
    if not cfg.get("SECRET_KEY"):
        tokens = sorted(cfg.get("MERCHANDISER_TOKENS") or ())
        if tokens:
            cfg["SECRET_KEY"] = hmac.new(b"offeropt workbench session key",
                                         "\n".join(tokens).encode(), hashlib.sha256).hexdigest()
            log.warning("OFFEROPT_SECRET_KEY is not set: workbench sessions are signed with a "
                        "key derived from the merchandiser tokens; set OFFEROPT_SECRET_KEY to "
                        "a long random value")
        else:  # nobody can sign in; a random key keeps cookies meaningless
            cfg["SECRET_KEY"] = secrets.token_hex(32)
            log.warning("OFFEROPT_SECRET_KEY is not set: workbench sessions are signed with a "
                        "random key of this process (and no merchandiser token is configured)")
    cfg["SESSION_COOKIE_HTTPONLY"] = True
    if not cfg.get("SESSION_COOKIE_SAMESITE"):
        cfg["SESSION_COOKIE_SAMESITE"] = "Lax"
    cfg["SESSION_COOKIE_NAME"] = "offeropt_session"
    # the cookie's expiry; the session's absolute lifetime from signing in is session.expired
    cfg["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=float(cfg.get("SESSION_HOURS",
                                                                      session.HOURS)))
    app.jinja_env.globals.update(money=present.money, signed_money=present.signed_money,
                                 percent=present.percent,
                                 number=present.number, when=present.when,
                                 short_id=present.short_id)


def htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


@workbench.before_request
def _guard() -> BaseResponse | None:
    if request.method == "POST":
        csrf.check()  # before anything else: a forged form does nothing, signed in or not
    if request.endpoint in PUBLIC:
        return None
    if session.actor() is None:
        back = request.full_path.rstrip("?") if request.method == "GET" and not htmx() else None
        target = url_for("workbench.sign_in", next=None if back == "/" else back)
        if htmx():  # a poll of a signed-out page: the whole page goes to the sign-in form
            return Response(status=204, headers={"HX-Redirect": target})
        return redirect(target, 303)
    return None


@workbench.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint not in ("workbench.asset", "workbench.vendor_asset"):
        response.headers["Cache-Control"] = "no-store"  # pages hold plans and a CSRF token
    return response


@workbench.app_template_global()
def csrf_token() -> str:
    return csrf.token()


@workbench.app_template_global()
def signed_in_as() -> str | None:
    return session.actor()


def error_page(status: int, title: str, detail: str, hint: str = "",
               items: list[str] | None = None) -> tuple[str, int]:
    template = "workbench/_error.html" if htmx() else "workbench/error.html"
    return render_template(template, status=status, title=title, detail=detail, hint=hint,
                           items=items or []), status


@workbench.errorhandler(csrf.CsrfRefused)
def _csrf(exc: csrf.CsrfRefused) -> tuple[str, int]:
    return error_page(400, "The form was refused", f"{exc.why}.",
                      "Forms are accepted only with the token of the page they came from: "
                      "reload the page and send it again.")


@workbench.errorhandler(NotFound)
def _not_found(exc: NotFound) -> tuple[str, int]:
    return error_page(404, "Not found", str(exc))


@workbench.errorhandler(Conflict)
def _conflict(exc: Conflict) -> tuple[str, int]:
    return error_page(409, "Not done", str(exc))


@workbench.errorhandler(InputError)
def _input(exc: InputError) -> tuple[str, int]:
    """The library's own words, one line per issue: `values[1]: must be a number, got 'x'`."""
    shown = [str(i) for i in exc.issues[:InputError.MAX_LISTED]]
    more = len(exc.issues) - len(shown)
    return error_page(422, "The request was refused",
                      f"{len(exc.issues)} problem{'s' * (len(exc.issues) != 1)}, each naming the "
                      "field and the rule:", items=shown + ([f"... and {more} more"] if more else []))


@workbench.errorhandler(HTTPException)
def _http(exc: HTTPException) -> tuple[str, int]:
    status = exc.code or 500
    detail = exc.description or ""
    if status == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        detail = (f"The upload is larger than this service accepts: at most {limit:,} bytes "
                  "(OFFEROPT_MAX_CONTENT_LENGTH).")
    return error_page(status, exc.name, detail)


@workbench.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("unhandled error in the workbench")
    return error_page(500, "Something went wrong", "The error was logged; no details are shown "
                      "here.")


@workbench.get("/assets/<filename>")
@page("The workbench's own style sheet and script", what="a static file")
def asset(filename: str) -> Response:
    return send_from_directory(STATIC, filename, max_age=300)


@workbench.get("/assets/vendor/<filename>")
@page("The workbench's vendored htmx and Chart.js (see static/vendor/README.md)",
      what="a static file")
def vendor_asset(filename: str) -> Response:
    return send_from_directory(STATIC / "vendor", filename, max_age=86400)
