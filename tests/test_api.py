from __future__ import annotations

from flask.testing import FlaskClient

from api import create_app
from optimizer import __version__


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "version": __version__}


def test_config_from_environment(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("OFFEROPT_MAX_CONTENT_LENGTH", "1024")
    assert create_app().config["MAX_CONTENT_LENGTH"] == 1024
