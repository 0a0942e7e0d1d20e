"""A fake of Apify's public API v2 (the parts a run-and-poll client uses).

Routes (all need `Authorization: Bearer <token>` or `?token=<token>`):

- POST /v2/acts/{actorId}/runs                   start a run (201), input = JSON body
- GET  /v2/actor-runs/{runId}                    the run (also /v2/acts/{actorId}/runs/{runId})
- POST /v2/actor-runs/{runId}/abort              abort (also /v2/acts/{actorId}/runs/{runId}/abort)
- GET  /v2/datasets/{datasetId}/items            items (also /v2/actor-runs/{runId}/dataset/items)

actorId is `owner~name` (the `owner/name` form is not accepted) or the actor's id.
A run is READY, RUNNING after 0.1 s, and reaches its actor's final status after
run_seconds (TIMED-OUT earlier if the `timeout` query parameter is shorter), with
the actor's statusMessage when it ends otherwise than SUCCEEDED. While it runs, its
statusMessage is what the actor says of its progress (Actor.setStatusMessage): the
actor's `progress` script (messages said so many seconds after the start), or what
the test sets with `set_status_message`.

The start's `maxItems` and `maxTotalChargeUsd` are kept in the run's `options`, as
Apify keeps them. A pay-per-result actor is given `maxItems` and should write no
more items than that (Apify's ACTOR_MAX_PAID_DATASET_ITEMS); an actor added with
`ignores_max_items=True` writes all of its items anyway, as a careless one does.

Dataset items are paged as Apify pages them: `offset` and `limit` count every item,
and `clean` (or `skipEmpty`, `skipHidden`) then leaves out empty items and hidden
`#fields` of the page, which may so hold fewer than `limit`. A dataset can be a
SizedDataset: N items of B bytes each (as compact JSON), made page by page as they
are read, so that datasets of hundreds of megabytes cost the fake no memory.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from tests.fakes.jsonapi import Call, FakeServer, Reply

__all__ = ["DEFAULT_ACTOR", "FINAL_STATUSES", "ApifyRun", "FakeApify", "SizedDataset",
           "apify_id"]

DEFAULT_ACTOR = "apidojo~tweet-scraper"
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"})
ALL_STATUSES = FINAL_STATUSES | {"READY", "RUNNING", "ABORTING", "TIMING-OUT"}
RUNNING_AFTER = 0.1  # seconds a run stays READY
DEFAULT_ITEMS_LIMIT = 250_000

_ALPHABET = string.ascii_letters + string.digits
_ERROR_TYPES = {
    400: "invalid-input",
    401: "token-not-valid",
    403: "insufficient-permissions",
    404: "record-not-found",
    405: "method-not-allowed",
    408: "timeout",
    429: "rate-limit-exceeded",
    500: "internal-server-error",
    502: "bad-gateway",
    503: "service-unavailable",
    504: "gateway-timeout",
}

Items = Sequence[dict[str, Any]]
ItemsSpec = Callable[[dict[str, Any]], Items] | Items | None


class SizedDataset(Sequence[dict[str, Any]]):
    """`count` items of exactly `item_bytes` bytes each as compact JSON
    (`{"id":n,"text":"xxx..."}`), made when read."""

    def __init__(self, count: int, item_bytes: int) -> None:
        if item_bytes < len(json.dumps({"id": max(count - 1, 0), "text": ""},
                                       separators=(",", ":"))):
            raise ValueError("item_bytes is too small for items with their id")
        self.length = count
        self.item_bytes = item_bytes

    def item(self, n: int) -> dict[str, Any]:
        bare = len(f'{{"id":{n},"text":""}}')
        return {"id": n, "text": "x" * (self.item_bytes - bare)}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.item(n) for n in range(*index.indices(self.length))]
        if not -self.length <= index < self.length:
            raise IndexError(index)
        return self.item(index % self.length)

    def head(self, count: int) -> SizedDataset:
        return SizedDataset(min(count, self.length), self.item_bytes)

    @property
    def total_bytes(self) -> int:
        return self.length * self.item_bytes


def _head(items: Items, count: int) -> Items:
    return items.head(count) if isinstance(items, SizedDataset) else list(items[:count])


def apify_id() -> str:
    """A random 17-character alphanumeric id, like Apify's."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(17))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int(ts * 1000) % 1000:03d}Z"
    )


def tweets_for(actor_input: dict[str, Any]) -> list[dict[str, Any]]:
    """Items of the default tweet scraper: maxItems tweets spread over searchTerms."""
    terms = actor_input.get("searchTerms") or ["anything"]
    if isinstance(terms, str):
        terms = [terms]
    max_items = actor_input.get("maxItems", 10)
    count = max(0, int(max_items)) if isinstance(max_items, int | float | str) else 10
    now = time.time()
    return [
        {
            "id": str(n),
            "type": "tweet",
            "text": f"tweet {n} about {terms[n % len(terms)]}",
            "url": f"https://x.com/user{n % 7}/status/{n}",
            "createdAt": _iso(now - n),
            "likeCount": n % 13,
            "author": {"userName": f"user{n % 7}", "name": f"User {n % 7}"},
        }
        for n in range(count)
    ]


@dataclass
class _Actor:
    name: str
    id: str
    items: ItemsSpec
    run_seconds: float
    final_status: str
    status_message: str | None = None
    ignores_max_items: bool = False
    progress: tuple[tuple[float, str], ...] = ()


@dataclass
class ApifyRun:
    """A run as the fake keeps it. `status` is computed from the clock."""

    id: str
    actor_name: str
    act_id: str
    input: dict[str, Any]
    items: Items
    options: dict[str, Any]
    query: dict[str, Any]
    run_seconds: float
    final_status: str
    timeout_secs: float | None
    abort_seconds: float
    input_len: int
    status_message: str | None = None
    # (seconds after the start, message): what the run says while it runs.
    progress: tuple[tuple[float, str], ...] = ()
    set_message: str | None = None
    started_mono: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    default_dataset_id: str = field(default_factory=apify_id)
    default_kvs_id: str = field(default_factory=apify_id)
    default_rq_id: str = field(default_factory=apify_id)
    build_id: str = field(default_factory=apify_id)
    forced_status: str | None = None
    forced_wall: float | None = None
    abort_mono: float | None = None
    abort_wall: float | None = None

    def state(self, now: float | None = None) -> tuple[str, float | None]:
        """(status, finished_at wall time or None)."""
        now = time.monotonic() if now is None else now
        if self.forced_status is not None:
            done = self.forced_status in FINAL_STATUSES
            return self.forced_status, (self.forced_wall if done else None)
        if self.abort_mono is not None and self.abort_wall is not None:
            if now >= self.abort_mono + self.abort_seconds:
                return "ABORTED", self.abort_wall + self.abort_seconds
            return "ABORTING", None
        end, final = self.run_seconds, self.final_status
        if self.timeout_secs is not None and self.timeout_secs < end:
            end, final = self.timeout_secs, "TIMED-OUT"
        elapsed = now - self.started_mono
        if elapsed >= end:
            return final, self.started_wall + end
        if elapsed >= RUNNING_AFTER:
            return "RUNNING", None
        return "READY", None

    @property
    def status(self) -> str:
        return self.state()[0]

    def _status_message(self, status: str) -> str | None:
        if status == "ABORTED" and self.abort_mono is not None:
            return "Actor run was aborted"
        if status == "TIMED-OUT" and self.forced_status is None and (
                self.timeout_secs is not None and self.timeout_secs < self.run_seconds):
            return "Actor run timed out"
        if status in ("FAILED", "ABORTED", "TIMED-OUT"):
            return self.status_message
        if status in ("RUNNING", "ABORTING", "TIMING-OUT"):
            if self.set_message is not None:
                return self.set_message
            elapsed = time.monotonic() - self.started_mono
            said = [message for at, message in self.progress if elapsed >= at]
            return said[-1] if said else None
        return None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_api(self, base_url: str) -> dict[str, Any]:
        status, finished_at = self.state()
        end = finished_at if finished_at is not None else time.time()
        duration = max(0.0, end - self.started_wall)
        exit_code = {"SUCCEEDED": 0, "FAILED": 1}.get(status)
        return {
            "id": self.id,
            "actId": self.act_id,
            "userId": "fakeUserId0000000",
            "actorTaskId": None,
            "status": status,
            "statusMessage": self._status_message(status),
            "startedAt": _iso(self.started_wall),
            "finishedAt": _iso(finished_at),
            "buildId": self.build_id,
            "buildNumber": "0.0.1",
            "exitCode": exit_code if finished_at is not None else None,
            "defaultDatasetId": self.default_dataset_id,
            "defaultKeyValueStoreId": self.default_kvs_id,
            "defaultRequestQueueId": self.default_rq_id,
            "containerUrl": f"{base_url}/containers/{self.id}",
            "meta": {"origin": "API", "userAgent": "fake"},
            "options": dict(self.options),
            "stats": {
                "inputBodyLen": self.input_len,
                "restartCount": 0,
                "resurrectCount": 0,
                "durationMillis": int(duration * 1000),
                "runTimeSecs": round(duration, 3),
                "computeUnits": round(duration / 3600, 6),
            },
            "usageTotalUsd": 0.0,
        }


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v2/acts/(?P<actor>[^/]+)/runs/?$"), "start"),
    ("GET", re.compile(r"^/v2/actor-runs/(?P<run>[^/]+)/?$"), "get_run"),
    ("GET", re.compile(r"^/v2/acts/(?P<actor>[^/]+)/runs/(?P<run>[^/]+)/?$"), "get_run"),
    ("POST", re.compile(r"^/v2/actor-runs/(?P<run>[^/]+)/abort/?$"), "abort"),
    ("POST", re.compile(r"^/v2/acts/(?P<actor>[^/]+)/runs/(?P<run>[^/]+)/abort/?$"), "abort"),
    ("GET", re.compile(r"^/v2/datasets/(?P<dataset>[^/]+)/items/?$"), "items"),
    ("GET", re.compile(r"^/v2/actor-runs/(?P<run>[^/]+)/dataset/items/?$"), "items"),
]


class _ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _int_param(query: dict[str, Any], name: str, default: int | None) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise _ApiError(
            400, f"Parameter '{name}' must be an integer", "invalid-parameter"
        ) from None
    if number < 0:
        raise _ApiError(400, f"Parameter '{name}' must be >= 0", "invalid-parameter")
    return number


def _float_param(query: dict[str, Any], name: str) -> float | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return float(str(value))
    except ValueError:
        raise _ApiError(400, f"Parameter '{name}' must be a number", "invalid-parameter") from None


class FakeApify(FakeServer):
    """Apify API v2 on 127.0.0.1. See the module docstring for the routes."""

    def __init__(self, token: str = "test-token") -> None:
        super().__init__()
        self.token = token
        self.abort_seconds = 0.1  # ABORTING lasts this long
        self._actors: dict[str, _Actor] = {}
        self._runs: dict[str, ApifyRun] = {}
        self._datasets: dict[str, str] = {}  # dataset id -> run id
        self._state_lock = threading.Lock()
        self.add_actor(DEFAULT_ACTOR, items=tweets_for)

    # ---------------------------------------------------------------- test API

    def add_actor(
        self,
        actor_id: str,
        items: ItemsSpec = None,
        run_seconds: float = 1.0,
        final_status: str = "SUCCEEDED",
        status_message: str | None = None,
        ignores_max_items: bool = False,
        progress: Sequence[tuple[float, str]] = (),
    ) -> str:
        """Register (or replace) an actor `owner~name`; returns its 17-char id.
        items: a list (or a SizedDataset), or a callable(input) -> list, giving the run's
        dataset items. status_message: what a run that ends otherwise than SUCCEEDED
        says. ignores_max_items: write every item whatever the start's `maxItems`.
        progress: (seconds after the start, message) pairs: the statusMessage of a
        running run is the last message whose time has come."""
        if final_status not in FINAL_STATUSES:
            raise ValueError(f"final_status must be one of {sorted(FINAL_STATUSES)}")
        with self._state_lock:
            old = self._actors.get(actor_id)
            actor = _Actor(
                actor_id, old.id if old else apify_id(), items, run_seconds, final_status,
                status_message, ignores_max_items, tuple(progress),
            )
            self._actors[actor_id] = actor
            return actor.id

    def runs_started(self, actor_id: str | None = None) -> int:
        with self._state_lock:
            return sum(1 for r in self._runs.values() if actor_id in (None, r.actor_name))

    def run(self, run_id: str) -> ApifyRun:
        """The run record (KeyError if unknown): .input, .options, .query, .items, .status."""
        with self._state_lock:
            return self._runs[run_id]

    def runs(self, actor_id: str | None = None) -> list[ApifyRun]:
        with self._state_lock:
            return [r for r in self._runs.values() if actor_id in (None, r.actor_name)]

    def set_status_message(self, run_id: str, message: str | None) -> None:
        """What a running run says of its progress from now on (Actor.setStatusMessage);
        None: back to its actor's `progress` script."""
        with self._state_lock:
            self._runs[run_id].set_message = message

    def set_status(self, run_id: str, status: str) -> None:
        """Force a run's status from now on (a final status also sets finishedAt)."""
        if status not in ALL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._state_lock:
            run = self._runs[run_id]
            run.forced_status = status
            run.forced_wall = time.time()

    def error_body(self, status: int, message: str | None = None) -> Any:
        default = "Rate limit exceeded" if status == 429 else f"HTTP {status}"
        return {
            "error": {
                "type": _ERROR_TYPES.get(status, "internal-server-error"),
                "message": message or default,
            }
        }

    # ---------------------------------------------------------------- handling

    def _error(self, exc: _ApiError) -> Reply:
        body = self.error_body(exc.status, exc.message)
        if exc.type:
            body["error"]["type"] = exc.type
        return Reply(exc.status, body)

    def _authorized(self, call: Call) -> bool:
        auth = call.headers.get("authorization", "")
        if auth == f"Bearer {self.token}":
            return True
        return call.query.get("token") == self.token

    def handle(self, call: Call) -> Reply:
        try:
            if not self._authorized(call):
                raise _ApiError(
                    401,
                    "Authentication token is not valid or is missing.",
                    "token-not-valid",
                )
            path_known = False
            for method, pattern, action in _ROUTES:
                found = pattern.match(call.path)
                if found is None:
                    continue
                path_known = True
                if method == call.method:
                    params = {k: unquote(v) for k, v in found.groupdict().items()}
                    return getattr(self, f"_do_{action}")(call, **params)
            if path_known:
                raise _ApiError(405, f"Method {call.method} is not allowed here")
            raise _ApiError(404, f"Page not found: {call.path}", "page-not-found")
        except _ApiError as exc:
            return self._error(exc)

    def _find_actor(self, actor_ref: str) -> _Actor:
        # actor_ref is unquoted: "owner/name" (sent as %2F) must not match "owner~name".
        with self._state_lock:
            actor = self._actors.get(actor_ref)
            if actor is None:
                actor = next((a for a in self._actors.values() if a.id == actor_ref), None)
        if actor is None or "/" in actor_ref:
            raise _ApiError(404, f"Actor was not found: {actor_ref}")
        return actor

    def _find_run(self, run_id: str) -> ApifyRun:
        with self._state_lock:
            run = self._runs.get(run_id)
        if run is None:
            raise _ApiError(404, f"Actor run was not found: {run_id}")
        return run

    def _wait_finish(self, run: ApifyRun, call: Call) -> None:
        wait = _float_param(call.query, "waitForFinish")
        if not wait:
            return
        deadline = time.monotonic() + min(wait, 60.0)
        while not run.finished and time.monotonic() < deadline:
            if not self.pause(0.02):
                return

    def _run_reply(self, status: int, run: ApifyRun) -> Reply:
        return Reply(status, {"data": run.to_api(self.base_url)})

    def _do_start(self, call: Call, actor: str) -> Reply:
        found = self._find_actor(actor)
        if call.raw_body and call.body is None:
            raise _ApiError(400, "Input is not valid JSON", "invalid-input")
        if call.body is not None and not isinstance(call.body, dict):
            raise _ApiError(400, "Input must be a JSON object", "invalid-input")
        actor_input: dict[str, Any] = copy.deepcopy(call.body) if call.body else {}
        timeout = _float_param(call.query, "timeout")
        memory = _int_param(call.query, "memory", None)
        build = call.query.get("build")
        max_items = _int_param(call.query, "maxItems", None)
        max_charge = _float_param(call.query, "maxTotalChargeUsd")
        items: Items
        if callable(found.items):
            items = found.items(copy.deepcopy(actor_input))
            items = items if isinstance(items, SizedDataset) else list(items)
        elif isinstance(found.items, SizedDataset):
            items = found.items
        else:
            items = copy.deepcopy(list(found.items or []))
        if max_items is not None and not found.ignores_max_items:
            items = _head(items, max_items)
        memory_mb = memory if memory is not None else 1024
        options: dict[str, Any] = {
            "build": build if isinstance(build, str) and build else "latest",
            "timeoutSecs": timeout if timeout is not None else 3600,
            "memoryMbytes": memory_mb,
            "diskMbytes": memory_mb * 2,
        }
        if max_items is not None:
            options["maxItems"] = max_items
        if max_charge is not None:
            options["maxTotalChargeUsd"] = max_charge
        run = ApifyRun(
            id=apify_id(),
            actor_name=found.name,
            act_id=found.id,
            input=actor_input,
            items=items,
            options=options,
            query=dict(call.query),
            run_seconds=found.run_seconds,
            final_status=found.final_status,
            timeout_secs=timeout if timeout else None,
            abort_seconds=self.abort_seconds,
            input_len=len(call.raw_body),
            status_message=found.status_message,
            progress=found.progress,
        )
        with self._state_lock:
            self._runs[run.id] = run
            self._datasets[run.default_dataset_id] = run.id
        self._wait_finish(run, call)
        reply = self._run_reply(201, run)
        reply.headers["Location"] = f"{self.base_url}/v2/actor-runs/{run.id}"
        return reply

    def _do_get_run(self, call: Call, run: str, actor: str | None = None) -> Reply:
        found = self._find_run(run)
        if actor is not None and actor not in (found.actor_name, found.act_id):
            raise _ApiError(404, f"Actor run was not found: {run}")
        self._wait_finish(found, call)
        return self._run_reply(200, found)

    def _do_abort(self, call: Call, run: str, actor: str | None = None) -> Reply:
        found = self._find_run(run)
        if actor is not None and actor not in (found.actor_name, found.act_id):
            raise _ApiError(404, f"Actor run was not found: {run}")
        with self._state_lock:
            status = found.status
            if status not in FINAL_STATUSES and status != "ABORTING":
                found.forced_status = None
                found.forced_wall = None
                found.abort_seconds = self.abort_seconds
                found.abort_mono = time.monotonic()
                found.abort_wall = time.time()
        return self._run_reply(200, found)

    def _do_items(self, call: Call, dataset: str | None = None, run: str | None = None) -> Reply:
        if run is not None:
            found = self._find_run(run)
        else:
            with self._state_lock:
                run_id = self._datasets.get(dataset or "")
            if run_id is None:
                raise _ApiError(404, f"Dataset was not found: {dataset}")
            found = self._find_run(run_id)
        fmt = call.query.get("format", "json")
        if fmt != "json":
            raise _ApiError(
                400, f"Format {fmt!r} is not supported by the fake", "invalid-parameter"
            )
        offset = _int_param(call.query, "offset", 0) or 0
        limit = _int_param(call.query, "limit", None)
        items: Items = found.items if found.status == "SUCCEEDED" else []
        total = len(items)
        desc = _flag(call.query.get("desc"))
        # offset and limit count every item; cleaning then thins out the page.
        end = total if limit is None else min(total, offset + limit)
        if desc:
            page = list(reversed(items[max(0, total - end) : max(0, total - offset)]))
        else:
            page = list(items[offset:end]) if offset < total else []
        if _flag(call.query.get("clean")) or _flag(call.query.get("skipHidden")):
            page = [{k: v for k, v in i.items() if not k.startswith("#")} for i in page]
        if _flag(call.query.get("clean")) or _flag(call.query.get("skipEmpty")):
            page = [i for i in page if i]
        headers = {
            "X-Apify-Pagination-Total": str(total),
            "X-Apify-Pagination-Offset": str(offset),
            "X-Apify-Pagination-Limit": str(DEFAULT_ITEMS_LIMIT if limit is None else limit),
            "X-Apify-Pagination-Count": str(len(page)),
            "X-Apify-Pagination-Desc": "true" if desc else "false",
        }
        return Reply(200, page, headers)
