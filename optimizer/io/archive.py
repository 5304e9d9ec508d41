"""A zip of an instance folder, opened with limits: a decompression bomb is refused cheaply.

Three checks, cheapest first:

1. The end-of-central-directory record names how many entries the zip holds and where
   its directory lies; the entry signatures in that directory are counted. Both must be
   within `ZipLimits.max_entries` before `zipfile` builds an object per entry.
2. The sizes the directory declares must add up to at most `ZipLimits.max_expanded_bytes`,
   and the entries read must be stored or deflated (bzip2 and LZMA inflate a whole block
   at once), before anything is inflated.
3. Only the instance's own files are inflated, in chunks, each straight to disk, counting
   the bytes actually produced: a directory that lies about sizes is caught as soon as the
   output passes the limit (and `zipfile` checks each entry's size and CRC at its end).
   A Parquet table counts for what its footer says it decodes to, too: Parquet compresses
   and run-length encodes on its own, so a small file can hold a billion values.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pyarrow.parquet as pq
from pyarrow.lib import ArrowException

from optimizer.errors import InputError, Issue
from optimizer.io.fields import TABLE_FIELDS
from optimizer.io.tables import TableFormat

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_ENTRY = b"PK\x01\x02"
_EOCD_SIZE, _LOCATOR_SIZE, _EOCD64_SIZE = 22, 20, 56
_MAX_COMMENT = 65535
_CHUNK = 1 << 16
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
META_FILES = ("policy.json", "instance.json")


@dataclass(frozen=True)
class ZipLimits:
    """How much a zipped instance may hold; the service takes both from OFFEROPT_* settings."""

    max_entries: int = 1000
    max_expanded_bytes: int = 1 << 30  # 1 GiB, all entries together


DEFAULT_ZIP_LIMITS = ZipLimits()


def extract_instance_zip(path: Path, target: Path,
                         limits: ZipLimits) -> tuple[Path, TableFormat, str]:
    """Inflate the instance files of the zip at `path` into the new folder `target`.

    Returns (`target`, its table format, the instance's default name: the zip's inner
    folder, else the zip's own name).
    """
    name = path.name
    _check_directory(path, name, limits)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_declared(infos, name, limits)
            prefix = _folder_prefix([i.filename for i in infos])
            fmt = _format(infos, prefix)
            wanted = {f"{table}.{fmt}" for table in TABLE_FIELDS} | set(META_FILES)
            chosen = {i.filename[len(prefix):]: i for i in infos
                      if not i.is_dir() and i.filename.startswith(prefix)
                      and i.filename[len(prefix):] in wanted}
            target.mkdir(parents=True)
            budget = _Budget(name, limits.max_expanded_bytes)
            for base, info in chosen.items():
                _inflate(archive, info, target / base, name, budget)
                if base.endswith(".parquet"):
                    budget.spend(base, _parquet_decoded_bytes(target / base), parquet=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            RuntimeError, NotImplementedError, ValueError, struct.error) as exc:
        raise InputError([Issue(name, "must be a zip archive", value_text=str(exc)[:200])]) \
            from None
    return target, fmt, prefix.rstrip("/") or path.stem


def _check_directory(path: Path, name: str, limits: ZipLimits) -> None:
    """Entry count from the end record and from the directory's own signatures."""
    try:
        with open(path, "rb") as fp:
            size = fp.seek(0, 2)
            tail_size = min(size, _EOCD_SIZE + _MAX_COMMENT)
            fp.seek(size - tail_size)
            tail = fp.read(tail_size)
            at = tail.rfind(_EOCD)
            if at < 0 or len(tail) - at < _EOCD_SIZE:
                raise InputError([Issue(name, "must be a zip archive",
                                        value_text="no end of central directory record")])
            (_, _, _, _, declared, dir_size, _, _) = struct.unpack("<4s4H2LH",
                                                                     tail[at:at + _EOCD_SIZE])
            dir_end = size - tail_size + at
            if declared == 0xFFFF or dir_size == 0xFFFFFFFF:  # zip64: the sizes are further up
                locator = tail[at - _LOCATOR_SIZE:at] if at >= _LOCATOR_SIZE else b""
                if locator[:4] == _EOCD64_LOCATOR:
                    (_, _, record_at, _) = struct.unpack("<4sLQL", locator)
                    fp.seek(record_at)
                    record = fp.read(_EOCD64_SIZE)
                    if record[:4] == _EOCD64 and len(record) == _EOCD64_SIZE:
                        fields = struct.unpack("<4sQ2H2L4Q", record)
                        declared, dir_size = fields[7], fields[8]
                        dir_end = dir_end - _LOCATOR_SIZE - _EOCD64_SIZE
            if declared > limits.max_entries:
                raise InputError([Issue(name, f"must hold at most {limits.max_entries} entries",
                                        declared)])
            found = _count_entries(fp, max(0, dir_end - dir_size), dir_end)
    except OSError as exc:
        raise InputError([Issue(name, "must be a readable zip file", value_text=str(exc))]) \
            from None
    if found > limits.max_entries:
        raise InputError([Issue(name, f"must hold at most {limits.max_entries} entries",
                                value_text=f"{found} in its central directory")])


def _count_entries(fp: BinaryIO, start: int, end: int) -> int:
    """Entry signatures in [start, end): at least as many as the entries zipfile would read."""
    fp.seek(start)
    count, carry, left = 0, b"", end - start
    while left > 0:
        chunk = carry + fp.read(min(_CHUNK * 16, left))
        if len(chunk) == len(carry):
            break
        left -= len(chunk) - len(carry)
        count += chunk.count(_ENTRY)
        carry = chunk[-(len(_ENTRY) - 1):]
    return count


def _check_declared(infos: list[zipfile.ZipInfo], name: str, limits: ZipLimits) -> None:
    declared = sum(i.file_size for i in infos)
    if declared > limits.max_expanded_bytes:
        raise InputError([Issue(name, f"must expand to at most {limits.max_expanded_bytes} bytes",
                                value_text=f"{declared} bytes declared by its {len(infos)} "
                                           "entries")])


def _folder_prefix(names: list[str]) -> str:
    """'' when the files sit at the root, else the single folder holding them ('x/')."""
    tops = {n.split("/", 1)[0] for n in names
            if not n.startswith(("__MACOSX", ".")) and n.strip("/")}
    if len(tops) != 1:
        return ""
    top = next(iter(tops))
    is_folder = any(n.startswith(f"{top}/") for n in names)
    return f"{top}/" if is_folder else ""


def _format(infos: list[zipfile.ZipInfo], prefix: str) -> TableFormat:
    """Parquet when the folder holds any `*.parquet` file, as for a folder on disk."""
    for info in infos:
        rest = info.filename[len(prefix):] if info.filename.startswith(prefix) else None
        if rest and "/" not in rest and rest.endswith(".parquet") and not info.is_dir():
            return "parquet"
    return "csv"


class _Budget:
    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit, self.used = name, limit, 0

    def spend(self, entry: str, amount: int, parquet: bool = False) -> None:
        self.used += amount
        if self.used > self.limit:
            what = (f"more once {entry!r} is decoded (Parquet compresses and encodes on its "
                    "own)" if parquet else
                    f"more while inflating {entry!r} (its entries declare less than they hold)")
            raise InputError([Issue(self.name, f"must expand to at most {self.limit} bytes",
                                    value_text=what)])


def _parquet_decoded_bytes(path: Path) -> int:
    """At least what the Parquet file at `path` takes once read: each column chunk's
    uncompressed pages, and no less than 8 bytes a value (a run-length encoded column of a
    billion equal numbers is a few bytes on disk). 0 when its footer cannot be read: the
    table reader then reports the file."""
    try:
        meta = pq.read_metadata(path)
        total = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                total += max(column.total_uncompressed_size, 8 * column.num_values)
    except (ArrowException, OSError, ValueError, TypeError, IndexError):
        return 0
    return total


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, name: str,
             budget: _Budget) -> None:
    entry = str(PurePosixPath(info.filename))
    if info.compress_type not in _METHODS:
        raise InputError([Issue(f"{name}/{entry}", "must be stored or deflate-compressed",
                                value_text=f"compression method {info.compress_type}")])
    if info.flag_bits & 0x1:
        raise InputError([Issue(f"{name}/{entry}", "must not be encrypted", has_value=False)])
    try:
        with archive.open(info) as source, open(target, "wb") as out:
            while chunk := source.read(_CHUNK):
                budget.spend(entry, len(chunk))
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        # zipfile stops at the size the directory declares and then checks the CRC: an
        # entry that holds more (or other) than declared ends here.
        raise InputError([Issue(f"{name}/{entry}", "must inflate to the size and CRC its zip "
                                "directory declares", value_text=str(exc)[:200])]) from None

