"""What each operation accepts, checked the same way for every way in (the REST
routes, the MCP tools, `monidctl`): a marshmallow schema per request, `load` that
turns every failing field into one `InvalidRequest`, and JSON read as RFC 8259 has
it. The REST routes' OpenAPI document describes the same schemas.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

from shared.errors import InvalidRequest
from shared.items import FORMATS, MAX_PAGE_ITEMS
from shared.keys import LABEL_PATTERN, LABEL_RULE
from shared.runs import MAX_WAIT_SECONDS, STATUSES
from shared.store.webhooks import RUN_EVENTS

MAX_QUERY_CHARS = 500
MAX_PROVIDER_CHARS = 100
MAX_ENDPOINT_CHARS = 500


def provider_field(*, example: str) -> fields.String:
    """A request's `provider`: a provider's slug."""
    return fields.String(required=True, validate=validate.Length(min=1, max=MAX_PROVIDER_CHARS),
                         error_messages={"invalid": "must be a string"},
                         metadata={"description": "The provider's slug.", "example": example})


def endpoint_field(*, example: str) -> fields.String:
    """A request's `endpoint`: an endpoint's path."""
    return fields.String(required=True, validate=validate.Length(min=1, max=MAX_ENDPOINT_CHARS),
                         error_messages={"invalid": "must be a string"},
                         metadata={"description": "The endpoint's path.", "example": example})


def _limit(default: int, noun: str) -> fields.Integer:
    """A page's `limit`: 1 to 100 `noun` (capitalised), `default` when not given."""
    return fields.Integer(load_default=default, validate=validate.Range(min=1, max=100),
                          error_messages={"invalid": "must be an integer"},
                          metadata={"description": f"{noun} per page."})


def _cursor(max_length: int = 200) -> fields.String:
    return fields.String(load_default=None, validate=validate.Length(min=1, max=max_length),
                         metadata={"description": "The previous page's `cursor`."})


WEBHOOK_EVENTS = RUN_EVENTS
MAX_WEBHOOK_URL_LENGTH = 2048
MAX_WEBHOOK_DESCRIPTION_LENGTH = 500


class StrictBoolean(fields.Boolean):
    """true or false, and nothing else (not 1, "true" or "yes")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def webhook_url_field(**extra: Any) -> fields.String:
    return fields.String(
        validate=validate.Length(min=1, max=MAX_WEBHOOK_URL_LENGTH),
        error_messages={"invalid": "must be a string"},
        metadata={"description": "Where deliveries go: `https` on a public address "
                                 "(`WEBHOOKS_ALLOW_INSECURE=true` also allows `http` and "
                                 "private or loopback addresses).",
                  "example": "https://example.com/hooks/monid"}, **extra)


def webhook_events_field(description: str, **extra: Any) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(WEBHOOK_EVENTS),
                      error_messages={"invalid": "must be a string"}),
        allow_none=True, validate=validate.Length(min=1, max=len(WEBHOOK_EVENTS) * 4),
        error_messages={"invalid": "must be a list of event types"},
        metadata={"description": description, "example": ["run.completed", "run.failed"]},
        **extra)


class RunWebhookSchema(Schema):
    class Meta:
        unknown = RAISE

    error_messages = {"type": "must be an object"}  # noqa: RUF012 - marshmallow's own

    url = webhook_url_field(required=True)
    events = webhook_events_field("The ends to be told of (at least one); absent or null: "
                                  "every end.", load_default=None)


class StartRunSchema(Schema):
    class Meta:
        unknown = RAISE

    provider = provider_field(example="apify")
    endpoint = endpoint_field(example="/apidojo/tweet-scraper")
    input = fields.Dict(required=True, error_messages={"invalid": "must be an object"},
                        metadata={"description": "The endpoint's input: flat (the input "
                                                 "itself) or composite (`body`, `queryParams`, "
                                                 "`pathParams`).",
                                  "example": {"searchTerms": ["AI"], "maxItems": 10}})
    webhook = fields.Nested(RunWebhookSchema, metadata={
        "description": "Tell this URL of the run's end: a signed POST (Standard Webhooks), "
                       "signed with the workspace's default secret "
                       "(`GET /v1/webhooks/default/secret`)."})


_START_RUN_USUAL = frozenset({"provider", "endpoint", "input"})


def load_start_run(schema: StartRunSchema, data: dict[str, Any]) -> dict[str, Any]:
    """`load(schema, data)` of a StartRunSchema, without marshmallow for the usual body:
    exactly `provider` and `endpoint` (strings of the lengths allowed) and an `input`
    object, which the schema would answer as they are. Any other body (a webhook, a field
    missing, of the wrong type or length, one more) goes through the schema, for its
    messages. On the accept's hot path the schema's load cost 11 us, this 0.4 us;
    tests/unit/test_strict_json.py keeps the two the same."""
    if data.keys() == _START_RUN_USUAL:
        provider, endpoint, input = data["provider"], data["endpoint"], data["input"]
        if (type(provider) is str and 0 < len(provider) <= MAX_PROVIDER_CHARS
                and type(endpoint) is str and 0 < len(endpoint) <= MAX_ENDPOINT_CHARS
                and type(input) is dict):
            return {"provider": provider, "endpoint": endpoint, "input": input}
    return load(schema, data)


_WAIT_RANGE = f"must be a number of seconds from 0 to {MAX_WAIT_SECONDS}"


class GetRunSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # other parameters are let be

    wait = fields.Float(
        load_default=0, validate=validate.Range(min=0, max=MAX_WAIT_SECONDS, error=_WAIT_RANGE),
        error_messages={"invalid": _WAIT_RANGE, "special": _WAIT_RANGE},
        metadata={"description": f"Seconds (0 to {MAX_WAIT_SECONDS}) to wait for the run to "
                                 "end: the answer comes as soon as it ends, or after `wait` "
                                 "seconds with the run as it then is."})


class ListRunsSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = _limit(10, "Runs")
    cursor = _cursor()
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES),
                           metadata={"description": "Only runs in this status."})


class ListItemsSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_PAGE_ITEMS),
                           error_messages={"invalid": "must be an integer"},
                           metadata={"description": "Items per JSON page (default 100); a "
                                                    "page holds fewer when its items pass 4 "
                                                    "MiB. JSON pages only."})
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                           metadata={"description": "The previous page's `cursor`. JSON pages "
                                                    "only."})
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS),
                           metadata={"description": "`json`: a page; `jsonl` or `csv`: a "
                                                    "download of every item, streamed."})
    field_paths = fields.String(
        data_key="fields", load_default=None, validate=validate.Length(min=1, max=4000),
        metadata={"description": "Comma-separated fields to keep, nested ones by their "
                                 "dotted path (`a,b.c`), in this order: the columns of a CSV, "
                                 "the fields of JSON items.",
                  "example": "id,author.name"})


class DiscoverSchema(Schema):
    class Meta:
        unknown = RAISE

    # The length and "not blank" rules are checked below, with their own messages; the
    # metadata tells the OpenAPI document about them.
    query = fields.String(required=True, error_messages={"invalid": "must be a string"},
                          metadata={"description": "What the endpoint should do, in words.",
                                    "minLength": 1, "maxLength": MAX_QUERY_CHARS,
                                    "pattern": r"\S", "example": "twitter posts"})
    limit = fields.Integer(load_default=5, strict=True, validate=validate.Range(min=1, max=50),
                           error_messages={"invalid": "must be an integer"},
                           metadata={"description": "At most this many results."})

    @validates("query")
    def _query_has_text(self, value: str, **_: Any) -> None:
        if not value.strip():
            raise ValidationError("must not be empty")
        if len(value) > MAX_QUERY_CHARS:
            raise ValidationError(f"must be at most {MAX_QUERY_CHARS} characters long")


class InspectSchema(Schema):
    class Meta:
        unknown = RAISE

    provider = provider_field(example="demo")
    endpoint = endpoint_field(example="/echo")


class ListEndpointsSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = _limit(10, "Endpoints")
    cursor = _cursor(max_length=1000)


class ListControlsSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = _limit(10, "Items")
    cursor = _cursor()


class ListApiKeysSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = _limit(20, "Keys")
    cursor = _cursor()


class RenameApiKeySchema(Schema):
    class Meta:
        unknown = RAISE

    label = fields.String(required=True, error_messages={"invalid": "must be a string"},
                          validate=validate.Regexp(LABEL_PATTERN, error=LABEL_RULE),
                          metadata={"description": "The key's new label, unique among the "
                                                   "workspace's live keys.",
                                    "example": "ci-pipeline"})


PUBLIC_SEARCH_MAX_PAGE = 20
PUBLIC_MAX_QUERY_CHARS = 200


class PublicSearchSchema(Schema):
    class Meta:
        unknown = RAISE

    q = fields.String(required=True, error_messages={"invalid": "must be a string"},
                      metadata={"description": "What the endpoint should do, in words.",
                                "minLength": 1, "maxLength": PUBLIC_MAX_QUERY_CHARS,
                                "pattern": r"\S", "example": "twitter posts"})
    limit = fields.Integer(load_default=10,
                           validate=validate.Range(min=1, max=PUBLIC_SEARCH_MAX_PAGE),
                           error_messages={"invalid": "must be an integer"},
                           metadata={"description": "Results per page."})
    cursor = _cursor(max_length=1000)

    @validates("q")
    def _query_has_text(self, value: str, **_: Any) -> None:
        if not value.strip():
            raise ValidationError("must not be empty")
        if len(value) > PUBLIC_MAX_QUERY_CHARS:
            raise ValidationError(f"must be at most {PUBLIC_MAX_QUERY_CHARS} characters long")


class LimitAmountSchema(Schema):
    class Meta:
        unknown = RAISE

    value = fields.Integer(required=True, strict=True, validate=validate.Range(min=0),
                           error_messages={"invalid": "must be a whole number of `unit`"},
                           metadata={"description": "A whole number of `unit`; at most a "
                                                    "million dollars.", "example": 500})
    unit = fields.String(required=True, validate=validate.OneOf(["MICRO_DOLLAR", "CENT",
                                                                 "DOLLAR"]),
                         metadata={"example": "CENT"})
    currency = fields.String(load_default="USD", validate=validate.OneOf(["USD"]))


class UpdateControlSchema(Schema):
    class Meta:
        unknown = RAISE

    limitAmount = fields.Nested(LimitAmountSchema, load_default=None,
                                metadata={"description": "The new limit."})
    status = fields.String(load_default=None, validate=validate.OneOf(["ACTIVE", "PAUSED"]),
                           metadata={"description": "`PAUSED`: the control judges no run "
                                                    "until it is `ACTIVE` again."})


class CreateWebhookSchema(Schema):
    class Meta:
        unknown = RAISE

    url = webhook_url_field(required=True)
    events = webhook_events_field("The run events it wants (at least one); absent or null: "
                                  "every run event.", load_default=None)
    description = fields.String(
        load_default=None, allow_none=True,
        validate=validate.Length(max=MAX_WEBHOOK_DESCRIPTION_LENGTH),
        error_messages={"invalid": "must be a string"},
        metadata={"description": "For people.", "example": "order pipeline"})
    enabled = StrictBoolean(load_default=True, error_messages={"invalid": "must be true or false"},
                            metadata={"description": "Whether runs' ends are sent to it."})


class UpdateWebhookSchema(Schema):
    """Only the fields sent change; at least one."""

    class Meta:
        unknown = RAISE

    url = webhook_url_field()
    events = webhook_events_field("The run events it wants (at least one); null: every run "
                                  "event.")
    description = fields.String(
        allow_none=True, validate=validate.Length(max=MAX_WEBHOOK_DESCRIPTION_LENGTH),
        error_messages={"invalid": "must be a string"},
        metadata={"description": "For people; null removes it."})
    enabled = StrictBoolean(error_messages={"invalid": "must be true or false"},
                            metadata={"description": "`true` switches it on again (and "
                                                     "forgets why it was switched off)."})


class ListWebhooksSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = _limit(20, "Webhooks")
    cursor = _cursor()


class ListDeliveriesSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = _limit(20, "Deliveries")
    cursor = _cursor()


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            # `_schema`: the object itself (not an object, say), not one of its fields.
            path = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            for sub_path, sub_messages in _flatten(value, path).items():
                flat.setdefault(sub_path, []).extend(sub_messages)
    elif isinstance(messages, list):
        flat[prefix or "body"] = [_tidy(str(m)) for m in messages]
    else:
        flat[prefix or "body"] = [_tidy(str(messages))]
    return flat


def _tidy(message: str) -> str:
    return {
        "Missing data for required field.": "is required",
        "Unknown field.": "is not a known field",
        "Field may not be null.": "must not be null",
    }.get(message, message.rstrip("."))


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate with a marshmallow schema; every failing field becomes a 400."""
    try:
        result: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise InvalidRequest(_flatten(exc.messages)) from None
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


# A surrogate can only come from a \\uD800-\\uDFFF escape: UTF-8 cannot carry one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def strict_json_loads(raw: bytes) -> Any:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity, no lone surrogates.
    ValueError (or RecursionError for absurd nesting) otherwise."""
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    # A lone surrogate parses, but cannot be stored or sent on: refuse it here. Only a
    # text with a surrogate's escape can hold one, so only such a text is gone over again
    # (a pair is fine: it parses to one character).
    if _SURROGATE_ESCAPE.search(text):
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    return data
