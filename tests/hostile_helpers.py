"""Builders of hostile inputs: zip bombs made in a second, pathological JSON, absurd numbers,
and the measure of a refusing process's time and peak memory."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_FOLDER = ROOT / "instances" / "demo"
OFFEROPT = str(Path(sys.executable).parent / "offeropt")
GiB = 1 << 30


@dataclass(frozen=True)
class Entry:
    """One zip entry: its name, its deflate stream (or stored bytes), and what its headers
    declare (which a hostile zip may set to anything)."""

    name: str
    data: bytes  # as stored in the archive
    method: int  # 0 stored, 8 deflate
    crc: int
    size: int  # declared uncompressed size


def deflated(name: str, content: bytes) -> Entry:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(content) + c.flush()
    return Entry(name, data, 8, zlib.crc32(content), len(content))


def deflate_bomb(name: str, expanded: int, declared: int | None = None,
                 header: bytes = b"segment,bundle,take_rate,baseline_rate,price_sensitivity\n",
                 line: bytes = b"champions-cart,laptop-care,0.04,0.01,6.5\n") -> Entry:
    """A CSV entry that inflates to about `expanded` bytes, built in well under a second.

    One 16 MiB block of repeated lines is deflated once, ending in a full flush (which
    resets the window, so the segment decodes the same wherever it stands); the stream is
    that segment repeated, then an empty final block: about 1 KB of deflate per MiB.
    `declared` is the size the headers claim (default: the truth).
    """
    block = line * ((16 << 20) // len(line))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    repeats = max(1, (expanded - len(header)) // len(block))
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = first.compress(header) + first.flush(zlib.Z_FULL_FLUSH)
    stream = head + segment * repeats + b"\x03\x00"  # an empty final fixed-Huffman block
    crc = zlib.crc32(header)
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    size = len(header) + len(block) * repeats
    return Entry(name, stream, 8, crc, size if declared is None else declared)


def write_zip(path: Path, entries: list[Entry]) -> Path:
    """A plain (non-zip64) archive of `entries`, headers written as declared."""
    directory = b""
    with open(path, "wb") as out:
        for e in entries:
            offset = out.tell()
            name = e.name.encode()
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, e.method, 0, 0x21,
                                  e.crc, len(e.data), e.size, len(name), 0) + name)
            out.write(e.data)
            directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, e.method, 0, 0x21,
                                     e.crc, len(e.data), e.size, len(name), 0, 0, 0, 0, 0,
                                     offset) + name
        start = out.tell()
        out.write(directory)
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                              len(directory), start, 0))
    return path


def demo_entries(skip: str = "responses.csv", prefix: str = "") -> list[Entry]:
    """The demo catalog's files but `skip`, deflated."""
    return [deflated(prefix + f.name, f.read_bytes()) for f in sorted(DEMO_FOLDER.iterdir())
            if f.is_file() and f.name != skip]


def bomb_zip(path: Path, expanded: int = 3 * GiB // 2, declared: int | None = None) -> Path:
    """The demo catalog whose responses.csv inflates to `expanded` bytes (1.5 GiB)."""
    return write_zip(path, [*demo_entries(), deflate_bomb("responses.csv", expanded, declared)])


def deep_json(depth: int = 50_000) -> bytes:
    return ('{"format": "offeropt/instance@1", "items": ' + "[" * depth + "]" * depth
            + "}").encode()


def demo_bytes(doc: dict[str, object]) -> bytes:
    return json.dumps(doc).encode()


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str


_MEASURE = """
import json, resource, subprocess, sys, time
start = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, errors="replace")
seconds = time.monotonic() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"returncode": done.returncode, "seconds": seconds, "peak_mb": peak_kb / 1024,
                  "stdout": done.stdout, "stderr": done.stderr}))
"""


def measure(argv: list[str], timeout: float = 120.0) -> Measured:
    """Run `argv` as the only child of a fresh Python, which reports its wall time and peak
    resident memory (RUSAGE_CHILDREN there covers that one child and nothing else)."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True,
                          text=True, timeout=timeout, check=True)
    return Measured(**json.loads(done.stdout))
