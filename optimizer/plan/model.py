"""The plan document, `offeropt/plan@1` (spec section 4), as one typed object: `Plan`.

The writer (`optimizer.plan.document`) builds a `Plan` from a solution, and `Plan.to_dict` is
its JSON. Every reader (the summary, the diff, the nightly job's guardrails, the service's
storefront index and CSV) reads JSON through `Plan.from_dict`, which names every wrong
field with its path. The independent check must judge any document, however broken, rule
by rule: it reads through `read_plan`, which types the offers and names only what no rule
can be evaluated on. Offers are a table of columns (`OfferTable`), not a list of objects, so
a plan of millions of offers is read in whole columns. The JSON Schema of the same document
is `optimizer.plan.schema.PlanDocument`.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import chain, repeat
from operator import methodcaller
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.plan.columns import Columns, gc_paused, is_instance, is_none, is_number, json_float

PLAN_FORMAT = "offeropt/plan@1"
OFFER_FIELDS = ("segment", "bundle", "discount", "perk", "share", "reference_price", "price",
                "expected_takes", "expected_incremental_margin")
OFFER_KEY = ("segment", "bundle", "discount", "perk")  # an offer's identity within a plan
CLAIMS = ("reference_price", "price", "expected_takes", "expected_incremental_margin")
ID_RULES = {"segment": "must be a string (a segment id)", "bundle": "must be a string (a bundle id)",
            "perk": "must be a string (a perk id) or null"}


class Status(StrEnum):
    """Plan status as in spec section 4."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"  # the clock ran out before any feasible plan was found
    ERROR = "error"


STATUSES = tuple(sorted(s.value for s in Status))
WITH_OFFERS = frozenset({Status.OPTIMAL, Status.FEASIBLE})  # the statuses that carry a plan


class OfferTable(Columns):
    """A plan's offers: one column per field of `OFFER_FIELDS`, in plan order."""

    @classmethod
    def empty(cls) -> OfferTable:
        return cls({name: [] for name in OFFER_FIELDS})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> OfferTable:
        return cls({name: frame[name].tolist() for name in OFFER_FIELDS})

    @classmethod
    def from_records(cls, offers: Sequence[Mapping[str, Any]]) -> OfferTable:
        return cls({name: list(map(methodcaller("get", name), offers)) for name in OFFER_FIELDS})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OfferTable) and self.raw == other.raw

    def rows(self) -> zip[tuple[Any, ...]]:
        """The offers as tuples in the order of `OFFER_FIELDS`."""
        return zip(*(self.raw[name] for name in OFFER_FIELDS), strict=True)

    def records(self) -> list[dict[str, Any]]:
        """The offers as JSON objects, every field present."""
        return [dict(zip(OFFER_FIELDS, row, strict=True)) for row in self.rows()]

    def frame(self, names: Sequence[str] = OFFER_FIELDS) -> pd.DataFrame:
        """Fields of the offers as a typed table: ids as objects (a missing perk None),
        numbers as floats (NaN where a field is no number)."""
        return pd.DataFrame({name: pd.Series(self.strings(name), dtype=object)
                             if name in ID_RULES else self.numbers(name)[0] for name in names})


class SetOffer(NamedTuple):
    bundle: str
    discount: float
    perk: str | None


class OfferSet(NamedTuple):
    """One weighted offer set of a split plan's segment (spec section 7). Sets and their
    offers are tuples: a split plan holds millions of them."""

    segment: str
    set: str
    weight: float
    explore: bool
    offers: tuple[SetOffer, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "set": self.set, "weight": self.weight,
                "explore": self.explore, "offers": [o._asdict() for o in self.offers]}


@dataclass(frozen=True)
class Plan:
    """One plan document. `solver`, `binding` and `diagnosis` are reports whose fields depend
    on the method (docs/formats.md); `extra` keeps top-level fields this version does not
    know. Read and written again, a plan keeps every known field and those top-level ones;
    an offer keeps the fields of `OFFER_FIELDS`."""

    instance: str
    status: Status
    objective: float | None
    bound: float | None
    gap: float | None
    offers: OfferTable
    solver: Mapping[str, Any] = field(default_factory=dict)
    kpis: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    binding: tuple[Mapping[str, Any], ...] | None = None
    offer_sets: tuple[OfferSet, ...] | None = None
    exploration: Mapping[str, Any] | None = None  # spec section 9: the exploration report
    diagnosis: Mapping[str, Any] | None = None
    message: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def offer_keys(self) -> pd.DataFrame:
        """The offers as a (segment, bundle, discount, perk) table: what stability and the
        plan diff compare."""
        return self.offers.frame(OFFER_KEY)

    def optimized_offer_keys(self) -> pd.DataFrame:
        """As `offer_keys`, without the variants only exploration sets show: what the solve
        chose, which tomorrow's stability compares with."""
        explored = [s for s in self.offer_sets or () if s.explore]
        if not explored:
            return self.offer_keys()
        kept = {(s.segment, o.bundle, round(o.discount, 9), o.perk)
                for s in self.offer_sets or () if not s.explore for o in s.offers}
        keys = self.offer_keys()
        mine = [(s, b, round(float(d), 9), p if isinstance(p, str) else None)
                for s, b, d, p in keys.itertuples(index=False)]
        return keys[[k in kept for k in mine]].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": PLAN_FORMAT, "instance": self.instance, "status": self.status.value,
            "objective": self.objective, "bound": self.bound, "gap": self.gap,
            "solver": dict(self.solver), "offers": self.offers.records(),
            "kpis": None if self.kpis is None else dict(self.kpis),
            "warnings": list(self.warnings),
        }
        optional = {"binding": None if self.binding is None else [dict(b) for b in self.binding],
                    "offer_sets": None if self.offer_sets is None else
                    [s.to_dict() for s in self.offer_sets],
                    "exploration": None if self.exploration is None else dict(self.exploration),
                    "diagnosis": None if self.diagnosis is None else dict(self.diagnosis),
                    "message": self.message}
        doc.update({k: v for k, v in optional.items() if v is not None})
        return {**doc, **self.extra}

    @classmethod
    def from_dict(cls, doc: Any) -> Plan:
        """A plan from its JSON, every field of the right type and value; `InputError` lists,
        with their paths, the fields that are not."""
        if not isinstance(doc, dict):
            raise InputError([Issue("plan", "must be a JSON object", doc)])
        issues = _header_issues(doc)
        table, offers = OfferTable.empty(), doc.get("offers")
        if isinstance(offers, list):
            table, found = _strict_offers(offers)
            issues += found
        else:
            issues.append(Issue("offers", "must be a list of objects", offers))
        sets = doc.get("offer_sets")
        with gc_paused():
            offer_sets = _strict_sets(sets, issues) if isinstance(sets, list) else None
        if issues:
            raise InputError(sorted(issues, key=_document_order))
        number = {k: None if doc.get(k) is None else json_float(doc[k])
                  for k in ("objective", "bound", "gap")}
        return cls(
            instance=doc["instance"], status=Status(doc["status"]), **number, offers=table,
            solver=doc.get("solver", {}), kpis=doc.get("kpis"),
            warnings=tuple(doc.get("warnings", ())),
            binding=None if doc.get("binding") is None else tuple(doc["binding"]),
            offer_sets=offer_sets, exploration=doc.get("exploration"),
            diagnosis=doc.get("diagnosis"), message=doc.get("message"),
            extra={k: v for k, v in doc.items() if k not in _FIELD_ORDER})


@dataclass(frozen=True)
class PlanReading:
    """A plan document as the check reads it: the document as written, its offers as
    columns, and the fields whose JSON type is wrong, so that no rule can be evaluated on
    them (`offers` not a list of objects; an offer's `segment` or `bundle` not a string,
    `discount` or `share` not a number, `perk` neither a string nor null; `kpis` neither an
    object nor null). Values, including the top-level ones, are the check's to judge."""

    doc: Mapping[str, Any]
    offers: OfferTable
    issues: tuple[Issue, ...]


_TOLERANT = (("segment", "id"), ("bundle", "id"), ("discount", "number"), ("perk", "perk"),
             ("share", "number"))  # the offer fields a rule needs typed, in message order


def read_plan(doc: Any) -> PlanReading:
    if not isinstance(doc, dict):
        return PlanReading({}, OfferTable.empty(), (Issue("plan", "must be a JSON object", doc),))
    offers = doc.get("offers")
    if not isinstance(offers, list):
        return PlanReading(doc, OfferTable.empty(),
                           (Issue("offers", "must be a list of objects", offers),))
    _, dicts, table, found = _offer_objects(offers)
    for k, (name, kind) in enumerate(_TOLERANT):
        values = table.raw[name]
        rule = ID_RULES.get(name) or ("must be a number in (0, 1]" if name == "share" else
                                      "must be a number")
        found += [(int(i), k, Issue(f"offers[{i}].{name}", rule, values[i]))
                  for i in np.flatnonzero(~_typed(values, kind)) if name in dicts[i]]
    found.sort(key=operator.itemgetter(0, 1))
    issues = [issue for _, _, issue in found]
    if not isinstance(doc.get("kpis"), dict | None):
        issues.append(Issue("kpis", "must be an object or null", doc.get("kpis")))
    return PlanReading(doc, table, tuple(issues))


def _offer_objects(offers: list[Any]
                   ) -> tuple[np.ndarray, list[Any], OfferTable, list[tuple[int, int, Issue]]]:
    """Which offers are objects, the offers with {} for the others, their table, and an
    issue (with its place) for each that is no object."""
    is_dict = is_instance(offers, dict)
    found = [(int(i), -1, Issue(f"offers[{i}]", "must be an object", offers[i]))
             for i in np.flatnonzero(~is_dict)]
    dicts = offers if is_dict.all() else [o if ok else {} for o, ok in zip(offers, is_dict,
                                                                             strict=True)]
    return is_dict, dicts, OfferTable.from_records(dicts), found


def _typed(values: list[Any], kind: str) -> np.ndarray:
    if kind == "id":
        return is_instance(values, str)
    if kind == "perk":
        return is_instance(values, str) | is_none(values)
    return is_number(values)


_NUMBER_OR_NULL = (int, float, type(None))
_HEADER: tuple[tuple[str, str, Any], ...] = (  # (field, rule, JSON types) of the top level
    ("format", f"must be {PLAN_FORMAT!r}", str),
    ("instance", "must be a string (the instance's name)", str),
    ("status", f"must be one of {list(STATUSES)}", str),
    ("objective", "must be a finite number or null", _NUMBER_OR_NULL),
    ("bound", "must be a finite number or null", _NUMBER_OR_NULL),
    ("gap", "must be a finite number or null", _NUMBER_OR_NULL),
    ("solver", "must be an object", dict),
    ("kpis", "must be an object or null", (dict, type(None))),
    ("warnings", "must be a list of strings", list),
    ("binding", "must be a list of objects or null", (list, type(None))),
    ("offer_sets", "must be a list of objects or null", (list, type(None))),
    ("exploration", "must be an object or null", (dict, type(None))),
    ("diagnosis", "must be an object or null", (dict, type(None))),
    ("message", "must be a string or null", (str, type(None))),
)
_FIELD_ORDER = ("format", "instance", "status", "objective", "bound", "gap", "solver", "offers",
                "kpis", "warnings", "binding", "offer_sets", "exploration", "diagnosis", "message")
_OPTIONAL: dict[str, Any] = {"solver": {}, "kpis": None, "warnings": [], "binding": None, "offer_sets": None,
             "exploration": None, "diagnosis": None, "message": None}


def _header_issues(doc: dict[str, Any]) -> list[Issue]:
    issues = []
    for name, rule, kinds in _HEADER:
        value = doc.get(name, _OPTIONAL.get(name))
        ok = isinstance(value, kinds) and not isinstance(value, bool)
        if ok and name == "format":
            ok = value == PLAN_FORMAT
        elif ok and name == "status":
            ok = value in STATUSES
        elif ok and name in ("objective", "bound", "gap") and value is not None:
            ok = bool(np.isfinite(json_float(value)))
        elif ok and name in ("warnings", "binding") and value is not None:
            ok = bool(is_instance(value, str if name == "warnings" else dict).all())
        if not ok:
            issues.append(Issue(name, rule, value))
    return issues


def _strict_offers(offers: list[Any]) -> tuple[OfferTable, list[Issue]]:
    """Every offer an object with every field of its type; a share in (0, 1]."""
    is_dict, _, table, found = _offer_objects(offers)
    for k, name in enumerate(OFFER_FIELDS):
        values = table.raw[name]
        if name in ID_RULES:
            ok, rule = _typed(values, "perk" if name == "perk" else "id"), ID_RULES[name]
        else:
            number, ok = table.numbers(name)
            ok = ok & np.isfinite(number)
            rule = "must be a finite number"
            if name == "share":
                ok, rule = ok & (number > 0) & (number <= 1), "must be a number in (0, 1]"
        found += [(int(i), k, Issue(f"offers[{i}].{name}", rule, values[i]))
                  for i in np.flatnonzero(~ok & is_dict)]
    found.sort(key=operator.itemgetter(0, 1))
    return table, [issue for _, _, issue in found]


def _strict_sets(sets: list[Any], issues: list[Issue]) -> tuple[OfferSet, ...]:
    """A split plan's sets, typed; an issue for each field that is not (spec section 7)."""
    is_dict = is_instance(sets, dict)
    issues += [Issue(f"offer_sets[{i}]", "must be an object", sets[i])
               for i in np.flatnonzero(~is_dict).tolist()]
    entries = [s if ok else {} for s, ok in zip(sets, is_dict, strict=True)]
    cols = Columns({name: list(map(methodcaller("get", name, default), entries))
                    for name, default in (("segment", None), ("set", None), ("weight", None),
                                          ("explore", False), ("offers", None))})
    weight, number = cols.numbers("weight")
    checks = (("segment", is_instance(cols.raw["segment"], str), ID_RULES["segment"]),
              ("set", is_instance(cols.raw["set"], str), "must be a string (the set's id)"),
              ("weight", number & (weight > 0) & (weight <= 1), "must be a number in (0, 1]"),
              ("explore", is_instance(cols.raw["explore"], bool), "must be true or false"),
              ("offers", is_instance(cols.raw["offers"], list), "must be a list of objects"))
    for name, ok, rule in checks:
        issues += [Issue(f"offer_sets[{i}].{name}", rule, cols.raw[name][i])
                   for i in np.flatnonzero(~ok & is_dict).tolist()]
    held = [o if isinstance(o, list) else [] for o in cols.raw["offers"]]
    count = np.fromiter(map(len, held), dtype=np.int64, count=len(held))
    flat = list(chain.from_iterable(held))
    owner = np.repeat(np.arange(len(held)), count)
    within = np.arange(len(flat)) - np.repeat(np.cumsum(count) - count, count)
    offer_dict = is_instance(flat, dict)
    members = Columns({name: list(map(methodcaller("get", name), [o if ok else {} for o, ok in
                                                                 zip(flat, offer_dict, strict=True)]))
                       for name in ("bundle", "discount", "perk")})
    for name, ok, rule in (("", offer_dict, "must be an object"),
                           ("bundle", is_instance(members.raw["bundle"], str), ID_RULES["bundle"]),
                           ("discount", members.numbers("discount")[1], "must be a number"),
                           ("perk", _typed(members.raw["perk"], "perk"), ID_RULES["perk"])):
        bad = np.flatnonzero(~ok & (offer_dict if name else True))
        shown = flat if not name else members.raw[name]
        issues += [Issue(f"offer_sets[{s}].offers[{j}]{'.' + name if name else ''}", rule, shown[k])
                   for k, s, j in zip(bad.tolist(), owner[bad].tolist(), within[bad].tolist(),
                                      strict=True)]
    offers = list(map(tuple.__new__, repeat(SetOffer),
                      zip(*(members.raw[n] for n in ("bundle", "discount", "perk")), strict=True)))
    bounds = np.r_[0, np.cumsum(count)].tolist()
    groups = map(tuple, map(offers.__getitem__, map(slice, bounds[:-1], bounds[1:])))
    return tuple(map(tuple.__new__, repeat(OfferSet), zip(
        cols.raw["segment"], cols.raw["set"], weight.tolist(), cols.raw["explore"], groups,
        strict=True)))


def _document_order(issue: Issue) -> tuple[int, int, int, int]:
    """Where an issue's path is in a plan document: its top-level field, its entry, the
    entry's field (an offer's in `OFFER_FIELDS` order), a set offer's place."""
    head, _, rest = issue.path.partition("[")
    index, _, name = rest.partition("]")
    name = name.lstrip(".")
    inner = int(name.split("[")[1].split("]")[0]) if name.startswith("offers[") else -1
    return (_FIELD_ORDER.index(head) if head in _FIELD_ORDER else -1,
            int(index) if index else -1, inner,
            OFFER_FIELDS.index(name) if name in OFFER_FIELDS else -1)
