"""The demo provider: echo, sleep and fail, called with ProviderCall objects."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.providers.base import (
    PermanentError,
    ProviderCall,
    ProviderError,
    ProviderResult,
    TransientError,
)
from worker.providers.demo import STOP_CHECK_SECONDS, DemoAdapter
from worker.results import result_items

RUN_ID = "01JGXYZABCDEFGHJKMNPQRSTVW"


def call(action: str | None, body: dict[str, Any] | None = None, *, attempt: int = 1,
         deadline_in: float = 60.0) -> ProviderCall:
    return ProviderCall(
        run_id=RUN_ID,
        provider="demo",
        endpoint=f"/{action}",
        call={"action": action} if action is not None else {},
        body=body or {},
        query_params={},
        path_params={},
        attempt=attempt,
        deadline_at=datetime.now(UTC) + timedelta(seconds=deadline_in),
    )


@pytest.fixture
def adapter() -> DemoAdapter:
    return DemoAdapter()


# --- echo -----------------------------------------------------------------------------


def test_echo_returns_the_body(adapter: DemoAdapter) -> None:
    body = {"searchTerms": ["AI"], "nested": {"n": 1}, "list": [1, "two", None]}
    result = adapter.call(call("echo", body))
    assert isinstance(result, ProviderResult)
    assert result.output == body
    assert result_items(result.output, result.items_path) == [body]  # one result
    assert result.http_status == 200


def test_echo_of_an_empty_body(adapter: DemoAdapter) -> None:
    assert adapter.call(call("echo", {})).output == {}


def test_echo_output_does_not_alias_the_input(adapter: DemoAdapter) -> None:
    body = {"a": 1}
    result = adapter.call(call("echo", body))
    result.output["a"] = 2
    assert body == {"a": 1}


# --- fail -------------------------------------------------------------------------------


def test_fail_twice_then_succeed(adapter: DemoAdapter) -> None:
    for attempt in (1, 2):
        with pytest.raises(TransientError) as caught:
            adapter.call(call("fail", {"times": 2}, attempt=attempt))
        error = caught.value
        assert error.http_status == 503
        assert error.retry_after is None
        assert error.body == {"error": {"type": "demo-failure", "status": 503,
                                        "message": "demo provider answered 503"}}
        assert "503" in str(error)
    result = adapter.call(call("fail", {"times": 2}, attempt=3))
    assert result.output == {"attempt": 3, "failedTimes": 2}
    assert len(result_items(result.output, result.items_path)) == 1
    assert result.http_status == 200


def test_times_zero_succeeds_at_once(adapter: DemoAdapter) -> None:
    assert adapter.call(call("fail", {"times": 0})).output == {"attempt": 1, "failedTimes": 0}


def test_later_attempts_succeed_too(adapter: DemoAdapter) -> None:
    result = adapter.call(call("fail", {"times": 2}, attempt=7))
    assert result.output == {"attempt": 7, "failedTimes": 2}


def test_without_times_every_attempt_fails(adapter: DemoAdapter) -> None:
    for attempt in range(1, 21):
        with pytest.raises(TransientError) as caught:
            adapter.call(call("fail", {}, attempt=attempt))
        assert caught.value.http_status == 503


def test_status_404_is_permanent(adapter: DemoAdapter) -> None:
    with pytest.raises(PermanentError) as caught:
        adapter.call(call("fail", {"status": 404}))
    error = caught.value
    assert not isinstance(error, TransientError)
    assert error.http_status == 404
    assert error.body["error"]["status"] == 404


def test_status_404_with_times_fails_permanently_until_times_is_reached(
    adapter: DemoAdapter,
) -> None:
    with pytest.raises(PermanentError):
        adapter.call(call("fail", {"status": 404, "times": 1}, attempt=1))
    result = adapter.call(call("fail", {"status": 404, "times": 1}, attempt=2))
    assert result.output == {"attempt": 2, "failedTimes": 1}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507, 599])
def test_transient_statuses(adapter: DemoAdapter, status: int) -> None:
    with pytest.raises(TransientError) as caught:
        adapter.call(call("fail", {"status": status}))
    assert caught.value.http_status == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 451])
def test_permanent_statuses(adapter: DemoAdapter, status: int) -> None:
    with pytest.raises(PermanentError) as caught:
        adapter.call(call("fail", {"status": status}))
    assert caught.value.http_status == status


def test_both_error_kinds_are_provider_errors() -> None:
    assert issubclass(TransientError, ProviderError)
    assert issubclass(PermanentError, ProviderError)
    assert not issubclass(PermanentError, TransientError)


# --- sleep --------------------------------------------------------------------------------


def test_sleep_waits_then_returns_the_body(adapter: DemoAdapter) -> None:
    started = time.monotonic()
    result = adapter.call(call("sleep", {"seconds": 0.05, "tag": "x"}))
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 1.0
    assert result.output == {"seconds": 0.05, "tag": "x"}
    assert len(result_items(result.output, result.items_path)) == 1


def test_sleep_of_zero(adapter: DemoAdapter) -> None:
    started = time.monotonic()
    assert adapter.call(call("sleep", {"seconds": 0})).output == {"seconds": 0}
    assert time.monotonic() - started < 0.5


def test_sleep_stops_at_the_deadline(adapter: DemoAdapter) -> None:
    started = time.monotonic()
    result = adapter.call(call("sleep", {"seconds": 30}, deadline_in=0.05))
    assert time.monotonic() - started < 1.0
    assert result.output == {"seconds": 30}


def test_sleep_past_the_deadline_returns_at_once(adapter: DemoAdapter) -> None:
    started = time.monotonic()
    adapter.call(call("sleep", {"seconds": 30}, deadline_in=-5))
    assert time.monotonic() - started < 0.5


def test_a_stop_cuts_the_sleep_short(adapter: DemoAdapter) -> None:
    asked = time.monotonic() + 0.3
    checks: list[float] = []

    def stop_requested() -> bool:
        checks.append(time.monotonic())
        return time.monotonic() >= asked

    request = dataclasses.replace(call("sleep", {"seconds": 30}), stop_requested=stop_requested)
    started = time.monotonic()
    adapter.call(request)
    assert time.monotonic() - started < 0.3 + STOP_CHECK_SECONDS + 0.2
    # Looked now and then, not in a tight loop.
    assert 2 <= len(checks) <= 4


# --- anything else --------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["explode", None])
def test_unknown_action_is_permanent(adapter: DemoAdapter, action: str | None) -> None:
    with pytest.raises(PermanentError) as caught:
        adapter.call(call(action, {}))
    assert caught.value.http_status == 400
    assert repr(action) in caught.value.message
