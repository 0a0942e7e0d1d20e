"""The catalog: discover endpoints by what they do, inspect one, list them all
(`shared.catalog.discovery` reads them)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import errors
from api.auth import authenticate
from api.openapi import documented
from api.schemas import (
    DiscoverResultsSchema,
    EndpointCardSchema,
    EndpointListSchema,
    parse_json_object,
)
from api.services import services
from shared.catalog import discovery
from shared.requests import DiscoverSchema, InspectSchema, ListEndpointsSchema, load

blueprint = Blueprint("catalog", __name__, url_prefix="/v1")

_discover_schema = DiscoverSchema()
_results_schema = DiscoverResultsSchema()
_inspect_schema = InspectSchema()
_card_schema = EndpointCardSchema()
_list_schema = ListEndpointsSchema()
_endpoints_schema = EndpointListSchema()


@blueprint.post("/discover")
@documented(operation_id="discoverEndpoints", summary="Find endpoints by what they do",
            tag="catalog", body=DiscoverSchema,
            body_example={"query": "twitter posts", "limit": 5},
            answer="The endpoints best matching the query, best first.",
            schema=DiscoverResultsSchema,
            described={400: "Malformed JSON, a body that is not an object, an invalid field, "
                            "or a query with no words to search for."})
def discover() -> Response:
    authenticate()
    body = load(_discover_schema, parse_json_object())
    found = discovery.discover(services(), body["query"], limit=body["limit"])
    return jsonify(_results_schema.dump(found))


@blueprint.post("/inspect")
@documented(operation_id="inspectEndpoint", summary="An endpoint's whole card", tag="catalog",
            body=InspectSchema, body_example={"provider": "demo", "endpoint": "/echo"},
            answer="The endpoint's card, with its input schema.", schema=EndpointCardSchema,
            errors=(errors.ENDPOINT_NOT_FOUND,))
def inspect() -> Response:
    authenticate()
    body = load(_inspect_schema, parse_json_object())
    entry = discovery.inspect(services(), body["provider"], body["endpoint"])
    return jsonify(_card_schema.dump(entry))


@blueprint.get("/endpoints")
@documented(operation_id="listEndpoints", summary="List every endpoint", tag="catalog",
            description="In (provider, endpoint) order.", query=ListEndpointsSchema,
            answer="A page of endpoints.", schema=EndpointListSchema,
            errors=(errors.VALIDATION_FAILED,),
            described={400: "A parameter is invalid, or the cursor is not one from this API."})
def endpoints() -> Response:
    authenticate()
    params = load(_list_schema, request.args.to_dict())
    page = discovery.list_all(services(), limit=params["limit"], cursor=params["cursor"])
    return jsonify(_endpoints_schema.dump(page))
