"""The boundary: every instance enters through here and leaves validated and immutable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from optimizer.errors import InputError, Issue, file_error
from optimizer.io.archive import DEFAULT_ZIP_LIMITS, ZipLimits, extract_instance_zip
from optimizer.io.json_form import instance_to_document, read_document, read_json
from optimizer.io.raw import RawInstance
from optimizer.io.safe_json import JsonSyntaxError, parse_json
from optimizer.io.tables import read_folder, write_folder, write_json
from optimizer.io.validate import validate
from optimizer.model.instance import Instance

InstanceFormat = Literal["json", "csv", "parquet"]

__all__ = [
    "DEFAULT_ZIP_LIMITS",
    "InstanceFormat",
    "ZipLimits",
    "instance_from_document",
    "load_instance",
    "load_plan",
    "write_instance",
]


def load_instance(path: str | Path, zip_limits: ZipLimits = DEFAULT_ZIP_LIMITS) -> Instance:
    """Read and validate an instance: a JSON file, a CSV or Parquet folder, or a zip of a folder
    (inflated within `zip_limits`)."""
    path = Path(path)
    if not path.exists():
        raise InputError([Issue(str(path), "must be an existing file or folder", has_value=False)])
    _check_access(path)
    if path.is_dir():
        return validate(read_folder(path))
    if path.suffix.lower() == ".zip":
        return _load_zip(path, zip_limits)
    return validate(read_json(path.read_bytes(), origin=path.name, default_name=path.stem))


def load_plan(path: str | Path) -> dict[str, Any]:
    """An `offeropt/plan@1` JSON file as a dict (its content is checked by `optimizer.plan.check`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError([Issue(path.name, "must be a readable plan JSON file",
                                value_text=str(exc))]) from exc
    try:
        plan = parse_json(data, path.name)
    except JsonSyntaxError as exc:  # worded as before: the plan file is not JSON at all
        raise InputError([Issue(path.name, "must be a readable plan JSON file",
                                value_text=exc.issues[0].value_text or str(exc))]) from None
    if not isinstance(plan, dict):
        raise InputError([Issue(path.name, "must be a JSON object", plan)])
    return plan


def instance_from_document(doc: object, origin: str = "instance") -> Instance:
    """Validate an already parsed `offeropt/instance@1` document."""
    raw = RawInstance(origin=origin, name=origin, currency=None)
    read_document(doc, raw)
    return validate(raw)


def _load_zip(path: Path, limits: ZipLimits) -> Instance:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder, fmt, name = extract_instance_zip(path, Path(tmp) / "instance", limits)
        return validate(read_folder(folder, name, fmt))


def write_instance(instance: Instance, path: str | Path, fmt: InstanceFormat | None = None) -> None:
    """Write an instance as JSON (a `.json` file) or as a CSV or Parquet folder."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "csv")
    if fmt == "json":
        write_json(path, instance_to_document(instance))
    else:
        write_folder(instance, path, fmt)


def _check_access(path: Path) -> None:
    """An instance path that cannot be read, or a folder holding none of the tables, is one
    issue naming the path (not a missing-table issue per table)."""
    try:
        if path.is_dir():
            names = {p.name for p in path.iterdir()}
        else:
            with path.open("rb"):
                return
    except OSError as exc:
        raise file_error(path, exc, "must be a readable file or folder") from exc
    tables = ("items", "bundles", "bundle_items", "segments", "responses")
    if not any(f"{t}.{ext}" in names for t in tables for ext in ("csv", "parquet")):
        raise InputError([Issue(str(path), "must be an instance folder holding the tables "
                                + ", ".join(f"{t}.csv" for t in tables) + " (or .parquet)",
                                value_text="a folder with none of them")])
