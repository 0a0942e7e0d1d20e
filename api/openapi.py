"""The OpenAPI document of the API (`GET /openapi.json`) and a page of it (`GET /docs`).

Request bodies and query parameters are described by the very marshmallow schemas
that validate requests, so the document cannot drift from what the routes accept.
Answers are described by the documentation-only schemas below: the routes build
their JSON by hand, and the fuzzing test (`tests/e2e/test_schemathesis.py`)
checks every answer against these.

The page is Swagger UI, served from the `swagger-ui-bundle` package: it works
offline, with no CDN.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from importlib import metadata
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    render_template_string,
    send_from_directory,
    url_for,
)
from marshmallow import INCLUDE, Schema, fields, validate
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

from api.catalog import DiscoverSchema, InspectSchema, ListEndpointsSchema
from api.items import CSV_MEDIA_TYPE, JSONL_MEDIA_TYPE, MAX_CSV_COLUMNS
from api.runs import MAX_WAIT_SECONDS
from api.schemas import ListItemsSchema, ListRunsSchema, StartRunSchema
from shared.ids import ULID_PATTERN
from shared.store import STATUSES

# Swagger UI 4 (what swagger-ui-bundle ships) renders OpenAPI 3.0, not 3.1.
OPENAPI_VERSION = "3.0.3"
BEARER = "bearerAuth"
EXTENSION_KEY = "monid.openapi"

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

blueprint = Blueprint("openapi", __name__)

ISO_EXAMPLE = "2026-03-28T10:30:00.000Z"
RUN_ID_EXAMPLE = "01JGXYZABCDEFGHJKMNPQRSTVW"
ATTEMPT_OUTCOMES = ["OK", "TRANSIENT_ERROR", "PERMANENT_ERROR", "TIMEOUT", "LOST", "STOPPED"]


# --- answers: documentation-only schemas -------------------------------------------


class MoneySchema(Schema):
    value = fields.Float(required=True, metadata={"description": "US dollars.",
                                                  "example": 0.003})
    currency = fields.String(required=True, validate=validate.OneOf(["USD"]))


class PriceSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["PER_CALL", "PER_RESULT"]),
                         metadata={"description": "`PER_CALL`: `amount` per delivered run; "
                                                  "`PER_RESULT`: `flatFee` + `amount` per result."})
    amount = fields.Float(required=True, validate=validate.Range(min=0),
                          metadata={"description": "US dollars.", "example": 0.003})
    currency = fields.String(required=True, validate=validate.OneOf(["USD"]))
    flatFee = fields.Float(validate=validate.Range(min=0),
                           metadata={"description": "US dollars per run; `PER_RESULT` only."})


class AttemptSchema(Schema):
    number = fields.Integer(required=True, validate=validate.Range(min=1))
    startedAt = fields.DateTime(required=True, allow_none=True)
    endedAt = fields.DateTime(required=True, allow_none=True,
                              metadata={"description": "Null while the attempt is in flight."})
    outcome = fields.String(required=True, allow_none=True,
                            validate=validate.OneOf(ATTEMPT_OUTCOMES),
                            metadata={"description": "Null while the attempt is in flight."})
    httpStatus = fields.Integer(required=True, allow_none=True,
                                metadata={"description": "The provider's HTTP status, where "
                                                         "there was one."})
    nextAttemptAt = fields.DateTime(required=True, allow_none=True,
                                    metadata={"description": "When the next try is due, while "
                                                             "one is scheduled."})
    message = fields.String(required=True, allow_none=True,
                            metadata={"description": "How the attempt ended, in words: the "
                                                     "provider's status and message where it "
                                                     "ran a job that failed."})


class ProviderResponseSchema(Schema):
    class Meta:
        unknown = INCLUDE

    httpStatus = fields.Integer(allow_none=True,
                                metadata={"description": "The provider's final HTTP status."})
    error = fields.Raw(metadata={"description": "The provider's error body, for a non-2xx "
                                                "answer."})


class RunErrorSchema(Schema):
    class Meta:
        unknown = INCLUDE

    source = fields.String(validate=validate.OneOf(["provider", "platform"]))
    code = fields.String(metadata={
        "example": "RESPONSE_TOO_LARGE",
        "description": "`RETRIES_EXHAUSTED` (transient failures outlasted the attempts), "
                       "`PROVIDER_RUN_FAILED` (the provider's job ended without success: "
                       "an Apify actor run `FAILED`, `ABORTED` or `TIMED-OUT`), "
                       "`RESPONSE_TOO_LARGE` (the result is over its bounds: "
                       "`MAX_RESULT_BYTES`, `MAX_RESULT_ITEMS`, or the provider's answer over "
                       "`PROVIDER_MAX_RESPONSE_BYTES`), `DEADLINE_EXCEEDED` (the endpoint's "
                       "deadline, counted from the run's first start, passed), "
                       "`QUEUE_TIMEOUT` (the run could not start within the queue limit), "
                       "`WORKER_LOST`, `PROVIDER_NOT_CONFIGURED`, `ENDPOINT_UNAVAILABLE`, "
                       "`INTERNAL`."})
    message = fields.String()


class _RunIdentitySchema(Schema):
    """The fields that name a run, first in every answer about one."""

    runId = fields.String(required=True, metadata={"pattern": ULID_PATTERN.pattern,
                                                   "example": RUN_ID_EXAMPLE})
    caller = fields.String(required=True, metadata={"example": "USER#user_abc123"})
    provider = fields.String(required=True, metadata={"example": "apify"})
    providerName = fields.String(required=True, metadata={"example": "Apify"})
    endpoint = fields.String(required=True, metadata={"example": "/apidojo/tweet-scraper"})


class AcceptedRunSchema(_RunIdentitySchema):
    status = fields.String(required=True, validate=validate.OneOf(["RUNNING"]))
    price = fields.Nested(PriceSchema, required=True)
    createdAt = fields.DateTime(required=True, metadata={"example": ISO_EXAMPLE})


class RunSummarySchema(_RunIdentitySchema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    stoppable = fields.Boolean(required=True,
                               metadata={"description": "True until the run has ended."})
    resultCount = fields.Integer(required=True, allow_none=True)
    providerResponse = fields.Nested(ProviderResponseSchema, required=True, allow_none=True,
                                     metadata={"description": "What the provider said; null "
                                                              "until it has answered."})
    error = fields.Nested(RunErrorSchema, required=True, allow_none=True,
                          metadata={"description": "Why a `FAILED` or `TIMED_OUT` run "
                                                   "ended so."})
    price = fields.Nested(PriceSchema, required=True)
    cost = fields.Nested(MoneySchema, required=True, allow_none=True,
                         metadata={"description": "What the run cost; null until it ends."})
    createdAt = fields.DateTime(required=True, metadata={"example": ISO_EXAMPLE})
    startedAt = fields.DateTime(required=True, allow_none=True,
                                metadata={"description": "Null until a worker started it "
                                                         "(a run waiting for its turn under "
                                                         "a concurrency limit has not); the "
                                                         "endpoint's deadline counts from "
                                                         "here."})
    completedAt = fields.DateTime(required=True, allow_none=True)


class RunSchema(RunSummarySchema):
    input = fields.Dict(required=True, metadata={"description": "The input, in the form it "
                                                                "was sent."})
    output = fields.Raw(required=True, metadata={
        "description": "The provider's data once the run has ended; null before. The whole "
                       "result up to `MAX_INLINE_OUTPUT_BYTES` (256 KiB by default); past it, "
                       "the first of its items that fit, in the answer's own shape, and "
                       "`outputTruncated` is true: read them all at `itemsUrl`."})
    outputTruncated = fields.Boolean(required=True, metadata={
        "description": "True when `output` holds only the first of the run's items."})
    itemsUrl = fields.String(required=True, metadata={
        "description": "Where the run's items are, in pages or as a download.",
        "example": f"/v1/runs/{RUN_ID_EXAMPLE}/items"})
    attempts = fields.List(fields.Nested(AttemptSchema), required=True)


def _next_cursor() -> fields.String:
    return fields.String(required=True, allow_none=True,
                         metadata={"description": "The next page's cursor; null on the last page."})


class RunListSchema(Schema):
    items = fields.List(fields.Nested(RunSummarySchema), required=True)
    cursor = _next_cursor()


class RunItemsPageSchema(Schema):
    items = fields.List(fields.Raw(), required=True,
                        metadata={"description": "The run's items, in order."})
    cursor = _next_cursor()
    total = fields.Integer(required=True, validate=validate.Range(min=0),
                           metadata={"description": "How many items the run has: its "
                                                    "`resultCount` once it has ended "
                                                    "`COMPLETED`, else 0."})


class StopAnswerSchema(Schema):
    runId = fields.String(required=True, metadata={"pattern": ULID_PATTERN.pattern,
                                                   "example": RUN_ID_EXAMPLE})
    status = fields.String(required=True, validate=validate.OneOf(["STOPPING"]))
    message = fields.String(required=True)


class WalletBalanceSchema(Schema):
    balance = fields.Nested(MoneySchema, required=True,
                            metadata={"description": "Everything in the wallet."})
    held = fields.Nested(MoneySchema, required=True,
                         metadata={"description": "Held for runs that have not ended."})
    available = fields.Nested(MoneySchema, required=True,
                              metadata={"description": "`balance` less `held`: what new runs "
                                                       "can use."})


class DiscoverResultSchema(Schema):
    provider = fields.String(required=True)
    providerName = fields.String(required=True)
    endpoint = fields.String(required=True)
    description = fields.String(required=True)
    price = fields.Nested(PriceSchema, required=True)
    score = fields.Float(required=True, validate=validate.Range(min=0, max=1),
                         metadata={"description": "Relevance to the query, 0 to 1."})
    tags = fields.List(fields.String(), required=True)


class DiscoverResultsSchema(Schema):
    results = fields.List(fields.Nested(DiscoverResultSchema), required=True,
                          metadata={"description": "Best match first."})
    query = fields.String(required=True)
    count = fields.Integer(required=True, validate=validate.Range(min=0))


class EndpointSummarySchema(Schema):
    provider = fields.String(required=True, metadata={"example": "demo"})
    providerName = fields.String(required=True, metadata={"example": "Demo"})
    endpoint = fields.String(required=True, metadata={"example": "/echo"})
    name = fields.String(required=True)
    description = fields.String(required=True)
    tags = fields.List(fields.String(), required=True)
    price = fields.Nested(PriceSchema, required=True)


class EndpointCardSchema(EndpointSummarySchema):
    inputSchema = fields.Dict(required=True,
                              metadata={"description": "JSON Schema of the input (its body)."})
    queryParamsSchema = fields.Dict(metadata={"description": "JSON Schema of `queryParams`, "
                                                             "for endpoints that take them."})
    pathParamsSchema = fields.Dict(metadata={"description": "JSON Schema of `pathParams`, "
                                                            "for endpoints that take them."})
    deadlineSeconds = fields.Integer(required=True, validate=validate.Range(min=1))
    maxAttempts = fields.Integer(required=True, validate=validate.Range(min=1))
    exampleInput = fields.Dict(required=True, allow_none=True)


class EndpointListSchema(Schema):
    items = fields.List(fields.Nested(EndpointSummarySchema), required=True)
    cursor = _next_cursor()


class ErrorSchema(Schema):
    code = fields.Integer(required=True, validate=validate.Range(min=400, max=599),
                          metadata={"description": "The HTTP status."})
    message = fields.String(required=True, metadata={"description": "For people."})
    errorCode = fields.String(required=True, metadata={
        "description": "A stable machine word: `VALIDATION_FAILED`, `UNAUTHORIZED`, "
                       "`NOT_FOUND`, `ENDPOINT_NOT_FOUND`, `METHOD_NOT_ALLOWED`, "
                       "`RUN_NOT_STOPPABLE`, `WALLET_INSUFFICIENT_FUNDS`, `RATE_LIMITED`, "
                       "`IDEMPOTENCY_KEY_REUSED`, `PAYLOAD_TOO_LARGE`, `URI_TOO_LONG`, "
                       "`HEADERS_TOO_LARGE`, `UNSUPPORTED_MEDIA_TYPE`, `SERVICE_UNAVAILABLE`, "
                       "`INTERNAL`."})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "Each failing field's path and its messages."})


class ReadinessChecksSchema(Schema):
    database = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    broker = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))


class IndexSchema(Schema):
    name = fields.String(required=True, metadata={"example": "monid-runs"})
    docs = fields.String(required=True, metadata={"description": "This API's documentation.",
                                                   "example": "/docs"})
    openapi = fields.String(required=True, metadata={"description": "This document.",
                                                      "example": "/openapi.json"})
    health = fields.String(required=True, metadata={"example": "/healthz"})
    readiness = fields.String(required=True, metadata={"example": "/readyz"})


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ReadinessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready"]))
    checks = fields.Nested(ReadinessChecksSchema, required=True)


class ReadinessErrorSchema(ErrorSchema):
    checks = fields.Nested(ReadinessChecksSchema, required=True)


ANSWER_SCHEMAS: dict[str, type[Schema]] = {
    "Money": MoneySchema,
    "Price": PriceSchema,
    "Attempt": AttemptSchema,
    "ProviderResponse": ProviderResponseSchema,
    "RunError": RunErrorSchema,
    "AcceptedRun": AcceptedRunSchema,
    "RunSummary": RunSummarySchema,
    "Run": RunSchema,
    "RunList": RunListSchema,
    "RunItemsPage": RunItemsPageSchema,
    "StopAnswer": StopAnswerSchema,
    "WalletBalance": WalletBalanceSchema,
    "DiscoverResult": DiscoverResultSchema,
    "DiscoverResults": DiscoverResultsSchema,
    "EndpointSummary": EndpointSummarySchema,
    "EndpointCard": EndpointCardSchema,
    "EndpointList": EndpointListSchema,
    "Error": ErrorSchema,
    "ReadinessChecks": ReadinessChecksSchema,
    "Health": HealthSchema,
    "Readiness": ReadinessSchema,
    "ReadinessError": ReadinessErrorSchema,
}
REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "StartRun": StartRunSchema,
    "Discover": DiscoverSchema,
    "Inspect": InspectSchema,
}


# --- responses and headers ---------------------------------------------------------

HEADERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "description": "The request's ID: the client's own `x-request-id` when it sent a sane "
                       "one (1-128 of `A-Za-z0-9._:-`), else a new one. Quote it when "
                       "reporting a problem.",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    },
    "Location": {
        "description": "The run's URL: `/v1/runs/<runId>`.",
        "required": True,
        "schema": {"type": "string", "example": f"/v1/runs/{RUN_ID_EXAMPLE}"},
    },
    "IdempotentReplayed": {
        "description": "`true` when this is the original answer to an earlier request with the "
                       "same `Idempotency-Key`; no new run was started.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WwwAuthenticate": {
        "description": "`Bearer`: send `Authorization: Bearer <api-key>`.",
        "required": True,
        "schema": {"type": "string", "example": "Bearer"},
    },
    "ContentDisposition": {
        "description": "`attachment; filename=\"<runId>.<format>\"`, on a download.",
        "schema": {"type": "string",
                   "example": f'attachment; filename="{RUN_ID_EXAMPLE}.csv"'},
    },
    "Allow": {
        "description": "The methods this path allows.",
        "required": True,
        "schema": {"type": "string", "example": "GET, HEAD, OPTIONS"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimitLimit": {
        "description": "Requests the key may make in the current one-minute window; on every "
                       "answer to a request with a valid key.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimitRemaining": {
        "description": "Requests left in the current window.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimitReset": {
        "description": "Seconds until the current window ends.",
        "schema": {"type": "integer", "minimum": 0},
    },
}

# On every answer of a /v1 route, when the request had a valid key.
QUOTA_HEADERS = {"RateLimit-Limit": "RateLimitLimit", "RateLimit-Remaining": "RateLimitRemaining",
                 "RateLimit-Reset": "RateLimitReset"}


def _required(header: dict[str, Any]) -> dict[str, Any]:
    return {**header, "required": True}


# status: (errorCode of the example, message of the example, extra headers: the name
# of a component or a header object)
ERROR_EXAMPLES: dict[int, tuple[str, str, dict[str, Any]]] = {
    400: ("VALIDATION_FAILED", "input.maxItems: must be >= 1", {}),
    401: ("UNAUTHORIZED", "unknown API key", {"WWW-Authenticate": "WwwAuthenticate"}),
    402: ("WALLET_INSUFFICIENT_FUNDS", "the wallet cannot cover this run: it holds 0.003 USD "
          "until the run ends; add funds and try again", {}),
    404: ("NOT_FOUND", f"no run {RUN_ID_EXAMPLE!r}", {}),
    405: ("METHOD_NOT_ALLOWED", "method not allowed on this route", {"Allow": "Allow"}),
    409: ("RUN_NOT_STOPPABLE", "the run has already ended (COMPLETED); only a run that has not "
          "ended can be stopped", {}),
    413: ("PAYLOAD_TOO_LARGE", "request body is over the limit of 262144 bytes", {}),
    415: ("UNSUPPORTED_MEDIA_TYPE", "send the body as JSON with 'Content-Type: "
          "application/json'", {}),
    422: ("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request "
          "body in the last 24 hours; use a new key for a new request", {}),
    429: ("RATE_LIMITED", "over this key's limit of 1200 requests a minute; try again in 17 s", {
        "Retry-After": "RetryAfter",
        "RateLimit-Limit": _required(HEADERS["RateLimitLimit"]),
        "RateLimit-Remaining": _required(HEADERS["RateLimitRemaining"]),
        "RateLimit-Reset": _required(HEADERS["RateLimitReset"])}),
    500: ("INTERNAL", "internal error", {}),
    503: ("SERVICE_UNAVAILABLE", "the database is unavailable; try again shortly",
          {"Retry-After": "RetryAfter"}),
}


def _error_descriptions(max_body_bytes: int) -> dict[int, str]:
    return {
        400: "The request is invalid; `errors` maps each failing field to its messages.",
        401: "No API key, or a malformed, unknown or revoked one (`UNAUTHORIZED`).",
        402: "The caller's wallet cannot cover the run's price (`WALLET_INSUFFICIENT_FUNDS`); "
             "no run was created.",
        404: "Not found.",
        405: "The method is not allowed on this path (`METHOD_NOT_ALLOWED`); `Allow` lists "
             "those that are.",
        409: "Conflict.",
        413: f"The body is over the limit of {max_body_bytes} bytes (`PAYLOAD_TOO_LARGE`).",
        415: "The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).",
        422: "This `Idempotency-Key` was used with a different body in the last 24 hours "
             "(`IDEMPOTENCY_KEY_REUSED`).",
        429: "Over the caller's rate limit (`RATE_LIMITED`); try again after `Retry-After` "
             "seconds.",
        500: "An unexpected error (`INTERNAL`). The answer never carries a stack trace or a "
             "secret.",
        503: "The database is unavailable, so the request could not be served safely "
             "(`SERVICE_UNAVAILABLE`); try again after `Retry-After` seconds.",
    }


class _Responses:
    """Builds the answers of operations, each with the `x-request-id` header."""

    def __init__(self, max_body_bytes: int) -> None:
        self.descriptions = _error_descriptions(max_body_bytes)

    def ok(self, description: str, schema: Any, *, media_type: str = "application/json",
           headers: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "description": description,
            "headers": {"x-request-id": "RequestId", **(headers or {})},
            "content": {media_type: {"schema": schema}},
            **extra,
        }

    def errors(self, *statuses: int, schema: Any = ErrorSchema,
               described: dict[int, str] | None = None,
               examples: dict[int, tuple[str, str]] | None = None,
               status_headers: bool = True) -> dict[str, dict[str, Any]]:
        """Error answers in the envelope, with a route's own wording where it has one
        (`described`), its own example `(errorCode, message)` (`examples`), and
        without the headers of the status (`Retry-After`...) where it sends none."""
        answers = {}
        for status in statuses:
            error_code, message, headers = ERROR_EXAMPLES[status]
            headers = headers if status_headers else {}
            error_code, message = (examples or {}).get(status, (error_code, message))
            answers[str(status)] = {
                "description": (described or {}).get(status, self.descriptions[status]),
                "headers": {"x-request-id": "RequestId", **headers},
                "content": {"application/json": {
                    "schema": schema,
                    "example": {"code": status, "message": message, "errorCode": error_code},
                }},
            }
        return answers


# --- the document ------------------------------------------------------------------

V1_SECURITY: list[dict[str, list[str]]] = [{BEARER: []}]
# Every /v1 route can answer these, whatever it does.
V1_ERRORS = (401, 405, 429, 500, 503)
# And a route that reads a JSON body these.
BODY_ERRORS = (400, 413, 415)

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


def _run_id_parameter() -> dict[str, Any]:
    return {
        "in": "path", "name": "runId", "required": True,
        "description": "The run's ID, a ULID. Another caller's run is not found, exactly as "
                       "a run that does not exist.",
        "schema": {"type": "string", "pattern": ULID_PATTERN.pattern,
                   "example": RUN_ID_EXAMPLE},
    }


def _by_status(responses: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(responses.items()))


def _asset_schema(media_type: str) -> dict[str, Any]:
    if media_type == "application/json":
        return {"type": "object"}
    if media_type.startswith("text/"):
        return {"type": "string"}
    return {"type": "string", "format": "binary"}


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


def build_document(max_body_bytes: int, served_paths: Collection[str]) -> dict[str, Any]:
    """The OpenAPI document of every route. `served_paths` (the app's URL rules) says
    whether the app serves the routes that only some apps have (`/metrics`)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="monid run API", version=_version(), openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        tags=[
            {"name": "runs", "description": "Start runs, poll them, list them, stop them."},
            {"name": "catalog", "description": "The providers' endpoints a caller can run."},
            {"name": "wallet", "description": "The caller's prepaid wallet."},
            {"name": "operations", "description": "Health, readiness and this document; no "
                                                  "key needed."},
        ],
    )
    assert plugin.converter is not None  # set by APISpec's init_spec
    plugin.converter.add_attribute_function(_only_null_beside_reference)
    spec.components.security_scheme(BEARER, {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`monid_live_...` or `monid_test_...`), made with "
                       "`monidctl keys create`.",
    })
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, schema in {**REQUEST_SCHEMAS, **ANSWER_SCHEMAS}.items():
        spec.components.schema(name, schema=schema)

    answers = _Responses(max_body_bytes)
    request_id = {
        "in": "header", "name": "x-request-id", "required": False,
        "description": "The client's own request ID; echoed in the answer's `x-request-id` "
                       "when sane (1-128 of `A-Za-z0-9._:-`).",
        "schema": {"type": "string"},
    }

    def v1(operation: dict[str, Any]) -> dict[str, Any]:
        responses = _by_status(operation["responses"])
        for response in responses.values():
            headers = response["headers"]
            headers.update({name: header for name, header in QUOTA_HEADERS.items()
                            if name not in headers})
        return {"security": V1_SECURITY, **operation,
                "parameters": [*operation.get("parameters", []), request_id],
                "responses": responses}

    def public(operation: dict[str, Any]) -> dict[str, Any]:
        return {"security": [], **operation, "tags": ["operations"],
                "responses": _by_status(operation["responses"])}

    no_endpoint = ("ENDPOINT_NOT_FOUND", "no endpoint '/nope' for provider 'demo'")
    spec.path(path="/v1/run", operations={"post": v1({
        "operationId": "startRun",
        "tags": ["runs"],
        "summary": "Start a run",
        "description": "Validates the input against the endpoint's input schema, holds the "
                       "run's price on the wallet, stores the run and answers at once, before "
                       "any provider is called. `input` is flat (the endpoint's input itself) "
                       "or composite (`{\"body\", \"queryParams\", \"pathParams\"}`).",
        "parameters": [{
            "in": "header", "name": "Idempotency-Key", "required": False,
            "description": "1-255 printable ASCII characters, not starting or ending with a "
                           "space. The same key with the same body within 24 hours answers "
                           "the original `202` and starts nothing; with another body, `422`.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                       "pattern": r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"},
        }],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": StartRunSchema,
            "example": {"provider": "demo", "endpoint": "/echo",
                        "input": {"message": "hello, monid"}},
        }}},
        "responses": {
            "202": answers.ok(
                "Accepted: the run is stored and will reach an end state.", AcceptedRunSchema,
                headers={"Location": "Location", "Idempotent-Replayed": "IdempotentReplayed"},
                links={
                    "GetRun": {"operationId": "getRun",
                               "parameters": {"runId": "$response.body#/runId"}},
                    "StopRun": {"operationId": "stopRun",
                                "parameters": {"runId": "$response.body#/runId"}},
                }),
            **answers.errors(
                *BODY_ERRORS, 402, 404, 409, 422, *V1_ERRORS,
                described={
                    400: "Malformed JSON, a body that is not an object, an invalid "
                         "`Idempotency-Key`, or an input that fails the endpoint's input "
                         "schema; `errors` maps each failing field to its messages.",
                    404: "No such provider or endpoint (`ENDPOINT_NOT_FOUND`).",
                    409: "A request with this `Idempotency-Key` is still in progress "
                         "(`IDEMPOTENCY_KEY_REUSED`).",
                },
                examples={
                    404: no_endpoint,
                    409: ("IDEMPOTENCY_KEY_REUSED",
                          "a request with this Idempotency-Key is in progress"),
                }),
        },
    })})

    no_run = "No such run, or another caller's (`NOT_FOUND`)."
    spec.path(path="/v1/runs/{runId}", operations={"get": v1({
        "operationId": "getRun",
        "tags": ["runs"],
        "summary": "Poll a run",
        "parameters": [
            _run_id_parameter(),
            {
                # Read by the route itself (api/runs.py), not by a marshmallow schema.
                "in": "query", "name": "wait", "required": False,
                "description": f"Seconds (0 to {MAX_WAIT_SECONDS}) to wait for the run to end: "
                               "the answer comes as soon as it ends, or after `wait` seconds "
                               "with the run as it then is.",
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
                           "default": 0},
            },
        ],
        "responses": {
            "200": answers.ok("The run.", RunSchema),
            **answers.errors(
                400, 404, *V1_ERRORS,
                described={400: "`wait` is not a number of seconds in range.", 404: no_run},
                examples={400: ("VALIDATION_FAILED",
                                f"wait: must be a number of seconds from 0 to "
                                f"{MAX_WAIT_SECONDS}")}),
        },
    })})

    bad_page = {400: "A parameter is invalid, or the cursor is not one from this API."}
    spec.path(path="/v1/runs", operations={"get": v1({
        "operationId": "listRuns",
        "tags": ["runs"],
        "summary": "List the caller's runs",
        "description": "Newest first, without `input`, `output` and `attempts`. Paging is "
                       "stable while new runs arrive.",
        "parameters": [{"in": "query", "schema": ListRunsSchema}],
        "responses": {
            "200": answers.ok("A page of runs.", RunListSchema),
            **answers.errors(400, *V1_ERRORS, described=bad_page),
        },
    })})

    spec.path(path="/v1/runs/{runId}/items", operations={"get": v1({
        "operationId": "listRunItems",
        "tags": ["runs"],
        "summary": "A run's items: pages, or a JSONL or CSV download",
        "description": (
            "A run has items once it has ended `COMPLETED`: its whole result, never more "
            "than it was charged for (`total` is its `resultCount`); before that, and for a "
            "run that ended otherwise, none. `format=json` (the default) answers a page of "
            "`limit` items (fewer once they pass 4 MiB) and the `cursor` of the next. "
            "`format=jsonl` and `format=csv` stream a download of every item, as an "
            "attachment: one JSON item a line, or a CSV (RFC 4180) whose header row names "
            "each field, nested ones by their dotted path (`author.name`), arrays and "
            "objects chosen by `fields` written as JSON, and an item that is not an object "
            f"as `value`; without `fields`, every field in the order it first appears, up "
            f"to {MAX_CSV_COLUMNS} columns. `fields` picks and orders the fields of any "
            "format."),
        "parameters": [_run_id_parameter(), {"in": "query", "schema": ListItemsSchema}],
        "responses": {
            "200": {
                "description": "A page of items (`format=json`), or a download (`jsonl`, "
                               "`csv`), streamed.",
                "headers": {"x-request-id": "RequestId",
                            "Content-Disposition": "ContentDisposition"},
                "content": {
                    "application/json": {"schema": RunItemsPageSchema},
                    JSONL_MEDIA_TYPE: {"schema": {"type": "string"},
                                       "example": '{"id":"1","text":"..."}\n'},
                    CSV_MEDIA_TYPE: {"schema": {"type": "string"},
                                     "example": "id,author.name\r\n1,ada\r\n"},
                },
            },
            **answers.errors(
                400, 404, *V1_ERRORS,
                described={400: "`limit` out of 1-1000, an unknown `format`, malformed "
                                "`fields`, a cursor that is not one of this run's items, "
                                "`limit` or `cursor` with a download, or an unknown "
                                "parameter.", 404: no_run},
                examples={400: ("VALIDATION_FAILED", "limit: Must be greater than or equal "
                                                     "to 1 and less than or equal to 1000")}),
        },
    })})

    spec.path(path="/v1/runs/{runId}/stop", operations={"post": v1({
        "operationId": "stopRun",
        "tags": ["runs"],
        "summary": "Stop a run",
        "description": "The run becomes `STOPPED` (an in-flight provider run is aborted where "
                       "the provider allows it) and is not charged. The request has no body.",
        "parameters": [_run_id_parameter()],
        "responses": {
            "202": answers.ok("The run is being stopped.", StopAnswerSchema),
            **answers.errors(404, 409, *V1_ERRORS, described={
                404: no_run, 409: "The run has already ended (`RUN_NOT_STOPPABLE`)."}),
        },
    })})

    spec.path(path="/v1/wallet/balance", operations={"get": v1({
        "operationId": "getWalletBalance",
        "tags": ["wallet"],
        "summary": "The caller's wallet",
        "responses": {
            "200": answers.ok("The wallet's balance, what is held for runs that have not "
                              "ended, and what is available.", WalletBalanceSchema),
            **answers.errors(*V1_ERRORS),
        },
    })})

    spec.path(path="/v1/discover", operations={"post": v1({
        "operationId": "discoverEndpoints",
        "tags": ["catalog"],
        "summary": "Find endpoints by what they do",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": DiscoverSchema, "example": {"query": "twitter posts", "limit": 5},
        }}},
        "responses": {
            "200": answers.ok("The endpoints best matching the query, best first.",
                              DiscoverResultsSchema),
            **answers.errors(*BODY_ERRORS, *V1_ERRORS, described={
                400: "Malformed JSON, a body that is not an object, an invalid field, or a "
                     "query with no words to search for."}),
        },
    })})

    spec.path(path="/v1/inspect", operations={"post": v1({
        "operationId": "inspectEndpoint",
        "tags": ["catalog"],
        "summary": "An endpoint's whole card",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": InspectSchema, "example": {"provider": "demo", "endpoint": "/echo"},
        }}},
        "responses": {
            "200": answers.ok("The endpoint's card, with its input schema.",
                              EndpointCardSchema),
            **answers.errors(*BODY_ERRORS, 404, *V1_ERRORS,
                             described={404: "No such provider or endpoint "
                                             "(`ENDPOINT_NOT_FOUND`)."},
                             examples={404: no_endpoint}),
        },
    })})

    spec.path(path="/v1/endpoints", operations={"get": v1({
        "operationId": "listEndpoints",
        "tags": ["catalog"],
        "summary": "List every endpoint",
        "description": "In (provider, endpoint) order.",
        "parameters": [{"in": "query", "schema": ListEndpointsSchema}],
        "responses": {
            "200": answers.ok("A page of endpoints.", EndpointListSchema),
            **answers.errors(400, *V1_ERRORS, described=bad_page),
        },
    })})

    spec.path(path="/", operations={"get": public({
        "operationId": "index",
        "summary": "Where to start: links to the documentation",
        "responses": {"200": answers.ok("Links to `/docs` and `/openapi.json` (also in a "
                                        "`Link` header).", IndexSchema),
                      **answers.errors(405, 500)},
    })})

    spec.path(path="/healthz", operations={"get": public({
        "operationId": "healthz",
        "summary": "The process is up",
        "responses": {"200": answers.ok("Up.", HealthSchema), **answers.errors(405, 500)},
    })})

    spec.path(path="/readyz", operations={"get": public({
        "operationId": "readyz",
        "summary": "The database and the broker answer",
        "responses": {
            "200": answers.ok("Ready.", ReadinessSchema),
            **answers.errors(405, 500),
            **answers.errors(
                503, schema=ReadinessErrorSchema, status_headers=False,
                described={503: "Not ready: `checks` says which of the database and the "
                                "broker did not answer (`SERVICE_UNAVAILABLE`)."},
                examples={503: ("SERVICE_UNAVAILABLE", "not ready: broker unavailable")}),
        },
    })})

    spec.path(path="/openapi.json", operations={"get": public({
        "operationId": "getOpenApiDocument",
        "summary": "This document",
        "responses": {
            "200": answers.ok("The OpenAPI document of the API.", {"type": "object"}),
            **answers.errors(405, 500),
        },
    })})

    spec.path(path="/docs", operations={"get": public({
        "operationId": "getDocsPage",
        "summary": "A page of this document",
        "responses": {
            "200": answers.ok("An HTML page rendering this document (Swagger UI).",
                              {"type": "string"}, media_type="text/html"),
            **answers.errors(405, 500),
        },
    })})

    spec.path(path="/docs/assets/{filename}", operations={"get": public({
        "operationId": "getDocsAsset",
        "summary": "A file of the page",
        "description": "Swagger UI's files, served from the installed `swagger-ui-bundle` "
                       "package, so that the page works offline.",
        "parameters": [{"in": "path", "name": "filename", "required": True,
                        "schema": {"type": "string", "enum": sorted(ASSETS)}}],
        "responses": {
            "200": {"description": "The file.",
                    "headers": {"x-request-id": "RequestId"},
                    "content": {media_type: {"schema": _asset_schema(media_type)}
                                for media_type in sorted(set(ASSETS.values()))}},
            **answers.errors(404, 405, 500, described={404: "No such file (`NOT_FOUND`)."}),
        },
    })})
    if "/metrics" in served_paths:
        spec.path(path="/metrics", operations={"get": public({
            "operationId": "getMetrics",
            "summary": "Metrics, for Prometheus",
            "responses": {
                "200": answers.ok("The metrics, in Prometheus' text format.",
                                  {"type": "string"}, media_type="text/plain"),
                **answers.errors(405, 500),
            },
        })})
    document = spec.to_dict()
    _drop_nulls_from_parameters(document)
    return document


# --- serving it --------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>monid run API</title>
  <link rel="stylesheet" href="{{ css_url }}">
  <link rel="icon" type="image/png" sizes="32x32" href="{{ icon32_url }}">
  <link rel="icon" type="image/png" sizes="16x16" href="{{ icon16_url }}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ bundle_url }}"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: {{ document_url|tojson }},
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      deepLinking: true,
      // No badge from the online validator: the page must work offline.
      validatorUrl: null
    });
  </script>
</body>
</html>
"""


class ServedDocument:
    """One app's document, built on the first request that needs it (by then every
    route of the app is registered) and kept, serialized, for the app's life."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body: bytes | None = None

    def body(self, app: Flask) -> bytes:
        with self._lock:
            if self._body is None:
                served_paths = {rule.rule for rule in app.url_map.iter_rules()}
                document = build_document(app.config["MAX_CONTENT_LENGTH"], served_paths)
                self._body = json.dumps(document, separators=(",", ":")).encode()
            return self._body


@blueprint.get("/openapi.json")
def document() -> Response:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    served: ServedDocument = app.extensions[EXTENSION_KEY]
    return Response(served.body(app), mimetype="application/json")


@blueprint.get("/docs")
def docs_page() -> str:
    return render_template_string(
        PAGE,
        css_url=url_for("openapi.docs_asset", filename="swagger-ui.css"),
        icon32_url=url_for("openapi.docs_asset", filename="favicon-32x32.png"),
        icon16_url=url_for("openapi.docs_asset", filename="favicon-16x16.png"),
        bundle_url=url_for("openapi.docs_asset", filename="swagger-ui-bundle.js"),
        document_url=url_for("openapi.document"),
    )


@blueprint.get("/docs/assets/<path:filename>")
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
