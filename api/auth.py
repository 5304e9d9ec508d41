"""Bearer tokens with two roles, compared in constant time.

`merchandiser` may submit, publish and roll back (and read everything);
`storefront` may read offers and the active plan.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request

from api.problems import Problem

MERCHANDISER = "merchandiser"
STOREFRONT = "storefront"
F = TypeVar("F", bound=Callable[..., Any])


def _role_of(token: str) -> str | None:
    found = None
    for role, key in ((MERCHANDISER, "MERCHANDISER_TOKENS"), (STOREFRONT, "STOREFRONT_TOKENS")):
        for candidate in current_app.config[key]:
            # compare_digest on every candidate: timing does not reveal which one matched
            if hmac.compare_digest(candidate.encode(), token.encode()) and found is None:
                found = role
    return found


def requires(*roles: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Problem(401, "Unauthorized", "Authorization: must be 'Bearer <token>'")
            role = _role_of(token.strip())
            if role is None:
                raise Problem(401, "Unauthorized", "Authorization: the token is not recognised")
            if role not in roles:
                raise Problem(403, "Forbidden",
                              f"role {role!r}: must be one of {', '.join(roles)} for this call")
            g.role = role
            g.actor = f"{role}:{hashlib.sha256(token.strip().encode()).hexdigest()[:8]}"
            return view(*args, **kwargs)

        guarded.roles = roles  # type: ignore[attr-defined]  # read by the OpenAPI generator
        return guarded  # type: ignore[return-value]
    return decorate
