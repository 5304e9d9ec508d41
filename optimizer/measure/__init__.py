"""Measurement from served logs (spec sections 3, 6, 9): what a plan realized, and what
another plan would have earned on the same views. docs/measurement.md defines every figure.

- `measure(logs, instance, plan, version)`: take and attach rates, incremental margin per
  view against the holdout, AOV increment, promotion ROI, each with a 95% interval, in all
  and per segment group, against the plan's own expectation.
- `off_policy(logs, instance, target)`: DM, IPS, SNIPS and DR estimates of a target plan's
  value per view, with 95% intervals.
- `measurement_html(...)`: the report page; `summary(...)`: the same in words.
"""

from optimizer.measure.html import measurement_html
from optimizer.measure.measure import measure
from optimizer.measure.measurement import Figure, Measurement
from optimizer.measure.off_policy import OffPolicyEstimate, off_policy
from optimizer.measure.text import summary

__all__ = ["Figure", "Measurement", "OffPolicyEstimate", "measure", "measurement_html",
           "off_policy", "summary"]
