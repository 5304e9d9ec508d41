"""An index file built straight from an instance and a plan (no store), opened as the
storefront opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api.index_file import IndexSource, file_name, open_index, write_index
from api.offers import ActiveIndex
from api.store.columnar import StoredCatalog, catalog_header, catalog_zip, offers_table, sets_table
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan


def file_index(folder: Path, inst: Instance, plan: Plan | dict[str, Any], version: int = 1,
               salt: str = "salt-1", holdout_salt: str = "",
               plan_id: str = "plan-1") -> ActiveIndex:
    """The index of `plan` published as `version`, with the catalog stored in columns."""
    plan = plan if isinstance(plan, Plan) else Plan.from_dict(plan)
    catalog = StoredCatalog(catalog_header(inst), catalog_zip(inst)).serving()
    sets = None if plan.offer_sets is None else sets_table(plan.offer_sets)
    path = write_index(IndexSource(version, plan_id, catalog, offers_table(plan.offers), sets),
                       folder / file_name(version))
    return ActiveIndex(open_index(path), salt, holdout_salt)
