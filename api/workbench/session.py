"""Signing in with a merchandiser token: a session cookie instead of a bearer header.

The token is checked by the API's own role check (`api.auth.role_of`); the session
keeps the role, the actor name the API would record (`merchandiser:<8 hex>`) and a
fingerprint of the token, never the token. Each request checks the fingerprint against the
configured tokens again: a token removed from `OFFEROPT_MERCHANDISER_TOKENS` (rotation)
ends its sessions at the next reload.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import current_app, session

from api.auth import MERCHANDISER, STOREFRONT, role_of
from api.workbench import csrf

LIFETIME = timedelta(hours=12)  # a signed-in session lasts a working day


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
    digest = fingerprint(token)
    session.clear()  # nothing of an earlier session carries over
    session.permanent = True
    session["role"] = MERCHANDISER
    session["actor"] = f"{MERCHANDISER}:{digest[:8]}"  # as the API records who published
    session["token"] = digest[:32]
    csrf.renew()
    return str(session["actor"])


def sign_out() -> None:
    session.clear()


def actor() -> str | None:
    """The signed-in merchandiser (`merchandiser:<8 hex>`), or None."""
    if session.get("role") != MERCHANDISER:
        return None
    held = session.get("token")
    if not isinstance(held, str) or len(held) != 32:
        return None
    known = False
    for candidate in current_app.config["MERCHANDISER_TOKENS"]:
        # compare_digest on every candidate: timing does not reveal which one matched
        if hmac.compare_digest(fingerprint(candidate)[:32].encode(), held.encode()):
            known = True
    return str(session.get("actor")) if known else None
