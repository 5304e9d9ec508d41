"""offeropt: expected-incremental-margin offer optimization (see ../shared/spec/model.md).

The path through the package: `io` validates input into an immutable `Instance`;
`formulation.candidates.expand` builds the candidate table; `formulation.milp.formulate`
builds the MIP as arrays; a backend solves it; `plan.document.build_plan` maps the result
back to a typed `offeropt/plan@1` document (`plan.model.Plan`), which
`plan.check.check_plan` re-verifies independently.
"""

from __future__ import annotations

from optimizer.errors import InputError, Issue, OfferOptError

__version__ = "0.1.0"

__all__ = ["InputError", "Issue", "OfferOptError", "__version__"]
