"""The nightly re-optimization: re-estimate, re-solve within a budget, check the guardrails,
publish or keep the last good plan, and report."""
