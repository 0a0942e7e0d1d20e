"""The contract's shapes: what the routes load requests with and dump answers with.

The OpenAPI document (`api/openapi.py`) is made from these same schemas, so it says
what the routes do. Answers are dumped from the service layer's objects (a run, a
wallet, an endpoint's card...); each field says where its value comes from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from marshmallow import (
    INCLUDE,
    Schema,
    fields,
    post_dump,
    pre_dump,
    validate,
)

from api.errors import UNSUPPORTED_MEDIA_TYPE, VALIDATION_FAILED, ApiError, ErrorSchema
from shared import hints
from shared.health import HEALTH_STATUSES, MIN_JUDGED_RUNS, RECENT_RUNS
from shared.ids import ULID_PATTERN
from shared.money import micros_to_dollars
from shared.requests import strict_json_loads
from shared.runs import STATUSES
from shared.timefmt import iso
from shared.webhooks.service import DELIVERY_STATUSES, RUN_EVENTS

ISO_EXAMPLE = "2026-03-28T10:30:00.000Z"
RUN_ID_EXAMPLE = "01JGXYZABCDEFGHJKMNPQRSTVW"
ATTEMPT_OUTCOMES = ["OK", "TRANSIENT_ERROR", "PERMANENT_ERROR", "TIMEOUT", "LOST", "STOPPED"]


# --- fields ---------------------------------------------------------------------------


class Dollars(fields.Float):
    """Integer micro-dollars, as the JSON number of dollars (a whole number stays an
    integer)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else micros_to_dollars(value)


class Timestamp(fields.DateTime):
    """ISO 8601 UTC with milliseconds and a Z."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return iso(value)


def _usd() -> fields.Constant:
    return fields.Constant("USD", required=True, validate=validate.OneOf(["USD"]),
                           metadata={"type": "string"})


def _without_nulls(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    for name in names:
        if data.get(name, 0) is None:
            del data[name]
    return data


# --- requests -------------------------------------------------------------------------


def parse_json_object() -> dict[str, Any]:
    """The request body as a JSON object, or the contract's 415/400."""
    from flask import request

    if not request.is_json:
        raise ApiError.of(UNSUPPORTED_MEDIA_TYPE,
                          "send the body as JSON with 'Content-Type: application/json'")
    raw = request.get_data(cache=True)
    try:
        data = strict_json_loads(raw)
    except (ValueError, RecursionError):
        detail = "the body is empty" if not raw.strip() else "the body is not valid JSON"
        raise ApiError.of(VALIDATION_FAILED, f"malformed JSON: {detail}",
                          {"body": [detail]}) from None
    if not isinstance(data, dict):
        raise ApiError.of(VALIDATION_FAILED, "the body must be a JSON object",
                          {"body": ["must be a JSON object"]})
    return data


# --- answers --------------------------------------------------------------------------


def _hints(description: str = "") -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.Raw(), required=True, metadata={
        "description": "For agents: a short phrase to a string, or to "
                       "`{\"kind\": \"command\"|\"discover\"|\"inspect\"|\"run\"|"
                       "\"getRun\"|\"stop\"|\"topup\", ...}`." + description,
        "example": {"wait for its end": {"kind": "getRun", "runId": RUN_ID_EXAMPLE,
                                         "wait": 30}}})


class MoneySchema(Schema):
    """An amount of integer micro-dollars, in dollars."""

    value = Dollars(required=True, metadata={"description": "US dollars.", "example": 0.003})
    currency = _usd()

    @pre_dump
    def _from_micros(self, micros: int, **_: Any) -> dict[str, int]:
        return {"value": micros}


class PriceSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["PER_CALL", "PER_RESULT"]),
                         metadata={"description": "`PER_CALL`: `amount` per delivered run; "
                                                  "`PER_RESULT`: `flatFee` + `amount` per result."})
    amount = Dollars(required=True, attribute="amount_micros", validate=validate.Range(min=0),
                     metadata={"description": "US dollars.", "example": 0.003})
    currency = _usd()
    flatFee = Dollars(attribute="flat_fee_micros", validate=validate.Range(min=0),
                      metadata={"description": "US dollars per run; `PER_RESULT` only."})

    @post_dump
    def _no_flat_fee_without_one(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_nulls(data, ("flatFee",))


class AttemptSchema(Schema):
    number = fields.Integer(required=True, validate=validate.Range(min=1))
    startedAt = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    endedAt = fields.String(required=True, allow_none=True,
                            metadata={"format": "date-time",
                                      "description": "Null while the attempt is in flight."})
    outcome = fields.String(required=True, allow_none=True,
                            validate=validate.OneOf(ATTEMPT_OUTCOMES),
                            metadata={"description": "Null while the attempt is in flight."})
    httpStatus = fields.Integer(required=True, allow_none=True,
                                metadata={"description": "The provider's HTTP status, where "
                                                         "there was one."})
    message = fields.String(required=True, allow_none=True,
                            metadata={"description": "How the attempt ended, in words: the "
                                                     "provider's status and message where it "
                                                     "ran a job that failed."})
    nextAttemptAt = fields.String(required=True, allow_none=True,
                                  metadata={"format": "date-time",
                                            "description": "When the next try is due, while "
                                                           "one is scheduled."})


class _OpenSchema(Schema):
    """An object of the worker's making: the fields named here, and whatever else it has."""

    class Meta:
        unknown = INCLUDE

    @post_dump(pass_original=True)
    def _and_the_rest(self, data: dict[str, Any], original: Any, **_: Any) -> dict[str, Any]:
        return {**original, **data} if isinstance(original, Mapping) else data


class ProviderResponseSchema(_OpenSchema):
    httpStatus = fields.Integer(allow_none=True,
                                metadata={"description": "The provider's final HTTP status."})
    error = fields.Raw(metadata={"description": "The provider's error body, for a non-2xx "
                                                "answer."})


class RunErrorSchema(_OpenSchema):
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


def _run_id(attribute: str) -> fields.String:
    return fields.String(required=True, attribute=attribute,
                         metadata={"pattern": ULID_PATTERN.pattern, "example": RUN_ID_EXAMPLE})


class _RunIdentitySchema(Schema):
    """The fields that name a run, first in every answer about one."""

    runId = _run_id("id")
    caller = fields.String(required=True, metadata={"example": "USER#user_abc123"})
    provider = fields.String(required=True, metadata={"example": "apify"})
    providerName = fields.String(required=True, attribute="provider_name",
                                 metadata={"example": "Apify"})
    endpoint = fields.String(required=True, metadata={"example": "/apidojo/tweet-scraper"})


class AcceptedRunSchema(_RunIdentitySchema):
    """A run just accepted (`shared.runs.AcceptedRun`)."""

    runId = _run_id("run_id")
    status = fields.String(required=True, validate=validate.OneOf(["RUNNING"]))
    price = fields.Nested(PriceSchema, required=True)
    hints = _hints(" Here: how to wait for the run's end, and how to stop it.")
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})


def accepted_run_answer(run: Any) -> dict[str, Any]:
    """What AcceptedRunSchema dumps of a run just accepted (`shared.runs.AcceptedRun`), in
    the same order, made without marshmallow: the accept's answer is on its hot path,
    where the dump cost about as much as the rest of the answer. The schema stays the
    contract (OpenAPI); tests/unit/test_accepted_answer.py keeps the two equal."""
    price = run.price
    dumped_price: dict[str, Any] = {"type": price.type,
                                    "amount": micros_to_dollars(price.amount_micros),
                                    "currency": "USD"}
    if price.flat_fee_micros is not None:
        dumped_price["flatFee"] = micros_to_dollars(price.flat_fee_micros)
    return {"runId": run.run_id, "caller": run.caller, "provider": run.provider,
            "providerName": run.provider_name, "endpoint": run.endpoint,
            "status": run.status, "price": dumped_price, "hints": run.hints,
            "createdAt": iso(run.created_at)}


class RunSummarySchema(_RunIdentitySchema):
    """A run in a list (`shared.store.Run`), without its input, output and attempts."""

    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    stoppable = fields.Boolean(required=True,
                               metadata={"description": "True until the run has ended."})
    resultCount = fields.Integer(required=True, allow_none=True, attribute="result_count")
    providerResponse = fields.Nested(ProviderResponseSchema, required=True, allow_none=True,
                                     attribute="provider_response",
                                     metadata={"description": "What the provider said; null "
                                                              "until it has answered."})
    error = fields.Nested(RunErrorSchema, required=True, allow_none=True,
                          metadata={"description": "Why a `FAILED` or `TIMED_OUT` run "
                                                   "ended so."})
    price = fields.Nested(PriceSchema, required=True)
    cost = fields.Nested(MoneySchema, required=True, allow_none=True, attribute="charged_micros",
                         metadata={"description": "What the run cost; null until it ends."})
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})
    startedAt = Timestamp(required=True, allow_none=True, attribute="started_at",
                          metadata={"description": "Null until a worker started it (a run "
                                                   "waiting for its turn under a concurrency "
                                                   "limit has not); the endpoint's deadline "
                                                   "counts from here."})
    completedAt = Timestamp(required=True, allow_none=True, attribute="completed_at")


class RunSchema(RunSummarySchema):
    """A run whole (`shared.store.Run`)."""

    class Meta:
        fields = ("runId", "caller", "provider", "providerName", "endpoint", "status",
                  "stoppable", "input", "output", "outputTruncated", "itemsUrl", "resultCount",
                  "providerResponse", "error", "price", "cost", "attempts", "hints",
                  "createdAt", "startedAt", "completedAt")

    input = fields.Dict(required=True, metadata={"description": "The input, in the form it "
                                                                "was sent."})
    output = fields.Raw(required=True, attribute="result", metadata={
        "description": "The provider's data once the run has ended; null before. The whole "
                       "result up to `MAX_INLINE_OUTPUT_BYTES` (256 KiB by default); past it, "
                       "the first of its items that fit, in the answer's own shape, and "
                       "`outputTruncated` is true: read them all at `itemsUrl`."})
    outputTruncated = fields.Boolean(required=True, attribute="output_truncated", metadata={
        "description": "True when `output` holds only the first of the run's items."})
    itemsUrl = fields.Function(lambda run: f"/v1/runs/{run.id}/items", required=True, metadata={
        "type": "string", "description": "Where the run's items are, in pages or as a download.",
        "example": f"/v1/runs/{RUN_ID_EXAMPLE}/items"})
    attempts = fields.List(fields.Nested(AttemptSchema), required=True, attribute="tries")
    hints = fields.Function(
        lambda run: hints.for_run(run.id, ended=run.ended, status=run.status,
                                  output_truncated=run.output_truncated,
                                  result_count=run.result_count),
        required=True, metadata={
            "type": "object", "additionalProperties": True,
            "description": "For agents: while the run has not ended, how to wait for its end; "
                           "once it `COMPLETED` with more items than `output` holds, where "
                           "they all are. Empty otherwise.",
            "example": {"read every item": f"GET /v1/runs/{RUN_ID_EXAMPLE}/items?limit=1000 "
                                           "pages through all 2500 items (cursor to cursor)"}})


def _next_cursor() -> fields.String:
    return fields.String(required=True, allow_none=True,
                         metadata={"description": "The next page's cursor; null on the last page."})


class RunListSchema(Schema):
    items = fields.List(fields.Nested(RunSummarySchema), required=True)
    cursor = _next_cursor()


class RunItemsPageSchema(Schema):
    """A page of a run's items (`shared.items.ItemsPage`); the items themselves are
    written as they are stored (see `api/items.py`)."""

    items = fields.List(fields.Raw(), required=True,
                        metadata={"description": "The run's items, in order."})
    cursor = _next_cursor()
    total = fields.Integer(required=True, validate=validate.Range(min=0),
                           metadata={"description": "How many items the run has: its "
                                                    "`resultCount` once it has ended "
                                                    "`COMPLETED`, else 0."})


class StopAnswerSchema(Schema):
    runId = _run_id("run_id")
    status = fields.String(required=True, validate=validate.OneOf(["STOPPING"]))
    message = fields.String(required=True)


class WalletBalanceSchema(Schema):
    balance = fields.Nested(MoneySchema, required=True, attribute="balance_micros",
                            metadata={"description": "Everything in the wallet."})
    held = fields.Nested(MoneySchema, required=True, attribute="held_micros",
                         metadata={"description": "Held for runs that have not ended."})
    available = fields.Nested(MoneySchema, required=True, attribute="available_micros",
                              metadata={"description": "`balance` less `held`: what new runs "
                                                       "can use."})


class MetricsSchema(Schema):
    """An endpoint's health over a recent window (`shared.health.Metrics`), rolled up from
    its runs by the sweeper about once a minute."""

    health = fields.String(required=True, validate=validate.OneOf(HEALTH_STATUSES), metadata={
        "description": "From the window's runs that judge the endpoint (`COMPLETED`, "
                       "`FAILED`, `TIMED_OUT` but for a queue timeout): `unknown` under "
                       f"{MIN_JUDGED_RUNS} of them; `outage` when the last {RECENT_RUNS} all "
                       "failed or under 50% succeeded; `degraded` under 95%; `stable` under "
                       "99%; `healthy` otherwise."})
    p50Seconds = fields.Float(required=True, allow_none=True, attribute="p50_seconds",
                              validate=validate.Range(min=0), metadata={
                                  "description": "Median run time (first start to end) of "
                                                 "the window's `COMPLETED` runs; null "
                                                 "without one.", "example": 1.25})
    p90Seconds = fields.Float(required=True, allow_none=True, attribute="p90_seconds",
                              validate=validate.Range(min=0), metadata={
                                  "description": "90th percentile of the same.",
                                  "example": 4.5})
    successRate = fields.Float(required=True, allow_none=True, attribute="success_rate",
                               validate=validate.Range(min=0, max=1), metadata={
                                   "description": "`COMPLETED` over judged runs, 0 to 1; "
                                                  "null without any.", "example": 0.995})
    window = fields.String(required=True, metadata={
        "description": "The window: runs accepted in the last this many hours.",
        "example": "24h"})


class DiscoverResultSchema(Schema):
    """A match (`shared.catalog.discovery.Found`): the endpoint, how well it matches, and
    its health."""

    provider = fields.String(required=True, attribute="entry.provider")
    providerName = fields.String(required=True, attribute="entry.provider_name")
    endpoint = fields.String(required=True, attribute="entry.path")
    description = fields.String(required=True, attribute="entry.description")
    price = fields.Nested(PriceSchema, required=True, attribute="entry.price")
    score = fields.Float(required=True, validate=validate.Range(min=0, max=1),
                         metadata={"description": "Relevance to the query, 0 to 1."})
    tags = fields.List(fields.String(), required=True, attribute="entry.tags")
    metrics = fields.Nested(MetricsSchema, required=True)


class DiscoverResultsSchema(Schema):
    results = fields.List(fields.Nested(DiscoverResultSchema), required=True,
                          metadata={"description": "Best match first."})
    query = fields.String(required=True)
    count = fields.Integer(required=True, validate=validate.Range(min=0))
    hints = _hints(" Here: inspect the best match, then run it.")


class EndpointSummarySchema(Schema):
    """An endpoint in a list (`shared.catalog.Endpoint`): what it is and what it
    costs, without its schemas."""

    provider = fields.String(required=True, metadata={"example": "demo"})
    providerName = fields.String(required=True, attribute="provider_name",
                                 metadata={"example": "Demo"})
    endpoint = fields.String(required=True, attribute="path", metadata={"example": "/echo"})
    name = fields.String(required=True)
    description = fields.String(required=True)
    tags = fields.List(fields.String(), required=True)
    price = fields.Nested(PriceSchema, required=True)


class EndpointCardSchema(EndpointSummarySchema):
    """An endpoint's whole card (`shared.catalog.discovery.Card`): everything a caller
    needs to run it, and its health."""

    class Meta:
        fields = ("provider", "providerName", "endpoint", "name", "description", "tags",
                  "inputSchema", "queryParamsSchema", "pathParamsSchema", "price",
                  "deadlineSeconds", "maxAttempts", "exampleInput", "metrics", "hints")

    inputSchema = fields.Dict(required=True, attribute="input_schema",
                              metadata={"description": "JSON Schema of the input (its body)."})
    queryParamsSchema = fields.Dict(attribute="query_params_schema",
                                    metadata={"description": "JSON Schema of `queryParams`, "
                                                             "for endpoints that take them."})
    pathParamsSchema = fields.Dict(attribute="path_params_schema",
                                   metadata={"description": "JSON Schema of `pathParams`, "
                                                            "for endpoints that take them."})
    deadlineSeconds = fields.Integer(required=True, attribute="deadline_seconds",
                                     validate=validate.Range(min=1))
    maxAttempts = fields.Integer(required=True, attribute="max_attempts",
                                 validate=validate.Range(min=1))
    exampleInput = fields.Dict(required=True, allow_none=True, attribute="example_input")
    metrics = fields.Nested(MetricsSchema, required=True)
    hints = _hints(" Here: how to run the endpoint.")

    @post_dump
    def _only_the_schemas_it_has(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_nulls(data, ("queryParamsSchema", "pathParamsSchema"))


class EndpointListSchema(Schema):
    items = fields.List(fields.Nested(EndpointSummarySchema), required=True)
    cursor = _next_cursor()


# --- the public catalog ---------------------------------------------------------------


class PublicStatsSchema(Schema):
    """The catalog's figures (`shared.catalog.public.Stats`)."""

    providerCount = fields.Integer(required=True, attribute="provider_count",
                                   validate=validate.Range(min=0))
    endpointCount = fields.Integer(required=True, attribute="endpoint_count",
                                   validate=validate.Range(min=0))


class PublicProviderSchema(Schema):
    provider = fields.String(required=True, metadata={"example": "demo"})
    providerName = fields.String(required=True, attribute="provider_name",
                                 metadata={"example": "Demo"})
    endpointCount = fields.Integer(required=True, attribute="endpoint_count",
                                   validate=validate.Range(min=1))


class PublicProviderListSchema(Schema):
    items = fields.List(fields.Nested(PublicProviderSchema), required=True,
                        metadata={"description": "Every provider, by its name."})


class PublicEndpointListSchema(Schema):
    items = fields.List(fields.Nested(EndpointSummarySchema), required=True,
                        metadata={"description": "The provider's endpoints, by path."})


class PublicSearchSchema(Schema):
    """A page of search results (`shared.catalog.public.SearchPage`)."""

    items = fields.List(fields.Nested(DiscoverResultSchema), required=True,
                        attribute="results.results", metadata={"description": "Best first."})
    query = fields.String(required=True, attribute="results.query")
    count = fields.Integer(required=True, attribute="results.count",
                           validate=validate.Range(min=0),
                           metadata={"description": "Results on this page."})
    cursor = fields.String(metadata={"description": "The next page's cursor; absent on the "
                                                    "last page."})
    total = fields.Integer(required=True, validate=validate.Range(min=0),
                           metadata={"description": "Results in all (at most 100)."})
    totalIsCapped = fields.Boolean(required=True, attribute="total_is_capped",
                                   metadata={"description": "True when more endpoints match "
                                                            "than `total` counts."})

    @post_dump
    def _no_cursor_on_the_last_page(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_nulls(data, ("cursor",))


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


class ReadinessChecksSchema(Schema):
    database = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    broker = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))


class ReadinessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready"]))
    checks = fields.Nested(ReadinessChecksSchema, required=True)


class ReadinessErrorSchema(ErrorSchema):
    checks = fields.Nested(ReadinessChecksSchema, required=True)


class UserSchema(Schema):
    """The caller's user (`shared.accounts.User`)."""

    userId = fields.String(required=True, attribute="user_id",
                           metadata={"example": "user_abc123"})
    username = fields.String(required=True, metadata={"example": "ada"})
    email = fields.String(metadata={"description": "Only when one is known.",
                                    "example": "ada@example.com"})
    metadata = fields.Dict(required=True)
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})
    updatedAt = Timestamp(required=True, attribute="updated_at",
                          metadata={"example": ISO_EXAMPLE})

    @post_dump
    def _no_email_without_one(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_nulls(data, ("email",))


class WorkspaceSchema(Schema):
    """The caller's workspace (`shared.accounts.Workspace`): its account."""

    workspaceId = fields.String(required=True, attribute="workspace_id",
                                metadata={"example": "ws_01JGXYZABCDEFGHJKMNPQRSTVW"})
    name = fields.String(required=True, metadata={"example": "Ada's workspace"})
    slug = fields.String(required=True, metadata={"pattern": "^[a-z0-9][a-z0-9-]{0,62}$",
                                                  "example": "ada"})
    metadata = fields.Dict(required=True)
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})
    updatedAt = Timestamp(required=True, attribute="updated_at",
                          metadata={"example": ISO_EXAMPLE})


class WhoamiSchema(Schema):
    """Who the key belongs to (`shared.accounts.Account`)."""

    user = fields.Nested(UserSchema, required=True)
    workspace = fields.Nested(WorkspaceSchema, required=True,
                              metadata={"description": "The workspace the key acts in."})


class WorkspaceRefSchema(Schema):
    workspaceId = fields.String(required=True, attribute="workspace_id",
                                metadata={"example": "ws_01JGXYZABCDEFGHJKMNPQRSTVW"})
    slug = fields.String(required=True, metadata={"example": "ada"})


class WorkspaceListSchema(Schema):
    workspaces = fields.List(fields.Nested(WorkspaceRefSchema), required=True,
                             metadata={"description": "The workspaces the key may act in: its "
                                                      "user's own (one per user)."})


# --- API keys -------------------------------------------------------------------------


class ApiKeySchema(Schema):
    """A key's metadata (`shared.store.ApiKey`), never the key itself."""

    label = fields.String(required=True, metadata={"example": "ci-pipeline"})
    keyPrefix = fields.String(required=True, attribute="key_prefix",
                              metadata={"description": "The key's first characters, to "
                                                       "recognise it by.",
                                        "example": "monid_live_a1B2c3"})
    createdBy = fields.String(required=True, attribute="caller",
                              metadata={"example": "USER#user_abc123"})
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})
    lastUsedAt = Timestamp(attribute="last_used_at", metadata={
        "description": "When the key was last used; written in batches, so it may be late "
                       "by up to `API_KEY_LAST_USED_FLUSH_SECONDS` (60 s by default). "
                       "Absent when it has not been used.",
        "example": ISO_EXAMPLE})

    @post_dump
    def _no_last_use_without_one(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_nulls(data, ("lastUsedAt",))


class ApiKeyListSchema(Schema):
    items = fields.List(fields.Nested(ApiKeySchema), required=True)
    cursor = fields.String(metadata={"description": "The next page's cursor; absent on the "
                                                    "last page."})

    @post_dump
    def _no_cursor_on_the_last_page(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_nulls(data, ("cursor",))


# --- spend controls -------------------------------------------------------------------

CONTROL_TYPES = ["WORKSPACE_BUDGET", "WORKSPACE_RUN_CAP", "KEY_BUDGET"]
CONTROL_ID_EXAMPLE = "01JH0C0NTR0000000000000000"
_SNAPSHOT_AMOUNTS = {"limitMicros": "limitAmount", "spentMicros": "spentAmount",
                     "heldMicros": "heldAmount"}


class Snapshot(fields.Dict):
    """A control as it was when it judged a run (stored in micro-dollars), in dollars."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return {_SNAPSHOT_AMOUNTS.get(k, k): (micros_to_dollars(v) if k in _SNAPSHOT_AMOUNTS
                                              else v)
                for k, v in value.items()}


def _snapshot() -> Snapshot:
    return Snapshot(required=True, metadata={
        "description": "The control when it judged the run: `limitAmount` (and for a budget "
                       "`period`, `spentAmount`, `heldAmount` before this run, `windowStart`).",
        "example": {"period": "DAY", "limitAmount": 5.0, "spentAmount": 4.998,
                    "heldAmount": 0, "windowStart": "2026-12-01T00:00:00.000Z"}})


def _control_id(attribute: str = "id") -> fields.String:
    return fields.String(required=True, attribute=attribute,
                         metadata={"pattern": ULID_PATTERN.pattern,
                                   "example": CONTROL_ID_EXAMPLE})


class BlockingControlSchema(Schema):
    controlId = _control_id("control_id")
    controlType = fields.String(required=True, attribute="control_type",
                                validate=validate.OneOf(CONTROL_TYPES))
    requiredAmount = Dollars(required=True, attribute="required_micros",
                             metadata={"description": "What the run needed: its hold."})
    snapshot = _snapshot()


class BlockedRunSchema(_RunIdentitySchema):
    """A run a spend control refused (`shared.runs.AcceptedRun`, BLOCKED): ended at once,
    nothing held, nothing called, cost 0."""

    runId = _run_id("run_id")
    status = fields.String(required=True, validate=validate.OneOf(["BLOCKED"]))
    reason = fields.String(required=True, metadata={
        "example": "the DAY budget of 5.00 USD has 0.002 USD available; this run needs "
                   "0.003 USD"})
    price = fields.Nested(PriceSchema, required=True)
    controls = fields.List(fields.Nested(BlockingControlSchema), required=True,
                           metadata={"description": "The controls that refused the run."})
    hints = _hints()
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})
    completedAt = Timestamp(required=True, attribute="completed_at",
                            metadata={"example": ISO_EXAMPLE})


def _workspace() -> fields.String:
    return fields.String(required=True, attribute="caller", metadata={
        "description": "The workspace: the caller.", "example": "USER#user_abc123"})


class BudgetControlSchema(Schema):
    """A budget, as it is in its current window (`shared.controls.BudgetControl`)."""

    budgetControlId = _control_id()
    workspaceId = _workspace()
    period = fields.String(required=True, validate=validate.OneOf(["HOUR", "DAY", "WEEK",
                                                                   "MONTH"]))
    limitAmount = Dollars(required=True, attribute="limit_micros")
    spentAmount = Dollars(required=True, attribute="spent_micros",
                          metadata={"description": "What runs accepted in this window cost."})
    heldAmount = Dollars(required=True, attribute="held_micros",
                         metadata={"description": "What runs not yet ended hold."})
    availableAmount = Dollars(required=True, attribute="available_micros",
                              metadata={"description": "What a new run may still hold."})
    currency = _usd()
    windowStart = Timestamp(required=True, attribute="window_start",
                            metadata={"description": "The current calendar window's start "
                                                     "(UTC; weeks start on Monday)."})
    status = fields.String(required=True, validate=validate.OneOf(["ACTIVE", "PAUSED"]))
    createdAt = Timestamp(required=True, attribute="created_at")
    updatedAt = Timestamp(required=True, attribute="updated_at")


class RunCapControlSchema(Schema):
    runCapControlId = _control_id()
    workspaceId = _workspace()
    limitAmount = Dollars(required=True, attribute="limit_micros",
                          metadata={"description": "The most one run may hold."})
    currency = _usd()
    status = fields.String(required=True, validate=validate.OneOf(["ACTIVE", "PAUSED"]))
    createdAt = Timestamp(required=True, attribute="created_at")
    updatedAt = Timestamp(required=True, attribute="updated_at")


class BudgetControlListSchema(Schema):
    items = fields.List(fields.Nested(BudgetControlSchema), required=True)
    cursor = _next_cursor()


class RunCapControlListSchema(Schema):
    items = fields.List(fields.Nested(RunCapControlSchema), required=True)
    cursor = _next_cursor()


class BudgetRunRecordSchema(Schema):
    """What a budget said of a run (`shared.controls.ControlRecord`)."""

    budgetControlId = _control_id("control_id")
    runId = _run_id("run_id")
    holdAmount = Dollars(required=True, attribute="hold_micros")
    settledAmount = Dollars(required=True, allow_none=True, attribute="settled_micros",
                            metadata={"description": "What the run cost; null until it ends."})
    currency = _usd()
    status = fields.String(required=True, validate=validate.OneOf(
        ["HELD", "SETTLED", "RELEASED", "BLOCKED"]))
    snapshot = _snapshot()
    createdAt = Timestamp(required=True, attribute="created_at")
    settledAt = Timestamp(required=True, allow_none=True, attribute="settled_at")


class RunCapRunRecordSchema(Schema):
    runCapControlId = _control_id("control_id")
    runId = _run_id("run_id")
    estimatedCost = Dollars(required=True, attribute="hold_micros",
                            metadata={"description": "What the run holds: the most it costs."})
    currency = _usd()
    status = fields.String(required=True, validate=validate.OneOf(["PASSED", "BLOCKED"]))
    snapshot = _snapshot()
    createdAt = Timestamp(required=True, attribute="created_at")


class RunControlRecordSchema(Schema):
    """What one control said of the run."""

    controlId = _control_id("control_id")
    controlType = fields.String(required=True, attribute="control_type",
                                validate=validate.OneOf(CONTROL_TYPES))
    runId = _run_id("run_id")
    requiredAmount = Dollars(required=True, attribute="hold_micros",
                             metadata={"description": "What the run held, or would have."})
    settledAmount = Dollars(required=True, allow_none=True, attribute="settled_micros")
    currency = _usd()
    status = fields.String(required=True, validate=validate.OneOf(
        ["HELD", "SETTLED", "RELEASED", "BLOCKED", "PASSED"]))
    snapshot = _snapshot()
    createdAt = Timestamp(required=True, attribute="created_at")
    settledAt = Timestamp(required=True, allow_none=True, attribute="settled_at")


class BudgetRunListSchema(Schema):
    items = fields.List(fields.Nested(BudgetRunRecordSchema), required=True)
    cursor = _next_cursor()


class RunCapRunListSchema(Schema):
    items = fields.List(fields.Nested(RunCapRunRecordSchema), required=True)
    cursor = _next_cursor()


class RunControlListSchema(Schema):
    items = fields.List(fields.Nested(RunControlRecordSchema), required=True)
    cursor = _next_cursor()


# --- webhooks -----------------------------------------------------------------------

WEBHOOK_ID_EXAMPLE = "01JH0WEBH00K0000000000000A"
DELIVERY_ID_EXAMPLE = "01JH0DE1VERY00000000000000"
EVENT_ID_EXAMPLE = "01JH0EVENT0000000000000000"
SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK_EVENT_TYPES = [*RUN_EVENTS, "webhook.test"]


def _ulid(attribute: str, example: str, **extra: Any) -> fields.String:
    return fields.String(required=True, attribute=attribute,
                         metadata={"pattern": ULID_PATTERN.pattern, "example": example},
                         **extra)


class WebhookSchema(Schema):
    """A standing webhook of the workspace (`shared.webhooks.service.WebhookEndpoint`),
    never its secret."""

    webhookId = _ulid("id", WEBHOOK_ID_EXAMPLE)
    url = fields.String(required=True, metadata={
        "description": "Where deliveries go (as checked and normalised).",
        "example": "https://example.com/hooks/monid"})
    events = fields.List(fields.String(validate=validate.OneOf(RUN_EVENTS)), required=True,
                         allow_none=True, metadata={
                             "description": "The run events it wants; null: every one.",
                             "example": ["run.completed", "run.failed"]})
    description = fields.String(required=True, allow_none=True)
    enabled = fields.Boolean(required=True, metadata={
        "description": "Whether runs' ends are sent to it. A receiver that answers `410 "
                       "Gone` switches it off."})
    disabledReason = fields.String(required=True, allow_none=True, attribute="disabled_reason",
                                   metadata={"description": "Why it was switched off; null "
                                                            "while on, or when switched off "
                                                            "on request."})
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})
    updatedAt = Timestamp(required=True, attribute="updated_at",
                          metadata={"example": ISO_EXAMPLE})


class CreatedWebhookSchema(WebhookSchema):
    """A webhook just made (`shared.webhooks.service.CreatedWebhook`), with its secret."""

    secret = fields.String(required=True, metadata={
        "description": "The webhook's own signing secret: shown this once, never again "
                       "(rotate it to get a new one).", "example": SECRET_EXAMPLE})

    @pre_dump
    def _flat(self, created: Any, **_: Any) -> dict[str, Any]:
        return {**dataclasses.asdict(created.webhook), "secret": created.secret}


class WebhookListSchema(Schema):
    items = fields.List(fields.Nested(WebhookSchema), required=True)
    cursor = _next_cursor()


class SigningSecretSchema(Schema):
    key = fields.String(required=True, metadata={
        "description": "A signing secret (`whsec_` and the base64 of its key), for a "
                       "Standard Webhooks library.", "example": SECRET_EXAMPLE})


class RotatedSecretSchema(Schema):
    """A secret just made by a rotation (`shared.webhooks.service.NewSecret`)."""

    key = fields.String(required=True, metadata={
        "description": "The new signing secret: shown this once.", "example": SECRET_EXAMPLE})
    graceSeconds = fields.Integer(required=True, attribute="grace_seconds",
                                  validate=validate.Range(min=0), metadata={
                                      "description": "How long the secret it replaced goes "
                                                     "on signing beside it "
                                                     "(`WEBHOOK_SECRET_GRACE_SECONDS`).",
                                      "example": 86400})


class DeliveryAttemptSchema(Schema):
    """One try of a delivery (`shared.webhooks.service.DeliveryAttempt`)."""

    attemptedAt = fields.String(required=True, attribute="attempted_at",
                                metadata={"format": "date-time", "example": ISO_EXAMPLE})
    statusCode = fields.Integer(required=True, allow_none=True, attribute="status_code",
                                metadata={"description": "The receiver's HTTP status; null "
                                                         "when it did not answer."})
    durationMs = fields.Integer(required=True, attribute="duration_ms",
                                validate=validate.Range(min=0))
    responseHead = fields.String(required=True, allow_none=True, attribute="response_head",
                                 metadata={"description": "The first bytes of the answer's "
                                                          "body (at most 1 KiB)."})
    error = fields.String(required=True, allow_none=True, metadata={
        "description": "What went wrong, when no 2xx came (a timeout, a refused address, a "
                       "redirect not followed...)."})
    nextRetryAt = fields.String(required=True, allow_none=True, attribute="next_retry_at",
                                metadata={"format": "date-time",
                                          "description": "When the next try was due after "
                                                         "this one; null: none."})


class DeliverySchema(Schema):
    """One event to one destination, with its tries (`shared.webhooks.service.
    WebhookDelivery`)."""

    deliveryId = _ulid("id", DELIVERY_ID_EXAMPLE)
    eventId = _ulid("event_id", EVENT_ID_EXAMPLE)
    eventType = fields.String(required=True, attribute="event_type",
                              validate=validate.OneOf(WEBHOOK_EVENT_TYPES))
    runId = fields.String(required=True, allow_none=True, attribute="run_id",
                          metadata={"pattern": ULID_PATTERN.pattern,
                                    "description": "Null for a test event."})
    webhookId = fields.String(required=True, allow_none=True, attribute="endpoint_id",
                              metadata={"pattern": ULID_PATTERN.pattern,
                                        "description": "The standing webhook it goes to; "
                                                       "null: the run's own webhook."})
    url = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATUSES),
                           metadata={"description": "`PENDING` until a try is answered 2xx "
                                                    "(`DELIVERED`) or the retries run out "
                                                    "(`FAILED`)."})
    attemptCount = fields.Integer(required=True, attribute="attempt_count",
                                  validate=validate.Range(min=0))
    nextAttemptAt = Timestamp(required=True, allow_none=True, attribute="next_attempt_at",
                              metadata={"description": "When the next try is due; null "
                                                       "once it has ended."})
    attempts = fields.List(fields.Nested(DeliveryAttemptSchema), required=True, metadata={
        "description": "Its tries, oldest first (the last 50)."})
    createdAt = Timestamp(required=True, attribute="created_at",
                          metadata={"example": ISO_EXAMPLE})
    updatedAt = Timestamp(required=True, attribute="updated_at",
                          metadata={"example": ISO_EXAMPLE})


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)
    cursor = _next_cursor()
