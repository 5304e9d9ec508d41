"""Signing in with a merchandiser token: a session cookie instead of a bearer header.

The token is checked by the API's own role check (`api.auth.role_of`); the session
keeps the role, a fingerprint of the token (never the token) and the time of signing in.
Each request checks the fingerprint against the configured tokens again: a token removed
from `OFFEROPT_MERCHANDISER_TOKENS` (rotation) ends its sessions at the next reload. A
session lasts `OFFEROPT_SESSION_HOURS` from signing in, however often its pages are polled
(the cookie's own expiry is renewed by every answer). The actor name the API records
(`merchandiser:<8 hex>`) is derived from the fingerprint, never read from the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from flask import current_app, session

from api.auth import MERCHANDISER, STOREFRONT, role_of
from api.workbench import csrf

HOURS = 12.0  # a signed-in session lasts a working day (OFFEROPT_SESSION_HOURS)


class SignInRefused(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(token: str) -> str:
    """Start a merchandiser session for `token`; `SignInRefused` says why not."""
    token = token.strip()
    if not token:
        raise SignInRefused("enter your merchandiser token")
    role = role_of(token)
    if role is None:
        raise SignInRefused("this token is not recognised")
    if role == STOREFRONT:
        raise SignInRefused("this is a storefront token: it can read offers, but only a "
                            "merchandiser token can sign in to the workbench")
    if role != MERCHANDISER:
        raise SignInRefused(f"role {role!r} cannot sign in to the workbench")
    session.clear()  # nothing of an earlier session carries over
    session.permanent = True
    session["role"] = MERCHANDISER
    session["token"] = fingerprint(token)[:32]
    session["since"] = time.time()
    csrf.renew()
    return actor_of(session["token"])


def actor_of(held: str) -> str:
    """The actor name the API records for a token (`api.auth`): the role and 8 hex digits of
    the token's SHA-256, so a publication shows the same name from the page or the API."""
    return f"{MERCHANDISER}:{held[:8]}"


def sign_out() -> None:
    session.clear()


def expired() -> bool:
    """The session was signed in longer ago than OFFEROPT_SESSION_HOURS (or says no when)."""
    since = session.get("since")
    if isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since):
        return True
    age = time.time() - since
    hours = float(current_app.config.get("SESSION_HOURS", HOURS))
    return not -60.0 <= age <= 3600.0 * hours  # a minute's skew between web workers' clocks


def actor() -> str | None:
    """The signed-in merchandiser (`merchandiser:<8 hex>`), or None."""
    if session.get("role") != MERCHANDISER or expired():
        return None
    held = session.get("token")
    if not isinstance(held, str) or len(held) != 32:
        return None
    known = False
    for candidate in current_app.config["MERCHANDISER_TOKENS"]:
        # compare_digest on every candidate: timing does not reveal which one matched
        if hmac.compare_digest(fingerprint(candidate)[:32].encode(), held.encode()):
            known = True
    return actor_of(held) if known else None
