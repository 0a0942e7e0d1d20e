"""The service layer's errors: what a caller asked for that cannot be done.

They say nothing of HTTP; `api/errors.py` maps each to its status and errorCode,
and any other way in (MCP tools, `monidctl`) says them in its own terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ServiceError(Exception):
    """A request the service layer refuses; `message` is for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ServiceError):
    """Fields of the request are invalid: each field's path and its messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        first_field, messages = next(iter(errors.items()))
        message = f"{first_field}: {messages[0]}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        super().__init__(message)
        self.errors = dict(errors)


class Unauthorized(ServiceError):
    """A key that is malformed, unknown or revoked."""


class RunNotFound(ServiceError):
    """No such run, or another caller's: the two are never told apart."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}")


class EndpointNotFound(ServiceError):
    """No such provider, or no such endpoint of it."""


class InsufficientFunds(ServiceError):
    """The wallet's available balance cannot cover the run's hold; `hints` say how to add
    credit."""

    def __init__(self, message: str, hints: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.hints = dict(hints or {})


class TooManyRunsInFlight(ServiceError):
    """The caller has as many runs in flight as it may have."""


class TooManyStreams(ServiceError):
    """The caller (or the web process) has as many event streams open as it may."""


class RunNotStoppable(ServiceError):
    """The run has ended."""


class IdempotencyKeyReused(ServiceError):
    """The Idempotency-Key was used with a different request in the last 24 hours."""


class IdempotencyKeyInProgress(ServiceError):
    """A request with the same Idempotency-Key is still being served."""


class ControlNotFound(ServiceError):
    """No such spend control, or another workspace's: the two are never told apart."""


class ApiKeyNotFound(ServiceError):
    """No live key with this label in the caller's workspace."""

    def __init__(self, label: str) -> None:
        super().__init__(f"no API key labelled {label!r}")


class WebhookNotFound(ServiceError):
    """No such webhook, or another workspace's: the two are never told apart."""

    def __init__(self, webhook_id: str) -> None:
        super().__init__(f"no webhook {webhook_id!r}")


class DeliveryNotFound(ServiceError):
    """No such delivery, or another workspace's: the two are never told apart."""

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"no delivery {delivery_id!r}")


class DeliveryPending(ServiceError):
    """A redelivery asked of a delivery that is still being delivered."""


class TooManyWebhooks(ServiceError):
    """The workspace has as many webhooks as it may have."""
