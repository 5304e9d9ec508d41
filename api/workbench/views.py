"""Signing in and out, the home page, uploading a catalog plan, and following its solve."""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException
from werkzeug.utils import secure_filename
from werkzeug.wrappers import Response

from api.openapi import Param
from api.store import FINISHED
from api.workbench import present, queries, session
from api.workbench.blueprint import PUBLIC, page, workbench
from api.workbench_job import is_frontier
from optimizer.errors import InputError, Issue
from optimizer.io import ZipLimits, load_instance
from optimizer.io.safe_json import parse_json
from optimizer.model.instance import Instance

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with entries, an empty zip


def _local(target: str | None) -> str:
    """A page of the workbench to go to after signing in: `target` when it is a plain local
    path (one leading `/`, no scheme, no host, no backslash and no control character: a
    browser drops tabs and newlines, so `/%09/evil` would become `//evil`) that a workbench
    page answers with a GET; else the home page."""
    home: str = url_for("workbench.home")
    if not target or not target.startswith("/") or target.startswith("//") or \
            any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or \
            parts.path.startswith("//"):
        return home
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return home
    try:
        endpoint, _ = adapter.match(parts.path, "GET")
    except HTTPException:  # no page there (or only another method, or a redirect)
        return home
    if not str(endpoint).startswith(f"{workbench.name}.") or endpoint in PUBLIC:
        return home
    return target


@workbench.route("/sign-in", methods=["GET", "POST"])
@page("Sign in to the workbench with a merchandiser token",
      Param("next", "query", "the page to open after signing in"))
def sign_in() -> Any:
    error = None
    if request.method == "GET" and session.actor() is not None:
        return redirect(_local(request.args.get("next")), 303)
    if request.method == "POST":
        try:
            session.sign_in(request.form.get("token", ""))
        except session.SignInRefused as exc:
            error = exc.why
        else:
            return redirect(_local(request.args.get("next")), 303)
    status = 200 if error is None else 401
    return render_template("workbench/sign_in.html", error=error,
                           next=request.args.get("next")), status


@workbench.post("/sign-out")
@page("Sign out of the workbench")
def sign_out() -> Response:
    session.sign_out()
    flash("You are signed out.")
    return redirect(url_for("workbench.sign_in"), 303)


def _home(issues: list[present.IssueRow] | None = None, more: int = 0,
          upload_name: str | None = None, form: dict[str, Any] | None = None) -> str:
    store = queries.store()
    active = store.active_summary()
    active_plan = None
    if active is not None:
        header = active["plan"]
        active_plan = {"version": active["version"], "plan_id": active["plan_id"],
                       "published_at": active["created_at"], "published_by": active["actor"],
                       "instance": header.get("instance"), "objective": header.get("objective"),
                       "currency": active["currency"]}
    cfg = current_app.config
    defaults = {"time_limit": f"{cfg['SOLVE_TIME_LIMIT']:g}", "split_traffic": False}
    return render_template("workbench/home.html", active=active_plan, runs=queries.recent_runs(),
                           issues=issues, more=more, upload_name=upload_name,
                           form={**defaults, **(form or {})}, nonce=secrets.token_hex(16),
                           max_time=cfg["MAX_SOLVE_TIME_LIMIT"],
                           max_bytes=cfg["MAX_CONTENT_LENGTH"])


@workbench.get("/")
@page("The workbench: upload a catalog plan, follow solves, read and publish plans")
def home() -> str:
    return _home()


def _options(form: Any) -> dict[str, Any]:
    """The solve options of the upload form, checked as `POST /v1/catalog-plans` checks its
    query (the same names, rules and defaults)."""
    cfg = current_app.config
    most = cfg["MAX_SOLVE_TIME_LIMIT"]
    raw = (form.get("time_limit") or "").strip()
    time_limit = cfg["SOLVE_TIME_LIMIT"]
    if raw:
        try:
            time_limit = float(raw)
        except ValueError:
            raise InputError([Issue("time_limit", "must be a number", raw)]) from None
        if not 0 < time_limit <= most:
            raise InputError([Issue("time_limit", f"must be in (0, {most:g}] seconds",
                                    time_limit)])
    return {"time_limit": time_limit, "gap": 1e-4, "solver": "highs", "threads": 1,
            "split_traffic": form.get("split_traffic") == "true"}


class CatalogRefused(Exception):
    """The library's issues with an upload, and the ids of its JSON rows to name them by."""

    def __init__(self, error: InputError, labels: dict[str, str]) -> None:
        super().__init__(str(error))
        self.issues, self.labels = error.issues, labels


def read_catalog(upload: FileStorage | None) -> Instance:
    """The uploaded catalog, read and validated by the library exactly as a file of that
    kind (`optimizer.io.load_instance`): JSON, or a zip of a CSV or Parquet folder, within
    the service's zip limits. `CatalogRefused` lists what is wrong."""
    if upload is None or not upload.filename:
        raise InputError([Issue("catalog", "must be a file: a JSON catalog, or a zip of a "
                                "folder of CSV or Parquet tables", has_value=False)])
    cfg = current_app.config
    limits = ZipLimits(cfg["MAX_ZIP_ENTRIES"], cfg["MAX_UNZIPPED_BYTES"])
    stem = Path(secure_filename(upload.filename) or "catalog").stem or "catalog"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        upload.save(path)
        with path.open("rb") as f:
            head = f.read(4)
        kind = ".zip" if head in ZIP_MAGIC else ".json"
        named = path.rename(Path(tmp) / f"{stem}{kind}")
        try:
            return load_instance(named, limits)
        except InputError as exc:
            labels: dict[str, str] = {}
            if kind == ".json":
                with contextlib.suppress(InputError):  # not JSON at all: the issue says so
                    labels = present.row_labels(parse_json(named.read_bytes(), named.name))
            raise CatalogRefused(exc, labels) from None


@workbench.post("/catalogs")
@page("Upload a catalog plan and start its solve", ok=303,
      what="Redirect to the run's page; 422 with the catalog's issues listed")
def upload() -> Any:
    form = request.form
    upload_file = request.files.get("catalog")
    keep = {"time_limit": form.get("time_limit", ""), "split_traffic": form.get("split_traffic") == "true"}
    name = upload_file.filename if upload_file is not None else None
    try:
        options = _options(form)
        instance = read_catalog(upload_file)
    except InputError as exc:  # the form's fields: the time limit, no file at all
        return _home(*present.issue_rows(exc.issues, where="the upload form"), name, keep), 422
    except CatalogRefused as exc:
        return _home(*present.issue_rows(exc.issues, exc.labels), name, keep), 422
    nonce = form.get("nonce") or ""
    key = f"workbench-{nonce}" if 16 <= len(nonce) <= 64 and nonce.isalnum() else None
    actor = session.actor()
    assert actor is not None  # the guard let only a signed-in merchandiser in
    run_id, _ = queries.store().submit(instance.name, instance, None, options, actor, key)
    return redirect(url_for("workbench.run_page", run_id=run_id), 303)


def _progress_context(run_id: str) -> dict[str, Any]:
    run = queries.store().run(run_id)
    progress = json.loads(run["progress"]) if run["progress"] else None
    finished = run["status"] in FINISHED
    history: list[list[float | None]] = []
    currency = None
    if finished and run["plan_id"]:
        bundle = queries.plan_bundle(run["plan_id"])
        currency = bundle.currency
        history = [list(h) for h in (bundle.plan.get("solver") or {}).get("history") or []]
    point = None
    if progress is not None:
        point = {k: progress.get(k) for k in ("objective", "bound", "gap", "elapsed")}
    return {"run": run, "progress": progress, "point": point, "history": history,
            "finished": finished, "currency": currency,
            "options": json.loads(run["options"])}


@workbench.get("/runs/<run_id>")
@page("A solve run: its status and progress, live")
def run_page(run_id: str) -> Any:
    if is_frontier(json.loads(queries.store().run(run_id)["options"])):
        return redirect(url_for("workbench.frontier_page", run_id=run_id), 303)
    return render_template("workbench/run.html", **_progress_context(run_id))


@workbench.get("/runs/<run_id>/progress")
@page("A run's progress: the fragment the run's page polls every second")
def run_progress(run_id: str) -> str:
    return render_template("workbench/_progress.html", **_progress_context(run_id))


@workbench.post("/runs/<run_id>/cancel")
@page("Cancel a run", ok=303, what="Redirect to the run's page")
def cancel_run(run_id: str) -> Response:
    queries.store().cancel(run_id)
    flash("Cancel requested: a running solve stops within about a second, keeping its best plan.")
    return redirect(url_for("workbench.run_page", run_id=run_id), 303)
