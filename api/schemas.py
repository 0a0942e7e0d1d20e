"""Request schemas (marshmallow) and the JSON form of runs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from api.errors import ApiError, validation_failed
from shared.money import micros_to_dollars
from shared.store import END_STATUSES, STATUSES, Run
from shared.timefmt import iso


def provider_field(*, example: str) -> fields.String:
    """A request's `provider`: a provider's slug."""
    return fields.String(required=True, validate=validate.Length(min=1, max=100),
                         error_messages={"invalid": "must be a string"},
                         metadata={"description": "The provider's slug.", "example": example})


def endpoint_field(*, example: str) -> fields.String:
    """A request's `endpoint`: an endpoint's path."""
    return fields.String(required=True, validate=validate.Length(min=1, max=500),
                         error_messages={"invalid": "must be a string"},
                         metadata={"description": "The endpoint's path.", "example": example})


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


class ListRunsSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100),
                           error_messages={"invalid": "must be an integer"},
                           metadata={"description": "Runs per page."})
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                           metadata={"description": "The previous page's `cursor`."})
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES),
                           metadata={"description": "Only runs in this status."})


ITEM_FORMATS = ("json", "jsonl", "csv")
MAX_ITEMS_PAGE = 1000
DEFAULT_ITEMS_PAGE = 100


class ListItemsSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ITEMS_PAGE),
                           error_messages={"invalid": "must be an integer"},
                           metadata={"description": f"Items per JSON page (default "
                                                    f"{DEFAULT_ITEMS_PAGE}); a page holds "
                                                    "fewer when its items pass 4 MiB. JSON "
                                                    "pages only."})
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                           metadata={"description": "The previous page's `cursor`. JSON pages "
                                                    "only."})
    format = fields.String(load_default="json", validate=validate.OneOf(ITEM_FORMATS),
                           metadata={"description": "`json`: a page; `jsonl` or `csv`: a "
                                                    "download of every item, streamed."})
    field_paths = fields.String(
        data_key="fields", load_default=None, validate=validate.Length(min=1, max=4000),
        metadata={"description": "Comma-separated fields to keep, nested ones by their "
                                 "dotted path (`a,b.c`), in this order: the columns of a CSV, "
                                 "the fields of JSON items.",
                  "example": "id,author.name"})


def items_url(run_id: str) -> str:
    return f"/v1/runs/{run_id}/items"


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
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
        raise validation_failed(_flatten(exc.messages)) from None
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def strict_json_loads(raw: bytes) -> Any:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity, no lone surrogates.
    ValueError (or RecursionError for absurd nesting) otherwise."""
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    # A lone surrogate parses, but cannot be stored or sent on: refuse it here.
    json.dumps(data, ensure_ascii=False).encode("utf-8")
    return data


def parse_json_object() -> dict[str, Any]:
    """The request body as a JSON object, or the contract's 415/400."""
    from flask import request

    if not request.is_json:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       "send the body as JSON with 'Content-Type: application/json'")
    raw = request.get_data(cache=True)
    try:
        data = strict_json_loads(raw)
    except (ValueError, RecursionError):
        detail = "the body is empty" if not raw.strip() else "the body is not valid JSON"
        raise ApiError(400, "VALIDATION_FAILED", f"malformed JSON: {detail}",
                       {"body": [detail]}) from None
    if not isinstance(data, dict):
        raise ApiError(400, "VALIDATION_FAILED", "the body must be a JSON object",
                       {"body": ["must be a JSON object"]})
    return data


def price_json(price_type: str, amount_micros: int,
               flat_fee_micros: int | None) -> dict[str, Any]:
    price: dict[str, Any] = {"type": price_type, "amount": micros_to_dollars(amount_micros),
                             "currency": "USD"}
    if flat_fee_micros is not None:
        price["flatFee"] = micros_to_dollars(flat_fee_micros)
    return price


def accepted_json(run_id: str, caller: str, provider: str, provider_name: str, endpoint: str,
                  price: dict[str, Any], created_at: Any) -> dict[str, Any]:
    return {
        "runId": run_id,
        "caller": caller,
        "provider": provider,
        "providerName": provider_name,
        "endpoint": endpoint,
        "status": "RUNNING",
        "price": price,
        "createdAt": iso(created_at),
    }


def run_json(run: Run, *, full: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "runId": run.id,
        "caller": run.caller,
        "provider": run.provider,
        "providerName": run.provider_name,
        "endpoint": run.endpoint,
        "status": run.status,
        "stoppable": run.status not in END_STATUSES,
    }
    if full:
        body["input"] = run.input
        body["output"] = run.output if run.ended else None
        body["outputTruncated"] = run.output_truncated
        body["itemsUrl"] = items_url(run.id)
    body["resultCount"] = run.result_count
    body["providerResponse"] = run.provider_response
    body["error"] = run.error
    body["price"] = price_json(run.price_type, run.price_micros, run.flat_fee_micros)
    body["cost"] = ({"value": micros_to_dollars(run.cost_micros), "currency": "USD"}
                    if run.cost_micros is not None and run.ended else None)
    if full:
        attempts = [dict(a) for a in run.attempts]
        for attempt in attempts[:-1]:
            attempt["nextAttemptAt"] = None
        if attempts and run.ended:
            attempts[-1]["nextAttemptAt"] = None
        body["attempts"] = attempts
    body["createdAt"] = iso(run.created_at)
    body["startedAt"] = iso(run.started_at)
    body["completedAt"] = iso(run.completed_at)
    return body
