"""The merchandiser's workbench (issue 17): HTML pages served by the service at `/`.

Sign in with a merchandiser token, upload a catalog plan, follow its solve, read the plan,
ask why a bundle is not offered, run a what-if frontier, compare with the active plan,
publish or roll back. Server-rendered Jinja templates, htmx for the live parts and Chart.js
for the charts, both vendored (`static/vendor/`): no build step.
"""

from api.workbench import analysis, plan_views, views  # noqa: F401  (attach their routes)
from api.workbench.blueprint import workbench

__all__ = ["workbench"]
