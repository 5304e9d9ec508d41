"""The storefront call: offers for a segment, from a memory-mapped index of the active plan.

Each published version is indexed once per host into a read-only file (`api.index_file`):
per offer set the answer's bytes, its ETag and its journal line, and a hash table of the
segment ids. Every web worker maps the file, so the index's memory is the operating
system's page cache, shared by all workers, and a worker holds a few small objects per
version. A request is a lookup of the segment in the table, a slice of the mapping, the
holdout draw and the journal write; answers the file does not hold whole (a cart that
drops offers, an anonymous view while a holdout is drawn, a held-out customer) are
composed from its pieces.

Each worker reads the store's active version on every request (one single-row query; at
most once per `INDEX_POLL_SECONDS` when that is set). When it moved, the worker opens the
new version's file on a background thread, building it first if no worker of the host has
(under a file lock, on the thread for a small plan, in a child process for a large one),
and swaps one reference: a request sees one complete plan, never a half-built one, and
only forward: a worker never answers an older plan version than one it has answered. A
version that cannot be indexed (out of memory, a time limit, a damaged plan) is logged in
one line and the worker keeps serving the plan it has.

Split traffic (spec section 7): when the plan has `offer_sets`, a view of a segment with
several sets is served exactly one set, chosen by a stable hash of (salt, segment,
customer id) against the sets' cumulative weights. The salt lives in the store and
changes only when a merchandiser rotates it (`POST /v1/traffic-salt/rotate`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from flask import Blueprint, Response, current_app, g, request

from api import index_file
from api.auth import MERCHANDISER, STOREFRONT, requires
from api.exposure import (
    HELD_OUT,
    HOLDOUT_SET,
    RECORDED,
    UNRECORDED,
    Exposure,
    counted_cells,
    token,
)
from api.index_file import NO_OFFERS, IndexFile, IndexFileError, file_name, open_index
from api.openapi import Param, doc
from api.recording import Recorder
from api.schemas import Offers, SaltRotation
from api.store import Store

offers_api = Blueprint("offers", __name__)
CACHE_SECONDS = 30
PATH = "/v1/offers"
BUILD_WAIT_SECONDS = 0.5  # how long a request waits for a new version's index
FIRST_LOAD_SECONDS = 60.0  # how long a request waits for a worker's first index
RECENT_VERSIONS = 3  # earlier indexes a worker keeps open to attribute late purchases
KEEP_FILES = RECENT_VERSIONS + 1  # index files kept on disk: the newest versions
RETRY_SECONDS = 30.0  # after a version could not be indexed, the next attempt
BUILD_NICENESS = 10  # a child process building an index yields the CPU to requests
log = logging.getLogger(__name__)
CUSTOMER, REQUEST, SEGMENT = "customer", "request", "segment"  # how a view got its set
CART = "every offer holds an item already in the cart"


def uniform(salt: str, segment: str, key: str) -> float:
    """A stable draw in [0, 1): the first 64 bits of SHA-256 over (salt, segment, key)."""
    digest = hashlib.sha256(f"{salt}\x1f{segment}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Served(NamedTuple):
    """What a recorded view exposed: its journal line (`Exposure.line`)."""

    line: bytes

    @property
    def shown(self) -> bool:
        """Whether the view showed (or held out) any cell: an empty one is not journaled."""
        return bool(self.line) and not self.line.endswith(b",[]]\n")


class ActiveIndex:
    """One published version as the storefront serves it, over its mapped index file (None:
    no plan is published), with the salts read with it."""

    def __init__(self, file: IndexFile | None, salt: str = "", holdout_salt: str = "") -> None:
        self.file = file
        self.version = None if file is None else file.version
        self.plan_id = None if file is None else file.plan_id
        self.holdout_fraction = 0.0 if file is None else file.holdout_fraction
        self.bundle_items: dict[str, frozenset[str]] = {} if file is None else file.bundle_items
        self.salt, self.holdout_salt = salt, holdout_salt

    @classmethod
    def empty(cls) -> ActiveIndex:
        return cls(None)

    def with_salts(self, salt: str, holdout_salt: str) -> ActiveIndex:
        """The same version (the same mapping) with other salts: no rebuild."""
        return ActiveIndex(self.file, salt, holdout_salt)

    def _position(self, segment: str) -> int:
        return -1 if self.file is None else self.file.position(segment)

    def has_segment(self, segment: str) -> bool:
        return self._position(segment) >= 0

    @property
    def segment_count(self) -> int:
        return 0 if self.file is None else self.file.segments

    def segment_at(self, pos: int) -> str:
        """The segment at a catalog position (an exposure token names it so)."""
        assert self.file is not None
        return self.file.segment_id(pos)

    def set_count(self, segment: str) -> int:
        """How many offer sets the segment's views are split between (0: no such segment)."""
        pos = self._position(segment)
        return 0 if pos < 0 or self.file is None else self.file.sets_of(pos)[1]

    def set_ids(self, segment: str) -> tuple[str, ...]:
        pos = self._position(segment)
        if pos < 0 or self.file is None:
            return ()
        first, count, _ = self.file.sets_of(pos)
        return tuple(self.file.set_id(j) for j in range(first, first + count))

    def is_split(self, segment: str) -> bool:
        """Whether the plan serves the segment by offer sets (`offer_sets` name it)."""
        pos = self._position(segment)
        return pos >= 0 and self.file is not None and self.file.sets_of(pos)[2]

    def in_holdout(self, customer_id: str) -> bool:
        """Stable per customer while the holdout salt stays: the control group does not
        change with the plan (spec section 9)."""
        if self.holdout_fraction <= 0:
            return False
        digest = hashlib.sha256(f"{self.holdout_salt}\x1f{customer_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.holdout_fraction

    def choose(self, segment: str, customer_id: str | None,
               request_key: str | None = None) -> tuple[int, str]:
        """A segment's set for one view, and how it was assigned: by the customer id (stable
        while the plan's sets and the salt stay), else by `request_key` (stable for that
        key), else by a random draw; a segment with one set serves it to every view."""
        pos = self._position(segment)
        if pos < 0 or self.file is None:
            raise KeyError(segment)
        first, count, _ = self.file.sets_of(pos)
        return self._choose(first, count, segment, customer_id, request_key)

    def _choose(self, first: int, count: int, segment: str, customer_id: str | None,
                request_key: str | None) -> tuple[int, str]:
        assert self.file is not None
        if count == 1:
            return 0, SEGMENT
        if customer_id is not None:
            return self.file.pick(first, count, uniform(self.salt, segment, "c:" + customer_id)), \
                CUSTOMER
        if request_key is not None:
            return self.file.pick(first, count, uniform(self.salt, segment, "r:" + request_key)), \
                REQUEST
        return self.file.pick(first, count, random.random()), REQUEST

    def answer(self, segment: str, customer_id: str | None, excluded: frozenset[str],
               request_key: str | None = None) -> tuple[bytes, str, Served | None]:
        """The response body of one view, its (unquoted) ETag, and, for a recorded view,
        what it exposed."""
        f = self.file
        if f is None:
            return (*_render(None, segment, (), False, "no plan is published yet"), None)
        version, pos = f.version, f.position(segment)
        if pos < 0:
            return (*_render(version, segment, (), False, "unknown segment"), None)
        held = self.holdout_fraction
        if customer_id is not None and self.in_holdout(customer_id):
            return (*_render(version, segment, (), True,
                             token=token(version, pos, 0, HELD_OUT, held)),
                    Served(f.holdout_line(pos)))
        first, count, split = f.sets_of(pos)
        k, how = self._choose(first, count, segment, customer_id, request_key) if split \
            else (0, SEGMENT)
        j = first + k
        recorded = customer_id is not None or held <= 0
        if recorded and not excluded and how != REQUEST:  # the answer as the file holds it
            body, digits, line = f.stored(pos, j)
            return body, f"{version}-{digits}", Served(line)
        served = {"set": f.set_id(j), "assignment": how} if split else None
        mask: int | None = None
        kept: tuple[dict[str, Any], ...] = ()
        if excluded:
            offers = f.offers(j)
            kept = tuple(o for o in offers if not self.bundle_items[o["bundle"]] & excluded)
            if len(kept) < len(offers):
                mask = sum(1 << i for i, o in enumerate(offers) if o in kept)
        propensity = f.propensity(j) if recorded else f.propensity(j) / (1.0 - held)
        shown = token(version, pos, k, RECORDED if recorded else UNRECORDED, propensity, mask)
        if mask is None:  # every offer of the set: its core, with this view's tail
            body = f.core(j) + _tail(served, shown)
            etag = f"{version}-{hashlib.sha1(body).hexdigest()[:20]}"
        else:
            body, etag = _render(version, segment, kept, False, None if kept else CART, served,
                                 shown)
        if not recorded:  # an anonymous view while a holdout is drawn: not in the experiment
            return body, etag, None
        line = f.line(pos, j)
        if mask is not None:  # exclude_items dropped offers: only those shown are recorded
            _, _, set_id, set_propensity, cells = counted_cells(line)
            line = Exposure.of(version, segment, set_id, set_propensity,
                               (c for i, c in enumerate(cells) if mask >> i & 1)).line
        return body, etag, Served(line)

    def exposure(self, segment: str, k: int | None) -> Exposure:
        """What a view of `segment` served set k (None: held out) exposed."""
        f = self.file
        pos = self._position(segment)
        assert f is not None and pos >= 0
        line = f.holdout_line(pos) if k is None else f.line(pos, f.sets_of(pos)[0] + k)
        if not line:  # no holdout is drawn: nothing could have been held out
            return Exposure.of(f.version, segment, HOLDOUT_SET, self.holdout_fraction, ())
        version, named, set_id, propensity, cells = counted_cells(line)
        return Exposure(version, named, set_id, propensity, cells, line)

    def propensity(self, segment: str, k: int | None, kind: int = RECORDED) -> float:
        """The probability that a view of this kind was served set k (None: held out); an
        unrecorded view's is its set's weight alone (it could not have been held out)."""
        f = self.file
        pos = self._position(segment)
        assert f is not None and pos >= 0
        held = self.holdout_fraction if k is None else f.propensity(f.sets_of(pos)[0] + k)
        return held / (1.0 - self.holdout_fraction) if kind == UNRECORDED else held


def _render(version: int | None, segment: str, offers: tuple[dict[str, Any], ...], holdout: bool,
            reason: str | None = None, served: dict[str, str] | None = None,
            token: str | None = None) -> tuple[bytes, str]:
    """An answer the index file does not hold whole, and its (unquoted) ETag; `served` names
    a split plan's set and `token` is the view's exposure token. The file's answers are
    these bytes too (tests/service/test_index_file.py)."""
    if reason is None and not offers:
        reason = "holdout" if holdout else NO_OFFERS
    answer = {"segment": segment, "plan_version": version, "holdout": holdout,
              "offers": list(offers), "reason": reason, **(served or {})}
    if token is not None:
        answer["exposure"] = token
    body = json.dumps(answer, separators=(",", ":")).encode()
    return body, f"{version}-{hashlib.sha1(body).hexdigest()[:20]}"


def _tail(served: dict[str, str] | None, shown: str) -> bytes:
    """What follows a set's core in an answer: the set served, and the view's token."""
    parts = [f',"set":{json.dumps(served["set"])},"assignment":"{served["assignment"]}"'] \
        if served else []
    return "".join([*parts, f',"exposure":{json.dumps(shown)}}}']).encode()


class IndexBuildFailed(Exception):
    """A version that could not be indexed; `str()` says why, in one line."""


class IndexHolder:
    """Per process: the current index, moved forward when the store's active version moves.

    Every request (or one per `poll_seconds`, when set) reads the store's active version:
    one single-row query. When it moved, the new version's file is opened on a background
    thread (built first, when no worker of the host has) while requests keep the old
    index; the request that noticed waits at most BUILD_WAIT_SECONDS for the new one (every
    request of a worker with none yet, FIRST_LOAD_SECONDS): a plan whose file exists, or
    that indexes in that time, is served by the first request after its publication; a
    larger one as soon as it is built, the others answering from the old one meanwhile. The
    index only ever moves forward: a worker never answers an older version than one it has
    answered. A version that cannot be indexed is logged once per RETRY_SECONDS, and the
    worker keeps the plan it serves (a worker that has none yet serves the newest earlier
    version whose file it finds).

    Files live in `folder` (`OFFEROPT_INDEX_DIR`), one per version; the newest KEEP_FILES
    are kept. A plan of at most `in_process_offers` offers is indexed on the worker's
    thread; a larger one by a child process (`python -m api.index_file`, niced) that has
    `build_seconds` to finish.
    """

    def __init__(self, store: Store, poll_seconds: float, folder: Path,
                 database_url: str | None = None, in_process_offers: int = 200_000,
                 build_seconds: float = 900.0) -> None:
        self.store, self.poll_seconds, self.folder = store, poll_seconds, folder
        self.database_url, self.in_process_offers = database_url, in_process_offers
        self.build_seconds = build_seconds
        self.index = ActiveIndex.empty()
        self._checked = -float("inf")
        self._expired = 0  # how many times expire() was called
        self._lock = threading.Lock()
        self._building: threading.Event | None = None  # set when the running build ends
        self._failed: dict[int, float] = {}  # version -> when it may be tried again
        self.recent: dict[int, ActiveIndex] = {}  # earlier versions, for purchase attribution

    @classmethod
    def configured(cls, store: Store, config: Any) -> IndexHolder:
        return cls(store, config["INDEX_POLL_SECONDS"], Path(config["INDEX_DIR"]),
                   config["DATABASE_URL"], config["INDEX_IN_PROCESS_OFFERS"],
                   config["INDEX_BUILD_SECONDS"])

    def expire(self) -> None:
        """The next answer reads the store's active version, whatever the poll interval: this
        worker serves what it has just published, rolled back or rotated at once."""
        self._expired += 1
        self._checked = -float("inf")

    def current(self) -> ActiveIndex:
        now = time.monotonic()
        if now - self._checked >= self.poll_seconds:
            expired = self._expired
            self._refresh_if_moved()
            # only once read (a failed read is tried again at once), and not over an
            # expire() that came while this read was in flight
            if expired == self._expired:
                self._checked = now
        return self.index

    def _refresh_if_moved(self) -> None:
        try:
            active = self.store.serving()  # one indexed single-row read
        except Exception:  # the store blinked: keep serving the plan in memory, if any
            if self.index.version is None:
                raise
            log.warning("the store's active version could not be read", exc_info=True)
            return
        if active is None:
            return
        known = self.index.version
        if known is not None and active["version"] <= known:
            with self._lock:  # answers do not depend on the salts: no rebuild
                index = self.index
                if index.version == active["version"] and \
                        (index.salt, index.holdout_salt) != (active["salt"], active["holdout_salt"]):
                    self.index = index.with_salts(active["salt"], active["holdout_salt"])
            return
        if self._failed.get(active["version"], -float("inf")) > time.monotonic():
            return  # it failed a moment ago: the plan in memory stays
        with self._lock:
            done, start = self._building, self._building is None
            if done is None:
                done = self._building = threading.Event()
        if start:
            threading.Thread(target=self._build, args=(done, active), name="offeropt-index",
                             daemon=True).start()
        # a worker with nothing loaded yet waits for its first index: "no plan is
        # published" would be wrong while one is. Otherwise only the request that started
        # the swap waits a moment (a small plan is then served at once); the others answer
        # from the plan in memory while a large one is built.
        if known is None:
            done.wait(FIRST_LOAD_SECONDS)
        elif start:
            done.wait(BUILD_WAIT_SECONDS)

    def index_of(self, version: int) -> ActiveIndex | None:
        """The index of a published version: the current one, a recent one, or its file
        (built when missing): purchases may name a view served before the last publication."""
        if self.index.version == version:
            return self.index
        with self._lock:
            found = self.recent.pop(version, None)
            if found is not None:  # least recently used goes first
                self.recent[version] = found
                return found
        plan_id = self.store.published_plan_id(version)
        if plan_id is None:
            return None
        try:
            opened = ActiveIndex(self.file_of(version, plan_id), self.index.salt,
                                 self.index.holdout_salt)
        except IndexBuildFailed as exc:
            log.error("%s", exc)
            return None
        with self._lock:
            self._remember(opened)
        return opened

    def _remember(self, index: ActiveIndex) -> None:
        if index.version is not None:
            self.recent[index.version] = index
            while len(self.recent) > RECENT_VERSIONS:
                del self.recent[next(iter(self.recent))]

    def _build(self, done: threading.Event, active: dict[str, Any]) -> None:
        version = int(active["version"])
        try:
            built: ActiveIndex | None
            try:
                built = ActiveIndex(self.file_of(version, str(active["plan_id"])),
                                    active["salt"], active["holdout_salt"])
            except Exception as exc:  # a store or file error too: never the thread's death
                self._failed[version] = time.monotonic() + RETRY_SECONDS
                kept = self.index.version
                reason = exc if isinstance(exc, IndexBuildFailed) else \
                    f"version {version} could not be indexed: {type(exc).__name__}: {exc}"
                log.error("%s; %s", reason, f"still serving version {kept}" if kept is not None
                          else "no earlier version is served")
                built = self._fallback(version, active) if kept is None else None
            if built is None:
                return
            with self._lock:  # one reference swap, never to an older version
                if self.index.version is None or built.version is None or \
                        built.version >= self.index.version:
                    self._remember(self.index)
                    self.index = built
        finally:
            with self._lock:
                self._building = None
            done.set()

    def _fallback(self, failed: int, active: dict[str, Any]) -> ActiveIndex | None:
        """For a worker with no index yet, when the active version cannot be indexed: the
        newest earlier version whose file is on disk (the plan served before)."""
        versions = sorted((v for v in _file_versions(self.folder) if v < failed), reverse=True)
        for version in versions:
            plan_id = self.store.published_plan_id(version)
            try:
                found = open_index(self.folder / file_name(version), plan_id)
            except IndexFileError:
                continue
            log.warning("serving version %d, the newest earlier version indexed, until version "
                        "%d can be", version, failed)
            return ActiveIndex(found, active["salt"], active["holdout_salt"])
        return None

    def file_of(self, version: int, plan_id: str) -> IndexFile:
        """The version's file, opened and checked; built first when no worker of the host
        has (one build at a time per version, under a lock file); IndexBuildFailed says why
        it cannot be."""
        path = self.folder / file_name(version)
        try:
            return open_index(path, plan_id)
        except IndexFileError as exc:
            if path.exists():
                log.warning("%s: building it again", exc)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _locked(self.folder / f"v{version}.lock"):
                try:
                    return open_index(path, plan_id)  # another worker built it meanwhile
                except IndexFileError:
                    pass
                self._make(version, plan_id)
                found = open_index(path, plan_id)
        except IndexFileError as exc:
            raise IndexBuildFailed(f"the index of version {version} is unusable: {exc}") from None
        except OSError as exc:
            raise IndexBuildFailed(f"the index of version {version} could not be written in "
                                   f"{self.folder}: {exc}") from None
        _prune(self.folder, version)
        return found

    def _make(self, version: int, plan_id: str) -> None:
        started = time.perf_counter()
        if self.database_url is None or self.store.offer_count(plan_id) <= self.in_process_offers:
            try:
                index_file.build_version(self.store, version, self.folder, plan_id)
            except MemoryError:
                raise IndexBuildFailed(f"out of memory while indexing version {version}") from None
            except IndexFileError as exc:
                raise IndexBuildFailed(f"version {version} could not be indexed: {exc}") from None
            except OSError:
                raise
            except Exception as exc:
                log.debug("indexing version %d failed", version, exc_info=True)
                raise IndexBuildFailed(f"version {version} could not be indexed: "
                                       f"{type(exc).__name__}: {exc}") from None
        else:
            self._make_in_child(version, plan_id)
        log.info("indexed version %d in %.1f s", version, time.perf_counter() - started)

    def _make_in_child(self, version: int, plan_id: str) -> None:
        assert self.database_url is not None
        env = {**os.environ, "OFFEROPT_DATABASE_URL": self.database_url,
               "OFFEROPT_INDEX_NICENESS": str(BUILD_NICENESS)}
        child = subprocess.Popen(
            [sys.executable, "-m", "api.index_file", str(self.folder), str(version), plan_id],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        try:
            _, err = child.communicate(timeout=self.build_seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise IndexBuildFailed(f"indexing version {version} took longer than "
                                   f"{self.build_seconds:g} s (OFFEROPT_INDEX_BUILD_SECONDS): "
                                   "stopped") from None
        said = err.decode(errors="replace").strip().splitlines()
        if child.returncode < 0:
            signal_number = -child.returncode
            why = " (out of memory?)" if signal_number == 9 else ""
            raise IndexBuildFailed(f"the process indexing version {version} was killed by "
                                   f"signal {signal_number}{why}")
        if child.returncode != 0:
            raise IndexBuildFailed(said[-1] if said else
                                   f"indexing version {version} failed (exit code "
                                   f"{child.returncode})")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) while the block runs; the lock
    dies with the process."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _file_versions(folder: Path) -> list[int]:
    out = []
    for path in folder.glob(f"v*{index_file.SUFFIX}"):
        digits = path.name[1:-len(index_file.SUFFIX)]
        if digits.isdigit():
            out.append(int(digits))
    return out


def _prune(folder: Path, built: int) -> None:
    """Keep the newest KEEP_FILES versions' files (and `built`); delete older ones and the
    leftovers of builders that were killed. A worker still mapping a deleted file keeps
    its mapping."""
    keep = set(sorted(_file_versions(folder), reverse=True)[:KEEP_FILES]) | {built}
    for version in _file_versions(folder):
        if version not in keep:
            for name in (file_name(version), f"v{version}.lock"):
                (folder / name).unlink(missing_ok=True)
    stale = time.time() - 3600
    for path in folder.glob(f".v*{index_file.SUFFIX}.*"):  # .v7.idx.PID.TIME.tmp and .lines
        try:
            if path.stat().st_mtime < stale:
                path.unlink()
        except OSError:
            pass


@offers_api.get(PATH)
@doc("Offers for one page view, from the active plan", "storefront", {200: Offers, 304: "Not modified"},
     params=(Param("segment", "query", "the viewer's segment id", required=True),
             Param("customer_id", "query", "for the stable holdout and offer-set assignment"),
             Param("exclude_items", "query", "comma-separated items already in the cart"),
             Param("X-Request-Id", "header", "without customer_id: a split segment's set is "
                   "chosen by a hash of this id, else by a random draw"),
             Param("If-None-Match", "header", "an ETag from an earlier answer")))
@requires(STOREFRONT, MERCHANDISER)
def get_offers() -> Response:
    from api.problems import Problem

    args, extensions = request.args, current_app.extensions
    segment = args.get("segment", "")
    if not segment:
        raise Problem(400, "Bad Request", "segment: must be given, got nothing")
    index: ActiveIndex = extensions["offeropt.index"].current()
    customer = args.get("customer_id")
    cart = args.get("exclude_items")
    excluded = frozenset(i for i in cart.split(",") if i) if cart else frozenset()
    body, etag, exposed = index.answer(segment, customer, excluded,
                                       request.headers.get("X-Request-Id"))
    recorder: Recorder | None = extensions.get("offeropt.recorder")
    recorded = recorder is not None and exposed is not None
    # a HEAD or an empty answer shows nothing
    if recorder is not None and exposed is not None and exposed.shown and request.method == "GET":
        recorder.record(exposed.line)
    headers = answer_headers(index, segment, customer, etag, recorded)
    if "If-None-Match" in request.headers and request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    return Response(body, content_type="application/json", headers=headers)


def answer_headers(index: ActiveIndex, segment: str, customer: str | None, etag: str,
                   recorded: bool) -> dict[str, str]:
    """The caching headers of an answer (`api.storefront_path` sends the same)."""
    if recorded:  # every view must reach the service to be recorded: caches revalidate
        return {"ETag": f'"{etag}"', "Cache-Control": "private, no-cache"}
    # a shared cache must not hand one view's set to every anonymous view of a split segment
    split = index.set_count(segment) > 1
    scope = "private" if customer is not None or split else "public"
    return {"ETag": f'"{etag}"', "Cache-Control": f"{scope}, max-age={CACHE_SECONDS}"}


@offers_api.post("/v1/traffic-salt/rotate")
@doc("Rotate the traffic salt: customers of split segments are assigned to offer sets afresh",
     "storefront", {200: SaltRotation})
@requires(MERCHANDISER)
def rotate_traffic_salt() -> dict[str, Any]:
    store: Store = current_app.extensions["offeropt.store"]
    rotated = store.rotate_salt(g.actor)
    served_plan_changed()
    return rotated


@offers_api.post("/v1/holdout-salt/rotate")
@doc("Rotate the holdout salt: a new control group is drawn (measurements compare within "
     "one salt version)", "storefront", {200: SaltRotation})
@requires(MERCHANDISER)
def rotate_holdout_salt() -> dict[str, Any]:
    store: Store = current_app.extensions["offeropt.store"]
    rotated = store.rotate_salt(g.actor, "holdout")
    served_plan_changed()
    return rotated


def served_plan_changed() -> None:
    """After a publication, rollback or salt rotation by this worker: its next answer shows
    it (the other workers within OFFEROPT_INDEX_POLL_SECONDS)."""
    holder: IndexHolder = current_app.extensions["offeropt.index"]
    holder.expire()
