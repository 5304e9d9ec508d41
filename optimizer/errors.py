"""One exception root for the whole package, with a subclass per kind of failure."""

from __future__ import annotations

import errno
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass


class OfferOptError(Exception):
    """Root of every error offeropt raises on purpose."""


@dataclass(frozen=True)
class Issue:
    """One broken rule: where (`path`), what the rule is, and the value found."""

    path: str
    rule: str
    value: object = None
    has_value: bool = True
    value_text: str | None = None  # shown as is, for values that are a description

    def __str__(self) -> str:
        if self.value_text is not None:
            return f"{self.path}: {self.rule}, got {self.value_text}"
        if not self.has_value:
            return f"{self.path}: {self.rule}"
        return f"{self.path}: {self.rule}, got {show_value(self.value)}"


_REPR = reprlib.Repr()  # Python 3.11's Repr takes no arguments
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 10, 10, 10, 10
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 80
MAX_STRING_SHOWN = 200  # characters of a string value shown in a message


def show_value(value: object) -> str:
    """A value as a message shows it: strings quoted, anything large cut short."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int) and value.bit_length() > 256:  # repr fails past 4300 digits
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str):
        if len(value) > MAX_STRING_SHOWN:
            return f"{value[:MAX_STRING_SHOWN]!r}... ({len(value)} characters)"
        return repr(value)
    # Bounded in size and depth whatever was sent: a list of a million numbers, or one
    # nested sixty levels deep, costs a few dozen characters.
    text = _REPR.repr(value) if isinstance(value, list | tuple | dict | set) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class InputError(OfferOptError):
    """The input breaks one or more rules of the spec; every issue is listed."""

    MAX_LISTED = 200

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: tuple[Issue, ...] = tuple(issues)
        super().__init__(self.describe())

    def describe(self) -> str:
        shown = [str(i) for i in self.issues[: self.MAX_LISTED]]
        hidden = len(self.issues) - len(shown)
        if hidden > 0:
            shown.append(f"... and {hidden} more issues")
        return "\n".join(shown)


_WHY = {
    errno.EACCES: "permission denied", errno.EPERM: "permission denied",
    errno.ENOENT: "no such file or folder", errno.EISDIR: "a folder",
    errno.ENOTDIR: "a path through something that is not a folder",
    errno.EEXIST: "an existing file", errno.EROFS: "a read-only file system",
    errno.ENOSPC: "no space left on the device", errno.ENAMETOOLONG: "a name too long",
}


def file_issue(path: object, exc: OSError, rule: str) -> Issue:
    """A refusal of the file system as an issue: `path: must be ..., got permission denied`."""
    why = _WHY.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
    return Issue(str(path), rule, value_text=why)


def file_error(path: object, exc: OSError, rule: str) -> InputError:
    return InputError([file_issue(path, exc, rule)])
