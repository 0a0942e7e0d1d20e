"""The public catalog, without a key (`shared.catalog.public` reads it).

Rate-limited per client address (`PUBLIC_RATE_LIMIT_PER_MINUTE`, on the same Redis
windows as the keys' limits) and cacheable: every answer carries `Cache-Control`
and an `ETag` made from its body, and a request whose `If-None-Match` names it is
answered `304 Not Modified` without the body.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import errors
from api.openapi import documented
from api.ratelimit import check_rate
from api.schemas import (
    EndpointCardSchema,
    PublicEndpointListSchema,
    PublicProviderListSchema,
    PublicSearchSchema,
    PublicStatsSchema,
)
from api.services import services
from shared.catalog import public
from shared.requests import PublicSearchSchema as SearchQuerySchema
from shared.requests import load

blueprint = Blueprint("public", __name__, url_prefix="/public/v1")
MAX_AGE_SECONDS = 60

_search_query = SearchQuerySchema()
_stats_schema = PublicStatsSchema()
_providers_schema = PublicProviderListSchema()
_endpoints_schema = PublicEndpointListSchema()
_card_schema = EndpointCardSchema()
_search_schema = PublicSearchSchema()

_IF_NONE_MATCH = {"in": "header", "name": "If-None-Match", "required": False,
                  "description": "An `ETag` of an earlier answer: `304` while it has not "
                                 "changed.", "schema": {"type": "string"}}
_CACHED = {"Cache-Control": "CacheControl", "ETag": "ETag"}
_NOT_MODIFIED = {"304": {"description": "Not modified since the `ETag` in `If-None-Match`; "
                                        "no body.",
                         "headers": {"x-request-id": "RequestId", **_CACHED}}}
_LIMITED = (errors.RATE_LIMITED, errors.SERVICE_UNAVAILABLE)


def _public(**description: Any) -> Any:
    return documented(tag="public", public=True, headers=(_IF_NONE_MATCH,),
                      answer_headers=_CACHED, responses=_NOT_MODIFIED,
                      errors=(*description.pop("errors", ()), *_LIMITED), **description)


@blueprint.before_request
def _limit_per_address() -> None:
    svc = services()
    check_rate(svc.redis, f"addr:{request.remote_addr or '-'}",
               svc.settings.public_rate_limit_per_minute, who="address")


@blueprint.after_request
def _cacheable(response: Response) -> Response:
    if request.method in ("GET", "HEAD") and response.status_code == 200:
        response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_SECONDS}"
        response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:32])
        response.make_conditional(request)
    return response


@blueprint.get("/stats")
@_public(operation_id="publicStats", summary="The catalog's figures",
         answer="How many providers and endpoints the catalog has.", schema=PublicStatsSchema)
def stats() -> Response:
    return jsonify(_stats_schema.dump(public.stats(services())))


@blueprint.get("/providers")
@_public(operation_id="publicProviders", summary="The catalog's providers",
         answer="Every provider, with how many endpoints it has.",
         schema=PublicProviderListSchema)
def providers() -> Response:
    return jsonify(_providers_schema.dump({"items": public.providers(services())}))


@blueprint.get("/providers/<provider>/endpoints")
@_public(operation_id="publicProviderEndpoints", summary="A provider's endpoints",
         answer="The provider's endpoints, without their schemas.",
         schema=PublicEndpointListSchema, errors=(errors.ENDPOINT_NOT_FOUND,))
def provider_endpoints(provider: str) -> Response:
    found = public.provider_endpoints(services(), provider)
    return jsonify(_endpoints_schema.dump({"items": found}))


@blueprint.get("/providers/<provider>/endpoints/<path:endpoint>")
@_public(operation_id="publicEndpoint", summary="An endpoint's whole card",
         answer="The endpoint's card, with its input schema.", schema=EndpointCardSchema,
         errors=(errors.ENDPOINT_NOT_FOUND,))
def endpoint(provider: str, endpoint: str) -> Response:
    return jsonify(_card_schema.dump(public.endpoint(services(), provider, endpoint)))


@blueprint.get("/search")
@_public(operation_id="publicSearch", summary="Search the catalog",
         description="The same search as `POST /v1/discover`, in pages of at most 20; at "
                     "most 100 results in all (`totalIsCapped` says when more match).",
         query=SearchQuerySchema, answer="A page of the best matches, best first.",
         schema=PublicSearchSchema, errors=(errors.VALIDATION_FAILED,),
         described={400: "A parameter is invalid (`errors` names it), the query has no "
                         "words to search for, or the cursor is not one of this query's."})
def search() -> Response:
    params = load(_search_query, request.args.to_dict())
    page = public.search(services(), params["q"], limit=params["limit"],
                         cursor=params["cursor"])
    return jsonify(_search_schema.dump(page))
