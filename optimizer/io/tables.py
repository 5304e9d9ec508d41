"""The tabular forms (spec section 5): a folder of CSV or Parquet files, one per table.

Besides the spec's tables and `policy.json`, a folder may hold `instance.json` with
`name` and `currency` (an offeropt extension; without it the folder's name is used).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.lib import ArrowException

from optimizer.errors import InputError, Issue, file_error
from optimizer.io.fields import TABLE_FIELDS, Locator, Source, coerce_table
from optimizer.io.raw import RawInstance, coerce_policy
from optimizer.io.safe_json import parse_json
from optimizer.model.instance import FORMAT, OPTIONAL_SEGMENT_COLUMNS, TABLE_COLUMNS, Instance
from optimizer.model.instance import OPTIONAL_TABLES as CONTACT_TABLES

TableFormat = Literal["csv", "parquet"]
# Table files a folder may leave out (no rows): perks, and spec section 8's audiences and channels.
OPTIONAL_TABLES = frozenset({"perks", *CONTACT_TABLES})


def folder_format(folder: Path) -> TableFormat:
    return "parquet" if any(folder.glob("*.parquet")) else "csv"


def read_folder(folder: Path, default_name: str | None = None,
                fmt: TableFormat | None = None) -> RawInstance:
    fmt = fmt or folder_format(folder)
    raw = RawInstance(origin=str(folder), name=default_name or folder.name, currency=None)
    _read_meta(folder, raw)
    for table, specs in TABLE_FIELDS.items():
        path = folder / f"{table}.{fmt}"
        if not path.exists():
            if table not in OPTIONAL_TABLES:
                raw.issues.append(Issue(path.name, "is required (a table file)", has_value=False))
            columns: dict[str, Any] = {s.name: [] for s in specs}
        else:
            frame = _read_table(path, fmt, raw)
            if frame is None:
                continue
            names = {s.name for s in specs}
            for col in frame.columns:
                if col not in names:
                    raw.warnings.append(f"{path.name}: unknown column {col!r}, ignored")
            for spec in specs:
                if spec.required and spec.name not in frame.columns:
                    raw.issues.append(
                        Issue(path.name, f"must have a column {spec.name!r}", has_value=False)
                    )
            columns = {s.name: frame[s.name] for s in specs if s.name in frame.columns}
            if not columns:
                columns = {specs[0].name: pd.Series([None] * len(frame), dtype=object)}
        source: Source = "text" if fmt == "csv" else "native"
        locator = Locator(table, "csv" if fmt == "csv" else "parquet")
        raw.tables[table] = coerce_table(table, columns, source, locator, raw.issues)
    policy_path = folder / "policy.json"
    if policy_path.exists():
        policy = _read_json_object(policy_path, raw, "policy")
        if policy is not None:
            coerce_policy(policy, "json", "policy", raw)
    return raw


def _read_meta(folder: Path, raw: RawInstance) -> None:
    path = folder / "instance.json"
    if not path.exists():
        return
    meta = _read_json_object(path, raw, "instance.json")
    if meta is None:
        return
    if meta.get("format", FORMAT) != FORMAT:
        raw.issues.append(Issue("instance.json.format", f"must be {FORMAT!r}", meta["format"]))
    for key in ("name", "currency"):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            raw.issues.append(Issue(f"instance.json.{key}", "must be a string", value))
        elif value:
            setattr(raw, key, value)


def _read_json_object(path: Path, raw: RawInstance, root: str) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raw.issues.append(Issue(path.name, "must be a readable file", value_text=str(exc)))
        return None
    try:
        doc = parse_json(data, path.name, root) if data else None
    except InputError as exc:
        raw.issues.extend(exc.issues)
        return None
    if not isinstance(doc, dict):
        raw.issues.append(Issue(path.name, "must be a JSON object", doc))
        return None
    return doc


def _read_table(path: Path, fmt: TableFormat, raw: RawInstance) -> pd.DataFrame | None:
    try:
        return read_frame(path, fmt)
    except InputError as exc:
        raw.issues.extend(exc.issues)
        return None


def read_frame(path: Path, fmt: TableFormat, arrow_text: bool = False) -> pd.DataFrame:
    """One CSV (every cell as text) or Parquet table, header names stripped; with
    `arrow_text`, a Parquet table's text columns stay in Arrow (no Python object per cell)."""
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                                skipinitialspace=True)
        else:
            table = pq.read_table(path)
            table.validate(full=True)  # Parquet readers do not check that strings are UTF-8
            frame = table.to_pandas(types_mapper=_arrow_text if arrow_text else None)
    except pd.errors.EmptyDataError:
        raise InputError([Issue(path.name, "must have a header row",
                                value_text="an empty file")]) from None
    except (pd.errors.ParserError, UnicodeError, OSError, ValueError, TypeError, IndexError,
            KeyError, NotImplementedError, ArrowException) as exc:
        # A damaged Parquet file fails in pyarrow in many ways, none of them ours.
        kind = "CSV" if fmt == "csv" else "Parquet"
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError([Issue(path.name, f"must be a readable {kind} file",
                                value_text=first[:200])]) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _arrow_text(kind: pa.DataType) -> pd.StringDtype | None:
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    return pd.StringDtype("pyarrow") if text else None


def read_table_file(path: str | Path, arrow_text: bool = False) -> tuple[pd.DataFrame, Locator]:
    """A single table file (logs, transactions): `.parquet`/`.pq` or CSV, and the locator
    that names its rows in error messages (`arrow_text` as for `read_frame`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError([Issue(str(path), "must be an existing CSV or Parquet file",
                                has_value=False)])
    fmt: TableFormat = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    return read_frame(path, fmt, arrow_text), Locator(path.stem, fmt)


def instance_tables(instance: Instance) -> dict[str, pd.DataFrame]:
    """The instance's tables in the spec's tabular columns (ladders as `0;0.05;0.1`).

    Spec section 8's additions appear only when used: an `audiences` or `channels` table
    with no rows and a segment column null in every row are left out, so a version 1
    instance gives exactly the files it gave before them.
    """
    tables = {name: instance.table(name).loc[:, list(cols)] for name, cols in TABLE_COLUMNS.items()
              if name not in CONTACT_TABLES or len(instance.table(name))}
    unused = [c for c in OPTIONAL_SEGMENT_COLUMNS if tables["segments"][c].isna().all()]
    tables["segments"] = tables["segments"].drop(columns=unused)
    tables["bundles"] = tables["bundles"].assign(
        discounts=[None if d is None else ";".join(_fmt(x) for x in d)
                   for d in tables["bundles"]["discounts"]]
    )
    return tables


def _fmt(x: float) -> str:
    return repr(float(x)).removesuffix(".0") if float(x).is_integer() else repr(float(x))


def write_folder(instance: Instance, folder: Path, fmt: TableFormat) -> None:
    """Write every table, `policy.json` and `instance.json`; each file is replaced atomically."""
    if folder.exists() and not folder.is_dir():
        raise InputError([Issue(str(folder), f"must be a folder (or a new path) to write {fmt.upper()} "
                                "tables into", value_text="an existing file")])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(folder, exc, "must be a folder that can be created and written") from exc
    tables = instance_tables(instance)
    # A section 8 table left out: a stale file of an earlier write would be read back.
    for name in (n for n in CONTACT_TABLES if n not in tables):
        for ext in ("csv", "parquet"):
            (folder / f"{name}.{ext}").unlink(missing_ok=True)
    for name, frame in tables.items():
        target = folder / f"{name}.{fmt}"
        other = folder / f"{name}.{'parquet' if fmt == 'csv' else 'csv'}"
        other.unlink(missing_ok=True)  # a stale file of the other form would win detection
        with _atomic(target) as tmp:
            if fmt == "csv":
                out = frame.copy()
                for col in out.columns:
                    if out[col].dtype == bool:
                        out[col] = np.where(out[col], "true", "false")
                    elif out[col].dtype == np.float64:
                        out[col] = ["" if np.isnan(v) else _fmt(v) for v in out[col]]
                out.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
    meta = {"format": FORMAT, "name": instance.name, "currency": instance.currency}
    write_json(folder / "instance.json", meta)
    write_json(folder / "policy.json", instance.policy.to_dict())


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    """One table as CSV, or as Parquet when `path` ends in `.parquet`; replaced atomically."""
    with _atomic(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def write_json(path: Path, doc: Any) -> None:
    write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    with _atomic(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


class _atomic:
    """Write to a temporary file beside `path`, then rename over it: never a half-written file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        if self.path.is_dir():
            raise InputError([Issue(str(self.path), "must be a file path (or a new one)",
                                    value_text="an existing folder")])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        except OSError as exc:
            raise file_error(self.path, exc, "must be in a folder that can be written") from exc
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide published files
        return self.tmp

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            try:
                os.replace(self.tmp, self.path)
            except OSError as exc:
                os.unlink(self.tmp)
                raise file_error(self.path, exc, "must be a file that can be replaced") from exc
        else:
            os.unlink(self.tmp)
