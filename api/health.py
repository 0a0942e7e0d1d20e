"""Operational routes, without a key."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.services import services
from shared.db import DatabaseUnavailable, reading

blueprint = Blueprint("health", __name__)


@blueprint.get("/")
def index() -> tuple[Response, int, dict[str, str]]:
    """Where to start: the API's documentation and its description."""
    return jsonify({"name": "monid-runs", "docs": "/docs", "openapi": "/openapi.json",
                    "health": "/healthz", "readiness": "/readyz"}), 200, {
        "Link": '</docs>; rel="service-doc", </openapi.json>; rel="service-desc"'}


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {"database": "ok", "broker": "ok"}
    try:
        with reading(services().pool) as conn:
            conn.execute("SELECT 1")
    except DatabaseUnavailable:
        checks["database"] = "unavailable"
    try:
        services().redis.ping()
    except Exception:  # any failure to answer means "not ready"
        checks["broker"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    if ready:
        return jsonify({"status": "ready", "checks": checks}), 200
    body = {"code": 503, "errorCode": "SERVICE_UNAVAILABLE",
            "message": "not ready: " + ", ".join(k for k, v in checks.items() if v != "ok")
            + " unavailable", "checks": checks}
    return jsonify(body), 503
