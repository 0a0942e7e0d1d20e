"""The adapter protocol every provider follows, and its two error kinds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
    # PER_RESULT: the most results the run is charged for; the provider is asked for
    # no more where it allows it, and no more are read.
    max_results: int | None = None
    # What the run holds on the caller's wallet: the most it can be charged.
    max_charge_micros: int | None = None
    stop_requested: Callable[[], bool] = field(default=_never, repr=False, compare=False)


@dataclass(frozen=True)
class ProviderResult:
    """The provider delivered. Either its answer as one JSON document, `output`, whose
    items are the list at `items_path` (`()`: the answer is that list; no path: the
    answer is one item, or a list of them), or its items read page by page, `pages`
    (an Apify dataset), which are then its output too. Pages are read lazily: reading
    one may raise ReadAgain, or any error `call` may raise."""

    output: Any = None
    http_status: int = 200
    items_path: tuple[str, ...] | None = None
    pages: Iterable[Sequence[Any]] | None = None


@dataclass(frozen=True)
class Pending:
    """The provider took the job and is working on it: call again with `state`
    after `check_after` seconds. The state is stored with the run first, so a
    redelivered or retried task follows the same provider job. `progress`: what the
    job says of its own progress now, if it says anything (an Apify actor run's
    `statusMessage`); the runner keeps it with the state (`shared.progress`, under the
    state's `progress` key, which is the runner's, not the adapter's)."""

    state: Mapping[str, Any]
    check_after: float
    progress: str | None = None


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


class ResultTooLarge(Exception):
    """The result is over a bound: the provider's answer over the size read
    (PROVIDER_MAX_RESPONSE_BYTES), or the run's result over its bounds
    (MAX_RESULT_BYTES, MAX_RESULT_ITEMS). The run fails, at no cost; the message is
    safe to show."""


class ProviderJobFailed(Exception):
    """The provider ran the job, and the job ended without success on its own (an
    Apify actor run FAILED, ABORTED or TIMED-OUT): its final answer, not tried again.
    `response` says what the provider said of it."""

    def __init__(self, message: str, *, response: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class DeadlinePassed(Exception):
    """The provider ended the job at the deadline it was given: the run's own."""


class ReadAgain(Exception):
    """Reading a delivered result broke off on something transient: what was read is
    dropped, and the provider's job is checked again as `pending` says."""

    def __init__(self, message: str, pending: Pending) -> None:
        super().__init__(message)
        self.pending = pending


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
