"""The HTTP service: a Flask app factory. Validation and solving live in `optimizer`."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    # Imported here, not at package import: `cli.main serve` must set PROMETHEUS_MULTIPROC_DIR
    # before prometheus_client creates any metric (it picks its storage then).
    from api import ops, problems, settings
    from api.events import events_api
    from api.jobs import JobRunner
    from api.measurement import measurement_api
    from api.offers import IndexHolder, offers_api
    from api.plans import plans_api
    from api.runs import runs_api
    from api.store import Store
    from api.workbench import workbench  # the merchandiser's HTML pages, at /
    from api.workbench_api import workbench_api  # explanations and frontiers

    app = Flask(__name__)
    app.config.from_mapping(settings.DEFAULTS)
    app.config.from_prefixed_env("OFFEROPT")  # OFFEROPT_X=... sets app.config["X"]
    if test_config:
        app.config.from_mapping(test_config)
    settings.finalize(app.config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    store = Store.open(app.config["DATABASE_URL"])
    app.extensions["offeropt.store"] = store
    app.extensions["offeropt.index"] = IndexHolder.configured(store, app.config)
    for blueprint in (ops.ops_api, runs_api, plans_api, offers_api, events_api,
                      measurement_api, workbench_api, workbench):
        app.register_blueprint(blueprint)
    if app.config["RECORDING"]:
        from api.recording import Recorder

        recorder = Recorder(store, Path(app.config["JOURNAL_DIR"]), app.config["FLUSH_SECONDS"],
                            app.config["REPLAY_JOURNALS"])
        recorder.start()
        app.extensions["offeropt.recorder"] = recorder
        atexit.register(recorder.stop)
    problems.register(app)
    ops.install_hooks(app)
    if app.config["OFFERS_FAST_PATH"] and not app.config.get("TRUSTED_HOSTS"):
        from api.storefront_path import StorefrontPath

        app.wsgi_app = StorefrontPath(app)  # type: ignore[method-assign]
    if app.config["RUN_JOBS"]:
        runner = JobRunner(store, app.config["DATABASE_URL"], app.config["SOLVE_WORKERS"],
                           on_finished=ops.observe_solve)
        runner.start()
        app.extensions["offeropt.jobs"] = runner
        atexit.register(runner.stop)
    return app
