"""The one place that maps errors to HTTP answers, all in the contract's envelope.

`ERRORS` is the table: each answer's status, errorCode, what the OpenAPI document
says of it, and the errors answered so (the service layer's, werkzeug's). The
handlers below answer from it, and `api/openapi.py` documents every route's
errors from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify
from marshmallow import Schema, fields, validate
from werkzeug import exceptions as http

from shared import errors as domain
from shared.db import DatabaseUnavailable

log = logging.getLogger("monid.api")
RUN_ID_EXAMPLE = "01JGXYZABCDEFGHJKMNPQRSTVW"


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    code: str  # the envelope's errorCode
    meaning: str  # what the document says of it ({max_body_bytes} is filled in)
    example: str  # a message it may carry
    headers: tuple[str, ...] = ()  # the headers it always carries (components of the document)
    raised_by: tuple[type[Exception], ...] = ()
    sends: Mapping[str, str] = field(default_factory=dict)  # headers answered with raised_by


VALIDATION_FAILED = ErrorAnswer(
    400, "VALIDATION_FAILED",
    "The request is invalid; `errors` maps each failing field to its messages.",
    "input.maxItems: must be >= 1", raised_by=(domain.InvalidRequest,))
UNAUTHORIZED = ErrorAnswer(
    401, "UNAUTHORIZED",
    "No API key, or a malformed, unknown or revoked one (`UNAUTHORIZED`).", "unknown API key",
    headers=("WWW-Authenticate",), raised_by=(domain.Unauthorized,),
    sends={"WWW-Authenticate": "Bearer"})
INSUFFICIENT_FUNDS = ErrorAnswer(
    402, "WALLET_INSUFFICIENT_FUNDS",
    "The caller's wallet cannot cover the run's price (`WALLET_INSUFFICIENT_FUNDS`); no run "
    "was created.",
    "the wallet cannot cover this run: it holds 0.003 USD until the run ends; add funds and "
    "try again", raised_by=(domain.InsufficientFunds,))
NOT_FOUND = ErrorAnswer(
    404, "NOT_FOUND", "No such run, or another caller's (`NOT_FOUND`).",
    f"no run {RUN_ID_EXAMPLE!r}",
    raised_by=(domain.RunNotFound, http.NotFound))
CONTROL_NOT_FOUND = ErrorAnswer(
    404, "NOT_FOUND", "No such control, or another workspace's (`NOT_FOUND`).",
    "no budget '01JH0C0NTR0000000000000000'", raised_by=(domain.ControlNotFound,))
API_KEY_NOT_FOUND = ErrorAnswer(
    404, "NOT_FOUND", "No live key with this label in the workspace (`NOT_FOUND`).",
    "no API key labelled 'ci-pipeline'", raised_by=(domain.ApiKeyNotFound,))
WEBHOOK_NOT_FOUND = ErrorAnswer(
    404, "NOT_FOUND", "No such webhook, or another workspace's (`NOT_FOUND`).",
    "no webhook '01JH0WEBH00K0000000000000A'", raised_by=(domain.WebhookNotFound,))
DELIVERY_NOT_FOUND = ErrorAnswer(
    404, "NOT_FOUND", "No such delivery, or another workspace's (`NOT_FOUND`).",
    "no delivery '01JH0DE1VERY00000000000000'", raised_by=(domain.DeliveryNotFound,))
ENDPOINT_NOT_FOUND = ErrorAnswer(
    404, "ENDPOINT_NOT_FOUND", "No such provider or endpoint (`ENDPOINT_NOT_FOUND`).",
    "no endpoint '/nope' for provider 'demo'", raised_by=(domain.EndpointNotFound,))
METHOD_NOT_ALLOWED = ErrorAnswer(
    405, "METHOD_NOT_ALLOWED",
    "The method is not allowed on this path (`METHOD_NOT_ALLOWED`); `Allow` lists those that "
    "are.", "method not allowed on this route", headers=("Allow",),
    raised_by=(http.MethodNotAllowed,))
RUN_NOT_STOPPABLE = ErrorAnswer(
    409, "RUN_NOT_STOPPABLE", "The run has already ended (`RUN_NOT_STOPPABLE`).",
    "the run has already ended (COMPLETED); only a run that has not ended can be stopped",
    raised_by=(domain.RunNotStoppable,))
DELIVERY_PENDING = ErrorAnswer(
    409, "DELIVERY_PENDING",
    "The delivery is still `PENDING` (`DELIVERY_PENDING`): it is tried again on its own; "
    "only a `DELIVERED` or `FAILED` one can be redelivered.",
    "the delivery is still PENDING: it will be tried again on its own (see nextAttemptAt); "
    "only a DELIVERED or FAILED one can be redelivered", raised_by=(domain.DeliveryPending,))
WEBHOOK_LIMIT_REACHED = ErrorAnswer(
    409, "WEBHOOK_LIMIT_REACHED",
    "The workspace has as many webhooks as it may have, `MAX_WEBHOOKS_PER_WORKSPACE` "
    "(`WEBHOOK_LIMIT_REACHED`); delete one first.",
    "this workspace already has 20 webhooks, the most it may have; delete one first",
    raised_by=(domain.TooManyWebhooks,))
IDEMPOTENCY_KEY_IN_PROGRESS = ErrorAnswer(
    409, "IDEMPOTENCY_KEY_REUSED",
    "A request with this `Idempotency-Key` is still in progress (`IDEMPOTENCY_KEY_REUSED`).",
    "a request with this Idempotency-Key is in progress",
    raised_by=(domain.IdempotencyKeyInProgress,))
PAYLOAD_TOO_LARGE = ErrorAnswer(
    413, "PAYLOAD_TOO_LARGE",
    "The body is over the limit of {max_body_bytes} bytes (`PAYLOAD_TOO_LARGE`).",
    "request body is over the limit of 262144 bytes", raised_by=(http.RequestEntityTooLarge,))
URI_TOO_LONG = ErrorAnswer(
    414, "URI_TOO_LONG", "The request line is over 4094 bytes (`URI_TOO_LONG`).",
    "request line too long")
UNSUPPORTED_MEDIA_TYPE = ErrorAnswer(
    415, "UNSUPPORTED_MEDIA_TYPE",
    "The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).",
    "send the body as JSON with 'Content-Type: application/json'")
IDEMPOTENCY_KEY_REUSED = ErrorAnswer(
    422, "IDEMPOTENCY_KEY_REUSED",
    "This `Idempotency-Key` was used with a different body in the last 24 hours "
    "(`IDEMPOTENCY_KEY_REUSED`).",
    "this Idempotency-Key was used with a different request body in the last 24 hours; use a "
    "new key for a new request", raised_by=(domain.IdempotencyKeyReused,))
RATE_LIMITED = ErrorAnswer(
    429, "RATE_LIMITED",
    "Over the caller's rate limit (`RATE_LIMITED`); try again after `Retry-After` seconds.",
    "over this key's limit of 1200 requests a minute; try again in 17 s",
    headers=("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"),
    raised_by=(domain.TooManyRunsInFlight, domain.TooManyStreams), sends={"Retry-After": "1"})
HEADERS_TOO_LARGE = ErrorAnswer(
    431, "HEADERS_TOO_LARGE",
    "A header is over 8190 bytes, or there are more than 100 (`HEADERS_TOO_LARGE`).",
    "request header fields too large")
INTERNAL = ErrorAnswer(
    500, "INTERNAL",
    "An unexpected error (`INTERNAL`). The answer never carries a stack trace or a secret.",
    "internal error")
SERVICE_UNAVAILABLE = ErrorAnswer(
    503, "SERVICE_UNAVAILABLE",
    "The database is unavailable, so the request could not be served safely "
    "(`SERVICE_UNAVAILABLE`); try again after `Retry-After` seconds.",
    "the database is unavailable; try again shortly", headers=("Retry-After",),
    raised_by=(DatabaseUnavailable,), sends={"Retry-After": "2"})

ERRORS = (VALIDATION_FAILED, UNAUTHORIZED, INSUFFICIENT_FUNDS, NOT_FOUND, CONTROL_NOT_FOUND,
          API_KEY_NOT_FOUND, WEBHOOK_NOT_FOUND, DELIVERY_NOT_FOUND, ENDPOINT_NOT_FOUND,
          METHOD_NOT_ALLOWED, RUN_NOT_STOPPABLE, DELIVERY_PENDING, WEBHOOK_LIMIT_REACHED,
          IDEMPOTENCY_KEY_IN_PROGRESS, PAYLOAD_TOO_LARGE,
          URI_TOO_LONG, UNSUPPORTED_MEDIA_TYPE, IDEMPOTENCY_KEY_REUSED, RATE_LIMITED,
          HEADERS_TOO_LARGE, INTERNAL, SERVICE_UNAVAILABLE)
ERROR_CODES = tuple(dict.fromkeys(e.code for e in ERRORS))
_BY_EXCEPTION = {kind: answer for answer in ERRORS for kind in answer.raised_by}
# The answers of HTTP's own errors (werkzeug's, gunicorn's), by status.
_BY_STATUS = {answer.status: answer for answer in (
    VALIDATION_FAILED, UNAUTHORIZED, NOT_FOUND, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE,
    URI_TOO_LONG, UNSUPPORTED_MEDIA_TYPE, RATE_LIMITED, HEADERS_TOO_LARGE, SERVICE_UNAVAILABLE)}
# What werkzeug's own errors say, where its wording is not the contract's.
_HTTP_MESSAGES = {404: "no such route", 405: "method not allowed on this route"}


class ErrorSchema(Schema):
    """The envelope of every non-2xx answer."""

    code = fields.Integer(required=True, validate=validate.Range(min=400, max=599),
                          metadata={"description": "The HTTP status."})
    message = fields.String(required=True, metadata={"description": "For people."})
    errorCode = fields.String(required=True, validate=validate.OneOf(ERROR_CODES),
                              metadata={"description": "A stable machine word."})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "Each failing field's path and its messages."})
    hints = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={
        "description": "For agents, on some errors (a `402`: how to add credit): a short "
                       "phrase to a string or to `{\"kind\": \"topup\", \"command\"}` "
                       "and the like."})


_envelope = ErrorSchema()


def error_code_for(status: int) -> str:
    """The envelope's errorCode for an HTTP status that has no more precise one."""
    found = _BY_STATUS.get(status)
    return found.code if found else ("INTERNAL" if status >= 500 else "VALIDATION_FAILED")


def answer_for(exc: BaseException) -> ErrorAnswer | None:
    """The table's answer to an error of a kind it names."""
    for kind in type(exc).__mro__:
        found = _BY_EXCEPTION.get(kind)
        if found is not None:
            return found
    return None


class ApiError(Exception):
    """An error of HTTP itself (a body that is not JSON, a rate limit), with its answer."""

    def __init__(self, status: int, error_code: str, message: str,
                 errors: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def of(cls, answer: ErrorAnswer, message: str,
           errors: Mapping[str, list[str]] | None = None) -> ApiError:
        return cls(answer.status, answer.code, message, errors, answer.sends)


def error_response(status: int, error_code: str, message: str,
                   errors: Mapping[str, list[str]] | None = None,
                   headers: Mapping[str, str] | None = None,
                   **extra: Any) -> Response:
    body: dict[str, Any] = {"code": status, "message": message, "errorCode": error_code}
    if errors:
        body["errors"] = dict(errors)
    response = jsonify({**_envelope.dump(body), **extra})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.error_code, exc.message, exc.errors, exc.headers)

    @app.errorhandler(domain.ServiceError)
    def _refused(exc: domain.ServiceError) -> Response:
        answer = answer_for(exc) or INTERNAL  # every kind is in the table (a test says so)
        hints = getattr(exc, "hints", None)
        return error_response(answer.status, answer.code, exc.message,
                              getattr(exc, "errors", None), answer.sends,
                              **({"hints": hints} if hints else {}))

    @app.errorhandler(http.HTTPException)
    def _http_error(exc: http.HTTPException) -> Response:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        message = _HTTP_MESSAGES.get(status) or exc.description or exc.name
        if status == 413:
            message = f"request body is over the limit of {app.config['MAX_CONTENT_LENGTH']} bytes"
        return error_response(status, error_code_for(status), message, headers=headers)

    @app.errorhandler(DatabaseUnavailable)
    def _database_down(exc: DatabaseUnavailable) -> Response:
        log.warning("database unavailable", extra={"error": str(exc)})
        return error_response(503, SERVICE_UNAVAILABLE.code,
                              "the database is unavailable; try again shortly",
                              headers=SERVICE_UNAVAILABLE.sends)

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, INTERNAL.code, "internal error")
