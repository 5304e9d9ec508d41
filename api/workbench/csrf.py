"""CSRF protection: one random token per session, in every form and every htmx request.

Every POST to the workbench must carry the session's token, as the form field `csrf_token`
or the `X-CSRF-Token` header (htmx sends it from `hx-headers` on the page's body). The
session cookie is `SameSite=Lax` as well, but the token is what is checked.
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_KEY = "csrf"


class CsrfRefused(Exception):
    """A POST without the session's CSRF token (missing, or another one)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def token() -> str:
    """The session's token, made on first use (the sign-in form needs one too)."""
    current = session.get(_KEY)
    if not isinstance(current, str) or not current:
        current = session[_KEY] = secrets.token_urlsafe(32)
    return current


def renew() -> str:
    """A fresh token: at sign-in, so a token seen before it is worth nothing after."""
    session[_KEY] = secrets.token_urlsafe(32)
    return str(session[_KEY])


def check() -> None:
    """Refuse the request unless it carries the session's token."""
    sent = request.headers.get(HEADER) or request.form.get(FIELD)
    expected = session.get(_KEY)
    if not sent:
        raise CsrfRefused("the form carried no CSRF token")
    if not isinstance(expected, str) or not expected:
        raise CsrfRefused("your session holds no CSRF token (it expired, or cookies are off)")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("the form's CSRF token is not your session's")
