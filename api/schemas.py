"""Response bodies, as pydantic models: the OpenAPI document's schemas come from these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from optimizer.plan.schema import PlanDocument


class ProblemDetails(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="for 422: one entry per broken rule, with the field's path")


class Links(BaseModel):
    self: str
    plan: str | None = None


class RunCreated(BaseModel):
    run_id: str
    status: str
    created: bool = Field(description="false when an Idempotency-Key replayed an earlier submission")
    links: Links


class Progress(BaseModel):
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    elapsed: float | None = None


class Run(BaseModel):
    id: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    catalog_plan: str
    options: dict[str, Any]
    progress: Progress | None
    plan_status: str | None
    plan_id: str | None
    objective: float | None
    bound: float | None
    error: str | None
    log_tail: list[str]
    created_at: float
    started_at: float | None
    finished_at: float | None
    cancel_requested: bool
    links: Links


class Publication(BaseModel):
    version: int
    plan_id: str
    action: str
    actor: str
    created_at: float


class ActivePlan(BaseModel):
    version: int
    plan_id: str
    published_at: float
    published_by: str
    plan: PlanDocument


class RollbackRequest(BaseModel):
    to_version: int | None = Field(None, ge=1, lt=2**63,
                                   description="default: the plan before the active one")


class Event(BaseModel):
    """One purchase: by the view's `exposure` token, or by `customer_id` and `segment`."""

    id: str = Field(min_length=1, max_length=100, description="unique per event: a resent "
                    "event is counted once")
    type: Literal["purchase"] = "purchase"
    bundle: str = Field(description="the bundle bought")
    token: str | None = Field(None, description="the `exposure` token of the answer that "
                              "showed the bundle")
    customer_id: str | None = Field(None, description="without a token")
    segment: str | None = Field(None, description="without a token")


class EventsRequest(BaseModel):
    events: list[Event] = Field(min_length=1, max_length=1000)


class EventsReceipt(BaseModel):
    """Counted: `accepted` new events, `duplicates` already received, `unattributed` new or
    resent events whose bundle the named view did not show (stored, counted nowhere)."""

    accepted: int
    duplicates: int
    unattributed: int


class OfferItem(BaseModel):
    item: str
    name: str | None
    qty: int


class StorefrontOffer(BaseModel):
    bundle: str
    name: str | None
    kind: str
    items: list[OfferItem]
    reference_price: float
    price: float
    discount: float
    discount_percent: float
    savings: float
    perk: str | None


class Offers(BaseModel):
    segment: str
    plan_version: int | None
    holdout: bool
    offers: list[StorefrontOffer]
    reason: str | None = Field(None, description="why the list is empty, when it is")
    set: str | None = Field(None, description="split plans only: the offer set served")
    exposure: str | None = Field(None, description="the view's token for POST /v1/events: "
                                 "VERSION.SEGMENT.SET.HOLDOUT.PROPENSITY")
    assignment: str | None = Field(
        None, description="split plans only: how the view got its set: customer (a stable hash "
                          "of segment, customer_id and the traffic salt), request (a hash of "
                          "X-Request-Id, else a random draw) or segment (its only set)")


class SaltRotation(BaseModel):
    """A salt's rotation (traffic or holdout); the salt itself is never shown."""

    salt_version: int = Field(description="1, then one more per rotation")
    rotated_at: float
    rotated_by: str


class Health(BaseModel):
    status: str
    version: str


class Ready(BaseModel):
    status: str
    store: str
    schema_version: int | None = None
