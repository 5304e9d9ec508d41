"""The storefront's index of one published plan version: a read-only file every web worker maps.

One file per publication, `INDEX_DIR/v{version}.idx`, built once (by the first worker on the
host that needs it, under a lock; see `api.offers.IndexHolder`), written under a temporary
name and renamed into place, so a reader finds either no file or a whole one, and never
changed after. Each worker maps it read-only: the pages are the operating system's page
cache, shared by every worker, and a worker's own memory holds a few small objects per
version. The layout (docs/storage.md) is a fixed prefix, then sections at 8-byte offsets:

- `bodies`: per offer set, the answer a recorded view of it gets, exactly as the storefront
  sends it (the JSON, with the view's exposure token); its first `core` bytes end with the
  `reason`, so that another kind of view of the set (unrecorded, another assignment) is the
  core plus its own short tail. `etags`: the first 10 bytes of each body's SHA-1.
- `lines`: per segment, the journal line of a recorded view of each of its sets, then (when
  the policy holds views out) the line of a view held out.
- segment ids and set ids (UTF-8), and int64 or float64 arrays: offsets into those blobs, each
  segment's first set and whether its plan splits it, each set's cumulative weight and
  propensity, and a hash table of the segment ids (their CRC-32s sorted, bucketed by their
  top bits, pointing at catalog positions).
- `meta`: JSON with the version, plan id, holdout fraction, the bundles' items (for
  `exclude_items`) and where each section lies. The prefix holds the CRC-32 of everything
  after it, checked when a worker opens the file.

The builder works on columns: offers are grouped and joined with numpy over integer codes,
each distinct offer variant is serialized once, and each set's answer is one join of
those pieces and one SHA-1.

Run as `python -m api.index_file FOLDER VERSION PLAN_ID` (the database from
OFFEROPT_DATABASE_URL), it builds one version's file in a process of its own: what a web
worker does for a large plan, so the build's memory and CPU are never the worker's.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import mmap
import os
import struct
import sys
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from api.store import Publication, Store, make_engine
from api.store.columnar import ServingCatalog

MAGIC = b"OFFIDX\x00\x01"
FORMAT = 1
PREFIX = struct.Struct("<8sIIQQQ")  # magic, format, CRC-32 of the rest, meta offset and size, size
PREFIX_BYTES = 64
SUFFIX = ".idx"
IMPLICIT_SET = "a"  # the one set of each segment a plan does not split
NO_OFFERS = "no offers for this segment in the active plan"
EMPTY_SET = "the offer set served to this view is empty"
_ARRAYS = {  # name -> numpy dtype (little-endian) and memoryview format
    "seg_id_off": "q", "seg_first": "q", "seg_split": "q",
    "set_body_off": "q", "set_core_len": "q", "line_off": "q", "set_id_off": "q",
    "set_cum": "d", "set_prop": "d", "hash_key": "q", "hash_pos": "q", "hash_bucket": "q"}
_BLOBS = ("bodies", "lines", "segment_ids", "set_ids", "etags", "meta")
_CHUNK = 1 << 16


class IndexFileError(Exception):
    """An index file that cannot serve (missing, cut short, damaged, another plan's), or a
    plan that cannot be indexed; `str()` says which, in words."""


def file_name(version: int) -> str:
    return f"v{version}{SUFFIX}"


def segment_key(raw: bytes) -> int:
    """A segment id's key in the hash table: its CRC-32 (ids with the same key are told
    apart by the id itself)."""
    return zlib.crc32(raw)


# -- what an index is built from -----------------------------------------------------------


@dataclass(frozen=True)
class IndexSource:
    """A published version: its plan's offers and sets (Arrow tables in the columns of
    `api.store.columnar`) and what the answers take from its catalog."""

    version: int
    plan_id: str
    catalog: ServingCatalog
    offers: pa.Table
    sets: pa.Table | None

    @classmethod
    def of(cls, publication: Publication) -> IndexSource:
        return cls(publication.version, publication.plan_id, publication.catalog.serving(),
                   publication.plan.offers_table(), publication.plan.sets_table())


def build_version(store: Store, version: int, folder: Path, plan_id: str | None = None) -> Path:
    """Build the file of a published version into `folder` (an existing file is replaced)."""
    publication = store.publication(version)
    if publication is None:
        raise IndexFileError(f"publication {version}: must exist in the store, got none")
    if plan_id is not None and publication.plan_id != plan_id:
        raise IndexFileError(f"publication {version}: must be plan {plan_id}, got "
                             f"{publication.plan_id}")
    return write_index(IndexSource.of(publication), folder / file_name(version))


# -- building ------------------------------------------------------------------------------


def _codes(values: pa.ChunkedArray | pa.Array, known: pa.Array) -> np.ndarray:
    """Each value's position in `known`, -1 where it is not there (or null)."""
    found = pc.index_in(values, value_set=known)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _factorize(columns: list[np.ndarray]) -> np.ndarray:
    """A code per row, equal for rows equal in every column (hashing, pairwise: a combined
    code never exceeds rows x rows)."""
    code = pd.factorize(columns[0])[0].astype(np.int64)
    for column in columns[1:]:
        other = pd.factorize(column)[0].astype(np.int64)
        code = pd.factorize(code * (int(other.max(initial=-1)) + 2) + other + 1)[0].astype(
            np.int64)
    return code


def _bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class _Sets:
    """Every offer set of the index in file order (by segment position, then the plan's
    order), with its members: variant codes in `members[start:end]`."""

    segment: np.ndarray
    ids: list[str]
    cum: np.ndarray
    prop: np.ndarray
    start: np.ndarray
    end: np.ndarray
    members: np.ndarray
    split: np.ndarray  # per segment
    first: np.ndarray  # per segment, n + 1


def _plan_sets(source: IndexSource, n: int, seg: np.ndarray, variant: np.ndarray,
               bundle: np.ndarray, discount: np.ndarray, perk: np.ndarray) -> _Sets:
    holdout = source.catalog.holdout_fraction
    order = np.argsort(seg, kind="stable")  # the segment's offers in the plan's order
    sorted_variants = variant[order]
    counts = np.bincount(seg, minlength=n)
    offer_start = np.r_[0, np.cumsum(counts)]
    split = np.zeros(n, dtype=bool)
    entry_seg = np.zeros(0, dtype=np.int64)
    entry_ids: list[str] = []
    weight = np.zeros(0)
    member_variants = np.zeros(0, dtype=np.int64)
    entry_members = np.zeros(0, dtype=np.int64)
    if source.sets is not None and source.sets.num_rows:
        t = source.sets
        entry = t.column("entry").to_numpy()
        heads = np.flatnonzero(np.r_[True, entry[1:] != entry[:-1]])
        row_seg = _codes(t.column("segment"), pa.array(source.catalog.segment_ids))
        if (row_seg < 0).any():
            bad = t.column("segment")[int(np.flatnonzero(row_seg < 0)[0])].as_py()
            raise IndexFileError(f"plan: offer_sets name segment {bad!r}, which its catalog "
                                 "does not have")
        entry_seg = row_seg[heads]
        entry_ids = t.column("set").take(pa.array(heads)).to_pylist()
        weight = t.column("weight").to_numpy()[heads].astype(np.float64)
        member = ~np.asarray(t.column("bundle").is_null().to_numpy(zero_copy_only=False))
        entry_members = np.bincount(np.searchsorted(heads, np.flatnonzero(member), "right") - 1,
                                    minlength=len(heads))
        member_variants = _set_members(source, t, member, row_seg, seg, variant, bundle,
                                       discount, perk)
        split[entry_seg] = True
    plain = np.flatnonzero(~split)
    set_seg = np.r_[plain, entry_seg]
    within = np.r_[np.zeros(len(plain), dtype=np.int64), np.arange(len(entry_seg))]
    file_order = np.lexsort((within, set_seg))
    member_start = np.r_[offer_start[plain],
                         len(sorted_variants) + np.r_[0, np.cumsum(entry_members)][:-1]]
    member_end = np.r_[offer_start[plain + 1], member_start[len(plain):] + entry_members]
    ids = [IMPLICIT_SET] * len(plain) + entry_ids
    set_seg, member_start, member_end = (set_seg[file_order], member_start[file_order],
                                         member_end[file_order])
    ids = [ids[i] for i in file_order.tolist()]
    raw_weight = np.r_[np.ones(len(plain)), weight][file_order]
    first = np.r_[0, np.cumsum(np.bincount(set_seg, minlength=n))]
    cum, prop = _cumulative(set_seg, raw_weight, first, split, holdout)
    return _Sets(set_seg, ids, cum, prop, member_start, member_end,
                 np.r_[sorted_variants, member_variants], split, first)


def _set_members(source: IndexSource, t: pa.Table, member: np.ndarray, row_seg: np.ndarray,
                 seg: np.ndarray, variant: np.ndarray, bundle: np.ndarray, discount: np.ndarray,
                 perk: np.ndarray) -> np.ndarray:
    """Each set offer's variant: the plan's offer of its segment with the same bundle,
    discount (to 9 decimals) and perk, as the storefront has always matched them."""
    bundles = pa.array([b for b, _, _, _ in source.catalog.bundles])
    rows = np.flatnonzero(member)
    m_bundle = _codes(t.column("bundle").take(pa.array(rows)), bundles)
    perks = pc.unique(pc.drop_null(pa.concat_arrays([
        pc.drop_null(source.offers.column("perk")).combine_chunks().cast(pa.string()),
        pc.drop_null(t.column("perk")).combine_chunks().cast(pa.string())])))
    m_perk = _codes(t.column("perk").take(pa.array(rows)), perks)
    o_perk = _codes(source.offers.column("perk"), perks)
    m_disc = t.column("discount").to_numpy(zero_copy_only=False)[rows].astype(np.float64)
    values, inverse = np.unique(np.r_[discount, m_disc], return_inverse=True)
    rounded = _bits(np.array([round(float(v), 9) for v in values.tolist()]))[inverse]
    key = _factorize([np.r_[seg, row_seg[rows]], np.r_[bundle, m_bundle], rounded,
                      np.r_[o_perk, m_perk]])
    lookup = np.full(int(key.max()) + 1 if len(key) else 0, -1, dtype=np.int64)
    lookup[key[:len(seg)]] = np.arange(len(seg))
    found = lookup[key[len(seg):]]
    if (found < 0).any():
        i = int(rows[int(np.flatnonzero(found < 0)[0])])
        raise IndexFileError(f"plan: offer_sets rows must offer one of their segment's offers, "
                             f"got {t.column('bundle')[i].as_py()!r} at discount "
                             f"{t.column('discount')[i].as_py()!r} for segment "
                             f"{t.column('segment')[i].as_py()!r}")
    return variant[found]


def _cumulative(set_seg: np.ndarray, weight: np.ndarray, first: np.ndarray, split: np.ndarray,
                holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Per set: its segment's running weight over the total, the last 1.0, and the
    propensity (1 - holdout) x (cumulative minus the one before), summed in the plan's order
    as the storefront always did (each segment's additions in sequence)."""
    k = np.arange(len(set_seg)) - first[set_seg]
    running = np.zeros(len(set_seg))
    total = np.zeros(len(first) - 1)
    for kk in range(int(k.max()) + 1 if len(k) else 0):
        at = np.flatnonzero(k == kk)
        total[set_seg[at]] = total[set_seg[at]] + weight[at]
        running[at] = total[set_seg[at]]
    cum = running / total[set_seg]
    last = np.r_[set_seg[1:] != set_seg[:-1], True]
    cum[last] = 1.0
    before = np.where(k == 0, 0.0, np.r_[0.0, cum[:-1]])
    spread = np.where(split[set_seg], cum - before, 1.0)
    return np.where(split[set_seg], cum, 1.0), (1.0 - holdout) * spread


class _Writer:
    """Appends to the file being built, 8-byte aligned sections, with a running CRC-32."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.crc, self.at = out, 0, PREFIX_BYTES
        out.write(b"\0" * PREFIX_BYTES)
        self.sections: dict[str, list[int]] = {}

    def write(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.at += len(data)

    def align(self) -> None:
        if self.at % 8:
            self.write(b"\0" * (8 - self.at % 8))

    def section(self, name: str, parts: Iterable[bytes]) -> None:
        self.align()
        start = self.at
        for part in parts:
            self.write(part)
        self.sections[name] = [start, self.at - start]


def write_index(source: IndexSource, path: Path) -> Path:
    """Build `path` for `source`: written beside it under a temporary name, flushed to disk,
    then renamed over it (a reader never sees a part of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}.tmp")
    side = tmp.with_suffix(".lines")
    try:
        with open(tmp, "wb") as out, open(side, "w+b") as lines:
            _write(source, out, lines)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, path)
        _sync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
        side.unlink(missing_ok=True)
    return path


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(source: IndexSource, out: IO[bytes], side: IO[bytes]) -> None:
    catalog, version = source.catalog, source.version
    n = len(catalog.segment_ids)
    holdout = catalog.holdout_fraction
    held_out = holdout > 0
    offers = source.offers
    seg = _codes(offers.column("segment"), pa.array(catalog.segment_ids, type=pa.string()))
    bundle_ids = pa.array([b for b, _, _, _ in catalog.bundles], type=pa.string())
    bundle = _codes(offers.column("bundle"), bundle_ids)
    for name, codes in (("segment", seg), ("bundle", bundle)):
        if (codes < 0).any():
            bad = offers.column(name)[int(np.flatnonzero(codes < 0)[0])].as_py()
            raise IndexFileError(f"plan: offers name {name} {bad!r}, which its catalog does "
                                 "not have")
    perk_codes = pc.dictionary_encode(offers.column("perk").combine_chunks())
    perk = np.asarray(perk_codes.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                      dtype=np.int64)
    numbers = [offers.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
               for c in ("discount", "reference_price", "price")]
    variant = _factorize([bundle, *map(_bits, numbers), perk])
    first_rows = np.unique(variant, return_index=True)[1]  # codes count from 0 by first use
    fragments, cells, variant_bundle = _variants(catalog, first_rows, bundle, numbers,
                                                 perk_codes.dictionary.to_pylist(), perk)
    sets = _plan_sets(source, n, seg, variant, bundle, numbers[0], perk)
    m = len(sets.ids)
    writer = _Writer(out)
    writer.align()
    bodies_start = writer.at
    body_ends: list[int] = []
    core_lens: list[int] = []
    line_ends: list[int] = []
    etags: list[bytes] = []
    bodies: list[bytes] = []
    lines: list[bytes] = []
    head = b',"plan_version":%d,"holdout":false,"offers":[' % version
    no_offers = (b'],"reason":' + _dumps(NO_OFFERS), b'],"reason":' + _dumps(EMPTY_SET))
    with_offers = b'],"reason":null'
    line_head, holdout_json = b"[%d," % version, _dumps(holdout)
    tokens: dict[float, tuple[bytes, bytes]] = {}  # propensity -> in a token, in a line
    set_json = {i: encode_basestring_ascii(i).encode() for i in set(sets.ids)}
    members, starts, ends = sets.members.tolist(), sets.start.tolist(), sets.end.tolist()
    prop_list, first, split = sets.prop.tolist(), sets.first.tolist(), sets.split.tolist()
    ids, sha1, join = sets.ids, hashlib.sha1, b"".join
    body_at = line_at = 0
    for i, segment_id in enumerate(catalog.segment_ids):
        segment_json = encode_basestring_ascii(segment_id).encode()
        a, b = first[i], first[i + 1]
        is_split = split[i]
        ways = (b',"assignment":"segment"' if b - a == 1 else b',"assignment":"customer"') \
            if is_split else b""
        opening, line_opening = b'{"segment":' + segment_json + head, \
            line_head + segment_json + b","
        held: dict[bytes, None] = {}
        for j in range(a, b):
            vs = members[starts[j]:ends[j]]
            p = prop_list[j]
            if p not in tokens:
                tokens[p] = (format(p, ".6g").encode(), _dumps(p))
            shown, in_line = tokens[p]
            sid = set_json[ids[j]]
            core = join((opening, b",".join([fragments[v] for v in vs]),
                         with_offers if vs else no_offers[is_split]))
            body = join((core, b',"set":' + sid + ways if is_split else b"",
                         b',"exposure":"%d.%d.%d.0.' % (version, i, j - a), shown, b'"}'))
            etags.append(sha1(body).digest()[:10])
            core_lens.append(len(core))
            body_at += len(body)
            body_ends.append(body_at)
            bodies.append(body)
            line = join((line_opening, sid, b",", in_line, b",[",
                         b",".join([cells[v] for v in vs]), b"]]\n"))
            line_at += len(line)
            line_ends.append(line_at)
            lines.append(line)
            if held_out:
                held.update(dict.fromkeys([variant_bundle[v] for v in vs]))
        if held_out:
            line = join((line_opening, b'"",', holdout_json, b",[", b",".join(held), b"]]\n"))
            line_at += len(line)
            line_ends.append(line_at)
            lines.append(line)
        if len(bodies) >= 4096:
            writer.write(join(bodies))
            side.write(join(lines))
            bodies.clear()
            lines.clear()
    writer.write(join(bodies))
    side.write(join(lines))
    writer.sections["bodies"] = [bodies_start, writer.at - bodies_start]
    side.seek(0)
    writer.section("lines", iter(lambda: side.read(1 << 20), b""))
    raw_ids = [s.encode() for s in catalog.segment_ids]
    writer.section("segment_ids", [b"".join(raw_ids)])
    set_raw = [s.encode() for s in sets.ids]
    writer.section("set_ids", [b"".join(set_raw)])
    writer.section("etags", [b"".join(etags)])
    key = np.fromiter(map(segment_key, raw_ids), dtype=np.int64, count=n)
    order = np.argsort(key, kind="stable")
    bits = max(1, min(20, n.bit_length()))
    bucket = np.searchsorted(key[order] >> (32 - bits), np.arange((1 << bits) + 1))
    arrays: dict[str, Any] = {
        "seg_id_off": np.r_[0, np.cumsum(np.fromiter(map(len, raw_ids), np.int64, n))],
        "seg_first": sets.first, "seg_split": sets.split,
        "set_body_off": np.r_[0, body_ends], "set_core_len": core_lens,
        "line_off": np.r_[0, line_ends],
        "set_id_off": np.r_[0, np.cumsum(np.fromiter(map(len, set_raw), np.int64, m))],
        "set_cum": sets.cum, "set_prop": sets.prop, "hash_key": key[order],
        "hash_pos": order, "hash_bucket": bucket}
    for name, code in _ARRAYS.items():
        dtype = {"q": "<i8", "d": "<f8"}[code]
        writer.section(name, [np.ascontiguousarray(arrays[name], dtype=dtype).tobytes()])
    meta = {"format": FORMAT, "version": version, "plan_id": source.plan_id,
            "holdout_fraction": holdout, "segments": n, "sets": m, "bucket_bits": bits,
            "holdout_lines": held_out,
            "bundles": {b: [item for item, _ in held] for b, _, _, held in catalog.bundles},
            "sections": writer.sections}
    writer.align()
    meta_at = writer.at
    encoded = json.dumps(meta).encode()
    writer.write(encoded)
    out.seek(0)
    out.write(PREFIX.pack(MAGIC, FORMAT, writer.crc, meta_at, len(encoded), writer.at))
    out.seek(writer.at)


def _variants(catalog: ServingCatalog, first_rows: np.ndarray, bundle: np.ndarray,
              numbers: list[np.ndarray], perk_names: list[str | None], perk: np.ndarray
              ) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Per distinct offer (bundle, discount, reference price, price, perk): its JSON in an
    answer, its cell in a journal line, and its bundle's cell in a holdout line."""
    fragments, cells, held = [], [], []
    discount, reference, price = (x[first_rows].tolist() for x in numbers)
    for k, b in enumerate(bundle[first_rows].tolist()):
        bundle_id, name, kind, lines = catalog.bundles[b]
        p = int(perk[first_rows[k]])
        perk_id = None if p < 0 else perk_names[p]
        d, ref, pr = discount[k], reference[k], price[k]
        fragments.append(_dumps({
            "bundle": bundle_id, "name": name, "kind": kind,
            "items": [{"item": item, "name": catalog.item_names.get(item), "qty": qty}
                      for item, qty in lines],
            "reference_price": ref, "price": pr, "discount": d,
            "discount_percent": round(100 * d, 2), "savings": round(ref - pr, 2),
            "perk": perk_id}))
        cells.append(_dumps([bundle_id, 1, float(d), perk_id or ""]))
        held.append(_dumps([bundle_id, 0, 0.0, ""]))
    return fragments, cells, held


# -- reading -------------------------------------------------------------------------------


class IndexFile:
    """One version's file, mapped read-only. Readers never copy more than the bytes of one
    answer; the mapping lives as long as any index object refers to it."""

    def __init__(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise IndexFileError(f"{path.name}: must exist, got no such file") from None
        try:
            size = os.fstat(fd).st_size
            if size < PREFIX_BYTES:
                raise IndexFileError(f"{path.name}: must be a whole index file, got {size} "
                                     "bytes (cut short)")
            self._map = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        view = memoryview(self._map)
        magic, fmt, crc, meta_at, meta_size, total = PREFIX.unpack_from(view)
        if magic != MAGIC or fmt != FORMAT:
            raise IndexFileError(f"{path.name}: must be an index file of format {FORMAT}, got "
                                 "another kind of file")
        if total != size or meta_at < PREFIX_BYTES or meta_at + meta_size > size:
            raise IndexFileError(f"{path.name}: must hold {total} bytes, got {size} (cut short "
                                 "or damaged)")
        if zlib.crc32(view[PREFIX_BYTES:]) != crc:
            raise IndexFileError(f"{path.name}: damaged (its checksum does not match)")
        try:  # the prefix's own fields are outside the checksum
            meta = json.loads(bytes(view[meta_at:meta_at + meta_size]))
            sections = meta["sections"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFileError(f"{path.name}: damaged (its header cannot be read)") from exc
        self.path = path
        self.version: int = int(meta["version"])
        self.plan_id: str = str(meta["plan_id"])
        self.holdout_fraction: float = float(meta["holdout_fraction"])
        self.segments: int = int(meta["segments"])
        self.bundle_items = {b: frozenset(items) for b, items in meta["bundles"].items()}
        self._shift = 32 - int(meta["bucket_bits"])

        def part(name: str) -> memoryview:
            at, length = sections[name]
            return view[at:at + length]

        self._bodies_at, self._lines_at = sections["bodies"][0], sections["lines"][0]
        self._segment_ids, self._set_ids, self._etags = (part("segment_ids"), part("set_ids"),
                                                         part("etags"))
        ints = {name: part(name).cast("q") for name, code in _ARRAYS.items() if code == "q"}
        self._seg_id_off, self._seg_first = ints["seg_id_off"], ints["seg_first"]
        self._seg_split = ints["seg_split"]
        self._body_off, self._core_len = ints["set_body_off"], ints["set_core_len"]
        self._line_off, self._set_id_off = ints["line_off"], ints["set_id_off"]
        self._cum, self._prop = part("set_cum").cast("d"), part("set_prop").cast("d")
        self._key, self._key_pos = ints["hash_key"], ints["hash_pos"]
        self._bucket = ints["hash_bucket"]
        self._held = 1 if meta["holdout_lines"] else 0

    def position(self, segment: str) -> int:
        """The segment's position in its catalog, -1 when the plan's catalog has no such id."""
        try:
            raw = segment.encode()
        except UnicodeEncodeError:  # a lone surrogate: no catalog id holds one
            return -1
        key = zlib.crc32(raw)
        bucket = key >> self._shift
        keys, at, ids = self._key, self._seg_id_off, self._segment_ids
        for i in range(self._bucket[bucket], self._bucket[bucket + 1]):
            if keys[i] == key:
                pos = self._key_pos[i]
                if ids[at[pos]:at[pos + 1]] == raw:
                    return pos
        return -1

    def segment_id(self, pos: int) -> str:
        return bytes(self._segment_ids[self._seg_id_off[pos]:self._seg_id_off[pos + 1]]).decode()

    def sets_of(self, pos: int) -> tuple[int, int, bool]:
        """The segment's first set, its number of sets, and whether its plan splits it."""
        first = self._seg_first[pos]
        return first, self._seg_first[pos + 1] - first, bool(self._seg_split[pos])

    def pick(self, first: int, count: int, u: float) -> int:
        """The set (0-based, within the segment) whose cumulative-weight interval holds u."""
        return min(bisect.bisect_right(self._cum, u, first, first + count) - first, count - 1)

    def stored(self, pos: int, j: int) -> tuple[bytes, str, bytes]:
        """Set j's answer as stored (a recorded view, assigned as its segment's first way),
        its ETag's digits and its journal line: the common view, in one call."""
        at, body_off, line_off = self._bodies_at, self._body_off, self._line_off
        k, lines = j + pos * self._held, self._lines_at
        return (self._map[at + body_off[j]:at + body_off[j + 1]],
                self._etags[10 * j:10 * j + 10].hex(),
                self._map[lines + line_off[k]:lines + line_off[k + 1]])

    def core(self, j: int) -> bytes:
        at = self._bodies_at + self._body_off[j]
        return self._map[at:at + self._core_len[j]]

    def line(self, pos: int, j: int) -> bytes:
        """The journal line of a recorded view of set j (of the segment at `pos`)."""
        k, at = j + pos * self._held, self._lines_at
        return self._map[at + self._line_off[k]:at + self._line_off[k + 1]]

    def holdout_line(self, pos: int) -> bytes:
        """The journal line of a view of the segment held out (empty without a holdout)."""
        if not self._held:
            return b""
        k, at = self._seg_first[pos + 1] + pos, self._lines_at
        return self._map[at + self._line_off[k]:at + self._line_off[k + 1]]

    def offers(self, j: int) -> tuple[dict[str, Any], ...]:
        """Set j's offers as the answer holds them (read back from its core)."""
        offers: list[dict[str, Any]] = json.loads(self.core(j) + b"}")["offers"]
        return tuple(offers)

    def set_id(self, j: int) -> str:
        return bytes(self._set_ids[self._set_id_off[j]:self._set_id_off[j + 1]]).decode()

    def propensity(self, j: int) -> float:
        return float(self._prop[j])


def open_index(path: Path, plan_id: str | None = None) -> IndexFile:
    """The file at `path`, checked whole (and of `plan_id`, when given)."""
    found = IndexFile(path)
    if plan_id is not None and found.plan_id != plan_id:
        raise IndexFileError(f"{path.name}: must index plan {plan_id}, got plan {found.plan_id} "
                             "(a file of another store)")
    return found


# -- the builder process -------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """`python -m api.index_file FOLDER VERSION PLAN_ID`: exit 0 once the file is in place,
    else 1 with one line on stderr saying why."""
    folder, version, plan_id = Path(argv[0]), int(argv[1]), argv[2]
    os.nice(int(os.environ.get("OFFEROPT_INDEX_NICENESS", "0")))
    try:
        store = Store(make_engine(os.environ["OFFEROPT_DATABASE_URL"], create_folder=False))
        started = time.perf_counter()
        path = build_version(store, version, folder, plan_id)
        print(f"built {path.name} in {time.perf_counter() - started:.1f} s, peak "
              f"{_peak_mib():.0f} MiB", file=sys.stderr)
        return 0
    except MemoryError:
        print(f"out of memory while indexing version {version}", file=sys.stderr)
    except OSError as exc:
        print(f"the index of version {version} could not be written: {exc}", file=sys.stderr)
    except Exception as exc:  # one line, never a traceback
        print(f"version {version} could not be indexed: {exc}", file=sys.stderr)
    return 1


def _peak_mib() -> float:
    """This process's peak resident memory since its exec (`VmHWM`: `ru_maxrss` would count
    the parent's, from before the exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
