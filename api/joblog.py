"""Structured logs for batch jobs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class JobLog:
    """`log.info("solved", objective=...)` writes {"ts", "level", "event", ...bound fields}."""

    job: str
    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    fields: dict[str, Any] = field(default_factory=dict)

    def bind(self, **fields: Any) -> None:
        self.fields.update(fields)

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write("error", event, fields)

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        record = {"ts": stamp, "level": level, "job": self.job, "event": event,
                  **self.fields, **fields}
        self.stream.write(json.dumps(record, default=str) + "\n")
        self.stream.flush()
