"""Configuration: defaults, overridden by `OFFEROPT_*` environment variables, then test_config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from api.auth import token_roles

DEFAULTS: dict[str, Any] = {
    "DATA_DIR": "data",  # the embedded default store lives here
    "DATABASE_URL": None,  # any SQLAlchemy URL; default sqlite:///DATA_DIR/offeropt.db
    "MERCHANDISER_TOKENS": "",  # comma-separated bearer tokens
    "STOREFRONT_TOKENS": "",
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,  # larger request bodies get 413
    "MAX_UNZIPPED_BYTES": 512 * 1024 * 1024,  # a zip body's entries, inflated, all together
    "MAX_ZIP_ENTRIES": 1000,  # entries in a zip body
    "SOLVE_WORKERS": 1,  # solve processes per app process
    "SOLVE_TIME_LIMIT": 300.0,  # default seconds per run
    "MAX_SOLVE_TIME_LIMIT": 3600.0,
    # how often a worker checks for a newly published plan (0: on every request, a store
    # read each: 0.17 ms of a 0.2 ms answer); a publication is served within this
    "INDEX_POLL_SECONDS": 1.0,
    "INDEX_DIR": None,  # the storefront's index files, one per version; default DATA_DIR/index
    "INDEX_IN_PROCESS_OFFERS": 200_000,  # larger plans are indexed by a child process
    "INDEX_BUILD_SECONDS": 900.0,  # a child process indexing a plan is stopped after this
    "MAX_JSON_PLAN_OFFERS": 100_000,  # larger plans download as CSV or Parquet only (406)
    "OPS_PORT": None,  # when set, /healthz /readyz /metrics answer only on this port
    "RUN_JOBS": True,  # False: this process serves but never starts solves
    "PUBLISH_PAUSE_SECONDS": 0.0,  # fault injection for crash tests only
    "OFFERS_FAST_PATH": True,  # ordinary GET /v1/offers views skip Flask (api.storefront_path)
    "RECORDING": True,  # record served views for the logs (spec section 9)
    "FLUSH_SECONDS": 1.0,  # how often a worker adds its recorded views to the store
    "JOURNAL_DIR": None,  # served views not yet in the store; default DATA_DIR/journal
    "REPLAY_JOURNALS": True,  # False: another process stores the journals (`serve`'s dispatcher)
    # signs the workbench's session cookies; unset: derived from the merchandiser tokens, with a
    # warning (api/workbench/blueprint.py). SESSION_COOKIE_SECURE: the cookie only over HTTPS
    "SECRET_KEY": None,
    "SESSION_COOKIE_SECURE": False,
    "SESSION_HOURS": 12.0,  # a workbench session ends this long after signing in
}


def finalize(config: dict[str, Any]) -> None:
    """Fill derived settings and normalize types that environment parsing may have guessed."""
    data_dir = Path(str(config["DATA_DIR"]))
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{data_dir.resolve() / 'offeropt.db'}"
    for key in ("MERCHANDISER_TOKENS", "STOREFRONT_TOKENS"):
        value = config.get(key) or ""
        tokens = value if isinstance(value, list) else str(value).split(",")
        config[key] = tuple(t.strip() for t in map(str, tokens) if t.strip())
    config["TOKEN_ROLES"] = token_roles(config["MERCHANDISER_TOKENS"], config["STOREFRONT_TOKENS"])
    if not config.get("JOURNAL_DIR"):
        config["JOURNAL_DIR"] = str(data_dir.resolve() / "journal")
    if not config.get("INDEX_DIR"):
        config["INDEX_DIR"] = str(data_dir.resolve() / "index")
    config["RECORDING"] = _flag(config["RECORDING"])
    config["OFFERS_FAST_PATH"] = _flag(config["OFFERS_FAST_PATH"])
    config["REPLAY_JOURNALS"] = _flag(config["REPLAY_JOURNALS"])
    config["SESSION_COOKIE_SECURE"] = _flag(config["SESSION_COOKIE_SECURE"])
    if config.get("SECRET_KEY") not in (None, ""):  # the environment's parser may guess a number
        config["SECRET_KEY"] = str(config["SECRET_KEY"])
    for key in ("SOLVE_TIME_LIMIT", "MAX_SOLVE_TIME_LIMIT", "INDEX_POLL_SECONDS",
                "PUBLISH_PAUSE_SECONDS", "FLUSH_SECONDS", "SESSION_HOURS", "INDEX_BUILD_SECONDS"):
        config[key] = float(config[key])
    config["SOLVE_WORKERS"] = int(config["SOLVE_WORKERS"])
    for key in ("MAX_CONTENT_LENGTH", "MAX_UNZIPPED_BYTES", "MAX_ZIP_ENTRIES",
                "INDEX_IN_PROCESS_OFFERS", "MAX_JSON_PLAN_OFFERS"):
        config[key] = int(config[key])
    if config.get("OPS_PORT") is not None:
        config["OPS_PORT"] = int(config["OPS_PORT"])


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() not in \
        ("0", "false", "no", "off", "")


def from_environment() -> dict[str, Any]:
    """The settings outside a Flask app (the dispatcher, `serve`, `demo`): defaults + OFFEROPT_*."""
    config: dict[str, Any] = dict(DEFAULTS)
    for key in config:
        if f"OFFEROPT_{key}" in os.environ:
            config[key] = os.environ[f"OFFEROPT_{key}"]
    finalize(config)
    return config
