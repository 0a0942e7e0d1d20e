"""The catalog: discover endpoints by what they do, inspect one, list them all.

Every answer is read from the synced catalog table (`monidctl catalog sync`),
so every web process serves the same catalog.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from api.auth import authenticate
from api.errors import ApiError, validation_failed
from api.schemas import endpoint_field, load, parse_json_object, price_json, provider_field
from api.services import services
from shared.catalog.sync import (
    CatalogEntry,
    NoSearchableWords,
    decode_endpoint_cursor,
    get_endpoint,
    list_endpoints,
    search_endpoints,
)
from shared.db import reading

blueprint = Blueprint("catalog", __name__, url_prefix="/v1")

MAX_QUERY_CHARS = 500


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

    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100),
                           error_messages={"invalid": "must be an integer"},
                           metadata={"description": "Endpoints per page."})
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=1000),
                           metadata={"description": "The previous page's `cursor`."})


_discover_schema = DiscoverSchema()
_inspect_schema = InspectSchema()
_list_schema = ListEndpointsSchema()


def _price(entry: CatalogEntry) -> dict[str, Any]:
    return price_json(entry.price_type, entry.price_micros, entry.flat_fee_micros)


def _identity(entry: CatalogEntry) -> dict[str, Any]:
    """What an endpoint is, the first fields of both its summary and its card."""
    return {
        "provider": entry.provider,
        "providerName": entry.provider_name,
        "endpoint": entry.path,
        "name": entry.name,
        "description": entry.description,
        "tags": list(entry.tags),
    }


def summary_json(entry: CatalogEntry) -> dict[str, Any]:
    """An endpoint in a list: what it is and what it costs, without its schemas."""
    return {**_identity(entry), "price": _price(entry)}


def card_json(entry: CatalogEntry) -> dict[str, Any]:
    """An endpoint's whole card: everything a caller needs to run it."""
    card: dict[str, Any] = {**_identity(entry), "inputSchema": entry.input_schema}
    if entry.query_params_schema is not None:
        card["queryParamsSchema"] = entry.query_params_schema
    if entry.path_params_schema is not None:
        card["pathParamsSchema"] = entry.path_params_schema
    card["price"] = _price(entry)
    card["deadlineSeconds"] = entry.deadline_seconds
    card["maxAttempts"] = entry.max_attempts
    card["exampleInput"] = entry.example_input
    return card


@blueprint.post("/discover")
def discover() -> Response:
    authenticate()
    body = load(_discover_schema, parse_json_object())
    try:
        with reading(services().pool) as conn:
            matches = search_endpoints(conn, body["query"], body["limit"])
    except NoSearchableWords:
        raise validation_failed({"query": ["has no words to search for"]}) from None
    results = [{
        "provider": m.entry.provider,
        "providerName": m.entry.provider_name,
        "endpoint": m.entry.path,
        "description": m.entry.description,
        "price": _price(m.entry),
        "score": m.score,
        "tags": list(m.entry.tags),
    } for m in matches]
    return jsonify({"results": results, "query": body["query"], "count": len(results)})


@blueprint.post("/inspect")
def inspect() -> Response:
    authenticate()
    body = load(_inspect_schema, parse_json_object())
    entry = None
    # No endpoint's name has a NUL in it, and PostgreSQL refuses one in a text parameter.
    if "\x00" not in body["provider"] + body["endpoint"]:
        with reading(services().pool) as conn:
            entry = get_endpoint(conn, body["provider"], body["endpoint"])
    if entry is None:
        raise ApiError(404, "ENDPOINT_NOT_FOUND",
                       services().catalog.not_found_message(body["provider"], body["endpoint"]))
    return jsonify(card_json(entry))


@blueprint.get("/endpoints")
def endpoints() -> Response:
    authenticate()
    params = load(_list_schema, request.args.to_dict())
    after = None
    if params["cursor"]:
        try:
            after = decode_endpoint_cursor(params["cursor"])
        except ValueError:
            raise validation_failed({"cursor": ["is not a cursor from this API"]}) from None
    with reading(services().pool) as conn:
        entries, cursor = list_endpoints(conn, params["limit"], after)
    return jsonify({"items": [summary_json(e) for e in entries], "cursor": cursor})
