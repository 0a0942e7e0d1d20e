"""Claim → call → record, for one delivery of a run's message. Knows nothing of Celery."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from shared import progress, store
from shared.catalog import Catalog, split_input
from shared.db import DatabaseUnavailable, autocommit, transaction
from shared.grouping import Group
from shared.logs import run_id_var
from shared.money import cost_micros
from shared.queue import task_name
from shared.scheduling import Freed, Limits, priority_for
from shared.settings import Settings
from shared.store import results
from worker.providers.base import (
    Adapter,
    DeadlinePassed,
    MalformedAnswer,
    Pending,
    PermanentError,
    PlatformError,
    ProviderCall,
    ProviderError,
    ProviderJobFailed,
    ProviderResult,
    ReadAgain,
    ResultTooLarge,
    TransientError,
)
from worker.results import ResultWriter, StopAsked
from worker.retry import GiveUp, RetryPolicy

log = logging.getLogger("monid.worker")
T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")

# Publish a run's ID: (run ID, countdown or None, priority, the name its task shows or
# None for the name of the task at hand).
Publish = Callable[[str, float | None, int, str | None], None]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Runner:
    def __init__(self, *, settings: Settings, pool: ConnectionPool, catalog: Catalog,
                 adapters: Mapping[str, Adapter], publish: Publish,
                 name: str | None = None, limits: Limits | None = None,
                 publish_retry: Publish | None = None,
                 policy: RetryPolicy | None = None,
                 group_pool: ConnectionPool | None = None) -> None:
        self.settings = settings
        # Whether, when and where a run waits to be tried again: asked, never second-guessed.
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.pool = pool
        self.catalog = catalog
        self.adapters = adapters
        self.publish = publish
        # How a retry's message goes out (as a retry of the same task, in the worker).
        self.publish_retry = publish_retry or publish
        self.name = name or worker_name()
        self.limits = limits or Limits()
        self.results = ResultWriter(settings=settings, pool=pool)
        # Claims and ends of small results of this process's threads, written together
        # (group commit) on connections that plan each statement once.
        self.group_pool = group_pool or pool
        linger = settings.worker_group_linger_ms / 1000
        self.claims: Group[str, store.Claim | None] = Group(self._claim_together,
                                                            linger=linger)
        self.deliveries: Group[results.Delivery, results.Delivered | None] = Group(
            self._deliver_together, linger=linger)
        # Leases this process holds now, renewed by the heartbeat.
        self._held: dict[uuid.UUID, str] = {}
        # New attempts this process works on now, by caller: a caller may have at most
        # `limits.caller` of them (its runs over that wait for a thread of theirs).
        self._threads_of: dict[str, int] = {}
        # Runs this process parked for want of a thread of their caller's, counted: an
        # end that saw none park before its statement, and sees one after, hands one
        # back itself (the one parked meanwhile may have missed its statement).
        self._parked = 0
        self._parked_seen: dict[uuid.UUID, int] = {}
        # Callers of which this process parked runs that no end has yet found all handed
        # back: each end of one of their runs here hands one back. Every thread freed
        # hands a run back, not only a thread freed while the caller had none: a run
        # handed back may be taken by a thread that has freed meanwhile, and the next
        # end must hand back another.
        self._waiting_callers: set[str] = set()
        # Ends that asked for a waiting run of their caller's to be handed back.
        self._asked: set[uuid.UUID] = set()
        self._held_lock = threading.Lock()
        # Runs waiting in this process for a thread of their caller's (limits.caller_wait):
        # a condition per caller (with how many wait on it), notified as one frees.
        self._thread_freed: dict[str, tuple[threading.Condition, int]] = {}
        self._local_waiters = 0

    def held_leases(self) -> list[uuid.UUID]:
        with self._held_lock:
            return list(self._held)

    def renew_leases(self) -> int:
        """Extend the lease of every run this process is working on."""
        tokens = self.held_leases()
        if not tokens:
            return 0
        with transaction(self.pool) as conn:
            return store.renew_leases(conn, tokens, self.settings.lease_seconds)

    def run(self, run_id: str) -> str:
        """Handle one delivery of `run_id`; returns what happened, in one word."""
        token = run_id_var.set(run_id)
        try:
            return self._run(run_id)
        finally:
            run_id_var.reset(token)

    def _run(self, run_id: str) -> str:
        full = self._full_callers()
        if full and self.limits.caller_wait > 0:
            full = self._wait_for_a_thread(run_id, full)
        # Claiming is one statement (atomic on its own), with other threads' claims
        # where nothing may have to wait for a slot.
        claim: store.Claim | store.Waiting | None
        if full or self.limits.by_key:
            with autocommit(self.pool) as conn:
                claim = store.claim_run(conn, run_id, worker=self.name,
                                        lease_seconds=self.settings.lease_seconds,
                                        limits=self.limits, full_callers=full)
        else:
            claim = self.claims.submit(run_id)
        if isinstance(claim, store.Waiting):
            # Not an attempt: the run waits in PostgreSQL and is handed back to the
            # queue when the slot frees.
            log.info("waiting for a free slot", extra={"slot": claim.slot})
            if claim.slot == "caller":
                self._parked_for_caller(claim.caller)
            return "waiting"
        if claim is None:
            with autocommit(self.pool) as conn:
                state = store.get_claim_state(conn, run_id)
            return self._not_claimed(run_id, state)
        counted = claim.new_attempt and self.limits.caller > 0
        with self._held_lock:
            self._held[claim.lease_token] = run_id
            if counted:
                self._threads_of[claim.caller] = self._threads_of.get(claim.caller, 0) + 1
        try:
            return self._attempt_logged(claim)
        finally:
            with self._held_lock:
                self._held.pop(claim.lease_token, None)
                self._asked.discard(claim.lease_token)
                seen = self._parked_seen.pop(claim.lease_token, self._parked)
                missed = counted and self._parked != seen
                if counted:
                    left = self._threads_of[claim.caller] - 1
                    if left:
                        self._threads_of[claim.caller] = left
                    else:
                        del self._threads_of[claim.caller]
                    waiting = self._thread_freed.get(claim.caller)
                    if waiting is not None:
                        waiting[0].notify()
            if missed:
                self._wake_callers_run(claim.caller)

    def _wait_for_a_thread(self, run_id: str, full: list[str]) -> list[str]:
        """A run whose caller holds every thread it may have here waits a moment in this
        process for one of them to free (`limits.caller_wait` seconds), instead of being
        parked in PostgreSQL at once: parking it and handing it back cost a write, a
        publish and a delivery more. Only while fewer than `limits.caller_waiters` runs
        wait so, which leaves threads for other callers' runs. The callers still full."""
        with autocommit(self.pool) as conn:
            caller = store.get_run_caller(conn, run_id)
        if caller is None or caller not in full:
            return full
        deadline = time.monotonic() + self.limits.caller_wait
        with self._held_lock:
            if self._local_waiters >= self.limits.caller_waiters:
                return full
            self._local_waiters += 1
            freed, waiters = self._thread_freed.get(caller) or (
                threading.Condition(self._held_lock), 0)
            self._thread_freed[caller] = (freed, waiters + 1)
            try:
                while self._threads_of.get(caller, 0) >= self.limits.caller:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    freed.wait(left)
            finally:
                self._local_waiters -= 1
                waiters = self._thread_freed[caller][1] - 1
                if waiters:
                    self._thread_freed[caller] = (freed, waiters)
                else:
                    del self._thread_freed[caller]
        return self._full_callers()

    def _parked_for_caller(self, caller: str) -> None:
        """A run was parked for want of a thread of its caller's here. Should the
        caller have one free by now (a run of its ended while this one was being
        parked, its statement too early to find it), hand the caller's oldest waiting
        run back at once."""
        with self._held_lock:
            self._parked += 1
            self._waiting_callers.add(caller)
            free = self._threads_of.get(caller, 0) < self.limits.caller
        if free:
            self._wake_callers_run(caller)

    def _wake_callers_run(self, caller: str) -> None:
        try:
            woken = self._write(lambda conn: store.wake_callers_run(conn, caller))
        except DatabaseUnavailable:
            return  # the sweeper hands it back
        self._publish_woken(woken)

    def _full_callers(self) -> list[str]:
        """The callers this process has no thread left for."""
        cap = self.limits.caller
        if not cap:
            return []
        with self._held_lock:
            return [caller for caller, n in self._threads_of.items() if n >= cap]

    def _freed(self, claim: store.Claim) -> Freed:
        """What the run lets go of as it ends or hands itself back: a thread of its
        caller's that others of its runs may be waiting for (when this process parked
        some), and its provider's and endpoint's slots."""
        cap = self.limits.caller
        with self._held_lock:
            ask = bool(cap) and claim.new_attempt and claim.caller in self._waiting_callers
            if ask:
                self._asked.add(claim.lease_token)
            self._parked_seen[claim.lease_token] = self._parked
        return self.limits.freed(claim.provider, claim.endpoint, caller=ask)

    def _handed_back(self, claim: store.Claim, woken: tuple[store.Woken, ...]) -> None:
        """Publish the runs an end handed back. An end that asked for one of its
        caller's and got none, with nothing parked here since it asked, shows that no
        run of the caller waits: its ends stop asking."""
        with self._held_lock:
            if claim.lease_token in self._asked:
                self._asked.discard(claim.lease_token)
                none_left = not any(run.caller == claim.caller for run in woken)
                if none_left and self._parked == self._parked_seen.get(claim.lease_token):
                    self._waiting_callers.discard(claim.caller)
        self._publish_woken(woken)

    def _attempt_logged(self, claim: store.Claim) -> str:
        log.debug("attempt started" if claim.new_attempt else "checking the provider's job",
                  extra={"attempt": claim.attempt})
        return self._attempt(claim)

    def _not_claimed(self, run_id: str, state: store.ClaimState | None) -> str:
        if state and state.status == "RUNNING" and not state.leased and state.wait_seconds > 0:
            # The message came before the retry is due (clock skew, an early
            # sweep): put it back for when it is.
            self._publish_quietly(run_id, state.wait_seconds)
            return "early"
        log.info("nothing to claim", extra={"state": state.status if state else "missing"})
        return "skipped"

    def _attempt(self, claim: store.Claim) -> str:
        endpoint = self.catalog.find(claim.provider, claim.endpoint)
        adapter = self.adapters.get(endpoint.adapter) if endpoint else None
        if endpoint is None or adapter is None:
            return self._end(claim, store.AttemptEnd("PERMANENT_ERROR", None, "not in catalog"),
                             status="FAILED",
                             error={"source": "platform", "code": "ENDPOINT_UNAVAILABLE",
                                    "message": "the endpoint is no longer in this catalog"})
        parts = split_input(claim.input)
        request = ProviderCall(
            run_id=claim.run_id, provider=claim.provider, endpoint=claim.endpoint,
            call=endpoint.call, body=parts["body"], query_params=parts["queryParams"],
            path_params=parts["pathParams"], attempt=claim.attempt,
            deadline_at=claim.deadline_at, state=claim.provider_state,
            max_results=claim.max_results if claim.price_type == "PER_RESULT" else None,
            max_charge_micros=claim.hold_micros,
            stop_requested=lambda: self._stop_requested(claim),
        )
        if claim.status == "STOPPING":
            return self._stopped(claim, adapter, request)
        if datetime.now(UTC) >= claim.deadline_at:
            return self._timed_out(claim, adapter, request)
        try:
            result = adapter.call(request)
            if isinstance(result, ProviderResult) and datetime.now(UTC) < claim.deadline_at:
                # Its items are read (and may fail) as they are written.
                return self._delivered(claim, result)
        except DatabaseUnavailable:
            raise
        except ReadAgain as exc:
            log.info("reading the result broke off; checking again", extra={"error": str(exc)})
            return self._follow(claim, exc.pending)
        except StopAsked:
            return self._stopped(claim, adapter, request)
        except DeadlinePassed:
            return self._timed_out(claim, adapter, request)
        except ResultTooLarge as exc:
            return self._too_large(claim, exc)
        except ProviderJobFailed as exc:
            return self._job_failed(claim, exc)
        except TransientError as exc:
            return self._transient(claim, exc, adapter, request,
                                   malformed=isinstance(exc, MalformedAnswer))
        except PermanentError as exc:
            return self._permanent(claim, exc)
        except PlatformError as exc:
            return self._end(claim, store.AttemptEnd("PERMANENT_ERROR", None, str(exc)),
                             status="FAILED", cost_micros=0,
                             error={"source": "platform", "code": "PROVIDER_NOT_CONFIGURED",
                                    "message": str(exc)})
        except Exception:
            log.exception("adapter failed")
            return self._end(claim, store.AttemptEnd("PERMANENT_ERROR", None, "internal error"),
                             status="FAILED", cost_micros=0,
                             error={"source": "platform", "code": "INTERNAL",
                                    "message": "internal error while calling the provider"})
        if datetime.now(UTC) >= claim.deadline_at:
            return self._timed_out(claim, adapter, request)
        assert isinstance(result, Pending)
        return self._follow(claim, result)

    def _stop_requested(self, claim: store.Claim) -> bool:
        try:
            with autocommit(self.pool) as conn:
                return store.run_status(conn, claim.run_id, claim.caller) == "STOPPING"
        except DatabaseUnavailable:
            return False

    def _follow(self, claim: store.Claim, pending: Pending) -> str:
        wait = self.policy.wait(pending.check_after, deadline_at=claim.deadline_at,
                                now=datetime.now(UTC))
        # The job's progress rides on the state written anyway: no write of its own.
        state = progress.record(claim.provider_state, pending.state, pending.progress,
                                attempt=claim.attempt, now=datetime.now(UTC))
        handed = self._write(lambda conn: store.follow_run(conn, claim, state, wait.seconds,
                                                           published=wait.on_broker,
                                                           freed=self._freed(claim)))
        if handed is None:
            return "lost-lease"
        self._handed_back(claim, handed.woken)
        if handed.status == "STOPPING":  # a stop was asked meanwhile: carry it out now
            self._publish_quietly(claim.run_id, None)
        elif wait.on_broker:
            self._publish_quietly(claim.run_id, wait.seconds)
        return "following"

    @staticmethod
    def _abort_quietly(adapter: Adapter, request: ProviderCall) -> None:
        """Ask the provider to stop the job this run started, if it started one."""
        if request.state:
            try:
                adapter.abort(request)
            except Exception:
                log.exception("abort failed")

    def _stopped(self, claim: store.Claim, adapter: Adapter, request: ProviderCall) -> str:
        self._abort_quietly(adapter, request)
        return self._end(claim, store.AttemptEnd("STOPPED", None, "stopped on request"),
                         status="STOPPED", cost_micros=0)

    def _delivered(self, claim: store.Claim, result: ProviderResult) -> str:
        def cost(result_count: int) -> int:
            # Never more than the run held: the hold is the most it can cost.
            return min(claim.hold_micros,
                       cost_micros(claim.price_type, claim.price_micros,
                                   claim.flat_fee_micros, result_count, claim.max_results))

        ended = self.results.write(claim, result, cost_of=cost, deliver=self._deliver,
                                   freed=self._freed(claim))
        if ended is None:
            log.warning("result discarded: this attempt no longer holds the run")
            return "lost-lease"
        log.info("run ended", extra={"status": ended.status, "attempt": claim.attempt})
        self._handed_back(claim, ended.woken)
        return ended.status.lower()

    def _too_large(self, claim: store.Claim, exc: ResultTooLarge) -> str:
        return self._end(claim, store.AttemptEnd("PERMANENT_ERROR", None, str(exc)),
                         status="FAILED", cost_micros=0,
                         error={"source": "platform", "code": "RESPONSE_TOO_LARGE",
                                "message": str(exc)})

    def _job_failed(self, claim: store.Claim, exc: ProviderJobFailed) -> str:
        return self._end(claim, store.AttemptEnd("PERMANENT_ERROR", None, exc.message),
                         status="FAILED", cost_micros=0,
                         provider_response={"httpStatus": None, **exc.response},
                         error={"source": "provider", "code": "PROVIDER_RUN_FAILED",
                                "message": exc.message})

    def _permanent(self, claim: store.Claim, exc: ProviderError) -> str:
        return self._end(
            claim, store.AttemptEnd("PERMANENT_ERROR", exc.http_status, exc.message),
            status="COMPLETED", cost_micros=0,
            provider_response={"httpStatus": exc.http_status,
                               "error": exc.body if exc.body is not None else exc.message},
        )

    def _timed_out(self, claim: store.Claim, adapter: Adapter, request: ProviderCall) -> str:
        self._abort_quietly(adapter, request)
        return self._end(claim, store.AttemptEnd("TIMEOUT", None, "deadline passed"),
                         status="TIMED_OUT", cost_micros=0,
                         error={"source": "platform", "code": "DEADLINE_EXCEEDED",
                                "message": "the run passed its endpoint's deadline"})

    def _transient(self, claim: store.Claim, exc: TransientError, adapter: Adapter,
                   request: ProviderCall, *, malformed: bool = False) -> str:
        decision = self.policy.after_failure(
            attempt=claim.attempt, max_attempts=claim.max_attempts,
            deadline_at=claim.deadline_at, now=datetime.now(UTC),
            retry_after=exc.retry_after, malformed=malformed,
            malformed_before=claim.malformed_answers)
        if isinstance(decision, GiveUp):
            if decision.reason == "final":
                return self._permanent(claim, exc)
            if decision.reason == "timed_out":
                return self._timed_out(claim, adapter, request)
            return self._retries_exhausted(claim, exc)
        wait = decision.wait
        attempt = store.AttemptEnd("TRANSIENT_ERROR", exc.http_status, exc.message)
        handed = self._write(lambda conn: store.schedule_retry(conn, claim, attempt, wait.seconds,
                                                               published=wait.on_broker,
                                                               malformed=malformed,
                                                               freed=self._freed(claim)))
        if handed is None:
            return "lost-lease"
        self._handed_back(claim, handed.woken)
        log.info("retry scheduled", extra={"attempt": claim.attempt,
                                           "delaySeconds": wait.seconds})
        if handed.status == "STOPPING":  # a stop was asked meanwhile: carry it out now
            self._publish_quietly(claim.run_id, None)
        elif wait.on_broker:
            self._publish_quietly(claim.run_id, wait.seconds, publish=self.publish_retry)
        return "retry"

    def _retries_exhausted(self, claim: store.Claim, exc: TransientError) -> str:
        response = None
        if exc.http_status is not None or exc.body is not None:
            response = {"httpStatus": exc.http_status, "error": exc.body}
        return self._end(
            claim, store.AttemptEnd("TRANSIENT_ERROR", exc.http_status, exc.message),
            status="FAILED", cost_micros=0, provider_response=response,
            error={"source": "provider", "code": "RETRIES_EXHAUSTED",
                   "message": f"{exc.message}; gave up after {claim.attempt} attempts"},
        )

    def _end(self, claim: store.Claim, attempt: store.AttemptEnd, *, status: str,
             **fields: Any) -> str:
        ended = self._write(lambda conn: store.end_run(conn, claim, attempt, status=status,
                                                       freed=self._freed(claim), **fields))
        if ended is None:
            log.warning("result discarded: this attempt no longer holds the run")
            return "lost-lease"
        log.info("run ended", extra={"status": ended.status, "attempt": claim.attempt})
        self._handed_back(claim, ended.woken)
        return ended.status.lower()

    def _publish_woken(self, woken: tuple[store.Woken, ...]) -> None:
        """Runs that waited for a slot this run freed go back to the queue."""
        for run in woken:
            self._publish_quietly(run.run_id, None, priority_for(run.open_runs),
                                  shadow=task_name(run.provider, run.endpoint))

    def _write(self, write: Callable[[store.Conn], T]) -> T:
        """Write a result, waiting out a short PostgreSQL outage as the policy says. Every
        write given is one statement (atomic on its own), so it runs without BEGIN and
        COMMIT."""
        def once() -> T:
            with autocommit(self.pool) as conn:
                return write(conn)

        return self._patiently(once)

    def _deliver(self, delivery: results.Delivery) -> results.Delivered | None:
        """End a run with a small result, with other threads' ends, as `_write` does."""
        return self._patiently(lambda: self.deliveries.submit(delivery))

    def _patiently(self, write: Callable[[], T]) -> T:
        started = time.monotonic()
        failures = 0
        while True:
            try:
                return write()
            except DatabaseUnavailable:
                failures += 1
                pause = self.policy.write_pause(failures, time.monotonic() - started)
                if pause is None:
                    raise
                log.warning("database unavailable while writing a result; trying again")
                time.sleep(pause)

    def _claim_together(self, run_ids: Sequence[str]) -> list[store.Claim | None]:
        """Claims of several threads in one statement, the runs taken in the order of
        their IDs."""
        def claim(conn: store.Conn, ids: Sequence[str]) -> list[store.Claim | None]:
            return store.claim_runs(conn, ids, worker=self.name,
                                    lease_seconds=self.settings.lease_seconds)

        return self._together(run_ids, key=lambda run_id: run_id, write_all=claim,
                              write_one=lambda conn, run_id: claim(conn, [run_id])[0],
                              split_on=(psycopg.errors.DeadlockDetected,))

    def _deliver_together(self, deliveries: Sequence[results.Delivery]
                          ) -> list[results.Delivered | None]:
        """Ends of several threads' runs in one statement, the runs locked and their
        callers' wallets settled by caller, then run. Where another attempt wrote the
        items of one of them first, the others are not held back by it."""
        return self._together(
            deliveries, key=lambda d: (d.claim.caller, d.claim.run_id),
            write_all=results.deliver_runs, write_one=results.deliver_run,
            split_on=(results.ItemsAlreadyWritten, psycopg.errors.DeadlockDetected))

    def _together(self, parts: Sequence[A], *, key: Callable[[A], Any],
                  write_all: Callable[[store.Conn, Sequence[A]], Sequence[R]],
                  write_one: Callable[[store.Conn, A], R],
                  split_on: tuple[type[Exception], ...]) -> list[R]:
        """Write several threads' parts in one statement, in the order of `key`, the same
        in every process, so that two such statements never wait for each other. Where
        the statement cannot stand for all of them (`split_on`: a deadlock with another
        writer all the same, a part that spoils the others) each is written on its own,
        as a lone part is from the start; the answers come in the order given."""
        order = sorted(range(len(parts)), key=lambda i: key(parts[i]))
        ordered = [parts[i] for i in order]
        with autocommit(self.group_pool) as conn:
            if len(ordered) == 1:
                written: Sequence[R] = [write_one(conn, ordered[0])]
            else:
                try:
                    written = write_all(conn, ordered)
                except split_on:
                    written = [write_one(conn, part) for part in ordered]
        answers = dict(zip(order, written, strict=True))
        return [answers[i] for i in range(len(parts))]

    def _publish_quietly(self, run_id: str, countdown: float | None, priority: int = 0, *,
                         shadow: str | None = None, publish: Publish | None = None) -> None:
        try:
            (publish or self.publish)(run_id, countdown, priority, shadow)
        except Exception as exc:  # the sweeper publishes due runs that nobody woke
            log.warning("publish failed; the sweeper will publish the run",
                        extra={"error": str(exc)})
