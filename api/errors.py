"""The one place that maps errors to HTTP answers, all in the contract's envelope."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from shared.db import DatabaseUnavailable

log = logging.getLogger("monid.api")

_HTTP_CODES = {
    400: "VALIDATION_FAILED",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    431: "HEADERS_TOO_LARGE",
    503: "SERVICE_UNAVAILABLE",
}


def error_code_for(status: int) -> str:
    """The envelope's errorCode for an HTTP status that has no more precise one."""
    return _HTTP_CODES.get(status, "INTERNAL" if status >= 500 else "VALIDATION_FAILED")


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str,
                 errors: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def validation_failed(errors: Mapping[str, list[str]]) -> ApiError:
    first_field, messages = next(iter(errors.items()))
    message = f"{first_field}: {messages[0]}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return ApiError(400, "VALIDATION_FAILED", message, errors)


def error_response(status: int, error_code: str, message: str,
                   errors: Mapping[str, list[str]] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"code": status, "message": message, "errorCode": error_code}
    if errors:
        body["errors"] = dict(errors)
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.error_code, exc.message, exc.errors, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        messages = {
            404: "no such route",
            405: "method not allowed on this route",
            413: f"request body is over the limit of {app.config['MAX_CONTENT_LENGTH']} bytes",
        }
        message = messages.get(status) or exc.description or exc.name
        return error_response(status, error_code_for(status), message, headers=headers)

    @app.errorhandler(DatabaseUnavailable)
    def _database_down(exc: DatabaseUnavailable) -> Response:
        log.warning("database unavailable", extra={"error": str(exc)})
        return error_response(503, "SERVICE_UNAVAILABLE",
                              "the database is unavailable; try again shortly",
                              headers={"Retry-After": "2"})

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "INTERNAL", "internal error")
