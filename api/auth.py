"""Bearer tokens with two roles, looked up by their SHA-256.

`merchandiser` may submit, publish and roll back (and read everything);
`storefront` may read offers and the active plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request

from api.problems import Problem

MERCHANDISER = "merchandiser"
STOREFRONT = "storefront"
F = TypeVar("F", bound=Callable[..., Any])


def token_roles(merchandiser: tuple[str, ...], storefront: tuple[str, ...]) -> dict[bytes, str]:
    """Each configured token's role, by the token's SHA-256 (a token in both lists is a
    merchandiser's)."""
    return {**{_digest(t): STOREFRONT for t in storefront},
            **{_digest(t): MERCHANDISER for t in merchandiser}}


def role_of(token: str) -> str | None:
    """One hash and one lookup: the digest, not the token, is compared, so the time taken
    reveals nothing about a configured token's characters."""
    return role_of_digest(_roles(), token)


def role_of_digest(roles: dict[bytes, str], token: str) -> str | None:
    """As `role_of`, with the roles given (outside a Flask app context)."""
    return roles.get(_digest(token)) if token else None


def _roles() -> dict[bytes, str]:
    roles: dict[bytes, str] = current_app.config["TOKEN_ROLES"]
    return roles


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def requires(*roles: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Problem(401, "Unauthorized", "Authorization: must be 'Bearer <token>'")
            digest = _digest(token.strip())
            role = _roles().get(digest)
            if role is None:
                raise Problem(401, "Unauthorized", "Authorization: the token is not recognised")
            if role not in roles:
                raise Problem(403, "Forbidden",
                              f"role {role!r}: must be one of {', '.join(roles)} for this call")
            g.role = role
            g.actor = f"{role}:{digest.hex()[:8]}"
            return view(*args, **kwargs)

        guarded.roles = roles  # type: ignore[attr-defined]  # read by the OpenAPI generator
        return guarded  # type: ignore[return-value]
    return decorate
