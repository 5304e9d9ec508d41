"""The OpenAPI 3.1 document, generated from the registered routes and their models."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel

from api.schemas import ProblemDetails
from optimizer import __version__

F = TypeVar("F", bound=Callable[..., Any])
INSTANCE_SCHEMA = Path(__file__).resolve().parent.parent / "optimizer" / "schema" / \
    "instance-1.schema.json"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # query | header
    description: str
    type: str = "string"
    required: bool = False


@dataclass(frozen=True)
class Doc:
    summary: str
    tag: str
    responses: dict[int, type[BaseModel] | str]  # a model, or a description for bodiless ones
    body: dict[str, str] | None = None  # content type -> schema name
    params: tuple[Param, ...] = ()
    extra_content: dict[int, dict[str, str]] = field(default_factory=dict)


def doc(summary: str, tag: str, responses: dict[int, type[BaseModel] | str],
        body: dict[str, str] | None = None, params: tuple[Param, ...] = (),
        extra_content: dict[int, dict[str, str]] | None = None) -> Callable[[F], F]:
    def attach(view: F) -> F:
        view._openapi = Doc(summary, tag, responses, body, params, extra_content or {})  # type: ignore[attr-defined]
        return view
    return attach


def build(app: Flask) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        meta: Doc | None = getattr(view, "_openapi", None)
        if meta is None:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                meta, rule.arguments, getattr(view, "roles", None), schemas, f"{rule.endpoint}")
    schemas.update(_instance_schemas())
    return {
        "openapi": "3.1.0",
        "info": {"title": "offeropt", "version": __version__,
                 "description": "Offer optimization: catalog plans, solve runs, publication, "
                                "and the storefront offers API."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "A merchandiser or storefront token"}}},
    }


def _operation(meta: Doc, arguments: set[str], roles: tuple[str, ...] | None,
               schemas: dict[str, Any], operation_id: str) -> dict[str, Any]:
    params = [{"name": a, "in": "path", "required": True, "schema": {"type": "string"}}
              for a in sorted(arguments)]
    params += [{"name": p.name, "in": p.where, "required": p.required, "description": p.description,
                "schema": {"type": p.type}} for p in meta.params]
    responses: dict[str, Any] = {}
    for status, model in meta.responses.items():
        responses[str(status)] = _response(model, schemas, meta.extra_content.get(status))
    problem = _ref(ProblemDetails, schemas)
    errors = {400: "Malformed request", 404: "Unknown id", 413: "Body too large",
              422: "Input breaks the spec", 500: "Internal error"}
    if roles:
        errors |= {401: "Missing or unknown bearer token", 403: "The token's role may not do this"}
    for status, description in errors.items():
        responses.setdefault(str(status), {"description": description, "content": {
            "application/problem+json": {"schema": problem}}})
    op: dict[str, Any] = {"operationId": operation_id.replace(".", "_"), "summary": meta.summary,
                          "tags": [meta.tag], "parameters": params, "responses": responses}
    if roles:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Roles: {', '.join(roles)}."
    if meta.body:
        op["requestBody"] = {"required": True, "content": {
            ctype: {"schema": _named(name, schemas)} for ctype, name in meta.body.items()}}
    return op


def _response(model: type[BaseModel] | str, schemas: dict[str, Any],
              extra: dict[str, str] | None) -> dict[str, Any]:
    if isinstance(model, str):
        return {"description": model}
    content: dict[str, Any] = {"application/json": {"schema": _ref(model, schemas)}}
    for ctype, description in (extra or {}).items():
        content[ctype] = {"schema": {"type": "string", "description": description}}
    return {"description": (model.__doc__ or model.__name__).strip().splitlines()[0],
            "content": content}


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _named(name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    if name == "Instance":
        return {"$ref": "#/components/schemas/Instance"}
    if name in ("RollbackRequest", "EventsRequest"):
        from api import schemas as models

        return _ref(getattr(models, name), schemas)
    return {"type": "string", "format": "binary"}


def _instance_schemas() -> dict[str, Any]:
    """The published instance@1 schema, its $defs rehomed under components as Instance_*."""
    text = INSTANCE_SCHEMA.read_text().replace("#/$defs/", "#/components/schemas/Instance_")
    schema = json.loads(text)
    defs = schema.pop("$defs")
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return {"Instance": schema, **{f"Instance_{k}": v for k, v in defs.items()}}
