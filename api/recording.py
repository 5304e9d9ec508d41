"""Recording what the storefront served: a journal per worker, counters, flushes in batches.

Each answered view costs one `write(2)` of its exposure's journal line (precomputed per
offer set) and one counter increment, under one lock. Every `flush_seconds` the worker
swaps in a fresh journal file and counter, writes the old counter beside the old file
(`NAME.journal.counts`: one count per distinct line, that is per offer set: O(cells)) and
closes the old file. A **replay** then adds each closed file's counts to the store's
`exposure_counts` in one transaction that also records the file's name, and deletes it.
Under `offeropt serve` the dispatcher process replays (the web workers never touch the
store for recording: no database work competes with requests for a worker's interpreter);
a lone app (`create_app`) replays in its own flush thread.

A worker holds an exclusive `flock` on its open journal file for as long as it writes it.
The lock dies with the process, so any file in the folder whose lock can be taken belongs to
nobody: a closed batch, a worker killed (even with SIGKILL) between flushes, a batch the
store refused, a file copied in from another host. Each is stored at most once, by its name
(`journal_batches`): from its counts file when the worker wrote one, else by counting its
lines.

What a crash can lose: nothing, when a worker is killed; its file is complete in the
operating system's page cache. A line cut short by the kill is skipped (at most one view per
killed worker), as is any line that cannot be read (counted in the log). A crash of the
machine itself can lose the views of journal files not yet on disk (the kernel writes them
within about 30 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from api.exposure import counted_cells
from api.store import Store
from api.store.logs import commit_batch, prune_batches, summed

log = logging.getLogger(__name__)
SUFFIX = ".journal"
PRUNE_EVERY = 3600  # flushes between prunings of old batch names


class Recorder:
    def __init__(self, store: Store, folder: Path, flush_seconds: float,
                 replay: bool = True) -> None:
        self.store, self.folder, self.flush_seconds = store, folder, flush_seconds
        self.replay = replay  # False: another process (the dispatcher) stores the batches
        folder.mkdir(parents=True, exist_ok=True)
        self.prefix = f"{socket.gethostname().replace('~', '-')}~{os.getpid()}"
        self._lock = threading.Lock()
        # one flush at a time: a replay skips a file another thread of ours is storing, so a
        # flush that overlapped the loop's could return before that file is stored
        self._flushing = threading.Lock()
        self._pending: Counter[bytes] = Counter()
        self._fd, self._path = self._new_file()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._flushes = 0

    def start(self) -> None:
        if self.replay:
            try:
                replay_journals(self.store, self.folder)
            except Exception:  # a store that is down at boot must not stop the server
                log.warning("journals could not be replayed yet", exc_info=True)
        self._thread = threading.Thread(target=self._loop, name="offeropt-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        except Exception:  # the file stays, unlocked, for the next replay
            log.warning("recorded views could not be stored at shutdown", exc_info=True)
        with contextlib.suppress(OSError):
            empty = os.fstat(self._fd).st_size == 0
            os.close(self._fd)
            if empty:
                self._path.unlink()

    def record(self, line: bytes) -> None:
        with self._lock:
            self._pending[line] += 1
            try:
                _write_all(self._fd, line)
            except OSError:  # a full disk must not stop the storefront: counted, not journaled
                log.warning("a served view could not be journaled", exc_info=True)

    def rotate(self) -> bool:
        """Close the batch recorded since the last rotation (its counts beside it); False
        when nothing was recorded."""
        fresh = self._new_file()  # first: if it cannot be opened, nothing is swapped out
        with self._lock:
            if not self._pending:
                pending = None
            else:
                pending, self._pending = self._pending, Counter()
                fd, path = self._fd, self._path
                self._fd, self._path = fresh
        if pending is None:
            os.close(fresh[0])
            fresh[1].unlink()
            return False
        counts = _counts_path(path)
        staged = counts.with_name(counts.name + ".tmp")
        staged.write_bytes(b"".join(b"%d\t%s" % (n, line) for line, n in pending.items()))
        staged.rename(counts)  # whole, before the journal's lock is released
        os.close(fd)
        return True

    def flush(self) -> int:
        """Close the current batch and, when this process replays, store every closed one;
        returns the views stored. When it returns, every view recorded before it is stored
        (when this process replays and the store is up)."""
        with self._flushing:
            self.rotate()
            return replay_journals(self.store, self.folder) if self.replay else 0

    def _loop(self) -> None:
        while not self._stopped.wait(self.flush_seconds):
            try:
                self.flush()
                self._flushes += 1
                if self.replay and self._flushes % PRUNE_EVERY == 0:
                    prune_batches(self.store)
            except Exception:  # the store is down: the files stay and are replayed later
                log.warning("recorded views could not be stored yet", exc_info=True)

    def _new_file(self) -> tuple[int, Path]:
        path = self.folder / f"{self.prefix}~{time.time_ns()}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # ours until closed (or until this process dies)
        return fd, path


def replay_journals(store: Store, folder: Path) -> int:
    """Store every journal file of the folder that no live process holds; returns the views
    stored."""
    stored = 0
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            stored += _replay(store, path)
        except Exception:  # one file the store refuses must not hold back the others
            log.warning("journal %s could not be replayed yet", path.name, exc_info=True)
    return stored


def replay_forever(store: Store, folder: Path, seconds: float, stop: threading.Event) -> None:
    """The dispatcher's loop under `offeropt serve`: replay every `seconds` until `stop`."""
    folder.mkdir(parents=True, exist_ok=True)
    rounds = 0
    while not stop.wait(seconds):
        try:
            replay_journals(store, folder)
            rounds += 1
            if rounds % PRUNE_EVERY == 0:
                prune_batches(store)
        except Exception:
            log.warning("journals could not be replayed yet", exc_info=True)


def _replay(store: Store, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # replayed by another process meanwhile
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live worker writes it, or another process replays it
            return 0
        if not path.exists():  # replayed and deleted before we got the lock
            return 0
        counts_file = _counts_path(path)
        if counts_file.exists():
            counts = _read_counts(counts_file.read_bytes())
        else:  # its worker died before closing it: count its lines
            with open(fd, "rb", closefd=False) as f:
                counts = Counter(_complete_lines(f.read(), path.name))
        written = os.fstat(fd).st_mtime
        day = time.strftime("%Y-%m-%d", time.gmtime(written))
        stored = commit_batch(store, path.name, summed(_rows(counts, day)))
        counts_file.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return sum(counts.values()) if stored else 0
    finally:
        os.close(fd)


def _counts_path(path: Path) -> Path:
    return path.with_name(path.name + ".counts")


def _read_counts(data: bytes) -> Counter[bytes]:
    counts: Counter[bytes] = Counter()
    for entry in data.split(b"\n")[:-1]:
        n, _, line = entry.partition(b"\t")
        counts[line + b"\n"] += int(n)
    return counts


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _rows(counts: Counter[bytes], day: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for line, views in counts.items():
        version, segment, set_id, propensity, cells = counted_cells(line)
        rows.extend({"day": day, "plan_version": version, "segment": segment, "set": set_id,
                     "bundle": bundle, "shown": shown, "discount": discount, "perk": perk,
                     "propensity": propensity, "views": views, "purchases": 0}
                    for bundle, shown, discount, perk in cells)
    return rows


def _complete_lines(data: bytes, name: str) -> list[bytes]:
    """The journal's readable lines: a last line cut short by a kill, or any line that does
    not decode (a write interrupted on a full disk), is skipped and logged."""
    lines, bad = [], 0
    for line in data.split(b"\n")[:-1]:
        try:
            counted_cells(line)
        except (ValueError, TypeError, json.JSONDecodeError):
            bad += 1
            continue
        lines.append(line + b"\n")
    if bad or (not data.endswith(b"\n") and data):
        log.warning("journal %s: %d unreadable line(s) and %s skipped", name, bad,
                    "a cut last line" if data and not data.endswith(b"\n") else "no cut line")
    return lines
