from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from hypothesis import settings

from api.app import create_app
from tests.constants import DATA
from tests.server import Processes, kill_strays

# The test command draws the same examples on every run (a clean checkout passes or fails
# the same way); HYPOTHESIS_PROFILE=explore draws new ones each run and keeps failures found.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))



@pytest.fixture
def demo_doc() -> dict[str, Any]:
    """The demo catalog as an instance@1 document (a fresh copy for each test)."""
    return copy.deepcopy(json.loads((DATA / "demo.json").read_text()))


POSTGRES = os.environ.get("OFFEROPT_TEST_POSTGRES_URL")  # an admin URL; .ci/run sets one up


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite always, PostgreSQL when OFFEROPT_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not POSTGRES:
        pytest.skip("OFFEROPT_TEST_POSTGRES_URL is not set")
    import sqlalchemy as sa

    name = f"offeropt_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "MERCHANDISER_TOKENS": "m-token",
                      "STOREFRONT_TOKENS": "s-token", "INDEX_POLL_SECONDS": 0.0})
    yield app
    runner = app.extensions.get("offeropt.jobs")
    if runner is not None:
        runner.stop()
    kill_strays(f"{tmp_path}{os.sep}")  # solve processes name the store under tmp_path


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Starts processes and servers (tests/server.py); every one still running when the test
    ends, passed or failed, is stopped with its whole process group."""
    started = Processes(tmp_path / "processes")
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()
