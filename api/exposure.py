"""What one answered view exposed: its cells, its propensity and its token (spec section 9).

A view of a segment is served one offer set or, in the holdout, none. Its exposure is the
set's cells (bundle, shown = 1, discount, perk) with the set's propensity, its weight times
1 - holdout_fraction; a holdout view's is holdout_fraction, over the bundles the segment's
sets offer, with shown = 0, discount 0 and no perk. A plan without offer sets serves one
set per segment, named `a`.

The answer carries a short token, `VERSION.SEGMENT.SET.KIND.PROPENSITY[-MASK]`: the segment's
and the set's positions in that plan; KIND 0 for a recorded view, 1 for a holdout view, 2 for
a view served but not recorded (an anonymous view while a holdout is drawn: it could not
have been held out, so it is no part of the experiment); the view's propensity; and, when
`exclude_items` dropped offers, the hexadecimal mask of the set's offers shown. A purchase
reported with it is attributed to the cell that showed the bundle, whichever worker answered
the view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from optimizer.errors import InputError, Issue

HOLDOUT_SET = ""  # the `set` of a holdout row (spec section 9)
_TOKEN = re.compile(r"(\d{1,9})\.(\d{1,9})\.(\d{1,4})\.([012])\.(\d+(?:\.\d+)?(?:e-?\d+)?)"
                    r"(?:-([0-9a-f]{1,16}))?")
RECORDED, HELD_OUT, UNRECORDED = 0, 1, 2  # a token's KIND
Cell = tuple[str, int, float, str]  # bundle, shown, discount, perk ("" for none)


@dataclass(frozen=True)
class Exposure:
    version: int
    segment: str
    set: str  # HOLDOUT_SET for a holdout view
    propensity: float
    cells: tuple[Cell, ...]
    line: bytes  # one view of these cells, as the journal records it

    @classmethod
    def of(cls, version: int, segment: str, set_id: str, propensity: float,
           cells: Iterable[Cell]) -> Exposure:
        held = tuple(cells)
        line = json.dumps([version, segment, set_id, propensity, held],
                          separators=(",", ":")).encode() + b"\n"
        return cls(version, segment, set_id, propensity, held, line)

    def cell_of(self, bundle: str) -> Cell | None:
        """The cell of this view in which `bundle` was shown (or held out), if any."""
        return next((c for c in self.cells if c[0] == bundle), None)


def counted_cells(line: bytes) -> tuple[int, str, str, float, tuple[Cell, ...]]:
    """A journal line back as (version, segment, set, propensity, cells)."""
    version, segment, set_id, propensity, cells = json.loads(line)
    return (int(version), str(segment), str(set_id), float(propensity),
            tuple((str(b), int(s), float(d), str(p)) for b, s, d, p in cells))


def token(version: int, segment_pos: int, set_pos: int, kind: int, propensity: float,
          mask: int | None = None) -> str:
    shown = "" if mask is None else f"-{mask:x}"
    return f"{version}.{segment_pos}.{set_pos}.{kind}.{propensity:.6g}{shown}"


@dataclass(frozen=True)
class Token:
    version: int
    segment_pos: int
    set_pos: int
    kind: int  # RECORDED, HELD_OUT or UNRECORDED
    propensity: float
    mask: int | None  # the set's offers shown, when some were dropped


def parse_token(text: object, path: str) -> Token:
    match = _TOKEN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InputError([Issue(path, "must be the `exposure` token of a /v1/offers answer "
                                "(VERSION.SEGMENT.SET.KIND.PROPENSITY[-MASK])", text)])
    version, segment, set_pos, kind, propensity, mask = match.groups()
    return Token(int(version), int(segment), int(set_pos), int(kind), float(propensity),
                 None if mask is None else int(mask, 16))
