"""The storefront call: offers for a segment from an in-memory index of the active plan.

Each worker holds the index and checks the store's active version at most once per
`INDEX_POLL_SECONDS`; a request never waits on a database query otherwise. The index is
swapped in whole, so a request sees one complete plan, never a half-built one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, request

from api.auth import MERCHANDISER, STOREFRONT, requires
from api.openapi import Param, doc
from api.schemas import Offers
from api.store import Store

offers_api = Blueprint("offers", __name__)
CACHE_SECONDS = 30


@dataclass(frozen=True)
class ActiveIndex:
    version: int | None
    plan_id: str | None
    holdout_fraction: float
    offers: dict[str, tuple[dict[str, Any], ...]]
    bundle_items: dict[str, frozenset[str]]
    bodies: dict[str, tuple[bytes, str]]  # segment -> (default response, its ETag, unquoted)

    @classmethod
    def empty(cls) -> ActiveIndex:
        return cls(None, None, 0.0, {}, {}, {})

    @classmethod
    def build(cls, bundle: dict[str, Any]) -> ActiveIndex:
        plan, catalog = json.loads(bundle["plan"]), json.loads(bundle["catalog"])
        item_names = {i["id"]: i.get("name") for i in catalog["items"]}
        bundles = {b["id"]: b for b in catalog["bundles"]}
        by_segment: dict[str, list[dict[str, Any]]] = {s["id"]: [] for s in catalog["segments"]}
        for offer in plan["offers"]:
            b = bundles[offer["bundle"]]
            by_segment[offer["segment"]].append({
                "bundle": b["id"], "name": b.get("name"), "kind": b["kind"],
                "items": [{"item": line["item"], "name": item_names.get(line["item"]),
                           "qty": int(line["qty"])} for line in b["items"]],
                "reference_price": offer["reference_price"], "price": offer["price"],
                "discount": offer["discount"],
                "discount_percent": round(100 * offer["discount"], 2),
                "savings": round(offer["reference_price"] - offer["price"], 2),
                "perk": offer["perk"],
            })
        version = int(bundle["version"])
        offers = {s: tuple(o) for s, o in by_segment.items()}
        return cls(version, str(bundle["id"]),
                   float((catalog.get("policy") or {}).get("holdout_fraction", 0.0)), offers,
                   {b: frozenset(line["item"] for line in v["items"]) for b, v in bundles.items()},
                   {s: _render(version, s, o, False) for s, o in offers.items()})

    def render(self, segment: str, offers: tuple[dict[str, Any], ...], holdout: bool,
               reason: str | None = None) -> tuple[bytes, str]:
        return _render(self.version, segment, offers, holdout, reason)

    def in_holdout(self, customer_id: str) -> bool:
        """Stable per (plan, customer): the same customer stays out for the plan's life."""
        if self.holdout_fraction <= 0:
            return False
        digest = hashlib.sha256(f"{self.plan_id}:{customer_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.holdout_fraction


def _render(version: int | None, segment: str, offers: tuple[dict[str, Any], ...], holdout: bool,
            reason: str | None = None) -> tuple[bytes, str]:
    """The response body and its (unquoted) ETag."""
    if reason is None and not offers:
        reason = "holdout" if holdout else "no offers for this segment in the active plan"
    body = json.dumps({"segment": segment, "plan_version": version, "holdout": holdout,
                       "offers": list(offers), "reason": reason}, separators=(",", ":")).encode()
    return body, f"{version}-{hashlib.sha1(body).hexdigest()[:20]}"


class IndexHolder:
    """Per process: the current index, rebuilt when the store's active version moves.

    A rebuild (seconds for a large plan) runs on a background thread while requests keep
    the old index; only a worker's very first load happens on the request that needs it.
    """

    def __init__(self, store: Store, poll_seconds: float) -> None:
        self.store, self.poll_seconds = store, poll_seconds
        self.index = ActiveIndex.empty()
        self._checked = -float("inf")
        self._lock = threading.Lock()
        self._building = False

    def current(self) -> ActiveIndex:
        now = time.monotonic()
        if now - self._checked >= self.poll_seconds:
            self._checked = now
            self._refresh_if_moved()
        return self.index

    def _refresh_if_moved(self) -> None:
        active = self.store.active()  # one indexed single-row read per poll interval
        if active is None or active["version"] == self.index.version:
            return
        with self._lock:
            if self._building:
                return
            self._building = True
        if self.index.version is None:
            self._build()
        else:
            threading.Thread(target=self._build, name="offeropt-index", daemon=True).start()

    def _build(self) -> None:
        try:
            bundle = self.store.active_bundle()
            if bundle is not None:
                self.index = ActiveIndex.build(bundle)  # one reference swap
        finally:
            with self._lock:
                self._building = False


@offers_api.get("/v1/offers")
@doc("Offers for one page view, from the active plan", "storefront", {200: Offers, 304: "Not modified"},
     params=(Param("segment", "query", "the viewer's segment id", required=True),
             Param("customer_id", "query", "for the stable holdout assignment"),
             Param("exclude_items", "query", "comma-separated items already in the cart"),
             Param("If-None-Match", "header", "an ETag from an earlier answer")))
@requires(STOREFRONT, MERCHANDISER)
def get_offers() -> Response:
    from api.problems import Problem

    segment = request.args.get("segment", "")
    if not segment:
        raise Problem(400, "Bad Request", "segment: must be given, got nothing")
    index: ActiveIndex = current_app.extensions["offeropt.index"].current()
    customer = request.args.get("customer_id")
    excluded = frozenset(i for i in request.args.get("exclude_items", "").split(",") if i)
    if index.version is None:
        body, etag = index.render(segment, (), False, "no plan is published yet")
    elif segment not in index.offers:
        body, etag = index.render(segment, (), False, "unknown segment")
    elif customer is not None and index.in_holdout(customer):
        body, etag = index.render(segment, (), True)
    elif excluded:
        kept = tuple(o for o in index.offers[segment]
                     if not index.bundle_items[o["bundle"]] & excluded)
        body, etag = index.render(segment, kept, False,
                                  None if kept else "every offer holds an item already in the cart")
    else:
        body, etag = index.bodies[segment]
    scope = "private" if customer is not None else "public"
    headers = {"ETag": f'"{etag}"', "Cache-Control": f"{scope}, max-age={CACHE_SECONDS}"}
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    return Response(body, mimetype="application/json", headers=headers)
