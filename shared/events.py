"""Live events of a run (`GET /v1/runs/:runId/events`): its status when it changes,
each attempt as it starts and ends, what the provider's job says of its progress
while the attempt runs, and its end, as they happen.

The events are not stored: each is a step between two states of the run, and its ID
says where the stream then stood, as `<status>.<attempt>.<ended>`, followed by
`.<progress>` once the attempt in flight has shown progress:

- `status`: how far along the run's statuses the stream has gone: 0 nothing yet,
  1 `RUNNING`, 2 `STOPPING`, 3 the status the run ended with, 4 the `end` event;
- `attempt`: the number of the last attempt shown (0: none);
- `ended`: 1 when that attempt was shown ended, 0 when shown in flight;
- `progress`: which of that attempt's progress messages was shown last (the count
  kept with the provider state, `shared.progress`: 1 for its first message, 2 for the
  next different one...); absent (0) when none was. IDs without it (as streams sent
  before progress was shown) are read as 0.

`progress` events come from providers whose jobs the worker follows and which say
how far they have got: Apify, whose actor runs' `statusMessage` is checked at each
check of the actor run. Only the attempt's last message is kept: a stream is sent
each message it reads, so a client that was away (or a message that changed twice
between two checks) sees the last one only. An attempt that ends shows no more
progress: its end comes next.

So the events a stream still owes are those between the state its last ID names and
the run as it is now, whichever web process answers: a client that reconnects with
`Last-Event-ID` gets what it has not seen, never an event twice and none missed (an
attempt that started and ended while the client was away is shown once, ended). An
ID that is not one of these, or that names more than the run has done, starts the
stream again from the beginning; the ID of the `end` event means the client has seen
everything (`open_events` answers None: nothing to send).

A run's statuses go one way: `RUNNING`, then `STOPPING` when a stop was asked (a
stopped run went through it), then the status it ended with; a `BLOCKED` run never
ran. A stream opened on a run that had gone further starts with the statuses it
passed through, so every stream of a run tells the same story.

An open stream holds one of the web process's waiting slots and no database
connection: it sleeps until the process's listener (`shared.waiting`) is notified of
a change of its run (`monid_run_changed`, sent only for runs a stream follows,
migration 0021) or of its end (`monid_run_ended`), then reads the run once. It reads
the run again at every keep-alive too, so a notification lost while the listener
reconnected delays an event by one keep-alive at most. A progress change is notified
too: the worker keeps it with the state it writes at each check of a followed job
(`follow_run`), which also sets when the next check is due (`next_attempt_at`, in the
trigger's WHEN).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared import errors, progress
from shared.db import DatabaseUnavailable, autocommit
from shared.ids import is_run_id
from shared.progress import Progress
from shared.services import Services
from shared.store import END_STATUSES, Run
from shared.store import events as events_store
from shared.waiting import StreamsFull, StreamSlot

log = logging.getLogger("monid.events")

STATUS, ATTEMPT, PROGRESS, END = "status", "attempt", "progress", "end"
KINDS = (STATUS, ATTEMPT, PROGRESS, END)
# How far along its statuses a stream has gone.
RUNNING_RANK, STOPPING_RANK, ENDED_RANK, END_RANK = 1, 2, 3, 4
# What a client waits before reconnecting after the stream closes (`retry:`).
RECONNECT_MILLISECONDS = 1000
# `.<progress>` is there only when it is not 0 (so an ID has one spelling).
_EVENT_ID = re.compile(r"([0-4])\.(\d{1,9})\.([01])(?:\.([1-9]\d{0,8}))?")


@dataclass(frozen=True)
class Position:
    """Where a stream stands: what it has shown of the run (see the module's text)."""

    rank: int = 0
    attempt: int = 0
    ended: int = 0
    progress: int = 0

    @property
    def id(self) -> str:
        shown = f".{self.progress}" if self.progress else ""
        return f"{self.rank}.{self.attempt}.{self.ended}{shown}"

    @classmethod
    def parse(cls, text: str | None) -> Position | None:
        """The position an event ID names; None for anything else."""
        match = _EVENT_ID.fullmatch(text.strip()) if text else None
        if match is None:
            return None
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)),
                   int(match.group(4) or 0))


START = Position()


@dataclass(frozen=True)
class Event:
    """One event: `kind` is status, attempt, progress or end; `status` the status it
    shows (status events), `attempt` the attempt (attempt events, as the run's
    `attempts` has it), `progress` what the attempt in flight says (progress events)."""

    id: str
    kind: str
    run: Run
    status: str | None = None
    attempt: Mapping[str, Any] | None = None
    progress: Progress | None = None


def _status_path(run: Run) -> list[tuple[int, str]]:
    """The statuses the run has been through, with their ranks."""
    path = [] if run.status == "BLOCKED" else [(RUNNING_RANK, "RUNNING")]
    if run.status in ("STOPPING", "STOPPED"):
        path.append((STOPPING_RANK, "STOPPING"))
    if run.ended:
        path.append((ENDED_RANK, run.status))
    return path


def current_progress(run: Run) -> Progress | None:
    """What the run's attempt in flight last said of its progress; None when it said
    nothing (or no attempt is in flight)."""
    if run.ended:
        return None
    said = progress.parse(run.progress)
    if said is None:
        return None
    attempt = next((a for a in run.attempts if a["number"] == said.attempt), None)
    return said if attempt is not None and attempt["endedAt"] is None else None


def consistent(seen: Position, run: Run) -> bool:
    """Whether `seen` is a position of this run's stream: it names no more than the run
    has done."""
    furthest = END_RANK if run.ended else _status_path(run)[-1][0]
    if seen.rank > furthest:
        return False
    if seen.attempt == 0:
        return seen.ended == 0 and seen.progress == 0
    attempt = next((a for a in run.attempts if a["number"] == seen.attempt), None)
    if attempt is None or (seen.ended and attempt["endedAt"] is None):
        return False
    if seen.progress == 0:
        return True
    if seen.ended:  # progress is shown only while the attempt is in flight
        return False
    if attempt["endedAt"] is not None:  # its progress went with it: its end is owed
        return True
    said = current_progress(run)
    return said is not None and said.attempt == seen.attempt and seen.progress <= said.n


def events_after(seen: Position, run: Run) -> tuple[list[Event], Position]:
    """The events between `seen` and the run as it is, and where they leave the stream:
    the statuses before the end, the attempts, the progress of the one in flight, then
    the end's status and the end."""
    events: list[Event] = []
    at = seen
    for rank, status in _status_path(run):
        if rank < ENDED_RANK and rank > at.rank:
            at = replace(at, rank=rank)
            events.append(Event(at.id, STATUS, run, status=status))
    for attempt in sorted(run.attempts, key=lambda a: int(a["number"])):
        ended = int(attempt["endedAt"] is not None)
        if (attempt["number"], ended) > (at.attempt, at.ended):
            at = replace(at, attempt=attempt["number"], ended=ended, progress=0)
            events.append(Event(at.id, ATTEMPT, run, attempt=attempt))
    said = current_progress(run)
    if said is not None and (said.attempt, 0) == (at.attempt, at.ended) \
            and said.n > at.progress:
        at = replace(at, progress=said.n)
        events.append(Event(at.id, PROGRESS, run, progress=said))
    if run.ended:
        if at.rank < ENDED_RANK:
            at = replace(at, rank=ENDED_RANK)
            events.append(Event(at.id, STATUS, run, status=run.status))
        if at.rank < END_RANK:
            at = replace(at, rank=END_RANK)
            events.append(Event(at.id, END, run))
    return events, at


class EventStream:
    """An open stream: iterating it yields its events as they happen, and None for
    each keep-alive; it stops after the `end` event, or once it has been open for
    `EVENT_STREAM_MAX_SECONDS` (the client then reconnects with `Last-Event-ID`), or
    when the process stops listening. Closing it (as the server does when the client
    goes away) gives its slot back."""

    def __init__(self, svc: Services, slot: StreamSlot, run: Run, seen: Position) -> None:
        self.svc = svc
        self.slot = slot
        self.run = run
        self.seen = seen

    def __iter__(self) -> Iterator[Event | None]:
        try:
            yield from self._follow()
        finally:
            self.close()

    def _follow(self) -> Iterator[Event | None]:
        settings = self.svc.settings
        now = time.monotonic()
        deadline = now + settings.event_stream_max_seconds
        next_ping = now + settings.event_stream_ping_seconds
        run: Run | None = self.run
        while True:
            if run is not None:
                events, self.seen = events_after(self.seen, run)
                yield from events
                if self.seen.rank >= END_RANK:
                    return
            now = time.monotonic()
            if now >= deadline or self.svc.waiter.closed or self.slot.released:
                return
            if now >= next_ping:
                yield None
                next_ping = now + settings.event_stream_ping_seconds
            woken = self.slot.event.wait(max(0.0, min(next_ping, deadline) - now))
            self.slot.event.clear()  # before the read: a change after it wakes us again
            run = self._read() if woken or time.monotonic() >= next_ping else None

    def _read(self) -> Run | None:
        try:
            with autocommit(self.svc.pool) as conn:
                return events_store.get_run_for_events(conn, self.run.id, self.run.caller)
        except DatabaseUnavailable as exc:  # the next keep-alive reads it again
            log.warning("event stream could not read its run", extra={"error": str(exc)})
            return None

    def close(self) -> None:
        """Give the slot back; a stream being iterated (in another thread) ends at once."""
        self.svc.waiter.close_stream(self.slot)
        self.slot.event.set()


def open_events(svc: Services, caller: str, run_id: str,
                last_event_id: str | None = None) -> EventStream | None:
    """Open a stream of the caller's run's events after `last_event_id` (a stream's
    event ID; anything else: from the beginning). None when that ID is the run's `end`
    event's: the client has seen everything. RunNotFound for a run that is not the
    caller's; TooManyStreams when the caller, or this process, has as many streams
    open as it may."""
    if not is_run_id(run_id):
        raise errors.RunNotFound(run_id)
    settings = svc.settings
    try:
        slot = svc.waiter.open_stream(caller, per_caller=settings.event_streams_per_caller,
                                      per_process=settings.event_streams_per_process)
    except StreamsFull as full:
        if full.per_caller:
            raise errors.TooManyStreams(
                f"this caller already has {settings.event_streams_per_caller} event streams "
                "open on this server, the most it may have; close one, or poll the run "
                "with ?wait=") from None
        raise errors.TooManyStreams(
            "this server has as many event streams open as it may; try again shortly, or "
            "poll the run with ?wait=") from None
    try:
        # Follow the run, and have its changes notified, before reading it: a change
        # committed after the read is always notified (and a listener that starts only
        # now wakes every stream once it listens).
        svc.waiter.follow(slot, run_id)
        with autocommit(svc.pool) as conn:
            events_store.watch_run(conn, run_id, caller)
            run = events_store.get_run_for_events(conn, run_id, caller)
        if run is None:
            raise errors.RunNotFound(run_id)
        if not run.ended:
            svc.waiter.listen()
        seen = Position.parse(last_event_id) or START
        if not consistent(seen, run):
            seen = START
        if seen.rank >= END_RANK:
            svc.waiter.close_stream(slot)
            return None
        return EventStream(svc, slot, run, seen)
    except BaseException:
        svc.waiter.close_stream(slot)
        raise


__all__ = ["END", "END_STATUSES", "KINDS", "START", "Event", "EventStream", "Position",
           "consistent", "current_progress", "events_after", "open_events"]
