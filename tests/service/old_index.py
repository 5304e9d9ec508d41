"""The storefront's index as it was before issue 19 (each worker parsing the active plan into
Python objects), kept unchanged as the reference the memory-mapped index is compared with,
byte for byte (tests/service/test_index_file.py). Not used by the service."""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

from api.exposure import HELD_OUT, HOLDOUT_SET, RECORDED, UNRECORDED, Exposure, token
from optimizer.plan.model import OfferSet, Plan

CUSTOMER, REQUEST, SEGMENT = "customer", "request", "segment"
EMPTY_SET = "the offer set served to this view is empty"
IMPLICIT_SET = "a"


@dataclass(frozen=True)
class SegmentSets:
    """A segment's offer sets, ready to serve: ids, cumulative weights, offers and answers."""

    ids: tuple[str, ...]
    cumulative: tuple[float, ...]  # running sum of the weights, normalized, the last 1.0
    offers: tuple[tuple[dict[str, Any], ...], ...]  # per set
    bodies: dict[str, tuple[tuple[bytes, str], ...]]  # assignment -> per set (body, ETag)

    def pick(self, u: float) -> int:
        """The set whose cumulative-weight interval holds u in [0, 1)."""
        return min(bisect.bisect_right(self.cumulative, u), len(self.ids) - 1)


def uniform(salt: str, segment: str, key: str) -> float:
    """A stable draw in [0, 1): the first 64 bits of SHA-256 over (salt, segment, key)."""
    digest = hashlib.sha256(f"{salt}\x1f{segment}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class ActiveIndex:
    version: int | None
    plan_id: str | None
    holdout_fraction: float
    offers: dict[str, tuple[dict[str, Any], ...]]
    bundle_items: dict[str, frozenset[str]]
    bodies: dict[str, tuple[bytes, str]]  # segment -> (default response, its ETag, unquoted)
    salt: str = ""  # the store's traffic salt, read with the plan
    sets: dict[str, SegmentSets] = field(default_factory=dict)  # split plans' segments
    holdout_salt: str = ""  # the store's holdout salt: the control group outlives plans
    segment_pos: dict[str, int] = field(default_factory=dict)  # position in the catalog
    segment_ids: tuple[str, ...] = ()  # by position
    _exposures: dict[tuple[str, int], Exposure] = field(default_factory=dict)  # filled on use
    # answers to views that are served but not recorded, filled on use
    _unrecorded: dict[tuple[Any, ...], tuple[bytes, str]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> ActiveIndex:
        return cls(None, None, 0.0, {}, {}, {})

    @classmethod
    def build(cls, bundle: dict[str, Any]) -> ActiveIndex:
        plan, catalog = Plan.from_dict(json.loads(bundle["plan"])), json.loads(bundle["catalog"])
        item_names = {i["id"]: i.get("name") for i in catalog["items"]}
        bundles = {b["id"]: b for b in catalog["bundles"]}
        by_segment: dict[str, list[dict[str, Any]]] = {s["id"]: [] for s in catalog["segments"]}
        for segment, bundle_id, discount, perk, _, reference, price, _, _ in plan.offers.rows():
            b = bundles[bundle_id]
            by_segment[segment].append({
                "bundle": b["id"], "name": b.get("name"), "kind": b["kind"],
                "items": [{"item": line["item"], "name": item_names.get(line["item"]),
                           "qty": int(line["qty"])} for line in b["items"]],
                "reference_price": reference, "price": price, "discount": discount,
                "discount_percent": round(100 * discount, 2),
                "savings": round(reference - price, 2), "perk": perk,
            })
        version = int(bundle["version"])
        offers = {s: tuple(o) for s, o in by_segment.items()}
        position = {s: k for k, s in enumerate(offers)}
        held_out = float((catalog.get("policy") or {}).get("holdout_fraction", 0.0))
        return cls(version, str(bundle["id"]), held_out, offers,
                   {b: frozenset(line["item"] for line in v["items"]) for b, v in bundles.items()},
                   {s: _render(version, s, o, False, token=token(version, position[s], 0,
                                                                 RECORDED, 1.0 - held_out))
                    for s, o in offers.items()},
                   str(bundle.get("salt") or ""),
                   _segment_sets(version, plan, offers, position, held_out),
                   str(bundle.get("holdout_salt") or ""), position, tuple(offers))

    def render(self, segment: str, offers: tuple[dict[str, Any], ...], holdout: bool,
               reason: str | None = None) -> tuple[bytes, str]:
        return _render(self.version, segment, offers, holdout, reason)

    def in_holdout(self, customer_id: str) -> bool:
        """Stable per customer while the holdout salt stays: the control group does not
        change with the plan (spec section 9)."""
        if self.holdout_fraction <= 0:
            return False
        digest = hashlib.sha256(f"{self.holdout_salt}\x1f{customer_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.holdout_fraction

    def exposure(self, segment: str, k: int | None) -> Exposure:
        """What a view of `segment` served set k (None: held out) exposed; made on first use."""
        key = (segment, -1 if k is None else k)
        found = self._exposures.get(key)
        if found is None:
            assert self.version is not None
            found = self._exposures[key] = _exposure(self, segment, k)
        return found

    def set_position(self, segment: str, set_id: str) -> int | None:
        ids = self.sets[segment].ids if segment in self.sets else (IMPLICIT_SET,)
        return ids.index(set_id) if set_id in ids else None

    def choose(self, segment: str, customer_id: str | None,
               request_key: str | None = None) -> tuple[int, str]:
        """A split segment's set for one view, and how it was assigned: by the customer id
        (stable while the plan's sets and the salt stay), else by `request_key` (stable for
        that key), else by a random draw; a segment with one set serves it to every view."""
        sets = self.sets[segment]
        if len(sets.ids) == 1:
            return 0, SEGMENT
        if customer_id is not None:
            return sets.pick(uniform(self.salt, segment, "c:" + customer_id)), CUSTOMER
        if request_key is not None:
            return sets.pick(uniform(self.salt, segment, "r:" + request_key)), REQUEST
        return sets.pick(random.random()), REQUEST

    def answer(self, segment: str, customer_id: str | None, excluded: frozenset[str],
               request_key: str | None = None) -> tuple[bytes, str, Exposure | None]:
        """The response body of one view, its (unquoted) ETag, and what it exposed."""
        if self.version is None:
            return (*self.render(segment, (), False, "no plan is published yet"), None)
        if segment not in self.offers:
            return (*self.render(segment, (), False, "unknown segment"), None)
        if customer_id is not None and self.in_holdout(customer_id):
            held = self.exposure(segment, None)
            return (*_render(self.version, segment, (), True, token=self.token(segment, None)),
                    held)
        recorded = customer_id is not None or self.holdout_fraction <= 0
        if segment in self.sets:
            k, how = self.choose(segment, customer_id, request_key)
            sets = self.sets[segment]
            if not excluded and recorded:
                return (*sets.bodies[how][k], self.exposure(segment, k))
            offers = sets.offers[k]
            served: dict[str, str] | None = {"set": sets.ids[k], "assignment": how}
        else:
            k, offers, served = 0, self.offers[segment], None
            if not excluded and recorded:
                return (*self.bodies[segment], self.exposure(segment, 0))
        kept = tuple(o for o in offers if not self.bundle_items[o["bundle"]] & excluded)
        reason = None if kept else EMPTY_SET if served and not offers else \
            "every offer holds an item already in the cart"
        mask = None if len(kept) == len(offers) else \
            sum(1 << i for i, o in enumerate(offers) if o in kept)
        if not recorded:  # an anonymous view while a holdout is drawn: not in the experiment
            key = (segment, k, how if served else SEGMENT, mask)
            body = self._unrecorded.get(key)
            if body is None:
                body = self._unrecorded[key] = _render(
                    self.version, segment, kept, False, reason, served,
                    self.token(segment, k, UNRECORDED, mask))
            return (*body, None)
        full = self.exposure(segment, k)
        shown = Exposure.of(full.version, segment, full.set, full.propensity,
                            (c for c, o in zip(full.cells, offers, strict=True) if o in kept))
        return (*_render(self.version, segment, kept, False, reason, served,
                         self.token(segment, k, RECORDED, mask)), shown)

    def token(self, segment: str, k: int | None, kind: int = RECORDED,
              mask: int | None = None) -> str:
        """The token of a view of set k (None: held out); an unrecorded view's propensity is
        its set's weight alone (it could not have been held out)."""
        assert self.version is not None
        return token(self.version, self.segment_pos[segment], k or 0,
                     HELD_OUT if k is None else kind, self.propensity(segment, k, kind), mask)

    def propensity(self, segment: str, k: int | None, kind: int = RECORDED) -> float:
        """The probability that a view of this kind was served set k (None: held out)."""
        held = self.exposure(segment, k).propensity
        return held / (1.0 - self.holdout_fraction) if kind == UNRECORDED else held


def _render(version: int | None, segment: str, offers: tuple[dict[str, Any], ...], holdout: bool,
            reason: str | None = None, served: dict[str, str] | None = None,
            token: str | None = None) -> tuple[bytes, str]:
    """The response body and its (unquoted) ETag; `served` names a split plan's set and
    `token` is the view's exposure token."""
    if reason is None and not offers:
        reason = "holdout" if holdout else "no offers for this segment in the active plan"
    answer = {"segment": segment, "plan_version": version, "holdout": holdout,
              "offers": list(offers), "reason": reason, **(served or {})}
    if token is not None:
        answer["exposure"] = token
    body = json.dumps(answer, separators=(",", ":")).encode()
    return body, f"{version}-{hashlib.sha1(body).hexdigest()[:20]}"


def _segment_sets(version: int, plan: Plan, offers: dict[str, tuple[dict[str, Any], ...]],
                  position: dict[str, int], held_out: float) -> dict[str, SegmentSets]:
    """Per segment of a split plan: its sets in the plan's order, with their answers."""
    entries: dict[str, list[OfferSet]] = {}
    for entry in plan.offer_sets or ():
        entries.setdefault(entry.segment, []).append(entry)
    out = {}
    for segment, sets in entries.items():
        by_key = {(o["bundle"], round(o["discount"], 9), o["perk"]): o for o in offers[segment]}
        held = tuple(tuple(by_key[(o.bundle, round(o.discount, 9), o.perk)] for o in entry.offers)
                     for entry in sets)
        ids = tuple(entry.set for entry in sets)
        running, cumulative = 0.0, []
        total = sum(entry.weight for entry in sets)
        for entry in sets:
            running += entry.weight
            cumulative.append(running / total)
        cumulative[-1] = 1.0
        ways = (SEGMENT,) if len(sets) == 1 else (CUSTOMER, REQUEST)
        tokens = [token(version, position[segment], k, RECORDED, (1.0 - held_out) * weight)
                  for k, weight in enumerate(_weights(cumulative))]
        bodies = {how: tuple(_render(version, segment, o, False, None if o else EMPTY_SET,
                                     {"set": i, "assignment": how}, t)
                             for i, o, t in zip(ids, held, tokens, strict=True)) for how in ways}
        out[segment] = SegmentSets(ids, tuple(cumulative), held, bodies)
    return out


def _weights(cumulative: list[float] | tuple[float, ...]) -> list[float]:
    return [b - a for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]


def _exposure(index: ActiveIndex, segment: str, k: int | None) -> Exposure:
    assert index.version is not None
    split = index.sets.get(segment)
    sets = split.offers if split else (index.offers[segment],)
    if k is None:
        bundles = dict.fromkeys(o["bundle"] for offers in sets for o in offers)
        return Exposure.of(index.version, segment, HOLDOUT_SET, index.holdout_fraction,
                           ((b, 0, 0.0, "") for b in bundles))
    weight = _weights(split.cumulative)[k] if split else 1.0
    return Exposure.of(index.version, segment, split.ids[k] if split else IMPLICIT_SET,
                       (1.0 - index.holdout_fraction) * weight,
                       ((o["bundle"], 1, float(o["discount"]), o["perk"] or "") for o in sets[k]))
