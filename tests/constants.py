"""Paths and tokens the tests share (fixtures live in conftest.py files)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
MERCHANDISER = {"Authorization": "Bearer m-token"}
STOREFRONT = {"Authorization": "Bearer s-token"}
