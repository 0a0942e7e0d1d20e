"""A run's live events, as Server-Sent Events (`shared.events` follows the run)."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from contextlib import suppress
from typing import Any

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from api import errors
from api.auth import authenticate
from api.openapi import documented
from api.schemas import RUN_ID_EXAMPLE, AttemptSchema, RunSchema
from api.services import services
from shared import events

blueprint = Blueprint("events", __name__, url_prefix="/v1")

_attempt_schema = AttemptSchema()
# The end: the run as GET /v1/runs/:runId answers it, but its output (read it, or its
# items, from there).
_end_schema = RunSchema(exclude=("output", "outputTruncated"))
MEDIA_TYPE = "text/event-stream"
LAST_EVENT_ID_HEADER = {
    "in": "header", "name": "Last-Event-ID", "required": False,
    "description": "The `id` of the last event the client received (an `EventSource` sends "
                   "it when it reconnects): the stream goes on after it, with nothing "
                   "repeated and nothing missed. An ID that is not one of this run's stream "
                   "starts it from the beginning.",
    "schema": {"type": "string", "maxLength": 64, "example": "1.2.1"},
}
# For clients that cannot set the header (some EventSource polyfills send it so).
LAST_EVENT_ID_QUERY = {
    "in": "query", "name": "lastEventId", "required": False,
    "description": "The same as `Last-Event-ID`, which wins when both are sent.",
    "schema": {"type": "string", "maxLength": 64, "example": "1.2.1"},
}
# What each event of the stream is (the stream is a sequence of them, and comments).
EVENT_SCHEMA = {
    "type": "object", "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": r"^[0-4]\.[0-9]+\.[01](\.[1-9][0-9]*)?$",
               "description": "Where the stream stands: `<status>.<attempt>.<ended>`, "
                              "then `.<progress>` once the attempt in flight has shown "
                              "progress."},
        "event": {"type": "string", "enum": list(events.KINDS)},
        "data": {"type": "string",
                 "description": "JSON: `{\"runId\", \"status\", \"stoppable\"}` "
                                "(status), the attempt with `runId` (attempt), "
                                "`{\"runId\", \"attempt\", \"message\", \"at\"}` "
                                "(progress: what the attempt in flight's provider job "
                                "says, at most 500 characters, first seen `at`), the run "
                                "without `output` (end)."},
        "retry": {"type": "integer", "description": "On the first event: milliseconds to "
                                                    "wait before reconnecting."},
    },
}
EXAMPLE = {"id": "1.0.0", "event": "status", "retry": 1000,
           "data": f'{{"runId":"{RUN_ID_EXAMPLE}","status":"RUNNING","stoppable":true}}'}


def _data(event: events.Event) -> dict[str, Any]:
    run = event.run
    if event.kind == events.STATUS:
        return {"runId": run.id, "status": event.status,
                "stoppable": event.status not in events.END_STATUSES}
    if event.kind == events.ATTEMPT:
        return {"runId": run.id, **_attempt_schema.dump(event.attempt)}
    if event.kind == events.PROGRESS:
        said = event.progress
        assert said is not None
        return {"runId": run.id, "attempt": said.attempt, "message": said.message,
                "at": said.at}
    return dict(_end_schema.dump(run))


def _frame(event: events.Event) -> str:
    data = json.dumps(_data(event), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


def _text(stream: events.EventStream) -> Generator[str, None, None]:
    # The reconnection delay rides on the first event: a frame of its own would be an
    # empty event to some clients.
    retry = f"retry: {events.RECONNECT_MILLISECONDS}\n"
    for event in stream:
        if event is None:
            yield ": ping\n\n"
        else:
            yield retry + _frame(event)
            retry = ""


class _Body:
    """The answer's body: gives the stream's slot back when the server closes it, even
    if it never started to send (a client gone at once)."""

    def __init__(self, stream: events.EventStream) -> None:
        self.stream = stream
        self.chunks = _text(stream)

    def __iter__(self) -> Iterator[str]:
        return self.chunks

    def close(self) -> None:
        self.stream.close()  # first: one being sent in another thread then ends by itself
        with suppress(ValueError):  # being sent (by another thread): it ends by itself
            self.chunks.close()


@blueprint.get("/runs/<run_id>/events")
@documented(
    operation_id="getRunEvents", summary="Follow a run's events live (Server-Sent Events)",
    tag="runs", headers=(LAST_EVENT_ID_HEADER, LAST_EVENT_ID_QUERY),
    description=(
        "A `text/event-stream` of the run's events as they happen: `status` (`{\"runId\", "
        "\"status\", \"stoppable\"}`, each status the run goes through: `RUNNING`, "
        "`STOPPING` when a stop was asked, then the one it ended with), `attempt` (each "
        "attempt as the run's `attempts` shows it, with `runId`: once when it starts, "
        "again when it ends; one that did both while the client was away, once), "
        "`progress` (`{\"runId\", \"attempt\", \"message\", \"at\"}`: what the "
        "provider's job says of its progress while the attempt runs, each time it "
        "changes, as the worker's checks of the job read it; for Apify actors, the actor "
        "run's `statusMessage`, cut to 500 characters; a client that was away gets the "
        "last one only), and `end` (the run as `GET /v1/runs/:runId` answers it, without "
        "`output`), after which the stream closes. Each event has an `id` that says how "
        "far the stream has gone (`<status>.<attempt>.<ended>`, then `.<progress>` once "
        "the attempt in flight has shown progress): a client that reconnects with "
        "`Last-Event-ID` gets only what it has not seen; a run that has ended answers "
        "what was missed and its `end` at once. An idle stream sends a `: ping` comment "
        "every `EVENT_STREAM_PING_SECONDS` (15 s); a stream open for "
        "`EVENT_STREAM_MAX_SECONDS` (300 s) is closed, and the client reconnects with "
        "`Last-Event-ID`. Errors are answered in the envelope before the stream starts."),
    answer="The run's events, streamed until its `end`.",
    content={MEDIA_TYPE: {"schema": EVENT_SCHEMA, "example": EXAMPLE}},
    errors=(errors.NOT_FOUND,),
    described={429: "Over the caller's rate limit (`RATE_LIMITED`), or as many event streams "
                    "open as the caller may have in this server process "
                    "(`EVENT_STREAMS_PER_CALLER`), or as the process may hold "
                    "(`EVENT_STREAMS_PER_PROCESS`); try again after `Retry-After` seconds."},
    responses={"204": {"description": "`Last-Event-ID` is the run's `end` event: the client "
                                      "has seen everything (an `EventSource` stops "
                                      "reconnecting).",
                       "headers": {"x-request-id": "RequestId"}}})
def run_events(run_id: str) -> ResponseReturnValue:
    caller = authenticate()
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    stream = events.open_events(services(), caller.caller, run_id, last_event_id)
    if stream is None:
        return Response(status=204)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(_Body(stream), mimetype=MEDIA_TYPE, headers=headers)
