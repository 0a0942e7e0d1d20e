"""Apify actors, through Apify's public API v2.

A fresh attempt starts an actor run and hands back its ID at once (`Pending`),
so it is stored with our run before anything waits on it; later calls follow
that actor run with short checks, spaced out more and more, and read its
dataset once it has SUCCEEDED. Nothing sleeps in a task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from worker.providers.base import (
    MalformedAnswer,
    Pending,
    PlatformError,
    ProviderCall,
    ProviderResult,
    TransientError,
)
from worker.providers.transport import raise_for_status, send

RUNNING_STATUSES = frozenset({"READY", "RUNNING", "ABORTING", "TIMING-OUT"})
FAILED_STATUSES = frozenset({"FAILED", "TIMED-OUT", "ABORTED"})
PAGE_SIZE = 1000
# Checks that may fail in a row (Apify down, network trouble) before the attempt
# is given up; the actor run goes on meanwhile, so they are cheap to retry.
MAX_CHECK_ERRORS = 12


def actor_id(endpoint: str, call: Mapping[str, Any]) -> str:
    """`/apidojo/tweet-scraper` → `apidojo~tweet-scraper` (or the call's own actorId)."""
    return str(call.get("actorId") or endpoint.strip("/").replace("/", "~"))


class ApifyAdapter:
    def __init__(self, client: httpx.Client, *, base_url: str, token: str, max_bytes: int,
                 first_check: float = 2.0, max_check_gap: float = 30.0,
                 request_timeout: float = 30.0) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.max_bytes = max_bytes
        self.first_check = first_check
        self.max_check_gap = max_check_gap
        self.request_timeout = request_timeout

    def _headers(self) -> dict[str, str]:
        if not self.token:
            raise PlatformError("Apify is not configured: set APIFY_TOKEN")
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def _data(self, answer_json: Any) -> Mapping[str, Any]:
        data = answer_json.get("data") if isinstance(answer_json, Mapping) else None
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
            raise MalformedAnswer("Apify answered without a run in 'data'", http_status=200)
        return data

    def call(self, request: ProviderCall) -> ProviderResult | Pending:
        if request.state and request.state.get("actorRunId"):
            return self._follow(request, request.state)
        return self._start(request)

    def _start(self, request: ProviderCall) -> Pending:
        actor = actor_id(request.endpoint, request.call)
        params: dict[str, Any] = {}
        left = (request.deadline_at - datetime.now(UTC)).total_seconds()
        if left > 0:
            # Apify ends the actor run itself by our deadline.
            params["timeout"] = max(1, int(left))
        for option, param in (("memoryMbytes", "memory"), ("build", "build")):
            if option in request.call:
                params[param] = request.call[option]
        answer = send(self.client, "POST", f"{self.base_url}/v2/acts/{actor}/runs",
                      max_bytes=self.max_bytes, timeout=self.request_timeout,
                      headers=self._headers(), params=params, json_body=dict(request.body),
                      has_body=True)
        raise_for_status(answer)
        data = self._data(answer.json())
        state = {"actorId": actor, "actorRunId": data["id"],
                 "datasetId": data.get("defaultDatasetId"), "status": data.get("status"),
                 "gap": self.first_check, "checkErrors": 0}
        return Pending(state, self.first_check)

    def _follow(self, request: ProviderCall, state: Mapping[str, Any]) -> ProviderResult | Pending:
        try:
            if state.get("status") != "SUCCEEDED":
                answer = send(self.client, "GET",
                              f"{self.base_url}/v2/actor-runs/{state['actorRunId']}",
                              max_bytes=self.max_bytes, timeout=self.request_timeout,
                              headers=self._headers())
                raise_for_status(answer)
                data = self._data(answer.json())
                status = str(data.get("status"))
                state = {**state, "status": status,
                         "datasetId": data.get("defaultDatasetId") or state.get("datasetId")}
                if status in RUNNING_STATUSES:
                    gap = min(float(state.get("gap", self.first_check)) * 1.5,
                              self.max_check_gap)
                    return Pending({**state, "gap": gap, "checkErrors": 0}, gap)
                if status in FAILED_STATUSES:
                    raise_actor_failed(state, data)
                if status != "SUCCEEDED":
                    raise MalformedAnswer(f"Apify answered an unknown run status {status!r}",
                                          http_status=200)
            items = self._items(str(state["datasetId"]))
        except MalformedAnswer:
            raise
        except ActorFailed:
            raise
        except TransientError as exc:
            errors = int(state.get("checkErrors", 0)) + 1
            if errors > MAX_CHECK_ERRORS:
                raise
            wait = max(exc.retry_after or 0.0, min(2.0 * errors, self.max_check_gap))
            return Pending({**state, "checkErrors": errors}, wait)
        return ProviderResult(output=items, result_count=len(items), http_status=200)

    def _items(self, dataset_id: str) -> list[Any]:
        items: list[Any] = []
        offset = 0
        while True:
            answer = send(self.client, "GET", f"{self.base_url}/v2/datasets/{dataset_id}/items",
                          max_bytes=self.max_bytes, timeout=self.request_timeout,
                          headers=self._headers(),
                          params={"format": "json", "clean": "true", "offset": offset,
                                  "limit": PAGE_SIZE})
            raise_for_status(answer)
            page = answer.json()
            if not isinstance(page, list):
                raise MalformedAnswer("Apify dataset items are not a JSON array",
                                      http_status=answer.status)
            items.extend(page)
            offset += len(page)
            total = answer.headers.get("x-apify-pagination-total")
            if len(page) < PAGE_SIZE or (total and total.isdigit() and offset >= int(total)):
                return items

    def abort(self, request: ProviderCall) -> None:
        run_id = (request.state or {}).get("actorRunId")
        if not run_id or not self.token:
            return
        # Best effort: Apify's own timeout (set at start) ends the actor run anyway.
        with contextlib.suppress(TransientError):
            send(self.client, "POST", f"{self.base_url}/v2/actor-runs/{run_id}/abort",
                 max_bytes=self.max_bytes, timeout=10.0, headers=self._headers(),
                 has_body=False)


class ActorFailed(TransientError):
    """The actor run ended without success: a new attempt starts a new actor run."""


def raise_actor_failed(state: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    raise ActorFailed(f"Apify actor run {state['actorRunId']} ended {data.get('status')}",
                      body={"actorRunId": state["actorRunId"], "status": data.get("status"),
                            "statusMessage": data.get("statusMessage")})
