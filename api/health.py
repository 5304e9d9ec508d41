from __future__ import annotations

from flask import Blueprint

from optimizer import __version__

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}
