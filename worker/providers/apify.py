"""Apify actors, through Apify's public API v2.

A fresh attempt starts an actor run and hands back its ID at once (`Pending`),
so it is stored with our run before anything waits on it; later calls follow
that actor run with short checks, spaced out more and more, and read its
dataset once it has SUCCEEDED. Nothing sleeps in a task. Each check reports the
actor run's `statusMessage` as the job's progress (`Pending.progress`).

A PER_RESULT run asks the actor for at most the results it is charged for
(`maxItems`, and `maxTotalChargeUsd` for pay-per-event actors) and reads no more
than those of its dataset, whatever the actor wrote. The dataset is read page by
page, each page sized to about PAGE_BYTES, as the run's result is written. An
actor run that ends FAILED, ABORTED or TIMED-OUT on its own is the provider's
answer: it is not started again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from shared.money import micros_to_dollars
from shared.settings import Settings
from worker.providers.base import (
    DeadlinePassed,
    MalformedAnswer,
    Pending,
    PlatformError,
    ProviderCall,
    ProviderJobFailed,
    ProviderResult,
    ReadAgain,
    TransientError,
)
from worker.providers.transport import raise_for_status, send

RUNNING_STATUSES = frozenset({"READY", "RUNNING", "ABORTING", "TIMING-OUT"})
FAILED_STATUSES = frozenset({"FAILED", "TIMED-OUT", "ABORTED"})
# Dataset pages: the first of FIRST_PAGE_ITEMS items, the next sized from the items
# read so far to about PAGE_BYTES, within MIN_PAGE_ITEMS..MAX_PAGE_ITEMS.
FIRST_PAGE_ITEMS = 100
MIN_PAGE_ITEMS = 10
MAX_PAGE_ITEMS = 1000
PAGE_BYTES = 1024 * 1024
# Checks that may fail in a row (Apify down, network trouble) before the attempt
# is given up; the actor run goes on meanwhile, so they are cheap to retry.
MAX_CHECK_ERRORS = 12


def actor_id(endpoint: str, call: Mapping[str, Any]) -> str:
    """`/apidojo/tweet-scraper` → `apidojo~tweet-scraper` (or the call's own actorId)."""
    return str(call.get("actorId") or endpoint.strip("/").replace("/", "~"))


class ApifyAdapter:
    # An endpoint's `call` (registered as the `apify` adapter: pyproject.toml).
    CALL_SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "actorId": {"type": "string", "pattern": "^[A-Za-z0-9._-]+~[A-Za-z0-9._-]+$"},
            "memoryMbytes": {"type": "integer", "minimum": 128},
            "build": {"type": "string", "minLength": 1},
            # How Apify charges for the actor (its pricing model): a pay-per-event
            # actor is started with the run's hold as its maxTotalChargeUsd.
            "pricingModel": {"enum": ["FREE", "FLAT_PRICE_PER_MONTH", "PRICE_PER_DATASET_ITEM",
                                      "PAY_PER_EVENT"]},
        },
    }

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.Client) -> ApifyAdapter:
        return cls(client, base_url=settings.apify_api_base_url, token=settings.apify_token,
                   max_bytes=settings.provider_max_response_bytes)

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
        if request.max_results is not None:
            # Pay-per-result actors charge for no more items than this.
            params["maxItems"] = request.max_results
        if (request.call.get("pricingModel") == "PAY_PER_EVENT"
                and request.max_charge_micros is not None):
            # Pay-per-event actors charge no more than what the run may cost.
            params["maxTotalChargeUsd"] = micros_to_dollars(request.max_charge_micros)
        answer = send(self.client, "POST", f"{self.base_url}/v2/acts/{actor}/runs",
                      max_bytes=self.max_bytes, timeout=self.request_timeout,
                      headers=self._headers(), params=params, json_body=dict(request.body),
                      has_body=True)
        raise_for_status(answer)
        data = self._data(answer.json())
        state = {"actorId": actor, "actorRunId": data["id"],
                 "datasetId": data.get("defaultDatasetId"), "status": data.get("status"),
                 "timeoutSecs": params.get("timeout"), "gap": self.first_check,
                 "checkErrors": 0}
        return Pending(state, self.first_check)

    def _follow(self, request: ProviderCall, state: Mapping[str, Any]
                ) -> ProviderResult | Pending:
        if state.get("status") != "SUCCEEDED":
            try:
                answer = send(self.client, "GET",
                              f"{self.base_url}/v2/actor-runs/{state['actorRunId']}",
                              max_bytes=self.max_bytes, timeout=self.request_timeout,
                              headers=self._headers())
                raise_for_status(answer)
                data = self._data(answer.json())
            except MalformedAnswer:
                raise
            except TransientError as exc:
                return self._check_later(state, exc)
            status = str(data.get("status"))
            state = {**state, "status": status,
                     "datasetId": data.get("defaultDatasetId") or state.get("datasetId")}
            if status in RUNNING_STATUSES:
                gap = min(float(state.get("gap", self.first_check)) * 1.5, self.max_check_gap)
                # The actor's own word on how far it has got (Actor.setStatusMessage).
                message = data.get("statusMessage")
                return Pending({**state, "gap": gap, "checkErrors": 0}, gap,
                               progress=message if isinstance(message, str) else None)
            if status in FAILED_STATUSES:
                raise_actor_failed(state, data)
            if status != "SUCCEEDED":
                raise MalformedAnswer(f"Apify answered an unknown run status {status!r}",
                                      http_status=200)
        if not state.get("datasetId"):
            raise MalformedAnswer("Apify answered a run without its defaultDatasetId",
                                  http_status=200)
        return ProviderResult(pages=self._pages(request, state), http_status=200)

    def _check_later(self, state: Mapping[str, Any], exc: TransientError) -> Pending:
        """A check that failed on something transient: the actor run goes on
        meanwhile, so check again soon, up to MAX_CHECK_ERRORS times in a row."""
        errors = int(state.get("checkErrors", 0)) + 1
        if errors > MAX_CHECK_ERRORS:
            raise exc
        wait = max(exc.retry_after or 0.0, min(2.0 * errors, self.max_check_gap))
        return Pending({**state, "checkErrors": errors}, wait)

    def _pages(self, request: ProviderCall, state: Mapping[str, Any]) -> Iterator[list[Any]]:
        """The dataset's items, a page at a time, never past `max_results`. Offsets count
        every item, also those `clean` leaves out (so a page may hold fewer)."""
        dataset = str(state["datasetId"])
        left = request.max_results
        offset = 0
        size = FIRST_PAGE_ITEMS
        while left is None or left > 0:
            limit = size if left is None else min(size, left)
            try:
                answer = send(self.client, "GET",
                              f"{self.base_url}/v2/datasets/{dataset}/items",
                              max_bytes=self.max_bytes, timeout=self.request_timeout,
                              headers=self._headers(),
                              params={"format": "json", "clean": "true", "offset": offset,
                                      "limit": limit})
                raise_for_status(answer)
                page = answer.json()
            except MalformedAnswer:
                raise
            except TransientError as exc:
                raise ReadAgain(exc.message, self._check_later(state, exc)) from exc
            if not isinstance(page, list):
                raise MalformedAnswer("Apify dataset items are not a JSON array",
                                      http_status=answer.status)
            if left is not None:
                page = page[:left]
                left -= len(page)
            offset += limit
            total = answer.headers.get("x-apify-pagination-total")
            done = offset >= int(total) if total and total.isdigit() else len(page) < limit
            if page:
                per_item = max(1, len(answer.content) // len(page))
                size = max(MIN_PAGE_ITEMS, min(MAX_PAGE_ITEMS, PAGE_BYTES // per_item))
            del answer
            yield page
            if done:
                return

    def abort(self, request: ProviderCall) -> None:
        run_id = (request.state or {}).get("actorRunId")
        if not run_id or not self.token:
            return
        # Best effort: Apify's own timeout (set at start) ends the actor run anyway.
        with contextlib.suppress(TransientError):
            send(self.client, "POST", f"{self.base_url}/v2/actor-runs/{run_id}/abort",
                 max_bytes=self.max_bytes, timeout=10.0, headers=self._headers(),
                 has_body=False)


def raise_actor_failed(state: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """An actor run that ended without success. Ended by the timeout it was started
    with, it reached the run's own deadline; else it is the provider's answer."""
    status = str(data.get("status"))
    if status == "TIMED-OUT" and state.get("timeoutSecs"):
        raise DeadlinePassed(f"Apify ended actor run {state['actorRunId']} at the run's "
                             "deadline")
    message = f"Apify actor run {state['actorRunId']} ended {status}"
    status_message = data.get("statusMessage")
    if isinstance(status_message, str) and status_message:
        message += f": {status_message[:500]}"
    raise ProviderJobFailed(message, response={
        "actorRunId": state["actorRunId"], "status": status,
        "statusMessage": status_message if isinstance(status_message, str) else None})
