"""Catalogs for nightly-job tests: a normal night, a stock collapse, corrupted estimates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from optimizer.io.json_form import instance_to_document
from optimizer.model.generate import generate


def base_catalog(segments: int = 40, seed: int = 4) -> dict[str, Any]:
    return instance_to_document(generate(segments, seed, 8, 40, None, "nightly-test"))


def stock_collapse(doc: dict[str, Any], factor: float = 0.1) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for item in out["items"]:
        if item.get("stock") is not None:
            item["stock"] = round(item["stock"] * factor, 3)
    return out


def corrupted_estimates(doc: dict[str, Any], take_rate: float = 0.39) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for response in out["responses"]:
        response["take_rate"] = take_rate
    return out


def write(doc: dict[str, Any], path: Path) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
