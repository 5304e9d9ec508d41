"""The HTTP service: a Flask app factory. Validation and solving live in `optimizer`."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from api.health import health


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=64 * 1024 * 1024)
    app.config.from_prefixed_env("OFFEROPT")  # OFFEROPT_X=... becomes app.config["X"]
    if test_config:
        app.config.from_mapping(test_config)
    app.config.setdefault("DATA_DIR", os.environ.get("OFFEROPT_DATA_DIR", "data"))
    app.register_blueprint(health)
    return app
