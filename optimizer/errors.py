"""One exception root for the whole package, with a subclass per kind of failure."""

from __future__ import annotations

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
        return f"{self.path}: {self.rule}, got {_show(self.value)}"


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
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
