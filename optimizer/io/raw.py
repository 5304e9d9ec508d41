"""What a reader produces before validation: coerced tables, policy values and issues."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from optimizer.errors import Issue
from optimizer.io.fields import POLICY_FIELDS, Source, coerce
from optimizer.io.fields import RawTable as RawTable
from optimizer.io.safe_json import printable

_POLICY_RULES = {
    "ladder": "must be a list of numbers",
    "int": "must be an integer",
    "number": "must be a number",
    "bool": "must be true or false",
}


@dataclass
class RawInstance:
    origin: str
    name: str
    currency: str | None
    tables: dict[str, RawTable] = field(default_factory=dict)
    policy: dict[str, object] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def coerce_policy(values: dict[str, object], source: Source, prefix: str, raw: RawInstance) -> None:
    """Coerce the policy object's given fields into `raw.policy`; unknown keys are warned about."""
    known = {spec.name: spec for spec in POLICY_FIELDS}
    for key in values:
        if key not in known:
            raw.warnings.append(f"{prefix}.{printable(str(key))}: unknown policy field, ignored")
    for name, spec in known.items():
        if name not in values:
            continue
        typed, null, bad = coerce(pd.Series([values[name]], dtype=object), spec.kind, source)
        if bad[0]:
            raw.issues.append(Issue(f"{prefix}.{name}", _POLICY_RULES[spec.kind], values[name]))
        elif not null[0]:
            value = typed.iloc[0] if isinstance(typed, pd.Series) else np.asarray(typed)[0]
            raw.policy[name] = value.item() if isinstance(value, np.generic) else value
