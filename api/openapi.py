"""The OpenAPI document of the API (`GET /openapi.json`) and a page of it (`GET /docs`).

The document is made from the app itself: every route (its rule and methods) says
what it does with `@documented(...)`, naming the marshmallow schemas it loads
requests and dumps answers with (`api/schemas.py`) and the errors it may answer
(`api/errors.py`, the table the error handlers answer from). A route without a
description stops the document from being made: none goes undocumented.

The page is Swagger UI, served from the `swagger-ui-bundle` package: it works
offline, with no CDN.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    render_template,
    send_from_directory,
    url_for,
)
from marshmallow import Schema, fields
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

from api import errors
from api.errors import ErrorAnswer, ErrorSchema
from api.schemas import RUN_ID_EXAMPLE
from shared.ids import ULID_PATTERN

# Swagger UI 4 (what swagger-ui-bundle ships) renders OpenAPI 3.0, not 3.1.
OPENAPI_VERSION = "3.0.3"
BEARER = "bearerAuth"
EXTENSION_KEY = "monid.openapi"
OPERATION_ATTRIBUTE = "openapi_operation"

# The Swagger UI files the page uses (and their source maps), with their media
# types: named here rather than guessed from the machine's mime.types.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui.css.map": "application/json",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-bundle.js.map": "application/json",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
ASSET_MAX_AGE_SECONDS = 24 * 3600

blueprint = Blueprint("openapi", __name__, template_folder="templates")
View = TypeVar("View", bound=Callable[..., Any])


# --- what a route says of itself -------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    answer: str  # what the successful answer is
    schema: Any = None  # of the answer: a schema class, or an OpenAPI schema
    status: int = 200
    media_type: str = "application/json"
    content: Mapping[str, Any] | None = None  # an answer in several media types
    answer_headers: Mapping[str, str] = field(default_factory=dict)
    links: Mapping[str, Any] | None = None
    description: str | None = None
    body: type[Schema] | None = None  # the JSON body it loads
    body_example: Any = None
    query: type[Schema] | None = None  # the query parameters it loads
    headers: tuple[dict[str, Any], ...] = ()  # header parameters it reads
    errors: tuple[ErrorAnswer, ...] = ()  # besides those every route of its kind has
    described: Mapping[int, str] = field(default_factory=dict)  # its own wording of an error
    examples: Mapping[int, str] = field(default_factory=dict)  # its own example message
    public: bool = False  # needs no key
    responses: Mapping[str, Any] = field(default_factory=dict)  # answers written out whole


def documented(**description: Any) -> Callable[[View], View]:
    """Describe a route for the OpenAPI document (see `Operation`)."""
    operation = Operation(**description)

    def describe(view: View) -> View:
        setattr(view, OPERATION_ATTRIBUTE, operation)
        return view

    return describe


# Routes whose view is not this project's own, by rule.
OTHER_ROUTES = {
    "/metrics": Operation(operation_id="getMetrics", summary="Metrics, for Prometheus",
                          tag="operations", answer="The metrics, in Prometheus' text format.",
                          schema={"type": "string"}, media_type="text/plain", public=True),
}

# Path parameters, by the name a rule gives them: as the contract names them.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "run_id": {
        "in": "path", "name": "runId", "required": True,
        "description": "The run's ID, a ULID. Another caller's run is not found, exactly as "
                       "a run that does not exist.",
        "schema": {"type": "string", "pattern": ULID_PATTERN.pattern,
                   "example": RUN_ID_EXAMPLE},
    },
    "control_id": {
        "in": "path", "name": "controlId", "required": True,
        "description": "The control's ID. Another workspace's control is not found, exactly "
                       "as one that does not exist.",
        "schema": {"type": "string", "pattern": ULID_PATTERN.pattern,
                   "example": "01JH0C0NTR0000000000000000"},
    },
    "webhook_id": {
        "in": "path", "name": "webhookId", "required": True,
        "description": "The webhook's ID. Another workspace's webhook is not found, exactly "
                       "as one that does not exist.",
        "schema": {"type": "string", "pattern": ULID_PATTERN.pattern,
                   "example": "01JH0WEBH00K0000000000000A"},
    },
    "delivery_id": {
        "in": "path", "name": "deliveryId", "required": True,
        "description": "The delivery's ID. Another workspace's delivery is not found, "
                       "exactly as one that does not exist.",
        "schema": {"type": "string", "pattern": ULID_PATTERN.pattern,
                   "example": "01JH0DE1VERY00000000000000"},
    },
    "label": {
        "in": "path", "name": "label", "required": True,
        "description": "The key's label. Another workspace's key is not found, exactly as "
                       "one that does not exist.",
        "schema": {"type": "string", "minLength": 1, "example": "ci-pipeline"},
    },
    "provider": {
        "in": "path", "name": "provider", "required": True,
        "schema": {"type": "string", "minLength": 1, "example": "demo"},
    },
    "endpoint": {
        "in": "path", "name": "endpoint", "required": True,
        "description": "The endpoint's path without its first `/` (`/echo`: `echo`); the "
                       "slashes inside it may stay as they are.",
        "schema": {"type": "string", "minLength": 1, "example": "echo"},
    },
    "filename": {"in": "path", "name": "filename", "required": True,
                 "schema": {"type": "string", "enum": sorted(ASSETS)}},
}
_RULE_PARAMETER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


# --- responses and headers ---------------------------------------------------------

def _header(description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"description": description, **({"required": True} if required else {}),
            "schema": schema}


HEADERS: dict[str, dict[str, Any]] = {
    "RequestId": _header("The request's ID: the client's own `x-request-id` when it sent a "
                         "sane one (1-128 of `A-Za-z0-9._:-`), else a new one. Quote it when "
                         "reporting a problem.", required=True, type="string", minLength=1),
    "Location": _header("The run's URL: `/v1/runs/<runId>`.", required=True, type="string",
                        example=f"/v1/runs/{RUN_ID_EXAMPLE}"),
    "IdempotentReplayed": _header("`true` when this is the original answer to an earlier "
                                  "request with the same `Idempotency-Key`; no new run was "
                                  "started.", type="string", enum=["true"]),
    "WwwAuthenticate": _header("`Bearer`: send `Authorization: Bearer <api-key>`.",
                               required=True, type="string", example="Bearer"),
    "ContentDisposition": _header("`attachment; filename=\"<runId>.<format>\"`, on a download.",
                                  type="string",
                                  example=f'attachment; filename="{RUN_ID_EXAMPLE}.csv"'),
    "Allow": _header("The methods this path allows.", required=True, type="string",
                     example="GET, HEAD, OPTIONS"),
    "RetryAfter": _header("Seconds to wait before trying again.", required=True,
                          type="integer", minimum=0),
    "RateLimitLimit": _header("Requests the key may make in the current one-minute window; on "
                              "every answer to a request with a valid key.", type="integer",
                              minimum=0),
    "RateLimitRemaining": _header("Requests left in the current window.", type="integer",
                                  minimum=0),
    "RateLimitReset": _header("Seconds until the current window ends.", type="integer",
                              minimum=0),
    "CacheControl": _header("How long the answer may be reused: `public, max-age=<s>`.",
                            required=True, type="string", example="public, max-age=60"),
    "ETag": _header("The answer's version: send it back in `If-None-Match` to get a `304` "
                    "while it has not changed.", required=True, type="string",
                    example='"3f2a9c0d1e4b5a6f"'),
}

# On every answer of a /v1 route, when the request had a valid key.
QUOTA_HEADERS = {"RateLimit-Limit": "RateLimitLimit", "RateLimit-Remaining": "RateLimitRemaining",
                 "RateLimit-Reset": "RateLimitReset"}
# The headers an error answer always carries, as the document has them: by reference,
# or (a header that is optional elsewhere) required here.
ERROR_HEADERS: dict[str, Any] = {
    "WWW-Authenticate": "WwwAuthenticate",
    "Allow": "Allow",
    "Retry-After": "RetryAfter",
    **{name: {**HEADERS[component], "required": True}
       for name, component in QUOTA_HEADERS.items()},
}

# Every /v1 route can answer these, whatever it does.
V1_ERRORS = (errors.UNAUTHORIZED, errors.METHOD_NOT_ALLOWED, errors.RATE_LIMITED,
             errors.INTERNAL, errors.SERVICE_UNAVAILABLE)
# And a route that reads a JSON body these.
BODY_ERRORS = (errors.VALIDATION_FAILED, errors.PAYLOAD_TOO_LARGE,
               errors.UNSUPPORTED_MEDIA_TYPE)
PUBLIC_ERRORS = (errors.METHOD_NOT_ALLOWED, errors.INTERNAL)

V1_SECURITY: list[dict[str, list[str]]] = [{BEARER: []}]
REQUEST_ID_PARAMETER = {
    "in": "header", "name": "x-request-id", "required": False,
    "description": "The client's own request ID; echoed in the answer's `x-request-id` "
                   "when sane (1-128 of `A-Za-z0-9._:-`).",
    "schema": {"type": "string"},
}
TAGS = [
    {"name": "runs", "description": "Start runs, poll them, list them, stop them."},
    {"name": "catalog", "description": "The providers' endpoints a caller can run."},
    {"name": "wallet", "description": "The caller's prepaid wallet."},
    {"name": "account", "description": "Who the key belongs to: its user and workspace."},
    {"name": "controls", "description": "Spend controls: budgets and run caps that block "
                                        "runs, and what they said of each run."},
    {"name": "webhooks", "description": "Be told of runs' ends: standing webhooks, the "
                                        "secrets that sign deliveries, and the delivery log."},
    {"name": "public", "description": "The catalog for anyone, without a key: rate-limited "
                                      "per client address, and cacheable."},
    {"name": "operations", "description": "Health, readiness and this document; no key "
                                          "needed."},
]

DESCRIPTION = """\
The monid run API: ask for a data endpoint of a provider to be run, get a run ID at \
once, and poll for the result.

- **Authentication**: `Authorization: Bearer <api-key>` on every `/v1` route.
- **Errors**: every non-2xx answer has the body \
`{"code", "message", "errorCode", "errors"?}`.
- **Every answer** carries an `x-request-id` header.
- **Money** is a JSON number of US dollars; **timestamps** are ISO 8601 UTC with \
milliseconds (`2026-03-28T10:30:00.000Z`).
"""


def _version() -> str:
    try:
        return metadata.version("monid-runs")
    except metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "0.0.0"


def _only_null_beside_reference(converter: Any, field: fields.Field, ret: dict[str, Any],
                                **_: Any) -> dict[str, Any]:
    """For OpenAPI 3.0, apispec writes a nullable nested schema as `anyOf: [{"type":
    "object", "nullable": true}, {"$ref": ...}]`, whose first branch admits any object
    at all; narrow that branch to null alone, so answers are checked against the
    reference."""
    for branch in ret.get("anyOf", []):
        if branch == {"type": "object", "nullable": True}:
            branch["enum"] = [None]
    return {}


def _drop_nulls_from_parameters(document: dict[str, Any]) -> None:
    """A query parameter is absent or a string, never null. The request schemas give
    optional parameters a `None` default (which makes marshmallow allow null), and
    apispec documents that as `nullable`, a `null` default and a `null` choice:
    take those out of the parameters."""
    for path_item in document["paths"].values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                schema.pop("nullable", None)
                if "default" in schema and schema["default"] is None:
                    del schema["default"]
                if "enum" in schema:
                    schema["enum"] = [choice for choice in schema["enum"] if choice is not None]


def _error_responses(operation: Operation, max_body_bytes: int) -> dict[str, Any]:
    """The operation's error answers, by status, in the envelope."""
    kinds = [*operation.errors]
    if not operation.public:
        kinds += V1_ERRORS
    else:
        kinds += PUBLIC_ERRORS
    if operation.body is not None:
        kinds += BODY_ERRORS
    by_status: dict[int, list[ErrorAnswer]] = {}
    for kind in kinds:
        same = by_status.setdefault(kind.status, [])
        if kind not in same:
            same.append(kind)
    answers = {}
    for status, same in by_status.items():
        first = same[0]
        meaning = operation.described.get(status) or " ".join(
            kind.meaning.format(max_body_bytes=max_body_bytes) for kind in same)
        headers = {name: ERROR_HEADERS[name] for kind in same for name in kind.headers}
        example = {"code": status, "message": operation.examples.get(status, first.example),
                   "errorCode": first.code}
        answers[str(status)] = {
            "description": meaning,
            "headers": {"x-request-id": "RequestId", **headers},
            "content": {"application/json": {"schema": ErrorSchema, "example": example}},
        }
    return answers


def _operation(operation: Operation, path_parameters: list[dict[str, Any]],
               max_body_bytes: int) -> dict[str, Any]:
    content = operation.content or {operation.media_type: {"schema": operation.schema}}
    success: dict[str, Any] = {
        "description": operation.answer,
        "headers": {"x-request-id": "RequestId", **operation.answer_headers},
        "content": content,
    }
    if operation.links:
        success["links"] = operation.links
    responses = {str(operation.status): success,
                 **_error_responses(operation, max_body_bytes), **operation.responses}
    responses = dict(sorted(responses.items()))
    parameters = [*path_parameters]
    if operation.query is not None:
        parameters.append({"in": "query", "schema": operation.query})
    parameters += operation.headers
    described: dict[str, Any] = {"operationId": operation.operation_id,
                                 "tags": [operation.tag], "summary": operation.summary}
    if operation.description:
        described["description"] = operation.description
    if operation.body is not None:
        body: dict[str, Any] = {"schema": operation.body}
        if operation.body_example is not None:
            body["example"] = operation.body_example
        described["requestBody"] = {"required": True, "content": {"application/json": body}}
    if operation.public:
        return {"security": [], **described, **({"parameters": parameters} if parameters else {}),
                "responses": responses}
    for response in responses.values():
        headers = response["headers"]
        headers.update({name: header for name, header in QUOTA_HEADERS.items()
                        if name not in headers})
    return {"security": V1_SECURITY, **described,
            "parameters": [*parameters, REQUEST_ID_PARAMETER], "responses": responses}


def _documented_routes(app: Flask) -> list[tuple[str, str, Operation, list[dict[str, Any]]]]:
    """(path, method, operation, path parameters) of every route of the app, /v1 first."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        operation = getattr(view, OPERATION_ATTRIBUTE, None) or OTHER_ROUTES.get(rule.rule)
        if operation is None:
            raise LookupError(f"route {rule.rule} ({rule.endpoint}) is not documented: "
                              "describe it with @documented(...)")
        names = _RULE_PARAMETER.findall(rule.rule)
        path = _RULE_PARAMETER.sub(lambda m: "{" + PATH_PARAMETERS[m.group(1)]["name"] + "}",
                                   rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((path, method.lower(), operation,
                           [PATH_PARAMETERS[name] for name in names]))
    return sorted(routes, key=lambda route: route[2].public)


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every route of `app`."""
    max_body_bytes = app.config["MAX_CONTENT_LENGTH"]
    plugin = MarshmallowPlugin()
    spec = APISpec(title="monid run API", version=_version(), openapi_version=OPENAPI_VERSION,
                   plugins=[plugin], info={"description": DESCRIPTION}, tags=TAGS)
    assert plugin.converter is not None  # set by APISpec's init_spec
    plugin.converter.add_attribute_function(_only_null_beside_reference)
    spec.components.security_scheme(BEARER, {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`monid_live_...` or `monid_test_...`), made with "
                       "`monidctl keys create`.",
    })
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, operation, path_parameters in _documented_routes(app):
        paths.setdefault(path, {})[method] = _operation(operation, path_parameters,
                                                        max_body_bytes)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _drop_nulls_from_parameters(document)
    return document


# --- serving it --------------------------------------------------------------------


class ServedDocument:
    """One app's document, built on the first request that needs it (by then every
    route of the app is registered) and kept, serialized, for the app's life."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body: bytes | None = None

    def body(self, app: Flask) -> bytes:
        with self._lock:
            if self._body is None:
                document = build_document(app)
                self._body = json.dumps(document, separators=(",", ":")).encode()
            return self._body


@blueprint.get("/openapi.json")
@documented(operation_id="getOpenApiDocument", summary="This document", tag="operations",
            answer="The OpenAPI document of the API.", schema={"type": "object"}, public=True)
def document() -> Response:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    served: ServedDocument = app.extensions[EXTENSION_KEY]
    return Response(served.body(app), mimetype="application/json")


@blueprint.get("/docs")
@documented(operation_id="getDocsPage", summary="A page of this document", tag="operations",
            answer="An HTML page rendering this document (Swagger UI).",
            schema={"type": "string"}, media_type="text/html", public=True)
def docs_page() -> str:
    return render_template(
        "docs.html",
        css_url=url_for("openapi.docs_asset", filename="swagger-ui.css"),
        icon32_url=url_for("openapi.docs_asset", filename="favicon-32x32.png"),
        icon16_url=url_for("openapi.docs_asset", filename="favicon-16x16.png"),
        bundle_url=url_for("openapi.docs_asset", filename="swagger-ui-bundle.js"),
        document_url=url_for("openapi.document"),
    )


def _asset_schema(media_type: str) -> dict[str, Any]:
    if media_type == "application/json":
        return {"type": "object"}
    if media_type.startswith("text/"):
        return {"type": "string"}
    return {"type": "string", "format": "binary"}


@blueprint.get("/docs/assets/<path:filename>")
@documented(operation_id="getDocsAsset", summary="A file of the page", tag="operations",
            description="Swagger UI's files, served from the installed `swagger-ui-bundle` "
                        "package, so that the page works offline.",
            answer="The file.", public=True,
            content={media_type: {"schema": _asset_schema(media_type)}
                     for media_type in sorted(set(ASSETS.values()))},
            errors=(errors.NOT_FOUND,), described={404: "No such file (`NOT_FOUND`)."})
def docs_asset(filename: str) -> Response:
    media_type = ASSETS.get(filename)
    if media_type is None:
        raise NotFound()
    return send_from_directory(str(swagger_ui_path), filename, mimetype=media_type,
                               max_age=ASSET_MAX_AGE_SECONDS)


def init_app(app: Flask) -> None:
    """Serve the document and its page on `app`. Safe to call twice."""
    if blueprint.name not in app.blueprints:
        app.extensions[EXTENSION_KEY] = ServedDocument()
        app.register_blueprint(blueprint)
