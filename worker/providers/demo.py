"""The demo provider: echo, sleep and fail, with nothing outside the worker."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from shared.settings import Settings
from worker.providers.base import PermanentError, ProviderCall, ProviderResult, TransientError

_TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}
# How often a sleeping demo run looks whether it was asked to stop.
STOP_CHECK_SECONDS = 0.5


class DemoAdapter:
    # An endpoint's `call` (registered as the `demo` adapter: pyproject.toml).
    CALL_SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        # "crash" kills the worker process: for crash tests, never in a public catalog.
        "properties": {"action": {"enum": ["echo", "sleep", "fail", "crash"]}},
    }

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.Client) -> DemoAdapter:
        return cls()

    def call(self, request: ProviderCall) -> ProviderResult:
        action = request.call.get("action")
        body = dict(request.body)
        if action == "echo":
            return ProviderResult(output=body)
        if action == "sleep":
            seconds = float(body.get("seconds", 0))
            remaining = (request.deadline_at - datetime.now(UTC)).total_seconds()
            wake_at = time.monotonic() + max(0.0, min(seconds, remaining))
            # A stop cuts the sleep short: the runner then ends the run STOPPED.
            while (left := wake_at - time.monotonic()) > 0 and not request.stop_requested():
                time.sleep(min(left, STOP_CHECK_SECONDS))
            return ProviderResult(output=body)
        if action == "fail":
            return self._fail(request, body)
        if action == "crash":
            # A poison run: it kills the process that runs it, every time.
            os.kill(os.getpid(), signal.SIGKILL)
        raise PermanentError(f"demo adapter has no action {action!r}", http_status=400)

    def abort(self, request: ProviderCall) -> None:
        """Nothing runs outside the worker, so there is nothing to stop."""

    @staticmethod
    def _fail(request: ProviderCall, body: dict[str, Any]) -> ProviderResult:
        status = int(body.get("status", 503))
        times = body.get("times")
        if times is not None and request.attempt > int(times):
            return ProviderResult(output={"attempt": request.attempt, "failedTimes": times})
        error_body = {"error": {"type": "demo-failure", "status": status,
                                "message": f"demo provider answered {status}"}}
        kind = TransientError if status in _TRANSIENT_STATUSES or status >= 500 else PermanentError
        raise kind(f"provider answered {status}", http_status=status, body=error_body)
