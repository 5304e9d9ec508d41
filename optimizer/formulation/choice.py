"""The local step of a decomposition: per segment, or per audience under its caps."""

from __future__ import annotations

from optimizer.formulation.audience_choice import AudienceChooser
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.segment_choice import Chooser, SegmentBest


def chooser_for(cands: Candidates) -> Chooser:
    """Per segment, or per audience where frequency or repeat caps tie segments (spec 8)."""
    if cands.contacts.audience_capped:
        return AudienceChooser(cands)
    return SegmentBest(cands)
