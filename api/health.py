"""Operational routes, without a key."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api import errors
from api.errors import error_response
from api.openapi import documented
from api.schemas import (
    HealthSchema,
    IndexSchema,
    ReadinessChecksSchema,
    ReadinessErrorSchema,
    ReadinessSchema,
)
from api.services import services

blueprint = Blueprint("health", __name__)
_index_schema = IndexSchema()
_health_schema = HealthSchema()
_ready_schema = ReadinessSchema()
_checks_schema = ReadinessChecksSchema()


@blueprint.get("/")
@documented(operation_id="index", summary="Where to start: links to the documentation",
            tag="operations", public=True, schema=IndexSchema,
            answer="Links to `/docs` and `/openapi.json` (also in a `Link` header).")
def index() -> tuple[Response, int, dict[str, str]]:
    """Where to start: the API's documentation and its description."""
    links = {"name": "monid-runs", "docs": "/docs", "openapi": "/openapi.json",
             "health": "/healthz", "readiness": "/readyz"}
    return jsonify(_index_schema.dump(links)), 200, {
        "Link": '</docs>; rel="service-doc", </openapi.json>; rel="service-desc"'}


@blueprint.get("/healthz")
@documented(operation_id="healthz", summary="The process is up", tag="operations",
            public=True, answer="Up.", schema=HealthSchema)
def healthz() -> Response:
    return jsonify(_health_schema.dump({"status": "ok"}))


@blueprint.get("/readyz")
@documented(
    operation_id="readyz", summary="The database and the broker answer", tag="operations",
    public=True, answer="Ready.", schema=ReadinessSchema,
    responses={"503": {
        "description": "Not ready: `checks` says which of the database and the broker did "
                       "not answer (`SERVICE_UNAVAILABLE`).",
        "headers": {"x-request-id": "RequestId"},
        "content": {"application/json": {
            "schema": ReadinessErrorSchema,
            "example": {"code": 503, "message": "not ready: broker unavailable",
                        "errorCode": errors.SERVICE_UNAVAILABLE.code}}}}})
def readyz() -> Response | tuple[Response, int]:
    ready = services().readiness()
    checks = _checks_schema.dump({name: "ok" if up else "unavailable"
                                  for name, up in ready.items()})
    if all(ready.values()):
        return jsonify(_ready_schema.dump({"status": "ready", "checks": checks})), 200
    down = ", ".join(name for name, up in ready.items() if not up)
    return error_response(503, errors.SERVICE_UNAVAILABLE.code,
                          f"not ready: {down} unavailable", checks=checks)
