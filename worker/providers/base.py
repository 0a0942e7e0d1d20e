"""The adapter protocol every provider follows, and its two error kinds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


def _never() -> bool:
    return False


@dataclass(frozen=True)
class ProviderCall:
    """What an adapter gets: the run's input in composite form, the endpoint's call
    spec, and the state it handed back last time (None for a fresh attempt).
    `stop_requested()` says whether a stop was asked since (it reads the database: an
    adapter that waits calls it now and then, not in a tight loop)."""

    run_id: str
    provider: str
    endpoint: str
    call: Mapping[str, Any]
    body: Mapping[str, Any]
    query_params: Mapping[str, Any]
    path_params: Mapping[str, Any]
    attempt: int
    deadline_at: datetime
    state: Mapping[str, Any] | None = None
    max_results: int | None = None
    stop_requested: Callable[[], bool] = field(default=_never, repr=False, compare=False)


@dataclass(frozen=True)
class ProviderResult:
    """The provider delivered: its data, how many results, its HTTP status."""

    output: Any
    result_count: int
    http_status: int = 200


@dataclass(frozen=True)
class Pending:
    """The provider took the job and is working on it: call again with `state`
    after `check_after` seconds. The state is stored with the run first, so a
    redelivered or retried task follows the same provider job."""

    state: Mapping[str, Any]
    check_after: float


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


class MalformedAnswer(TransientError):
    """A 2xx answer we cannot read: tried again once, then final."""


class PermanentError(ProviderError):
    """Trying again will not help: the provider's final answer (other 4xx)."""


class PlatformError(Exception):
    """Our own fault (a missing secret, a broken call spec): the run fails with
    this message, which must be safe to show."""


class Adapter(Protocol):
    def call(self, request: ProviderCall) -> ProviderResult | Pending:
        """Start or follow the provider's work once; raise TransientError or
        PermanentError on failure."""
        ...

    def abort(self, request: ProviderCall) -> None:
        """Best effort: stop the provider's job that `request.state` follows."""
        ...
