"""Outbound HTTP for adapters: one pooled client per process, timeouts, a size cap,
and httpx's errors translated into the two error kinds."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from worker.providers.base import (
    MalformedAnswer,
    PermanentError,
    ResultTooLarge,
    TransientError,
)

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_CAP_SECONDS = 3600.0
MAX_ERROR_BODY_CHARS = 4000
# Of an answer that is not a 2xx, only its start is read: enough to show its error.
MAX_ERROR_BODY_BYTES = 64 * 1024

# httpx logs every request URL at INFO; a URL can carry a secret.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


def make_client(*, max_connections: int, connect_timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(30.0, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=min(max_connections, 100)),
        follow_redirects=False,
        headers={"User-Agent": "monid-runs"},
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, RETRY_AFTER_CAP_SECONDS))


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        """The body as JSON; MalformedAnswer when it is not."""
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            raise MalformedAnswer(f"provider answered {self.status} with a body that is not "
                                  "JSON", http_status=self.status) from None

    def error_body(self) -> Any:
        """The provider's error body, as JSON when it is, else as (trimmed) text."""
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return self.content[:MAX_ERROR_BODY_CHARS].decode("utf-8", "replace")


def send(client: httpx.Client, method: str, url: str, *, max_bytes: int,
         timeout: float | None = None, headers: Mapping[str, str] | None = None,
         params: Mapping[str, Any] | None = None, json_body: Any = None,
         has_body: bool = False) -> Answer:
    """One request; connection failures and timeouts raise TransientError, a 2xx answer
    over `max_bytes` ResultTooLarge (of any other answer, only the start is read). Every
    HTTP status is returned, not raised."""
    request_timeout = (httpx.Timeout(timeout, connect=min(timeout, 10.0))
                       if timeout is not None else httpx.USE_CLIENT_DEFAULT)
    kwargs: dict[str, Any] = {"headers": headers, "params": params, "timeout": request_timeout}
    if has_body:
        kwargs["json"] = json_body
    try:
        with client.stream(method, url, **kwargs) as response:
            delivered = 200 <= response.status_code < 300
            declared = response.headers.get("content-length")
            if delivered and declared and declared.isdigit() and int(declared) > max_bytes:
                raise ResultTooLarge(f"the provider's answer of {declared} bytes is over the "
                                     f"{max_bytes} bytes this server reads of one answer")
            read_at_most = max_bytes if delivered else min(max_bytes, MAX_ERROR_BODY_BYTES)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > read_at_most:
                    if delivered:
                        raise ResultTooLarge(f"the provider's answer is over the {max_bytes} "
                                             "bytes this server reads of one answer")
                    chunks.append(chunk[:len(chunk) - (size - read_at_most)])
                    break
                chunks.append(chunk)
            return Answer(response.status_code, response.headers, b"".join(chunks))
    except httpx.TimeoutException as exc:
        raise TransientError(f"provider timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"could not reach the provider ({type(exc).__name__})") from exc


def raise_for_status(answer: Answer) -> None:
    """Transient for 408, 429 and 5xx; permanent for other non-2xx answers."""
    if 200 <= answer.status < 300:
        return
    message = f"provider answered {answer.status}"
    if answer.status in TRANSIENT_STATUSES or answer.status >= 500:
        raise TransientError(message, http_status=answer.status, body=answer.error_body(),
                             retry_after=parse_retry_after(answer.headers.get("retry-after")))
    raise PermanentError(message, http_status=answer.status, body=answer.error_body())
