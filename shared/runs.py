"""Runs: start one, read one (waiting for its end if asked), list them, stop one.

Each operation takes the services first and the caller (`USER#<userId>`) second; a
caller sees only its own runs, and another caller's run is not found, exactly as one
that does not exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared import controls, cursors, errors, hints, store
from shared.catalog import Price, hold_for, validate_input
from shared.db import autocommit, transaction
from shared.ids import is_run_id, new_run_id
from shared.logs import run_id_var
from shared.money import micros_to_dollars
from shared.queue import PublishFailed, task_name
from shared.scheduling import priority_for
from shared.services import Page, Services, page_start
from shared.store import END_STATUSES, STATUSES, Run
from shared.store import controls as controls_store
from shared.webhooks import service as webhooks

__all__ = ["END_STATUSES", "STATUSES", "AcceptedRun", "Run", "Stopping", "get_run", "list_runs",
           "start_run", "stop_run"]

log = logging.getLogger("monid.runs")
MAX_WAIT_SECONDS = 60
STOP_MESSAGE = "the run is being stopped; it will end STOPPED and cost nothing"


@dataclass(frozen=True)
class AcceptedRun:
    """A run just started (or, `replayed`, the one an Idempotency-Key started). One a
    spend control refused is `BLOCKED`, ended as it was made: `reason` and `controls`
    say which control refused it, `hints` how to unblock it."""

    run_id: str
    caller: str
    provider: str
    provider_name: str
    endpoint: str
    price: Price
    created_at: datetime
    replayed: bool = False
    status: str = "RUNNING"
    completed_at: datetime | None = None
    reason: str | None = None
    controls: tuple[controls.BlockingControl, ...] = ()
    hints: Mapping[str, Any] = field(default_factory=dict)  # what to do next

    @property
    def blocked(self) -> bool:
        return self.status == "BLOCKED"


def _blocked(accepted: AcceptedRun, blocking: tuple[controls.BlockingControl, ...]
             ) -> AcceptedRun:
    """The answer of a run a control refused (ended as it was made)."""
    return replace(accepted, status="BLOCKED", completed_at=accepted.created_at,
                   reason=controls.blocked_reason(blocking), controls=blocking,
                   hints=controls.blocked_hints(blocking))


@dataclass(frozen=True)
class Stopping:
    run_id: str
    status: str = "STOPPING"
    message: str = STOP_MESSAGE


def request_hash(provider: str, endpoint: str, input: Any,
                 webhook: Mapping[str, Any] | None = None) -> bytes:
    """What an Idempotency-Key is kept with: the request, whatever its keys' order (a
    request without a webhook hashes as it did before webhooks were asked for)."""
    body: dict[str, Any] = {"provider": provider, "endpoint": endpoint, "input": input}
    if webhook is not None:
        body["webhook"] = webhook
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def _replay(svc: Services, caller: str, key: str, hashed: bytes) -> AcceptedRun | None:
    """The run a key the caller used in the last 24 hours started."""
    with autocommit(svc.pool) as conn:
        found = store.find_idempotency_key(conn, caller, key)
        if found is not None and found.request_hash == hashed and \
                store.run_status(conn, found.run.id, caller) == "BLOCKED":
            records, _ = controls_store.list_run_control_records(conn, found.run.id, caller,
                                                                 limit=100)
            run = found.run
            return _blocked(AcceptedRun(run.id, run.caller, run.provider, run.provider_name,
                                        run.endpoint, run.price, run.created_at, replayed=True),
                            controls.blocking_records(records))
    if found is None:
        return None
    if found.request_hash != hashed:
        raise errors.IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request body in the last 24 "
            "hours; use a new key for a new request")
    run = found.run
    return AcceptedRun(run.id, run.caller, run.provider, run.provider_name, run.endpoint,
                       run.price, run.created_at, replayed=True,
                       hints=hints.after_accept(run.id))


def start_run(svc: Services, caller: str, *, provider: str, endpoint: str,
              input: Mapping[str, Any], api_key_id: int | None = None,
              idempotency_key: str | None = None,
              webhook: Mapping[str, Any] | None = None) -> AcceptedRun:
    """Validate the input, hold the run's price on the wallet, store the run, then
    publish it: once this returns, the run reaches an end state whatever fails next.
    With an `idempotency_key` the caller used in the last 24 hours, the run it
    started (and nothing new); with another request, IdempotencyKeyReused.
    `webhook` (`{"url", "events"?}`): a URL to tell of the run's end (checked here;
    InvalidRequest naming `webhook.url`)."""
    checked_webhook = webhooks.run_webhook(svc.settings, webhook)
    hashed = (request_hash(provider, endpoint, input, checked_webhook)
              if idempotency_key is not None else b"")
    if idempotency_key is not None:
        replayed = _replay(svc, caller, idempotency_key, hashed)
        if replayed is not None:
            return replayed
    found = svc.catalog.find(provider, endpoint)
    if found is None:
        raise errors.EndpointNotFound(svc.catalog.not_found_message(provider, endpoint))
    problems = validate_input(found, input)
    if problems:
        raise errors.InvalidRequest(problems)

    run_id = new_run_id()
    run_id_var.set(run_id)
    hold_micros, max_results = hold_for(found, input)
    # Commit, then publish: once the row is committed the run cannot be lost. Without an
    # Idempotency-Key the accept is one statement, written with other requests' accepts
    # of this process under load (shared.accepts).
    params = store.run_params(
        run_id=run_id, caller=caller, api_key_id=api_key_id, endpoint=found, input=input,
        hold_micros=hold_micros, max_results=max_results,
        in_flight_cap=svc.settings.max_runs_in_flight,
        queue_timeout_seconds=svc.settings.queue_timeout_seconds, webhook=checked_webhook)
    blocked: store.RunBlocked | None = None
    try:
        if idempotency_key is None:
            try:
                created_at = svc.accepts.insert(params)
            except store.RunBlocked as refused:  # stored BLOCKED: nothing to publish
                blocked, created_at = refused, refused.created_at
        else:
            with transaction(svc.pool) as conn:
                try:
                    created_at = store.insert_new_run(conn, params)
                except store.RunBlocked as refused:
                    blocked, created_at = refused, refused.created_at
                store.claim_idempotency_key(conn, caller=caller, key=idempotency_key,
                                            request_hash=hashed, run_id=run_id)
    except store.TooManyRunsInFlight:
        raise errors.TooManyRunsInFlight(
            f"this caller already has {svc.settings.max_runs_in_flight} runs in flight, the "
            "most it may have; wait for some to end") from None
    except store.InsufficientFunds:
        raise errors.InsufficientFunds(
            f"the wallet cannot cover this run: it holds {micros_to_dollars(hold_micros)} USD "
            "until the run ends; add funds and try again",
            hints.top_up(caller.partition("#")[2] or None)) from None
    except store.IdempotencyKeyTaken:
        # A concurrent request with the same key won: answer what it answered.
        assert idempotency_key is not None
        replayed = _replay(svc, caller, idempotency_key, hashed)
        if replayed is None:
            raise errors.IdempotencyKeyInProgress(
                "a request with this Idempotency-Key is in progress") from None
        return replayed
    if blocked is not None:
        log.info("run blocked", extra={"provider": found.provider, "endpoint": found.path})
        return _blocked(AcceptedRun(run_id, caller, found.provider, found.provider_name,
                                    found.path, found.price, created_at),
                        controls.blocking_controls(blocked.controls, hold_micros))
    # The run is stored: it is published without holding up the answer, and should
    # that fail, the sweeper publishes runs that no worker claimed. A caller with a
    # backlog gets a lower priority: it does not hold up callers with a few runs.
    svc.publisher.publish_soon(run_id, priority_for(svc.recent_starts.note(caller)),
                               task_name(found.provider, found.path))
    log.info("run accepted", extra={"provider": found.provider, "endpoint": found.path})
    return AcceptedRun(run_id, caller, found.provider, found.provider_name, found.path,
                       found.price, created_at, hints=hints.after_accept(run_id))


def _read(svc: Services, caller: str, run_id: str) -> Run:
    with autocommit(svc.pool) as conn:
        run = store.get_run(conn, run_id, caller)
    if run is None:
        raise errors.RunNotFound(run_id)
    return run


def get_run(svc: Services, caller: str, run_id: str, *, wait: float = 0.0) -> Run:
    """The run; with `wait` (seconds, at most MAX_WAIT_SECONDS), as soon as it has
    ended, or as it is once `wait` has passed. A wait holds no database connection;
    when this process has no waiting slot free for the caller, the run as it is now."""
    if not is_run_id(run_id):
        raise errors.RunNotFound(run_id)
    run = _read(svc, caller, run_id)
    wait = min(max(wait, 0.0), MAX_WAIT_SECONDS)
    if wait > 0 and not run.ended:

        def ended() -> bool:
            with autocommit(svc.pool) as conn:
                return store.run_status(conn, run_id, caller) in END_STATUSES

        svc.waiter.wait(run_id, wait, ended, caller)
        run = _read(svc, caller, run_id)
    return run


def list_runs(svc: Services, caller: str, *, limit: int, cursor: str | None = None,
              status: str | None = None) -> Page[Run]:
    """A page of the caller's runs, newest first, without input, output and attempts."""
    before = page_start(cursors.decode_runs_cursor, cursor)
    with autocommit(svc.pool) as conn:
        runs, more = store.list_runs(conn, caller, limit=limit, before=before, status=status)
    return Page(runs, cursors.encode_runs_cursor(runs[-1].id) if more else None)


def stop_run(svc: Services, caller: str, run_id: str) -> Stopping:
    """Ask the run to stop: a run nobody works on ends STOPPED here; one a worker holds
    (or whose provider job is followed) is stopped by the worker this wakes.
    RunNotStoppable for a run that has ended."""
    if not is_run_id(run_id):
        raise errors.RunNotFound(run_id)
    with transaction(svc.pool) as conn:
        stop = store.request_stop(conn, run_id, caller)
        if stop is None:
            status = store.run_status(conn, run_id, caller)
            if status is None:
                raise errors.RunNotFound(run_id)
            raise errors.RunNotStoppable(
                f"the run has already ended ({status}); only a run that has not ended can "
                "be stopped")
        if not stop.held and not stop.following:
            # Nobody is working on it: it ends here, without ever calling the provider.
            store.end_unheld_run(conn, run_id, status="STOPPED", error=None,
                                 outcome="STOPPED", message="stopped on request")
    if stop.held or stop.following:
        # A worker carries the stop out: aborts the provider's job, or discards
        # the answer of the call in flight.
        try:
            svc.publisher.publish(run_id)
        except PublishFailed as exc:
            log.warning("publish failed; the sweeper will stop the run",
                        extra={"error": str(exc)})
    return Stopping(run_id)
