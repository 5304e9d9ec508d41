"""JSON text from outside, parsed with limits: every hostile document is an InputError.

Python's `json.loads` alone fails in ways that are not input errors: a document nested
thousands deep raises RecursionError, an integer literal of more than 4300 digits raises
ValueError, and a `"\\ud800"` escape yields a string that cannot be encoded again (it
breaks Arrow, SQLite and every UTF-8 writer later on). `parse_json` refuses the first and
the last with the path and the rule, and reads an integer literal too long for a float
(more than 308 digits) as infinity, which the readers then refuse like `1e400`: "must be a
finite number". Every file and request body of JSON goes through it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from optimizer.errors import InputError, Issue

MAX_JSON_DEPTH = 64  # arrays and objects nested in one another; an instance needs 5
MAX_INTEGER_DIGITS = 308  # longer integer literals overflow a float: read as +-inf
MAX_LISTED = 50  # lone surrogates listed before one summary line

_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_CHUNK = 1 << 22  # bytes of brackets per numpy step: the depth scan's memory stays small
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_RULE = "must be valid Unicode text (no unpaired surrogate such as \\ud800)"


class JsonSyntaxError(InputError):
    """The text is not JSON at all (not UTF-8, or a syntax error): nothing inside could be read."""


def parse_json(data: bytes | str, origin: str, root: str = "") -> Any:
    """The parsed document; InputError when it breaks a limit.

    `origin` names the whole text in messages (a file name, `body`); `root` prefixes the
    paths of values inside the document (`policy` for `policy.json`).
    """
    if isinstance(data, str):
        text = data
        raw = data.encode("utf-8", "surrogatepass")
    else:
        raw = data
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonSyntaxError([Issue(origin, "must be UTF-8 text", value_text=str(exc))]) \
                from None
    depth = nesting_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise InputError([Issue(origin, f"must nest arrays and objects at most {MAX_JSON_DEPTH} "
                                "levels deep", value_text=f"{depth} levels")])
    try:
        doc = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise JsonSyntaxError([Issue(origin, "must be valid JSON",
                                     value_text=f"{exc.msg} at {where}")]) from None
    except (RecursionError, ValueError) as exc:  # not expected past the checks above
        raise JsonSyntaxError([Issue(origin, "must be valid JSON",
                                     value_text=str(exc)[:200])]) from None
    if _SURROGATE_ESCAPE.search(raw) is not None:  # rare: only then walk the document
        issues = lone_surrogates(doc, root)
        if issues:
            raise InputError(issues)
    return doc


def _parse_int(literal: str) -> int | float:
    if len(literal) > MAX_INTEGER_DIGITS + 1:  # + 1 for a sign
        return float(literal)  # +-inf: refused downstream as "must be a finite number"
    return int(literal)


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in the JSON text `raw`, brackets in strings ignored.

    Whole-text byte operations and numpy, no Python loop per byte: escaped quotes and
    backslashes are removed, then everything but quotes and brackets. When no string holds
    a bracket, every string is then an adjacent pair of quotes.
    """
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")  # left to right, as a lexer pairs
    marks = raw.translate(None, _NOT_STRUCTURE)
    brackets = marks.replace(b'""', b"")
    if b'"' in brackets:  # some string holds a bracket: drop what lies between quotes
        brackets = _outside_strings(marks)
    return _max_depth(brackets)


def _outside_strings(marks: bytes) -> bytes:
    out: list[bytes] = []
    inside = False
    for start in range(0, len(marks), _CHUNK):
        chunk = np.frombuffer(marks, dtype=np.uint8, count=min(_CHUNK, len(marks) - start),
                              offset=start)
        quote = chunk == ord('"')
        parity = (np.cumsum(quote, dtype=np.int32) + inside) % 2 == 1  # inside after this byte
        keep = ~quote & ~parity
        out.append(chunk[keep].tobytes())
        inside = bool(parity[-1]) if len(parity) else inside
    return b"".join(out)


def _max_depth(brackets: bytes) -> int:
    depth, deepest = 0, 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets, dtype=np.uint8, count=min(_CHUNK, len(brackets) - start),
                              offset=start)
        step = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int32)
        running = np.cumsum(step, dtype=np.int64) + depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


def has_lone_surrogate(value: object) -> bool:
    return isinstance(value, str) and _LONE_SURROGATE.search(value) is not None


def printable(text: str) -> str:
    """`text` with any lone surrogate written as its escape, so that it can be encoded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def lone_surrogates(doc: object, root: str = "") -> list[Issue]:
    """Every string (key or value) of `doc` holding a lone surrogate, with its path."""
    rule = SURROGATE_RULE
    issues: list[Issue] = []
    stack: list[tuple[object, str]] = [(doc, root)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                issues.append(Issue(path or "(document)", rule, value))
        elif isinstance(value, dict):
            bad_keys = [key for key in value if _LONE_SURROGATE.search(key)]
            issues.extend(Issue(path or "(document)", "must have keys that are valid Unicode "
                                "text (no unpaired surrogate such as \\ud800)", key)
                          for key in bad_keys)
            stack.extend((item, f"{path}.{key}" if path else key)  # popped in document order
                         for key, item in reversed(value.items()) if key not in bad_keys)
        elif isinstance(value, list):
            stack.extend((value[i], f"{path}[{i}]") for i in range(len(value) - 1, -1, -1))
    if len(issues) > MAX_LISTED:
        hidden = len(issues) - MAX_LISTED
        issues = [*issues[:MAX_LISTED],
                  Issue("(document)", f"{hidden} more strings break this rule: {rule}",
                        has_value=False)]
    return issues
