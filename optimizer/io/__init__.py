"""The boundary: every instance enters through here and leaves validated and immutable."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Literal

from optimizer.errors import InputError, Issue
from optimizer.io.json_form import instance_to_document, read_document, read_json
from optimizer.io.raw import RawInstance
from optimizer.io.tables import read_folder, write_folder, write_json
from optimizer.model import Instance
from optimizer.validate import validate

InstanceFormat = Literal["json", "csv", "parquet"]

__all__ = [
    "InstanceFormat",
    "instance_from_document",
    "load_instance",
    "load_plan",
    "write_instance",
]


def load_instance(path: str | Path) -> Instance:
    """Read and validate an instance: a JSON file, a CSV or Parquet folder, or a zip of a folder."""
    path = Path(path)
    if not path.exists():
        raise InputError([Issue(str(path), "must be an existing file or folder", has_value=False)])
    if path.is_dir():
        return validate(read_folder(path))
    if path.suffix.lower() == ".zip":
        return _load_zip(path)
    return validate(read_json(path.read_bytes(), origin=path.name, default_name=path.stem))


def load_plan(path: str | Path) -> dict[str, Any]:
    """An `offeropt/plan@1` JSON file as a dict (its content is checked by `optimizer.check`)."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError([Issue(path.name, "must be a readable plan JSON file",
                                value_text=str(exc))]) from exc
    if not isinstance(plan, dict):
        raise InputError([Issue(path.name, "must be a JSON object", plan)])
    return plan


def instance_from_document(doc: object, origin: str = "instance") -> Instance:
    """Validate an already parsed `offeropt/instance@1` document."""
    raw = RawInstance(origin=origin, name=origin, currency=None)
    read_document(doc, raw)
    return validate(raw)


def _load_zip(path: Path) -> Instance:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with zipfile.ZipFile(path) as archive:
                archive.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise InputError([Issue(path.name, "must be a zip archive", value_text=str(exc))]) from exc
        root = Path(tmp)
        inner = [p for p in root.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        folder = inner[0] if len(inner) == 1 and inner[0].is_dir() else root
        return validate(read_folder(folder, path.stem if folder == root else None))


def write_instance(instance: Instance, path: str | Path, fmt: InstanceFormat | None = None) -> None:
    """Write an instance as JSON (a `.json` file) or as a CSV or Parquet folder."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "csv")
    if fmt == "json":
        write_json(path, instance_to_document(instance))
    else:
        write_folder(instance, path, fmt)
