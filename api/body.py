"""Request bodies read within OFFEROPT_MAX_CONTENT_LENGTH, whether or not a length was sent.

Werkzeug refuses a body whose Content-Length is over the limit before reading it. A body
sent chunked (no Content-Length) it reads up to the limit and then stops without a word,
so the handler sees a truncated body (and reports it as invalid JSON or a broken zip).
Every handler reads its body through here instead: past the limit it is a 413.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

CHUNK = 1 << 16


def body_chunks() -> Iterator[bytes]:
    """The body in chunks; RequestEntityTooLarge as soon as it passes the limit."""
    limit: int | None = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is not None or limit is None:
        # Werkzeug refused a declared length over the limit, and reads no further than it.
        stream = request.stream
        while chunk := stream.read(CHUNK):
            yield chunk
        return
    stream = request.stream  # stops quietly at `limit` bytes
    total = 0
    while total < limit:
        chunk = stream.read(min(CHUNK, limit - total))
        if not chunk:
            return
        total += len(chunk)
        yield chunk
    # Exactly `limit` bytes so far: one more byte of the raw input means the body is over.
    if request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def read_body() -> bytes:
    """The whole body (at most OFFEROPT_MAX_CONTENT_LENGTH bytes)."""
    return b"".join(body_chunks())


def save_body(path: Path) -> None:
    """Stream the body to `path`: the upload never sits in memory whole."""
    with open(path, "wb") as out:
        for chunk in body_chunks():
            out.write(chunk)
