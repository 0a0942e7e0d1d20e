"""The adapter protocol every provider follows, and its two error kinds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class ProviderCall:
    """What an adapter gets: the run's input in composite form and the endpoint's call spec."""

    run_id: str
    provider: str
    endpoint: str
    call: Mapping[str, Any]
    body: Mapping[str, Any]
    query_params: Mapping[str, Any]
    path_params: Mapping[str, Any]
    attempt: int
    deadline_at: datetime


@dataclass(frozen=True)
class ProviderResult:
    """The provider delivered: its data, how many results, its HTTP status."""

    output: Any
    result_count: int
    http_status: int = 200
    extra: Mapping[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    def __init__(self, message: str, *, http_status: int | None = None, body: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.body = body
        self.retry_after = retry_after


class TransientError(ProviderError):
    """Worth trying again: connection errors, timeouts, 408, 429, 5xx."""


class PermanentError(ProviderError):
    """Trying again will not help: the provider's final answer (other 4xx)."""


class Adapter(Protocol):
    def call(self, request: ProviderCall) -> ProviderResult:
        """Call the provider once; raise TransientError or PermanentError on failure."""
        ...
