"""The JSON Schema of the plan document (`optimizer.plan.model.Plan`), as pydantic models.

The service's OpenAPI document takes its plan schemas from here. Field names are those of
`optimizer.plan.model` (a test holds them equal), and every plan the writer makes
validates against `PlanDocument`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from optimizer.plan.model import Status


class PlanOffer(BaseModel):
    model_config = ConfigDict(extra="allow")
    segment: str
    bundle: str
    discount: float
    perk: str | None
    share: float = Field(gt=0, le=1, description="share of the segment's views; 1 unless split")
    reference_price: float
    price: float
    expected_takes: float
    expected_incremental_margin: float


class SetOffer(BaseModel):
    model_config = ConfigDict(extra="allow")
    bundle: str
    discount: float
    perk: str | None


class OfferSet(BaseModel):
    """One offer set of a split plan (spec section 7)."""

    model_config = ConfigDict(extra="allow")
    segment: str
    set: str = Field(description="unique within the segment: a, b, ...")
    weight: float = Field(gt=0, le=1, description="share of the segment's views; a segment's "
                                                  "weights sum to 1")
    explore: bool = False
    offers: list[SetOffer] = Field(description="empty only where the segment may show nothing")


class InventoryUse(BaseModel):
    used: float
    stock: float


class ChannelUse(BaseModel):
    impressions: float
    capacity: float | None


class AudienceUse(BaseModel):
    offers_per_customer: float
    cap: float | None


class Kpis(BaseModel):
    """Spec section 4 (and 8, for an instance with audiences or channels), every figure
    weighted by the offers' shares."""

    model_config = ConfigDict(extra="allow")
    expected_incremental_margin: float
    expected_offer_revenue: float
    expected_offer_margin: float
    expected_takes: float
    impressions: float
    take_rate: float
    attach_rate: float
    discounted_share: float
    avg_discount: float
    promotion_spend: float
    aggregate_margin_rate: float
    segments_with_offers: int
    inventory: dict[str, InventoryUse] = Field(description="per stocked item")
    contact_cost: float | None = Field(None, description="spec section 8: sum share x views x "
                                                         "cost per impression")
    roi: float | None = Field(None, description="expected_incremental_margin / "
                                                "(promotion_spend + contact_cost)")
    channels: dict[str, ChannelUse] | None = Field(None, description="per channel named")
    audiences: dict[str, AudienceUse] | None = Field(None, description="per audience named")


class Exploration(BaseModel):
    """Spec section 9: the exploration sets' share of the views and their expected cost."""

    model_config = ConfigDict(extra="allow")
    explore: float = Field(description="F asked: the most of a segment's views explored")
    seed: int = Field(description="the Thompson draws' seed")
    optimized_objective: float = Field(description="the optimized sets' value, as solved")
    cost: float = Field(description="optimized_objective - objective: the expected cost of "
                                    "exploring, in incremental margin")
    views_explored: float = Field(description="sum over exploration sets of weight x views")
    share_explored: float = Field(description="views_explored / views of segments with offers")
    segments_explored: int
    segments_held_back: int = Field(description="explored at less than F: held back by rows")
    cells_explored: int = Field(description="(segment, bundle) cells shown another variant")
    sets: int = Field(description="exploration sets")
    cells_from_prior: int = Field(description="the plan's cells spread by the prior")
    held_back_by: list[str] = Field(description="the rows that held exploration back")
    seconds: float


class PlanDocument(BaseModel):
    """offeropt/plan@1 (spec section 4), with offeropt's documented additions."""

    model_config = ConfigDict(extra="allow")
    format: str = Field(description="offeropt/plan@1")
    instance: str
    status: Status
    objective: float | None
    bound: float | None
    gap: float | None
    solver: dict[str, Any] = Field(description="method, backend, seconds, termination, and "
                                               "what the method reports (docs/formats.md)")
    offers: list[PlanOffer]
    kpis: Kpis | None
    warnings: list[str]
    binding: list[dict[str, Any]] | None = Field(
        None, description="the coupling rows at their limit; absent without a plan")
    offer_sets: list[OfferSet] | None = Field(
        None, description="split traffic and exploration (spec sections 7, 9): absent in an "
                          "integral plan")
    exploration: Exploration | None = Field(
        None, description="spec section 9: present when the solve was asked to explore")
    diagnosis: dict[str, Any] | None = Field(
        None, description="an infeasible instance: the least relaxation that allows a plan")
    message: str | None = None
